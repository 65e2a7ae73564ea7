"""Argo CD and the model ApplicationSet (infra/workloads/gitops.py): what the program declares, the Seldon
health checks run in Lua 5.1 (Argo CD runs them in gopher-lua, a Lua 5.1), the ignored Experiment weights
evaluated with jq, the typed config, and the one-owner line (infra/conformance/ownership.py)."""

from __future__ import annotations

import copy
from typing import Any

import jq
import pytest
from lupa import lua51

from contracts import deploy_tree
from infra.conformance import ownership
from infra.conformance.model import KubeObject
from infra.workloads import gitops
from stacks.config import load_stack_file, stack_file
from stacks.rules import check as check_rules
from stacks.schema import GitOpsConfig

RELEASE = "kubernetes:helm.sh/v3:Release"
APPSET = "kubernetes:argoproj.io/v1alpha1:ApplicationSet"
PROJECT = "kubernetes:argoproj.io/v1alpha1:AppProject"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"


def _release(s: Any) -> dict[str, Any]:
    return next(r.inputs for r in s.of_type(RELEASE) if r.inputs.get("chart") == "argo-cd")


def test_prod_installs_argo_cd_and_the_applicationset(synth):
    s = synth("prod")
    release = _release(s)
    assert (release["name"], release["namespace"], release["version"]) == ("argocd", "argocd", "10.1.1")
    ns = s.one("kubernetes:core/v1:Namespace", "ns-argocd").inputs["metadata"]["labels"]
    assert ns["pod-security.kubernetes.io/enforce"] == "restricted"
    appset = s.one(APPSET, "gitops-applicationset")
    assert any(d.endswith("::argocd") for d in appset.dependencies)  # the release with the CRDs
    assert any(d.endswith("::gitops-project") for d in appset.dependencies)
    assert s.one(PROJECT, "gitops-project").inputs["metadata"]["namespace"] == "argocd"


def test_no_default_admin_no_dex_no_public_server_no_cluster_roles(synth, env):
    values = _release(synth(env))["values"]
    assert values["configs"]["cm"]["admin.enabled"] is False
    assert values["dex"] == {"enabled": False} and values["notifications"] == {"enabled": False}
    assert "server" not in values or "ingress" not in values["server"]  # the chart's default: ClusterIP, no Ingress
    assert values["server"]["metrics"] == {"enabled": True}
    assert values["createClusterRoles"] is False
    # Namespaced mode: the in-cluster cluster restricted to the models namespace.
    cluster = values["configs"]["clusterCredentials"]["in-cluster"]
    assert (cluster["server"], cluster["namespaces"]) == ("https://kubernetes.default.svc", "seldon")
    assert values["redisSecretInit"] == {"enabled": False}
    assert values["global"]["networkPolicy"] == {"create": False}


def test_roles_in_the_models_namespace_cover_only_the_tree_kinds(synth):
    s = synth("prod")
    roles = {r.inputs["metadata"]["name"]: r.inputs for r in s.of_type(ROLE)
             if r.inputs["metadata"]["name"].startswith("argocd-")}
    assert set(roles) == {"argocd-controller-models", "argocd-server-models"}
    for role in roles.values():
        assert role["metadata"]["namespace"] == "seldon"
        (rule,) = role["rules"]
        assert rule["apiGroups"] == ["mlops.seldon.io"] and rule["resources"] == ["models", "experiments"]
    assert "delete" in roles["argocd-controller-models"]["rules"][0]["verbs"]  # prune
    assert roles["argocd-server-models"]["rules"][0]["verbs"] == ["get", "list", "watch"]


def test_applicationset_syncs_automatically_and_ignores_rollout_weights(synth):
    s = synth("staging")
    spec = s.one(APPSET, "gitops-applicationset").inputs["spec"]
    cfg = load_stack_file(stack_file("staging")).workloads.gitops
    template = spec["template"]["spec"]
    assert template["source"] == {"repoURL": cfg.repo_url, "targetRevision": cfg.branch, "path": "{{.path}}"}
    assert template["destination"] == {"server": "https://kubernetes.default.svc", "namespace": "seldon"}
    assert template["syncPolicy"]["automated"] == {"enabled": True, "prune": True, "selfHeal": True}
    assert "RespectIgnoreDifferences=true" in template["syncPolicy"]["syncOptions"]
    (ignored,) = template["ignoreDifferences"]
    assert (ignored["group"], ignored["kind"]) == ("mlops.seldon.io", "Experiment")
    elements = spec["generators"][0]["list"]["elements"]
    assert {e["path"] for e in elements} == {f"deploy/staging/{m}" for m in ("fraud", "sentiment", "recommendation")}
    # The jq paths select the candidates' weights of a rendered Experiment and nothing else.
    experiment = deploy_tree.objects("staging", "b", [deploy_tree.ModelRelease("fraud", 1, 90, 10)])[
        "staging/fraud/experiment.yaml"]
    for path in ignored["jqPathExpressions"]:
        assert jq.compile(path).input_value(experiment).all() == [90, 10]
        patched = copy.deepcopy(experiment)
        patched["spec"]["candidates"][1]["weight"] = 50  # a rollout step
        deleted = jq.compile(f"del({path})")
        assert deleted.input_value(patched).first() == deleted.input_value(experiment).first()


