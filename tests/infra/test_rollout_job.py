"""The cluster rollout (infra/workloads/rollouts.py, contracts/rollout_job.py): what the stack declares for it
(settings, state ConfigMaps, a Role limited to the named Experiments and ConfigMaps, egress to Prometheus and Prometheus
admitting it) and the Job `mlplat rollout start --cluster` renders, admitted at Pod Security `restricted` in the
namespace the plan declares, by the conformance admission evaluator."""

from __future__ import annotations

import copy
import json

import pytest

from contracts import rollback
from contracts import rollout_job as rj
from contracts.cluster import SELDON_NAMESPACE
from infra.conformance import admission
from infra.conformance.model import KubeObject
from infra.offline.synth import read_stack_config, synthesize
from stacks.config import load_stack_file, stack_file

pytestmark = pytest.mark.iac


def manifests(s, kind):
    return [r.inputs for r in s.resources if r.type.startswith("kubernetes:") and r.inputs.get("kind") == kind]


def _enabled(stack: str) -> list[str]:
    cfg = load_stack_file(stack_file(stack))
    return [n for n in cfg.models.names() if cfg.models[n].enabled]


def _settings(s) -> rj.Settings:
    cms = [c for c in manifests(s, "ConfigMap") if c["metadata"]["name"] == rj.SETTINGS]
    assert len(cms) == 1 and cms[0]["metadata"]["namespace"] == rj.NAMESPACE
    return rj.Settings.from_config_map(cms[0]["data"])


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_role_gets_and_patches_the_named_experiments_and_state_config_maps_only(synth, stack):
    s = synth(stack)
    models = _enabled(stack)
    roles = [r for r in manifests(s, "Role") if r["metadata"]["name"] == rj.CONTROLLER]
    assert len(roles) == 1 and roles[0]["metadata"]["namespace"] == SELDON_NAMESPACE
    assert roles[0]["rules"] == [
        {"apiGroups": ["mlops.seldon.io"], "resources": ["experiments"], "verbs": ["get", "patch"],
         "resourceNames": [f"{m}-experiment" for m in models]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"],
         "resourceNames": [f"{m}-rollout" for m in models]}]
    bindings = [b for b in manifests(s, "RoleBinding") if b["metadata"]["name"] == rj.CONTROLLER]
    assert bindings[0]["subjects"] == [{"kind": "ServiceAccount", "namespace": rj.NAMESPACE,
                                        "name": rj.SERVICE_ACCOUNT}]
    assert not [c for c in manifests(s, "ClusterRole") if rj.CONTROLLER in json.dumps(c)]
    states = sorted(c["metadata"]["name"] for c in manifests(s, "ConfigMap")
                    if c["metadata"]["namespace"] == SELDON_NAMESPACE and c["metadata"]["name"].endswith("-rollout"))
    assert states == sorted(f"{m}-rollout" for m in models)


def test_the_state_config_maps_data_belongs_to_the_rollout(synth):
    state = next(r for r in synth("dev").resources if r.inputs.get("kind") == "ConfigMap"
                 and r.inputs["metadata"]["name"] == "fraud-rollout")
    assert state.ignore_changes == ["data"]


def test_settings_carry_the_stacks_tree_prometheus_and_policy(synth):
    cfg = load_stack_file(stack_file("prod"))
    settings = _settings(synth("prod"))
    deploy = json.loads(settings.deploy)
    assert deploy["promotion"] == "pullRequest" and deploy["environment"] == "prod"
    assert deploy["credentialsSecret"] == cfg.workloads.gitops.credentials_secret == settings.deploy_secret
    assert settings.prometheus_url == cfg.workloads.rollouts.prometheus_url
    assert settings.promotion_policy == cfg.governance.promotion
    assert settings.image.endswith("-ops")  # ml/ and git, as the rollback receiver
    assert settings.deadline_s == cfg.workloads.rollouts.deadline_hours * 3600
    assert settings.models() == _enabled("prod")
    assert json.loads(settings.rule_timing) == {k: str(v) for k, v in rollback.Timing().__dict__.items()}


