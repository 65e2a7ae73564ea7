"""Pod Security admission in `mlplat conform`: every pod the stacks make passes its namespace's enforce level,
the fixes stay in place, and a re-introduced defect is reported with its object and field.

The evaluator itself is proven against the upstream corpus in test_pss_corpus.py. The charts come from the
mirror (MLPLAT_CHART_MIRROR, default ../shared/charts), as in test_conformance.py.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.conformance import admission, operators, pss, runner, workflows
from infra.conformance.charts import ChartStore
from infra.conformance.model import KubeObject
from infra.conformance.plan import Plan
from infra.offline.synth import Synthesis
from infra.workloads import postrender

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ("dev", "staging", "prod")
pytestmark = pytest.mark.conformance


def _object(report: runner.Report, kind: str, namespace: str, name: str) -> KubeObject:
    found = [o for o in report.objects if (o.kind, o.namespace, o.name) == (kind, namespace, name)]
    assert len(found) == 1, f"{kind} {namespace}/{name}: {len(found)} found"
    return found[0]


def _pod_spec(obj: KubeObject) -> dict:
    return next(admission.pod_templates(obj))[1]["spec"]


# ---------------------------------------------------------------- the stacks pass admission

@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_every_pod_passes_its_namespaces_enforce_level(report: Callable[[str], runner.Report], stack: str) -> None:
    rep = report(stack)
    assert [str(p) for p in rep.problems if p.check == "admission"] == []
    levels = {n.split()[2]: n.split()[4] for n in rep.notes if n.startswith("admission: namespace")}
    # Only these two are weaker than restricted, with their reasons in docs/CONFORMANCE.md.
    assert levels["monitoring"] == "privileged:latest" and levels["kubeflow"] == "baseline:latest"
    for ns in ("mlflow", "feast", "seldon", "tracing", "ml-training"):
        assert levels[ns] == "restricted:latest", ns


def test_operator_made_pods_are_evaluated(report: Callable[[str], runner.Report]) -> None:
    """The Seldon Servers and runtime components, Prometheus/Alertmanager and the KFP workflow pods are
    evaluated, not only what Helm applies."""
    notes = [n for n in report("prod").notes if n.startswith("admission: namespace seldon")]
    assert notes and "over 8 pod template(s)" in notes[0]  # controller + 5 runtime components + 2 Servers


# ---------------------------------------------------------------- the fixes, field by field

def test_seldon_operator_pods_carry_the_restricted_container_settings(report: Callable[[str], runner.Report]) -> None:
    """The SeldonRuntime overrides and the Servers' podSpecs (merged by the operator by container name) carry
    allowPrivilegeEscalation false and drop ALL; the setup chart's pod securityContext carries the seccomp profile."""
    derived = [o for o in report("prod").objects if o.derived and o.namespace == "seldon"
               and o.kind in ("Deployment", "StatefulSet")]
    assert {o.name for o in derived} >= {"mlserver", "triton", "seldon-scheduler", "seldon-envoy"}
    for obj in derived:
        spec = _pod_spec(obj)
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, obj.name
        for container in spec["containers"]:
            sc = container.get("securityContext") or {}
            assert sc.get("allowPrivilegeEscalation") is False, (obj.name, container["name"])
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], (obj.name, container["name"])


