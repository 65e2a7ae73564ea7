"""The feedback endpoint on the cluster (infra/workloads/feedback.py), on the resource inputs each stack declares
under Pulumi's mocks: replicas per environment, a PodDisruptionBudget where there are several, restricted pods
with a read-only root, its own database login with the admin's only in the init container, and who may call it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contracts.cluster import FEEDBACK_URL
from infra.conformance import flows, reachability
from infra.conformance.model import KubeObject
from infra.conformance.plan import Plan
from infra.conformance.selectors import Index
from infra.offline.synth import read_stack_config, synthesize

REPO = Path(__file__).resolve().parents[2]
NS = "delivery"
REPLICAS = {"dev": 1, "staging": 2, "prod": 3}


def objects(s: Any, kind: str, namespace: str = NS) -> dict[str, dict[str, Any]]:
    return {r.inputs["metadata"]["name"]: r.inputs for r in s.resources
            if r.type.startswith("kubernetes:") and r.inputs.get("kind") == kind
            and r.inputs.get("metadata", {}).get("namespace", namespace) == namespace}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_deployment_per_environment(synth, env):
    s = synth(env)
    spec = objects(s, "Deployment")["feedback"]["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == REPLICAS[env]
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert ("topologySpreadConstraints" in pod) is (REPLICAS[env] > 1)
    [server] = pod["containers"]
    [init] = pod["initContainers"]
    assert server["command"] == ["python", "-m", "ml.delivery.feedback_server", "--store", "postgres", "--host",
                                 "0.0.0.0", "--port", "9097", "--models", "fraud,sentiment,recommendation"]
    assert init["command"] == ["python", "-m", "ml.delivery.feedback_pg", "provision"]
    assert server["ports"] == [{"name": "http", "containerPort": 9097, "protocol": "TCP"}]
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert server["image"] == init["image"] and "model-server" in server["image"]  # ml/ is in that image


def test_pods_are_restricted_with_a_read_only_root_and_no_identity(synth, env):
    s = synth(env)
    assert objects(s, "Namespace", namespace="")[NS]["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"] == "restricted"
    pod = objects(s, "Deployment")["feedback"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "feedback" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["containers"] + pod["initContainers"]:
        ctx = c["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False, c["name"]
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]  # the only writable path
    sa = objects(s, "ServiceAccount")["feedback"]
    assert sa["automountServiceAccountToken"] is False and "annotations" not in sa["metadata"]  # no IRSA
    assert not [b for b in objects(s, "RoleBinding").values() if "feedback" in str(b.get("subjects"))]


def test_its_own_database_login_and_the_admin_only_in_the_init_container(synth, env):
    s = synth(env)
    pod = objects(s, "Deployment")["feedback"]["spec"]["template"]["spec"]
    server, init = env_of(pod["containers"][0]), env_of(pod["initContainers"][0])
    assert server["PGUSER"] == {"secretKeyRef": {"name": "feedback-db", "key": "username"}}
    assert server["PGPASSWORD"] == {"secretKeyRef": {"name": "feedback-db", "key": "password"}}
    assert (server["PGDATABASE"], server["PGPORT"]) == ("feedback", "5432")
    # Both authenticate RDS against the bundle the image carries (rds_tls.py), not just encrypt.
    for c in (server, init):
        assert (c["PGSSLMODE"], c["PGSSLROOTCERT"]) == ("verify-full", "/etc/ssl/rds/global-bundle.pem")
    assert "rds.amazonaws.com" in server["PGHOST"] and init["PGHOST"] == server["PGHOST"]
    assert init["PGUSER"] == {"secretKeyRef": {"name": "feedback-db-admin", "key": "username"}}
    assert (init["FEEDBACK_DB_USER"], init["FEEDBACK_DB_NAME"]) == ("feedback", "feedback")
    assert init["FEEDBACK_DB_PASSWORD"] == {"secretKeyRef": {"name": "feedback-db", "key": "password"}}
    assert "feedback-db-admin" not in str(pod["containers"])
    secrets = objects(s, "Secret")  # both hold a password: secret outputs, never in the plan
    assert secrets["feedback-db"]["stringData"] == secrets["feedback-db-admin"]["stringData"] == "[secret]"


def test_a_new_password_rolls_the_pods_so_provision_sets_it(synth, env):
    # Pods read a Secret's value when they start, and a changed Secret restarts nothing: the pod template carries a
    # digest of the generated password, so a rotation rolls the Deployment and its init container sets the password.
    from infra.offline.mock_outputs import _digest
    from infra.workloads.feedback import CHECKSUM_ANNOTATION, login_checksum

    s = synth(env)
    [password] = [r for r in s.resources if r.type == "random:index/randomPassword:RandomPassword"
                  and r.name == "feedback-db-password"]
    mocked = f"mock-{_digest(password.type, password.name, n=24)}"  # what the mocks give the password
    annotations = objects(s, "Deployment")["feedback"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations[CHECKSUM_ANNOTATION] == login_checksum(mocked) != login_checksum(mocked + "x")
    assert mocked not in str(annotations) and len(annotations[CHECKSUM_ANNOTATION]) == 16


def test_a_disruption_budget_where_there_are_several_replicas(synth, env):
    budgets = objects(synth(env), "PodDisruptionBudget")
    if REPLICAS[env] < 2:
        assert "feedback" not in budgets
    else:
        assert budgets["feedback"]["spec"] == {"maxUnavailable": 1,
                                               "selector": {"matchLabels": {"app.kubernetes.io/name": "feedback"}}}


def test_the_service_and_its_scrape(synth, env):
    s = synth(env)
    service = objects(s, "Service")["feedback"]
    assert service["spec"]["ports"] == [{"name": "http", "port": 9097, "targetPort": 9097, "protocol": "TCP"}]
    assert f"http://{service['metadata']['name']}.{NS}.svc.cluster.local:9097" == FEEDBACK_URL
    monitor = objects(s, "ServiceMonitor")["feedback"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["endpoints"][0]["port"] == "http" and monitor["endpoints"][0]["path"] == "/metrics"


def test_only_the_controllers_the_configured_clients_and_prometheus_may_call_it(synth, env):
    s = synth(env)
    policies = objects(s, "NetworkPolicy")
    assert {"default-deny", "allow-dns", "allow-same-namespace", "allow-ingress", "allow-egress",
            "allow-experiment-controllers"} <= set(policies)
    assert policies["allow-ingress"]["spec"]["ingress"] == [  # the stacks name no client namespace
        {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}]
    controllers = policies["allow-experiment-controllers"]["spec"]
    assert controllers["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "feedback"}}
    assert controllers["ingress"] == [{"from": [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ml-training"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "experiment-controller"}}}],
        "ports": [{"protocol": "TCP", "port": 9097}]}]
    [egress] = policies["allow-egress"]["spec"]["egress"]
    assert egress["ports"] == [{"protocol": "TCP", "port": 5432}]
    assert egress["to"][0]["ipBlock"]["cidr"] == s.config["mlplatform:network"]["vpcCidr"]


@pytest.fixture(scope="module")
def configured() -> Any:
    config = read_stack_config(REPO / "stacks" / "Pulumi.staging.yaml")
    workloads = {**config["mlplatform:workloads"],
                 "feedback": {"replicas": 4, "clientNamespaces": ["shop", "recs-frontend"], "database": "outcomes",
                              "username": "outcomes_writer"}}
    return synthesize("staging", config={**config, "mlplatform:workloads": workloads})


def test_client_namespaces_database_and_login_come_from_the_stack(configured):
    policies = objects(configured, "NetworkPolicy")
    assert policies["allow-ingress"]["spec"]["ingress"][0] == {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": n}}}
                 for n in ("recs-frontend", "shop")], "ports": [{"protocol": "TCP", "port": 9097}]}
    deployment = objects(configured, "Deployment")["feedback"]["spec"]
    assert deployment["replicas"] == 4
    init = env_of(deployment["template"]["spec"]["initContainers"][0])
    assert (init["FEEDBACK_DB_USER"], init["FEEDBACK_DB_NAME"]) == ("outcomes_writer", "outcomes")
    assert env_of(deployment["template"]["spec"]["containers"][0])["PGDATABASE"] == "outcomes"


def test_disabled_it_declares_nothing():
    config = read_stack_config(REPO / "stacks" / "Pulumi.dev.yaml")
    workloads = {**config["mlplatform:workloads"], "feedback": {"enabled": False}}
    s = synthesize("dev", config={**config, "mlplatform:workloads": workloads})
    assert not [r for r in s.resources if r.type.startswith("kubernetes:")
                and r.inputs.get("metadata", {}).get("namespace") == NS]
    assert not [r for r in s.resources if r.type == "mlplatform:workloads:FeedbackEndpoint"]


@pytest.fixture(scope="module")
def bandit_plan() -> Plan:
    """dev with a bandit on the recommendation model, on the default (in-cluster) feedback endpoint."""
    config = read_stack_config(REPO / "stacks" / "Pulumi.dev.yaml")
    models = {k: dict(v) for k, v in config["mlplatform:models"].items()}
    models["recommendation"]["bandit"] = {"enabled": True, "startedAt": 1765000000}
    return Plan.from_preview(synthesize("dev", config={**config, "mlplatform:models": models}).to_preview_json())


def _feedback_flows(plan: Plan, objects: list[KubeObject]) -> list[str]:
    """Reachability findings of the flows to and from the endpoint (the program's objects; DNS needs kube-dns,
    which only the rendered add-ons have: `mlplat conform` checks that)."""
    return [str(p) for p in reachability.check(plan, objects) if "delivery/feedback" in str(p) and ":53" not in str(p)]


def test_the_bandit_reaches_the_endpoint_and_the_endpoint_its_database(bandit_plan):
    derived = {(f.source_label, f.target.label) for f in flows.derive(Index(bandit_plan.objects))}
    assert ("Deployment ml-training/recommendation-bandit", "Service delivery/feedback:9097") in derived
    assert any(s == "Deployment delivery/feedback" and t.endswith(".rds.amazonaws.com:5432") for s, t in derived)
    assert _feedback_flows(bandit_plan, bandit_plan.objects) == []


@pytest.mark.parametrize("removed, side", [(("delivery", "allow-experiment-controllers"), "ingress of Deployment "
                                            "delivery/feedback"),
                                           (("ml-training", "experiment-controller-feedback"), "egress of Deployment "
                                            "ml-training/recommendation-bandit")])
def test_without_either_allowance_the_bandit_is_cut_off(bandit_plan, removed, side):
    objects = [o for o in bandit_plan.objects if not (o.kind == "NetworkPolicy" and (o.namespace, o.name) == removed)]
    [found] = _feedback_flows(bandit_plan, objects)
    assert found.startswith("[reachability] Deployment ml-training/recommendation-bandit -> Service "
                            "delivery/feedback:9097: " + side), found
