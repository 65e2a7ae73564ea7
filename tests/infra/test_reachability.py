"""Reachability: the platform's flows under its NetworkPolicies, with the VPC CNI agent's semantics
(infra/conformance/reachability.py, flows.py); each defect class re-introduced is named."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.conformance import flows, reachability, runner
from infra.conformance.charts import ChartStore
from infra.conformance.model import KubeObject
from infra.conformance.plan import Plan
from infra.conformance.selectors import Index

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ("dev", "staging", "prod")
pytestmark = pytest.mark.conformance


def _found(plan: Plan, store: ChartStore) -> list[str]:
    rep = runner.run(plan, store, scan=False, dead_keys=False)
    return [str(p) for p in rep.problems if p.check == "reachability"]


def _policy(plan: Plan, namespace: str, name: str) -> KubeObject:
    return next(o for o in plan.objects if o.kind == "NetworkPolicy" and o.namespace == namespace and o.name == name)


# ---------------------------------------------------------------- the stacks

@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_every_flow_the_platform_needs_is_allowed(report: Callable[[str], runner.Report], stack: str) -> None:
    assert [str(p) for p in report(stack).problems if p.check == "reachability"] == []


def test_flows_are_derived_from_the_wiring_of_every_kind(plan_of: Callable[[str], Plan],
                                                        report: Callable[[str], runner.Report]) -> None:
    rep = report("prod")
    derived = {(f.source_label, f.target.label, f.port) for f in flows.derive(Index(rep.objects))}
    alertmanager = "StatefulSet monitoring/alertmanager-kube-prometheus-stack-alertmanager"
    prometheus = "StatefulSet monitoring/prometheus-kube-prometheus-stack-prometheus"
    expected = {
        ("StatefulSet seldon/mlserver", "Service mlflow/mlflow:5000", 5000),  # env MLflow tracking URI
        ("StatefulSet seldon/mlserver", "Service tracing/jaeger:4317", 4317),  # OTLP endpoint
        (alertmanager, "Service ml-training/model-rollback-receiver:9095", 9095),  # alert receiver
        (prometheus, "Deployment kube-system/coredns:9153", 9153),  # scrape
        ("control plane", "Service monitoring/kube-prometheus-stack-operator:443", 443),  # admission webhook
        ("control plane", "Service kube-system/metrics-server:443", 443),  # APIService
        ("Deployment seldon/seldon-v2-controller-manager", "Service default/kubernetes:443", 443),  # RBAC -> API
        ("Deployment feast/feast-stream-ingestor", "Service kube-system/kube-dns:53", 53),  # DNS
    }
    assert expected <= derived
    assert any(t.endswith(".rds.amazonaws.com:5432") for s, t, _ in derived if s == "Deployment mlflow/mlflow")
    assert any(".kafka." in t for s, t, _ in derived if s == "Deployment seldon/seldon-dataflow-engine")


def test_the_vpc_cni_enforces_the_policies(plan_of: Callable[[str], Plan]) -> None:
    engine = reachability.engine_of(plan_of("prod"))
    assert engine is not None and engine.name == "vpc-cni"


# ---------------------------------------------------------------- defect classes re-introduced

def test_policies_without_an_engine_are_reported(plan_of: Callable[[str], Plan], store: ChartStore) -> None:
    plan = plan_of("dev")
    for urn, inputs in plan.inputs.items():
        if plan.types[urn] == reachability.ADDON_TYPE and inputs.get("addonName") == "vpc-cni":
            inputs.pop("configurationValues", None)
    found = _found(plan, store)
    assert len(found) == 1 and "NetworkPolicies in ['argocd', 'delivery', 'feast', 'kubeflow'" in found[0]
    assert "nothing enforces them" in found[0] and "enableNetworkPolicy" in found[0]


def test_a_removed_allow_rule_names_the_flow_and_the_policies(plan_of: Callable[[str], Plan],
                                                              store: ChartStore) -> None:
    plan = plan_of("prod")
    egress = _policy(plan, "monitoring", "allow-egress").manifest["spec"]["egress"]
    egress[:] = [rule for rule in egress if rule.get("to") != [{"namespaceSelector": {}}]]
    found = _found(plan, store)
    receiver = [p for p in found if "alertmanager-kube-prometheus-stack-alertmanager -> Service "
                                     "ml-training/model-rollback-receiver:9095" in p]
    assert receiver and "monitoring/allow-egress" in receiver[0] and "monitoring/default-deny" in receiver[0]
    assert "port 9095" in receiver[0] and "receiver model-rollback" in receiver[0]
    assert any("prometheus-kube-prometheus-stack-prometheus -> Deployment kube-system/coredns:9153" in p
               for p in found)


def test_an_ip_block_does_not_reach_a_cluster_ip(plan_of: Callable[[str], Plan], store: ChartStore) -> None:
    """The agent filters egress before DNAT: a Service of another namespace is its cluster IP, which no VPC
    range (the old `10.0.0.0/8` rule of the serving namespace) contains."""
    plan = plan_of("prod")
    egress = _policy(plan, "seldon", "allow-egress").manifest["spec"]["egress"]
    for rule in egress:
        if rule["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "tracing"}}}]:
            rule["to"] = [{"ipBlock": {"cidr": "10.0.0.0/8"}}]
    found = [p for p in _found(plan, store) if "-> Service tracing/jaeger:4317" in p]
    assert found and "no rule allows ClusterIP 172.20.0.10 port 4317" in found[0]


def test_a_service_port_other_than_the_container_port_is_reported(plan_of: Callable[[str], Plan],
                                                                  store: ChartStore) -> None:
    plan = plan_of("prod")
    plan.release("mlflow").values["service"]["port"] = 80
    receiver = next(o for o in plan.objects if o.kind == "Deployment" and o.name == "model-rollback-receiver")
    for env in receiver.manifest["spec"]["template"]["spec"]["containers"][0]["env"]:
        if env["name"] == "MLFLOW_TRACKING_URI":
            env["value"] = "http://mlflow.mlflow.svc.cluster.local:80"
    found = [p for p in _found(plan, store) if "model-rollback-receiver -> Service mlflow/mlflow:80" in p]
    assert found and "port 80 targets container port 5000" in found[0]


def test_a_url_naming_a_service_nobody_makes_is_reported(plan_of: Callable[[str], Plan], store: ChartStore) -> None:
    plan = plan_of("dev")
    receiver = next(o for o in plan.objects if o.kind == "Deployment" and o.name == "model-rollback-receiver")
    for env in receiver.manifest["spec"]["template"]["spec"]["containers"][0]["env"]:
        if env["name"] == "MLFLOW_TRACKING_URI":
            env["value"] = "http://mlflw.mlflow.svc.cluster.local:5000"
    assert _found(plan, store) == [
        "[reachability] Deployment ml-training/model-rollback-receiver -> Service mlflow/mlflw:5000: Service "
        "mlflow/mlflw:5000 is neither in the plan nor rendered by a release; needed by Deployment "
        "ml-training/model-rollback-receiver container receiver env MLFLOW_TRACKING_URI"]


def test_a_webhook_the_control_plane_cannot_reach_is_reported(plan_of: Callable[[str], Plan],
                                                              store: ChartStore) -> None:
    plan = plan_of("staging")
    plan.objects = [o for o in plan.objects
                    if not (o.kind == "NetworkPolicy" and o.namespace == "monitoring" and o.name == "allow-ingress")]
    found = [p for p in _found(plan, store) if p.startswith("[reachability] control plane -> ")]
    assert len(found) == 1  # one line per blocked flow: the validating and mutating webhooks share it
    assert "kube-prometheus-stack-operator:443" in found[0] and "container port 10250" in found[0]
    assert "admits the EKS control plane" in found[0] and "monitoring/default-deny" in found[0]


def test_dns_needs_its_own_allowance(plan_of: Callable[[str], Plan], store: ChartStore) -> None:
    plan = plan_of("dev")
    plan.objects = [o for o in plan.objects
                    if not (o.kind == "NetworkPolicy" and o.namespace == "feast" and o.name == "allow-dns")]
    found = [p for p in _found(plan, store) if "-> Service kube-system/kube-dns:53" in p]
    assert found and all(p.startswith("[reachability] Deployment feast/") or "feast/" in p for p in found)
    assert "(UDP 53)" in found[0]


# ---------------------------------------------------------------- engine semantics, one rule at a time

def _pod(name: str, namespace: str, labels: dict[str, str], ports: list[dict[str, object]]) -> KubeObject:
    return KubeObject({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace,
                                                                        "labels": labels},
                       "spec": {"containers": [{"name": "c", "ports": ports}]}}, origin="test")


def _netpol(namespace: str, spec: dict[str, object]) -> KubeObject:
    return KubeObject({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                       "metadata": {"name": "p", "namespace": namespace}, "spec": spec}, origin="test")


def _evaluate(policy_spec: dict[str, object], port: int = 8080) -> list[str]:
    client = _pod("client", "a", {"app": "client"}, [])
    server = _pod("server", "b", {"app": "server"}, [{"name": "http", "containerPort": 8080}])
    idx = Index([client, server, _netpol("b", policy_spec)])
    target = flows.Target("pods", "Pod b/server:8080", pods=(idx.pods[1],), container_port=port)
    flow = flows.Flow(idx.pods[0], target, port, "test")
    net = reachability.Network(pods="10.30.32.10", vpc_services="10.30.12.10", cluster_ips=("172.20.0.10",))
    return reachability.evaluate(idx, flow, net)


def test_named_ports_resolve_on_selected_peers_but_not_in_rules_without_peers() -> None:
    by_peer = {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]}]}
    no_peer = {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]}
    by_number = {"podSelector": {}, "ingress": [{"ports": [{"port": 8080}]}]}
    assert _evaluate(by_peer) == []
    assert _evaluate(by_number) == []
    assert _evaluate(no_peer) and "no rule admits Pod a/client on container port 8080" in _evaluate(no_peer)[0]


def test_an_ip_block_admits_its_range_only() -> None:
    inside = {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.30.0.0/16"}}]}]}
    excepted = {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.30.0.0/16",
                                                                       "except": ["10.30.32.0/19"]}}]}]}
    assert _evaluate(inside) == []
    assert _evaluate(excepted)


def test_check_reports_the_first_finding_per_flow_in_a_readable_line() -> None:
    plan = Plan("t", "1.34", [], [], inputs={"a": {"addonName": "vpc-cni",
                                                   "configurationValues": json.dumps({"enableNetworkPolicy": "true"})}},
                types={"a": reachability.ADDON_TYPE})
    server = _pod("server", "b", {"app": "server"}, [{"name": "http", "containerPort": 8080}])
    client = KubeObject({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": "a"},
                         "spec": {"containers": [{"name": "c", "env": [
                             {"name": "URL", "value": "http://server.b.svc.cluster.local:8080/x"}]}]}}, origin="test")
    service = KubeObject({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "server", "namespace": "b"},
                          "spec": {"selector": {"app": "server"}, "ports": [{"port": 8080, "targetPort": "http"}]}},
                         origin="test")
    deny = _netpol("b", {"podSelector": {}, "policyTypes": ["Ingress"]})
    found = [str(p) for p in reachability.check(plan, [server, client, service, deny])]
    assert found == ["[reachability] Pod a/client -> Service b/server:8080: ingress of Pod b/server is isolated by "
                     "[b/p] and no rule admits Pod a/client on container port 8080; needed by Pod a/client "
                     "container c env URL"]


def test_a_load_balancer_reaches_its_pods_only_through_an_address_rule(store: ChartStore) -> None:
    """The pipelines UI as an internal NLB: the balancer sends from its VPC addresses to the pods' port."""
    from infra.offline.synth import read_stack_config, synthesize

    config = read_stack_config(ROOT / "stacks" / "Pulumi.staging.yaml")
    workloads = dict(config["mlplatform:workloads"])
    workloads["pipelines"] = {**workloads.get("pipelines", {}), "ui": "internalLoadBalancer"}
    plan = Plan.from_preview(synthesize("staging", config={**config, "mlplatform:workloads": workloads})
                             .to_preview_json())
    assert _found(plan, store) == []
    plan.objects = [o for o in plan.objects if not (o.kind == "NetworkPolicy" and o.name == "allow-ui-from-vpc")]
    found = _found(plan, store)
    assert len(found) == 1 and found[0].startswith("[reachability] load balancer -> Deployment kubeflow/ml-pipeline-ui")
    assert "no rule admits the load balancer (its addresses in the VPC)" in found[0]