def test_prometheus_admits_the_rollout_pods_and_they_may_reach_it(synth):
    s = synth("dev")
    egress = next(p for p in manifests(s, "NetworkPolicy") if p["metadata"]["name"] == f"{rj.CONTROLLER}-prometheus")
    assert egress["metadata"]["namespace"] == rj.NAMESPACE
    assert egress["spec"]["podSelector"] == {"matchLabels": rj.SELECTOR}
    assert egress["spec"]["egress"][0]["ports"] == [{"protocol": "TCP", "port": rj.PROMETHEUS_PORT}]
    ingress = next(p for p in manifests(s, "NetworkPolicy")
                   if p["metadata"]["namespace"] == "monitoring" and p["metadata"]["name"] == "allow-ingress")
    allowed = [r for r in ingress["spec"]["ingress"] if r.get("ports") == [{"protocol": "TCP", "port": 9090}]]
    assert allowed and allowed[0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": rj.NAMESPACE}}}]


def test_rollouts_off_declares_nothing_and_prometheus_admits_nobody_new():
    config = read_stack_config(stack_file("dev"))
    s = synthesize("dev", config={**config, "mlplatform:workloads": {
        **(config.get("mlplatform:workloads") or {}), "rollouts": {"enabled": False}}})
    assert not [r for r in s.resources if rj.CONTROLLER in json.dumps(r.inputs) or rj.SETTINGS in json.dumps(r.inputs)]


def _job(s, **kw):
    args = {"model": "fraud", "version": "3", "steps": (10, 50, 100), "interval_s": 300, "min_requests": 100, **kw}
    return rj.job(_settings(s), **args)  # type: ignore[arg-type]


def _admit(s, job) -> tuple[list, list[str]]:
    namespaces = [KubeObject(n, "plan") for n in manifests(s, "Namespace")]
    return admission.check([*namespaces, KubeObject(job, "mlplat rollout start --cluster")], [], [], "1.34")


def test_the_job_is_admitted_at_restricted_in_the_namespace_the_plan_declares(synth):
    s = synth("prod")
    problems, notes = _admit(s, _job(s))
    assert problems == []
    assert any(f"namespace {rj.NAMESPACE} enforces restricted" in n for n in notes), notes


def test_the_evaluator_refuses_the_job_without_its_security_context(synth):
    s = synth("prod")
    job = copy.deepcopy(_job(s))
    pod = job["spec"]["template"]["spec"]
    pod["securityContext"].pop("runAsNonRoot")
    pod["containers"][0]["securityContext"].pop("runAsNonRoot")
    pod["containers"][0]["securityContext"]["capabilities"] = {"add": ["NET_ADMIN"]}
    problems, _ = _admit(s, job)
    text = " ".join(p.message for p in problems)
    assert "runAsNonRoot" in text and "NET_ADMIN" in text


def test_the_job_runs_the_controller_read_only_with_the_deploy_credentials(synth):
    s = synth("prod")
    job = _job(s, started_by="alice")
    assert job["metadata"]["name"] == "rollout-fraud" and job["metadata"]["namespace"] == rj.NAMESPACE
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 24 * 3600
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert pod["serviceAccountName"] == rj.SERVICE_ACCOUNT and pod["automountServiceAccountToken"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["command"] == ["python", "-m", "ml.delivery.cluster_rollout", "fraud", "3", "--steps",
                                    "10,50,100", "--interval", "300s", "--min-requests", "100", "--poll", "15s"]
    assert container["envFrom"] == [{"configMapRef": {"name": rj.SETTINGS}}]
    git = next(m for m in container["volumeMounts"] if m["name"] == "deploy-git")
    assert git["readOnly"] is True
    assert spec["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == rj.CONTROLLER  # the egress rule's


@pytest.mark.parametrize(("kw", "message"), [
    ({"model": "nosuch"}, "model 'nosuch' is not enabled"),
    ({"version": "latest"}, "registry version number"),
    ({"min_requests": 0}, "--min-requests must be >= 1"),
])
def test_bad_input_is_named(synth, kw, message):
    with pytest.raises(ValueError, match=message):
        _job(synth("dev"), **kw)


def test_a_rollout_longer_than_the_jobs_deadline_is_refused(synth):
    settings = _settings(synth("dev"))
    per_step = settings.deadline_s / 3
    rj.job(settings, "fraud", "3", (10, 50, 100), per_step, 100)  # exactly the deadline: accepted
    with pytest.raises(ValueError, match=r"longer than the rollout Job's deadline .*deadlineHours"):
        rj.job(settings, "fraud", "3", (10, 50, 100), per_step + 1, 100)


def test_no_model_gives_no_rule_not_a_rule_over_every_object():
    # RBAC reads an empty resourceNames as "all objects": a Role for no model must grant nothing.
    assert rj.role_rules([]) == []
    assert all(rule["resourceNames"] == ["fraud-experiment"] or rule["resourceNames"] == ["fraud-rollout"]
               for rule in rj.role_rules(["fraud"]))


def test_settings_missing_a_key_name_it():
    with pytest.raises(ValueError, match="lacks MLPLAT_DEPLOY"):
        rj.Settings.from_config_map({k: "x" for k in rj.SETTINGS_KEYS if k != "MLPLAT_DEPLOY"})


def test_the_conformance_checks_know_the_on_demand_jobs_pod_labels(synth):
    """The wiring check learns of the Job from external-objects.yaml (it is not in the plan); the entry must carry
    the labels the Job really has, or the egress policy would be judged against a pod that does not exist."""
    from infra.conformance.selectors import load_external

    external = [o.manifest for o in load_external() if o.manifest["kind"] == "Job"
                and o.manifest["metadata"]["namespace"] == rj.NAMESPACE]
    assert len(external) == 1
    rendered = _job(synth("dev"))["spec"]["template"]["metadata"]["labels"]
    listed = external[0]["spec"]["template"]["metadata"]["labels"]
    assert {k: v for k, v in rendered.items() if k != "mlplatform.io/model"} == listed