def _health(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    script = gitops.argocd_values(_ctx())["configs"]["cm"][f"resource.customizations.health.mlops.seldon.io_{kind}"]
    result = lua.execute(script)
    return {"status": result["status"], "message": result["message"]}


def _ctx() -> Any:
    from stacks.context import StackContext

    return StackContext(load_stack_file(stack_file("dev")))


def _seldon(generation: int, observed: int | None, conditions: list[dict[str, str]] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "fraud-champion", "generation": generation}, "spec": {}}
    if conditions is not None:
        obj["status"] = {"conditions": conditions, **({"observedGeneration": observed} if observed else {})}
    return obj


@pytest.mark.parametrize("kind", ["Model", "Experiment", "Pipeline"])
def test_seldon_health_checks(kind):
    ready = {"type": "Ready", "status": "True", "message": "ready"}
    assert _health(kind, _seldon(1, None, None))["status"] == "Progressing"  # no status yet
    assert _health(kind, _seldon(2, 1, [ready]))["status"] == "Progressing"  # an older generation's verdict
    assert _health(kind, _seldon(2, 2, [ready]))["status"] == "Healthy"
    failed = {"type": "Ready", "status": "False", "reason": "ScheduleFailed", "message": "no server"}
    health = _health(kind, _seldon(1, 1, [{"type": "ModelReady", "status": "True"}, failed]))
    assert health == {"status": "Degraded", "message": "ScheduleFailed no server"}
    loading = {"type": "Ready", "status": "False", "reason": "ModelProgressing", "message": "loading"}
    assert _health(kind, _seldon(1, 1, [loading]))["status"] == "Progressing"


def test_every_seldon_kind_of_the_tree_has_a_health_check():
    cm = gitops.argocd_values(_ctx())["configs"]["cm"]
    for kind in (*deploy_tree.KINDS, "Pipeline"):
        assert f"resource.customizations.health.mlops.seldon.io_{kind}" in cm
    assert "kinds: [Model, Experiment]" in cm["resource.inclusions"]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("branch", "feature/..x", "not a valid git branch name"),
    ("branch", "main.lock", "not a valid git branch name"),
    ("path", "/deploy", "must be relative"),
    ("path", "deploy/../x", "must be relative"),
    ("repoUrl", "ftp://example.com/x.git", "String should match pattern"),
])
def test_gitops_config_names_a_bad_value(field, value, message):
    with pytest.raises(ValueError, match=message):
        GitOpsConfig.model_validate({field: value})


def test_prod_needs_reviewed_pull_requests():
    cfg = load_stack_file(stack_file("prod"))
    assert cfg.workloads.gitops.promotion == "pullRequest"
    commits = cfg.model_copy(update={"workloads": cfg.workloads.model_copy(update={
        "gitops": cfg.workloads.gitops.model_copy(update={"promotion": "commit"})})})
    issues = [str(i) for i in check_rules(commits)]
    assert any("workloads.gitops.promotion" in i and "pullRequest" in i for i in issues)


def test_ownership_accepts_the_stacks_plan_and_names_a_second_owner(plan_of):
    plan = plan_of("dev")
    tree = ownership.tree_objects(plan)
    assert sorted(o.origin for o in tree)[0] == "deploy tree deploy/dev/fraud/experiment.yaml"
    assert ownership.check(plan, plan.objects, tree) == []
    twin = copy.deepcopy(tree[0].manifest)
    found = ownership.check(plan, [*plan.objects, KubeObject(twin, origin="plan model-x", urn="urn:x")], tree)
    assert len(found) == 1 and "two owners" in found[0].message


def test_ownership_names_a_project_that_admits_more_than_the_tree(plan_of):
    plan = copy.deepcopy(plan_of("dev"))
    project = next(o for o in plan.objects if o.kind == "AppProject")
    project.manifest["spec"]["namespaceResourceWhitelist"].append({"group": "", "kind": "Secret"})
    project.manifest["spec"]["clusterResourceWhitelist"] = [{"group": "*", "kind": "*"}]
    appset = next(o for o in plan.objects if o.kind == "ApplicationSet")
    appset.manifest["spec"]["template"]["spec"]["destination"]["namespace"] = "nowhere"
    messages = " | ".join(p.message for p in ownership.check(plan, plan.objects, ownership.tree_objects(plan)))
    assert "must admit exactly what the tree holds" in messages
    assert "admits cluster-scoped kinds" in messages
    assert "destination namespace 'nowhere' is not created by the plan" in messages


def test_argo_cd_images_are_named_as_not_runnable_here_with_the_reason():
    from infra.conformance.software import classify

    for image in ("quay.io/argoproj/argocd:v3.4.4", "ecr-public.aws.com/docker/library/redis:8.2.3-alpine"):
        verdict = classify(image)
        assert verdict.image is None and "no build of this software" not in verdict.reason
    assert "Go binaries" in classify("quay.io/argoproj/argocd:v3.4.4").reason