def test_addresses_are_read_from_urls_host_port_pairs_and_buckets() -> None:
    text = ("s3://bucket/x http://mlflow.mlflow.svc.cluster.local:5000/api --rc-addr=0.0.0.0:5572 "
            "postgresql://user:pw@db.abc.eu-west-1.rds.amazonaws.com/mlflow grpc-only-word https://github.com/x")
    assert list(flows.endpoints_in(text)) == [
        ("s3.amazonaws.com", 443), ("mlflow.mlflow.svc.cluster.local", 5000), ("0.0.0.0", 5572),
        ("db.abc.eu-west-1.rds.amazonaws.com", 5432), ("github.com", 443)]
    idx = Index([KubeObject({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mlflow"}},
                            origin="test")])
    assert flows.resolve(idx, "0.0.0.0", 5572, "x") is None
    rds = flows.resolve(idx, "db.abc.eu-west-1.rds.amazonaws.com", 5432, "x")
    assert rds is not None and rds.place == flows.VPC_SERVICE
    public = flows.resolve(idx, "github.com", 443, "x")  # two labels, but `com` is no namespace
    assert public is not None and public.place == flows.INTERNET and public.label == "github.com:443"
    missing = flows.resolve(idx, "nothing.mlflow.svc", 80, "x")
    assert missing is not None and missing.kind == "missing" and missing.label == "Service mlflow/nothing:80"


def test_a_comment_line_in_a_mounted_configuration_configures_no_call() -> None:
    # The Flink operator's config.yaml starts with the Apache licence header (a URL in a `#` comment).
    text = "# http://www.apache.org/licenses/LICENSE-2.0\n  # see https://example.org\nurl: http://svc.ns.svc:8081\n"
    assert list(flows.endpoints_in(flows._without_comment_lines(text))) == [("svc.ns.svc", 8081)]
    xml = "<configuration>\n<!--\n http://www.apache.org/licenses/LICENSE-2.0\n-->\n<x>http://a.b.svc:80</x>"
    assert list(flows.endpoints_in(flows._without_comment_lines(xml))) == [("a.b.svc", 80)]