def test_the_seldon_controller_is_post_rendered(report: Callable[[str], runner.Report]) -> None:
    controller = _object(report("prod"), "Deployment", "seldon", "seldon-v2-controller-manager")
    assert "post-renderer scripts/helm-postrender-seldon-core-v2-setup" in controller.origin
    manager = next(c for c in _pod_spec(controller)["containers"] if c["name"] == "manager")
    assert manager["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


@pytest.mark.parametrize(("kind", "namespace", "name"), [
    ("Deployment", "mlflow", "mlflow"), ("Deployment", "tracing", "jaeger"),
    ("CronJob", "tracing", "jaeger-es-index-cleaner"),
])
def test_chart_pods_get_a_seccomp_profile_from_values(report: Callable[[str], runner.Report], kind: str, namespace: str,
                                                      name: str) -> None:
    """prod stores traces in OpenSearch, so its Jaeger release renders the index cleaner."""
    obj = _object(report("prod"), kind, namespace, name)
    spec = _pod_spec(obj)
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pss.evaluate(pss.LevelVersion(pss.RESTRICTED), {}, spec).allowed


@pytest.mark.parametrize(("kind", "namespace", "name"), [
    ("Deployment", "kube-system", "aws-load-balancer-controller"),
    ("Deployment", "kube-system", "cluster-autoscaler-aws-cluster-autoscaler"),
    ("Deployment", "kube-system", "metrics-server"),
    ("Deployment", "kubeflow", "argo-workflows-workflow-controller"),
])
def test_pods_in_weaker_namespaces_meet_restricted_where_nothing_stops_them(
        report: Callable[[str], runner.Report], kind: str, namespace: str, name: str) -> None:
    """kube-system (EKS: no level) and kubeflow (baseline) admit more, but these pods need nothing restricted
    forbids: the charts' values carry the settings (the checkov baseline no longer accepts their findings)."""
    spec = _pod_spec(_object(report("prod"), kind, namespace, name))
    assert [str(v) for v in pss.evaluate(pss.LevelVersion(pss.RESTRICTED), {}, spec).violations] == []


def test_prometheus_operator_pods_carry_the_operators_security_contexts(report: Callable[[str], runner.Report]) -> None:
    obj = _object(report("prod"), "StatefulSet", "monitoring", "prometheus-kube-prometheus-stack-prometheus")
    spec = _pod_spec(obj)
    names = [c["name"] for c in spec["initContainers"] + spec["containers"]]
    assert names == ["init-config-reloader", "prometheus", "config-reloader"]
    assert all(c["securityContext"] == operators.OPERATOR_CONTAINER_SECURITY
               for c in spec["initContainers"] + spec["containers"])
    # They would pass restricted; `monitoring` is privileged only for node-exporter.
    assert pss.evaluate(pss.LevelVersion(pss.RESTRICTED), {}, spec).allowed


def test_kfp_component_pods_are_why_kubeflow_stays_baseline(report: Callable[[str], runner.Report]) -> None:
    """A component's main container has no runAsNonRoot unless pipeline-install-config sets
    defaultSecurityContextRunAsNonRoot: restricted would refuse every pipeline step, baseline admits it."""
    objects = [o for o in report("prod").objects if not o.derived]
    pods = {o.name: o for o in workflows.workflow_pods(objects)}
    assert set(pods) == {"kfp-driver", "kfp-executor"}
    executor = pods["kfp-executor"].manifest
    refused = pss.evaluate(pss.LevelVersion(pss.RESTRICTED), executor["metadata"], executor["spec"])
    assert [v.path for v in refused.violations] == ["spec.containers[main].securityContext.runAsNonRoot"]
    assert pss.evaluate(pss.LevelVersion(pss.BASELINE), executor["metadata"], executor["spec"]).allowed
    driver = pods["kfp-driver"].manifest
    assert pss.evaluate(pss.LevelVersion(pss.RESTRICTED), driver["metadata"], driver["spec"]).allowed


# ---------------------------------------------------------------- a defect is reported with object and field

def test_a_reintroduced_defect_names_the_object_and_the_field(plan_of: Callable[[str], Plan],
                                                              store: ChartStore) -> None:
    plan = copy.deepcopy(plan_of("prod"))
    jaeger = plan.release("jaeger")
    del jaeger.values["jaeger"]["podSecurityContext"]
    rep = runner.run(plan, store, scan=False, dead_keys=False)
    found = [str(p) for p in rep.problems if p.check == "admission"]
    assert found == [
        "[admission] Deployment tracing/jaeger (release jaeger: jaeger/templates/jaeger/jaeger-deploy.yaml): "
        "spec.template.spec.containers[jaeger].securityContext.seccompProfile.type: must be RuntimeDefault "
        "or Localhost (here or in spec.securityContext) (namespace tracing enforces restricted:latest; "
        "check seccompProfile_restricted)"]
    assert not rep.ok and next(r for r in rep.rows if r.release == "jaeger").admission == 1


def test_an_unlabelled_or_mislabelled_namespace() -> None:
    pod = KubeObject({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "x"},
                      "spec": {"hostNetwork": True, "containers": [{"name": "c"}]}}, origin="test")
    # No namespace object: the EKS default (privileged) admits it.
    problems, notes = admission.check([pod], [], [], "1.34")
    assert problems == [] and "privileged:latest" in notes[0]
    # A level that does not parse fails closed to restricted, and the label itself is reported.
    ns = KubeObject({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": "x", "labels": {pss.ENFORCE_LABEL: "strict"}}}, origin="test")
    problems, _ = admission.check([ns, pod], [], [], "1.34")
    assert any("metadata.labels: pod-security.kubernetes.io/enforce='strict'" in p.message for p in problems)
    assert any("spec.hostNetwork: must not be true" in p.message for p in problems)


def test_latest_follows_the_clusters_kubernetes_version() -> None:
    """A probe host is a 1.34 rule: a 1.33 cluster's `latest` does not enforce it."""
    ns = KubeObject({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": "x", "labels": {pss.ENFORCE_LABEL: "baseline"}}}, origin="test")
    pod = KubeObject({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "x"},
                      "spec": {"containers": [{"name": "c",
                                               "livenessProbe": {"tcpSocket": {"host": "db", "port": 5}}}]}},
                     origin="test")
    assert admission.check([ns, pod], [], [], "1.33")[0] == []
    assert [p.message.split(":")[0] for p in admission.check([ns, pod], [], [], "1.34")[0]] == [
        "spec.containers[c].livenessProbe.tcpSocket.host"]


# ---------------------------------------------------------------- the post-renderer

MANIFESTS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: seldon-v2-controller-manager}
spec:
  template:
    spec:
      containers:
      - name: manager
        securityContext: {allowPrivilegeEscalation: false}
---
apiVersion: v1
kind: Service
metadata: {name: other}
"""


def test_the_post_renderer_patches_only_the_named_container() -> None:
    import yaml

    docs = list(yaml.safe_load_all(postrender.apply(MANIFESTS, "seldon-core-v2-setup")))
    assert docs[0]["spec"]["template"]["spec"]["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert docs[1] == {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "other"}}


def test_the_post_renderer_fails_when_its_target_is_gone() -> None:
    with pytest.raises(postrender.PostRenderError, match="no Deployment seldon-v2-controller-manager"):
        postrender.apply(MANIFESTS.replace("seldon-v2-controller-manager", "renamed"), "seldon-core-v2-setup")
    with pytest.raises(postrender.PostRenderError, match="no container manager"):
        postrender.apply(MANIFESTS.replace("name: manager", "name: other"), "seldon-core-v2-setup")
    with pytest.raises(postrender.PostRenderError, match="no post-render patches"):
        postrender.apply(MANIFESTS, "jaeger")


def test_the_release_runs_the_post_renderer_script(plan_of: Callable[[str], Plan]) -> None:
    setup = plan_of("prod").release("seldon-core-v2-setup")
    script = ROOT / str(setup.postrender)
    assert setup.postrender == "scripts/helm-postrender-seldon-core-v2-setup"
    assert script.is_file() and os.access(script, os.X_OK)


def test_conform_exits_one_naming_an_operator_made_pod_and_its_field(
        synth: Callable[[str], Synthesis], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command end to end on a plan whose SeldonRuntime lost the scheduler's override: the pod the Seldon
    operator would make from it is refused, and the output names that StatefulSet and the field."""
    from mlplat.cli import main

    preview = copy.deepcopy(synth("prod").to_preview_json())
    runtime = next(s["newState"] for s in preview["steps"]
                   if s["newState"]["type"] == "kubernetes:helm.sh/v3:Release"
                   and s["newState"]["inputs"].get("name") == "seldon-core-v2-runtime")
    del runtime["inputs"]["values"]["scheduler"]["podSpec"]
    plan = tmp_path / "prod.json"
    plan.write_text(json.dumps(preview))
    code = main(["conform", "--plan", str(plan), "--offline", "--no-scan", "--no-dead-keys"])
    out = capsys.readouterr().out
    assert code == 1, out
    problems = [line.strip() for line in out.splitlines() if line.strip().startswith("[admission]")]
    assert problems and all("StatefulSet seldon/seldon-scheduler" in p for p in problems), problems
    assert any("spec.template.spec.containers[scheduler].securityContext.allowPrivilegeEscalation: must be false"
               in p for p in problems)
