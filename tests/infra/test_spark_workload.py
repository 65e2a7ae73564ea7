"""The Spark Operator and the batch-feature job as the program declares them (under Pulumi's mocks), plus
the pods the conformance checks derive from a ScheduledSparkApplication. That the values fit the real chart
and the SparkApplication fits the chart's CRD schema is `mlplat conform`'s job (tests/infra/test_conformance.py
runs it for every stack)."""

from __future__ import annotations

import json

import pytest

from contracts import spark as contract
from contracts.metrics_catalog import known, metric_names
from infra.conformance.model import KubeObject
from infra.conformance.spark_pods import spark_pods
from infra.workloads.operator_jobs import grafana_dashboard
from infra.workloads.spark import JOB_NAMESPACE, OPERATOR_NAMESPACE, spark_memory
from stacks.config import load_stack_file, stack_file

RELEASE = "kubernetes:helm.sh/v3:Release"


def _release(s, name):
    return next((r.inputs for r in s.of_type(RELEASE) if r.name == name), None)


def _manifests(s, kind):
    return [r.inputs for r in s.resources if r.type.startswith("kubernetes:") and r.inputs.get("kind") == kind]


def test_the_stacks_that_enable_spark_install_the_operator_and_the_job(synth, env):
    enabled = load_stack_file(stack_file(env)).workloads.spark.enabled
    s = synth(env)
    release = _release(s, "spark-operator")
    scheduled = _manifests(s, "ScheduledSparkApplication")
    namespaces = {m["metadata"]["name"] for m in _manifests(s, "Namespace")}
    if not enabled:
        assert release is None and not scheduled and not {OPERATOR_NAMESPACE, JOB_NAMESPACE} & namespaces
        assert "spark-features" not in s.stack_outputs["workloadRoleArns"]
        return
    assert env == "prod" or env == "staging"
    assert release["namespace"] == OPERATOR_NAMESPACE and release["version"] == "2.5.2"
    assert {OPERATOR_NAMESPACE, JOB_NAMESPACE} <= namespaces
    values = release["values"]
    # Least privilege: jobs only in our namespace, no webhook, the job's account carries the IRSA role.
    assert values["spark"]["jobNamespaces"] == [JOB_NAMESPACE]
    assert values["webhook"]["enable"] is False
    role = s.stack_outputs["workloadRoleArns"]["spark-features"]
    assert values["spark"]["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"] == role
    [job] = scheduled
    assert job["metadata"]["namespace"] == JOB_NAMESPACE
    assert job["metadata"]["labels"]["app_type"] == contract.APP_TYPE  # the metrics' label
    app = job["spec"]["template"]
    assert app["sparkVersion"] == "4.3.0" and app["mainApplicationFile"].endswith("ml/data/spark_features.py")
    assert app["sparkConf"]["spark.sql.parquet.outputTimestampType"] == "TIMESTAMP_MICROS"
    out = app["arguments"][app["arguments"].index("--out") + 1]
    assert out.startswith("s3a://") and out.endswith("/offline")
    assert app["image"].endswith("-spark-features")
    for role_name in ("driver", "executor"):
        pod = app[role_name]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 185
        assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_job_role_may_write_only_the_offline_store():
    from infra.aws.identities import WORKLOAD_GRANTS

    [grant] = WORKLOAD_GRANTS["spark-features"]
    assert (grant.bucket, grant.access, grant.prefix) == ("feast", "write", "offline/")


def test_conformance_sees_the_driver_and_executor_pods_of_a_schedule():
    template = {"metadata": {"labels": {"app": "x"}},
                "spec": {"securityContext": {"runAsNonRoot": True},
                         "containers": [{"name": "spark-kubernetes-driver", "securityContext": {}}]}}
    scheduled = KubeObject({"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "ScheduledSparkApplication",
                            "metadata": {"name": "job", "namespace": "ns"},
                            "spec": {"template": {"image": "img:1", "driver": {"serviceAccount": "sa",
                                                                               "template": template},
                                                  "executor": {}}}}, origin="plan")
    driver, executor = spark_pods([scheduled])
    assert driver.kind == "Pod" and driver.namespace == "ns" and driver.labels["spark-role"] == "driver"
    spec = driver.manifest["spec"]
    assert spec["serviceAccountName"] == "sa" and spec["containers"][0]["image"] == "img:1"
    assert spec["securityContext"] == {"runAsNonRoot": True}  # Spark adds none of its own
    # An executor without a template gets Spark's default container, with the application's image.
    assert executor.manifest["spec"]["containers"] == [{"name": "spark-kubernetes-executor", "image": "img:1"}]
    assert spark_pods([KubeObject({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
                                  origin="plan")]) == []


@pytest.mark.parametrize(("quantity", "expected"), [("2Gi", ("1536m", "512m")), ("1024Mi", ("768m", "256m"))])
def test_pod_memory_splits_into_jvm_and_overhead(quantity, expected):
    assert spark_memory(quantity) == expected


def test_pod_memory_refuses_what_spark_cannot_size():
    with pytest.raises(ValueError, match="whole Mi or Gi"):
        spark_memory("1.5G")


def test_dashboard_and_alerts_query_only_catalogued_metrics_and_each_alert_has_a_runbook():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    doc = json.loads(grafana_dashboard(contract.DASHBOARD))
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]] + [a.expr for a in contract.ALERTS]
    for expr in exprs:
        assert all(known(m) for m in metric_names(expr)), expr
    titles = " ".join(p["title"] for p in doc["panels"]).lower()
    assert "runs" in titles and "last computed" in titles  # job health and feature freshness
    for alert in contract.ALERTS:
        assert (root / "runbooks" / alert.runbook).is_file(), alert.runbook
