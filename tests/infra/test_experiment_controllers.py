"""The bandit controllers on the cluster (infra/workloads/experiments.py): declared only for a model whose
`bandit.enabled` is set, allowed to get and patch Seldon Experiments in the Seldon namespace and nothing
else, scraped, and started with the model's settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from contracts.cluster import SELDON_NAMESPACE
from infra.offline.synth import read_stack_config, synthesize
from infra.workloads.experiments import (
    CONTROLLER,
    METRICS_PORT,
    controller_args,
    egress_policy_spec,
    feedback_port,
    feedback_url,
)
from stacks.config import ConfigError, from_flat_config
from stacks.schema import BanditConfig

REPO = Path(__file__).resolve().parents[2]
FEEDBACK = "http://feedback.delivery.svc.cluster.local:9097"


def manifests(s, kind):
    return [r.inputs for r in s.resources if r.type.startswith("kubernetes:") and r.inputs.get("kind") == kind]


@pytest.fixture(scope="module")
def with_bandit():
    config = read_stack_config(REPO / "stacks" / "Pulumi.dev.yaml")
    models = {k: dict(v) for k, v in (config.get("mlplatform:models") or {}).items()}
    models["recommendation"] = {**models.get("recommendation", {}),
                                "bandit": {"enabled": True, "floor": 0.1,  # the default endpoint
                                           "intervalSeconds": 30, "startedAt": 1765000000}}
    return synthesize("dev", config={**config, "mlplatform:models": models})


def test_default_stacks_declare_no_controller(synth):
    # (the feedback endpoint's NetworkPolicy names the controllers' label: whoever runs one may call it)
    assert not [r for r in synth("prod").resources if CONTROLLER in json.dumps(r.inputs)
                and r.inputs.get("metadata", {}).get("name") != "allow-experiment-controllers"]


def test_one_bandit_deployment_with_the_models_settings(with_bandit):
    deployments = [d for d in manifests(with_bandit, "Deployment") if d["metadata"]["name"].endswith("-bandit")]
    assert [d["metadata"]["name"] for d in deployments] == ["recommendation-bandit"]
    spec = deployments[0]["spec"]
    pod = spec["template"]["spec"]
    command = pod["containers"][0]["command"]
    assert command[:5] == ["python", "-m", "ml.delivery.experiments.cluster", "bandit", "recommendation"]
    args = dict(zip(command[5::2], command[6::2], strict=True))
    assert args == {"--feedback-url": FEEDBACK, "--namespace": SELDON_NAMESPACE, "--metric": "ctr",
                    "--floor": "0.1", "--interval": "30s", "--attribution-window": "1800s",
                    "--metrics-port": str(METRICS_PORT), "--state-dir": "/tmp/experiments", "--since": "1765000000"}
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert pod["serviceAccountName"] == CONTROLLER
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False


def test_rbac_allows_patching_experiments_in_the_seldon_namespace_only(with_bandit):
    roles = [r for r in manifests(with_bandit, "Role") if r["metadata"]["name"] == CONTROLLER]
    assert len(roles) == 1 and roles[0]["metadata"]["namespace"] == SELDON_NAMESPACE
    assert roles[0]["rules"] == [{"apiGroups": ["mlops.seldon.io"], "resources": ["experiments"],
                                  "verbs": ["get", "patch"]}]
    assert not [r for r in manifests(with_bandit, "ClusterRoleBinding") if CONTROLLER in json.dumps(r)]
    binding = next(b for b in manifests(with_bandit, "RoleBinding") if b["metadata"]["name"] == CONTROLLER)
    assert binding["metadata"]["namespace"] == SELDON_NAMESPACE
    assert binding["subjects"] == [{"kind": "ServiceAccount", "namespace": "ml-training", "name": CONTROLLER}]
    sa = next(a for a in manifests(with_bandit, "ServiceAccount") if a["metadata"]["name"] == CONTROLLER)
    assert "annotations" not in sa["metadata"]  # no cloud identity (IRSA)


def test_metrics_are_scraped_and_the_feedback_port_is_allowed(with_bandit):
    monitors = [m for m in manifests(with_bandit, "PodMonitor") if m["metadata"]["name"] == CONTROLLER]
    assert monitors and monitors[0]["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    # created after the monitoring stack that installs the PodMonitor CRD (what `mlplat conform` orders by)
    [monitor] = [r for r in with_bandit.resources if r.name == f"podmonitor-{CONTROLLER}"]
    after = {with_bandit.by_urn(u).name for u in monitor.dependencies}
    assert "kube-prometheus-stack" in after, after
    policy = next(p for p in manifests(with_bandit, "NetworkPolicy")
                  if p["metadata"]["name"] == f"{CONTROLLER}-feedback")
    # The platform's own endpoint: its port, in its namespace only.
    assert policy["spec"]["egress"] == [{"to": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "delivery"}}}], "ports": [{"protocol": "TCP", "port": 9097}]}]
    assert feedback_port("https://feedback.example") == 443


def test_another_endpoint_is_allowed_by_its_port_anywhere_in_the_cluster():
    assert egress_policy_spec(["http://outcomes.apps.svc.cluster.local:8080", FEEDBACK])["egress"] == [
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "delivery"}}}],
         "ports": [{"protocol": "TCP", "port": 9097}]},
        {"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": 8080}]}]


def test_an_enabled_bandit_defaults_to_the_platforms_feedback_endpoint_and_a_click_window():
    cfg = BanditConfig(enabled=True)
    assert feedback_url(cfg) == FEEDBACK and cfg.attribution_window_seconds == 1800
    assert controller_args("recommendation", cfg)[5:7] == ["--feedback-url", FEEDBACK]
    assert feedback_url(BanditConfig(enabled=True, feedback_url="https://fb.example")) == "https://fb.example"
    with pytest.raises(ValidationError, match=r"less than 0\.5"):
        BanditConfig(enabled=True, feedback_url=FEEDBACK, floor=0.5)
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        BanditConfig(enabled=True, attribution_window_seconds=-5)


def test_without_the_platforms_endpoint_a_bandit_must_name_one():
    config = read_stack_config(REPO / "stacks" / "Pulumi.dev.yaml")
    workloads = {**config["mlplatform:workloads"], "feedback": {"enabled": False}}
    models = {**config.get("mlplatform:models", {}), "recommendation": {"bandit": {"enabled": True}}}
    with pytest.raises(ConfigError) as err:
        from_flat_config({**config, "mlplatform:workloads": workloads, "mlplatform:models": models})
    assert [str(i) for i in err.value.issues] == [
        "mlplatform:models.recommendation.bandit.feedbackUrl: required when workloads.feedback.enabled is false (no "
        "in-cluster endpoint to default to)"]
    models["recommendation"]["bandit"]["feedbackUrl"] = "http://outcomes.apps.svc.cluster.local:8080"
    assert from_flat_config({**config, "mlplatform:workloads": workloads, "mlplatform:models": models})
