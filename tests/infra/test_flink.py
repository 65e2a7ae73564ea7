"""The streaming-features Flink job on the cluster, as the program declares it under Pulumi's mocks: the operator
watches only the job namespace, the FlinkDeployment reads the transactions topic through MSK IAM and writes the
online store over TLS with the AUTH token, every namespace is isolated, and what is monitored is alerted on with
runbooks. `mlplat conform` (tests/infra/test_conformance.py) renders the charts and checks the CRD schema."""

from __future__ import annotations

import json

import pytest

from contracts import flink as contract
from contracts import model_registry
from contracts.metrics_catalog import known, metric_names
from infra.workloads.flink import JOB_NAMESPACE, OPERATOR_NAMESPACE, deployment_spec
from stacks.config import load_stack_file, stack_file

RELEASE = "kubernetes:helm.sh/v3:Release"


def _of_kind(s, kind):
    return [r.inputs for r in s.resources if r.type.startswith("kubernetes:") and r.inputs.get("kind") == kind]


def _deployment(s):
    (spec,) = [m["spec"] for m in _of_kind(s, "FlinkDeployment")]
    return spec


def test_only_stacks_that_enable_flink_install_it(synth, env):
    enabled = load_stack_file(stack_file(env)).workloads.flink.enabled
    releases = {r.name for r in synth(env).of_type(RELEASE)}
    assert ({"flink-kubernetes-operator", "cert-manager"} <= releases) is enabled
    assert bool(_of_kind(synth(env), "FlinkDeployment")) is enabled
    ingestor = [m for m in _of_kind(synth(env), "Deployment") if m["metadata"]["name"] == "feast-stream-ingestor"]
    env_vars = {e["name"]: e.get("value") for e in ingestor[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    # One writer of the online features: the Flink job where it runs, the ingestor elsewhere.
    assert env_vars["PUSH_FEATURES"] == ("false" if enabled else "true")


def test_the_operator_watches_only_the_job_namespace_and_gives_the_job_its_role(synth):
    s = synth("prod")
    values = {r.name: r.inputs["values"] for r in s.of_type(RELEASE)}["flink-kubernetes-operator"]
    assert values["watchNamespaces"] == [JOB_NAMESPACE]
    assert {r.name: r.inputs["namespace"] for r in s.of_type(RELEASE)}["flink-kubernetes-operator"] == \
        OPERATOR_NAMESPACE
    annotations = values["jobServiceAccount"]["annotations"]
    assert annotations["eks.amazonaws.com/role-arn"] == s.stack_outputs["workloadRoleArns"]["flink-job"]
    assert "PrometheusReporterFactory" in values["defaultConfiguration"]["config.yaml"]


def test_the_job_reads_msk_with_iam_and_writes_redis_with_tls_and_auth(synth):
    s = synth("prod")
    spec = _deployment(s)
    stream = model_registry.stream()
    assert stream is not None and spec["job"]["args"] == ["-pym", stream.job]
    assert spec["flinkVersion"] == "v2_2" and spec["serviceAccount"] == "flink"
    assert spec["job"]["upgradeMode"] == "last-state"
    (container,) = spec["podTemplate"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KAFKA_BOOTSTRAP"]["value"] == s.stack_outputs["kafkaBootstrapBrokersIam"]
    assert env["KAFKA_TOPIC"]["value"] == stream.topic
    assert env["KAFKA_GROUP"]["value"].startswith(contract.CONSUMER_GROUP_PREFIX)
    assert env["REDIS_URL"]["value"].startswith("rediss://:$(REDIS_AUTH_TOKEN)@")
    assert env["REDIS_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "streaming-redis"
    assert spec["flinkConfiguration"]["execution.checkpointing.dir"].endswith("/flink/checkpoints")
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["podTemplate"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_each_namespace_is_isolated_and_admits_only_its_callers(synth):
    policies = _of_kind(synth("prod"), "NetworkPolicy")
    by_ns = {}
    for p in policies:
        by_ns.setdefault(p["metadata"]["namespace"], {})[p["metadata"]["name"]] = p["spec"]
    for ns in (JOB_NAMESPACE, OPERATOR_NAMESPACE, contract.CERT_MANAGER_NAMESPACE):
        assert "default-deny" in by_ns[ns], ns
    egress = by_ns[JOB_NAMESPACE]["allow-egress"]["egress"]
    ports = {p["port"] for rule in egress for p in rule.get("ports", [])}
    assert ports == {9098, 6379, 443}  # MSK IAM, ElastiCache, S3 + the Kubernetes API
    ingress = by_ns[JOB_NAMESPACE]["allow-ingress"]["ingress"]
    assert {"protocol": "TCP", "port": 8081} in ingress[0]["ports"]  # the operator calls the JobManager's REST API


def test_alerts_have_runbooks_and_dashboards_query_known_metrics(synth):
    s = synth("prod")
    (rule,) = [m for m in _of_kind(s, "PrometheusRule") if m["metadata"]["name"] == "mlplatform-streaming-features"]
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert {a["alert"] for a in alerts} == {a.name for a in contract.ALERTS}
    for alert in contract.ALERTS:
        names = metric_names(alert.expr)
        assert names and all(known(n) for n in names), alert.name
    (board,) = [m for m in _of_kind(s, "ConfigMap") if m["metadata"]["name"] == "dashboard-streaming-features"]
    panels = json.loads(next(iter(board["data"].values())))["panels"]
    assert any("freshness" in p["title"].lower() for p in panels)
    monitors = {(m["metadata"]["namespace"], m["metadata"]["name"]) for m in _of_kind(s, "PodMonitor")}
    assert {(JOB_NAMESPACE, contract.DEPLOYMENT_NAME), (OPERATOR_NAMESPACE, "flink-kubernetes-operator")} <= monitors


def test_a_stack_enabling_flink_without_a_stream_job_is_refused(monkeypatch):
    monkeypatch.setattr(model_registry, "stream", lambda: None)
    with pytest.raises(ValueError, match=r"stream\.job"):
        deployment_spec(object(), "img", "bucket", "b:9098", "redis", 6379, True)  # type: ignore[arg-type]
