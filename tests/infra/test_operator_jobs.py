"""The pieces the Spark and Flink feature jobs share (infra/workloads/operator_jobs.py, contracts/alerts.py):
each job's operator, monitoring and image come out of the same code, named after the job."""

from __future__ import annotations

import json

import pytest

from contracts import flink, spark
from contracts.alerts import Dashboard, job_rule_groups, operator_down, operator_up_panel
from infra.workloads.operator_jobs import grafana_dashboard
from stacks.config import load_stack_file, stack_file

RELEASE = "kubernetes:helm.sh/v3:Release"
# (contract, component, operator release, job namespace) of each feature job.
JOBS = [(flink, "streaming-features", "flink-kubernetes-operator", "flink-jobs"),
        (spark, "spark-features", "spark-operator", "spark-jobs")]


def _manifests(s, kind: str) -> dict[str, dict]:
    return {r.inputs["metadata"]["name"]: r for r in s.resources
            if r.type.startswith("kubernetes:") and r.inputs.get("kind") == kind}


@pytest.mark.parametrize(("contract", "component", "release", "jobs_ns"), JOBS)
def test_each_job_gets_its_operator_and_monitoring_from_its_contract(synth, contract, component, release, jobs_ns):
    s = synth("prod")
    (operator,) = [r for r in s.of_type(RELEASE) if r.name == release]
    assert operator.inputs["namespace"] == contract.OPERATOR_NAMESPACE
    namespaces = {r.inputs["metadata"]["name"]: r.urn for r in s.resources if r.type == "kubernetes:core/v1:Namespace"}
    # The release waits for its own namespace and the one of the jobs it watches.
    assert {namespaces[contract.OPERATOR_NAMESPACE], namespaces[jobs_ns]} <= set(operator.dependencies)
    board = _manifests(s, "ConfigMap")[f"dashboard-{component}"]
    assert board.inputs["data"] == {f"{component}.json": grafana_dashboard(contract.DASHBOARD)}
    rule = _manifests(s, "PrometheusRule")[f"mlplatform-{component}"]
    runbooks = load_stack_file(stack_file("prod")).workloads.observability.runbook_base_url
    assert rule.inputs["spec"]["groups"] == contract.rule_groups(runbooks)


def test_a_dashboard_lays_out_two_panels_a_row_one_query_each():
    board = Dashboard("T", "uid-t", "what it shows", ("a", "b"), "now-1h",
                      tuple((f"p{i}", f"up{{i='{i}'}}", "short", "l") for i in range(3)))
    doc = json.loads(grafana_dashboard(board))
    assert (doc["title"], doc["uid"], doc["tags"], doc["time"]) == ("T", "uid-t", ["a", "b"], {"from": "now-1h",
                                                                                                "to": "now"})
    assert [(p["id"], p["gridPos"]["x"], p["gridPos"]["y"]) for p in doc["panels"]] == [(1, 0, 0), (2, 12, 0),
                                                                                         (3, 0, 8)]
    assert [p["targets"][0]["expr"] for p in doc["panels"]] == ["up{i='0'}", "up{i='1'}", "up{i='2'}"]


def test_operator_alert_panel_and_rule_group_name_what_they_watch():
    alert = operator_down("XDown", "x-operator", "x is down", "x-down.md")
    assert (alert.expr, alert.for_, alert.severity) == ('absent(up{namespace="x-operator"} == 1)', "10m", "critical")
    assert operator_up_panel("X up", "x-operator") == ("X up", 'max(up{namespace="x-operator"})', "short", "up")
    (group,) = job_rule_groups("g", (alert,), "https://r/")
    assert (group["name"], group["interval"]) == ("g", "1m")
    assert group["rules"][0]["annotations"]["runbook_url"] == "https://r/runbooks/x-down.md"
    # Both feature jobs alert on their operator the same way, each on its own namespace.
    for contract in (flink, spark):
        (down,) = [a for a in contract.ALERTS if a.name.endswith("OperatorDown")]
        assert down.expr == f'absent(up{{namespace="{contract.OPERATOR_NAMESPACE}"}} == 1)'
