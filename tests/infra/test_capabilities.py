"""Capability-aware rendering: every release sees the API versions and Kubernetes version the cluster has
when `pulumi up` installs it (infra/conformance/capabilities.py)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from infra.conformance import capabilities, runner
from infra.conformance.charts import ChartStore
from infra.conformance.plan import Plan
from infra.conformance.render import chart_crds, load_chart, objects_of, render_release

pytestmark = pytest.mark.conformance


@pytest.fixture
def prod(plan_of: Callable[[str], Plan]) -> Plan:
    return plan_of("prod")


def _installed(plan: Plan, store: ChartStore, *names: str) -> dict[str, list]:
    out = {}
    for name in names:
        release = plan.release(name)
        chart = load_chart(store.path(release.chart, release.version))
        out[name] = chart_crds(chart, release)
    return out


def _monitors(plan: Plan, store: ChartStore, caps: capabilities.Capabilities | None) -> list[str]:
    """The chart's own ServiceMonitor, switched on (the program scrapes MLflow with a monitor of its own)."""
    release = copy.deepcopy(plan.release("mlflow"))
    release.values = {**release.values, "serviceMonitor": {"enabled": True}}
    rendered = render_release(load_chart(store.path(release.chart, release.version)), release, caps)
    return [o.ref for o in objects_of(release, rendered.templates) if o.kind == "ServiceMonitor"]


def test_the_built_in_apis_are_the_ga_resources_of_the_stacks_version() -> None:
    versions = capabilities.builtin_api_versions("1.34")
    assert {"v1", "v1/Service", "apps/v1/Deployment", "policy/v1/PodDisruptionBudget", "resource.k8s.io/v1",
            "autoscaling/v2/HorizontalPodAutoscaler"} <= versions
    # Beta APIs are off by default (KEP-3136); removed ones are gone; list and meta types are no resources.
    assert not {"resource.k8s.io/v1beta1", "policy/v1beta1", "flowcontrol.apiserver.k8s.io/v1beta3",
                "v1/ServiceList", "v1/Status", "admission.k8s.io/v1"} & versions
    assert capabilities.kube_version("1.34") == "v1.34.0"
    with pytest.raises(ValueError, match=r"'latest' is not <major>\.<minor>"):
        capabilities.kube_version("latest")


def test_a_template_gated_on_a_crd_renders_only_once_the_crd_release_is_installed(
        prod: Plan, store: ChartStore) -> None:
    """The pinned mlflow chart renders its ServiceMonitor only when `.Capabilities.APIVersions.Has
    "monitoring.coreos.com/v1"`: with the engine's defaults (as before) it was never rendered nor checked."""
    release = prod.release("mlflow")
    assert prod.depends_on(release.urn, prod.release("kube-prometheus-stack").urn)
    with_crds = capabilities.for_release(prod, release, [], _installed(prod, store, "kube-prometheus-stack"))
    without = capabilities.for_release(prod, release, [], {})
    assert with_crds.has("monitoring.coreos.com/v1") and with_crds.has("monitoring.coreos.com/v1/ServiceMonitor")
    assert not without.has("monitoring.coreos.com/v1")
    assert _monitors(prod, store, with_crds) == ["ServiceMonitor monitoring/mlflow"]  # the chart's default namespace
    assert _monitors(prod, store, without) == []
    assert _monitors(prod, store, None) == []


def test_a_release_sees_only_the_crds_of_releases_it_depends_on(prod: Plan, store: ChartStore) -> None:
    plan = copy.deepcopy(prod)
    release = plan.release("mlflow")
    monitoring = plan.release("kube-prometheus-stack").urn
    # Without the dependency the operator's CRDs may not exist yet when mlflow installs.
    plan.dependencies[release.urn] = [d for d in plan.dependencies[release.urn]
                                      if not plan.depends_on(d, monitoring) and d != monitoring]
    caps = capabilities.for_release(plan, release, [], _installed(plan, store, "kube-prometheus-stack"))
    assert not caps.has("monitoring.coreos.com/v1")


def test_releases_render_in_creation_order_with_their_own_crds() -> None:
    order = [r.name for r in capabilities.creation_order(_seldon_plan())]
    assert order.index("crds") < order.index("setup") < order.index("runtime") < order.index("servers")


def _seldon_plan() -> Plan:
    from infra.conformance.plan import Release

    def rel(name: str) -> Release:
        return Release(urn=name, name=name, namespace="seldon", chart=name, version="1", repository=None, values={})

    releases = [rel(n) for n in ("servers", "runtime", "setup", "crds")]
    deps = {"servers": ["runtime"], "runtime": ["setup"], "setup": ["crds"], "crds": []}
    return Plan("test", "1.34", releases, [], deps)


def test_apiservices_and_served_crd_versions_become_api_versions() -> None:
    from infra.conformance.model import KubeObject

    crd = KubeObject({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                      "metadata": {"name": "things.example.com"},
                      "spec": {"group": "example.com", "names": {"kind": "Thing"},
                               "versions": [{"name": "v1", "served": True}, {"name": "v1beta1", "served": False}]}},
                     origin="test")
    api = KubeObject({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                      "metadata": {"name": "v1beta1.metrics.k8s.io"},
                      "spec": {"group": "metrics.k8s.io", "version": "v1beta1"}}, origin="test")
    assert capabilities.api_versions_of([crd, api]) == {"example.com/v1", "example.com/v1/Thing",
                                                        "metrics.k8s.io/v1beta1"}


def test_the_mlflow_service_monitor_finds_its_targets(prod: Plan, report: Callable[[str], runner.Report]) -> None:
    """Rendered with capabilities, the chart's ServiceMonitor named the Service port's name (`http`) as a
    container port (`targetPort`), which the server's container does not have, and it carries no credentials
    for MLflow's basic-auth app: the program switches it off and declares its own, which finds its targets."""
    rep = report("prod")
    monitors = [o for o in rep.objects if o.ref == "ServiceMonitor mlflow/mlflow"]
    assert len(monitors) == 1 and monitors[0].release is None  # the program's, not the chart's
    assert all("basicAuth" in e for e in monitors[0].manifest["spec"]["endpoints"])
    assert [str(p) for p in rep.problems if p.check == "wiring" and "mlflow" in p.subject] == []
    assert not prod.release("mlflow").values.get("serviceMonitor", {}).get("enabled", False)


def test_documents_split_as_helm_splits_them():
    # cert-manager v1.21.1's rbac.yaml renders a separator with a comment on its line (`---# Permission ...`):
    # Helm's SplitManifests separates there, and so must the conformance loader.
    from infra.conformance.render import load_documents

    text = "kind: Role\nmetadata: {name: a}\n\n---# Permission to approve\nkind: ClusterRole\nmetadata: {name: b}\n"
    assert [d["metadata"]["name"] for d in load_documents(text)] == ["a", "b"]
