"""`mlplat conform`: the stacks against the pinned upstream charts and their schemas.

The charts come from the mirror beside the checkout (`../shared/charts`, the test harness's default
for MLPLAT_CHART_MIRROR) or the cache; without either (and without network) these tests fail with
the one message that says how to get them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.conformance import deadkeys, ordering, ownership, runner, wiring
from infra.conformance.charts import HOW_TO, ChartPin, ChartSourceError, ChartStore, mirror_from_env, pins
from infra.conformance.model import KubeObject, Problem
from infra.conformance.plan import Plan
from infra.offline.synth import Synthesis

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ("dev", "staging", "prod")
pytestmark = pytest.mark.conformance


def _problems(report: runner.Report, *checks: str) -> list[str]:
    return [str(p) for p in report.problems if p.check in checks]


# ---------------------------------------------------------------- the stacks conform

@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_every_release_renders_and_every_object_validates(report: Callable[[str], runner.Report], stack: str) -> None:
    """Includes the SeldonRuntime the runtime chart renders from our values (ratio must be a string)."""
    rep = report(stack)
    assert _problems(rep, "render", "schema") == []
    assert rep.validated > 200
    assert all(row.rendered > 0 for row in rep.rows)


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_no_values_key_is_dead(report: Callable[[str], runner.Report], stack: str) -> None:
    assert _problems(report(stack), "dead-key") == []


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_monitors_policies_metrics_references_and_retention_are_wired(
        report: Callable[[str], runner.Report], stack: str) -> None:
    assert _problems(report(stack), "wiring") == []


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_custom_resources_depend_on_their_crds(report: Callable[[str], runner.Report], stack: str) -> None:
    assert _problems(report(stack), "ordering") == []


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_the_scanner_reports_nothing_outside_the_baseline(report: Callable[[str], runner.Report], stack: str) -> None:
    assert _problems(report(stack), "scanner") == []


def test_conform_command_prints_the_report_and_exits_by_its_verdict(
        report: Callable[[str], runner.Report], synth: Callable[[str], Synthesis],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The command for the strictest stack, on the session's one synthesis and one conformance run of prod
    (the report fixture runs every check, checkov included): what it asks for, prints and returns."""
    from infra.offline import synth as synth_module
    from mlplat.cli import main

    prod = report("prod")
    asked: list[tuple[str, bool, bool]] = []

    def run(plan: Plan, store: ChartStore, scan: bool = True, dead_keys: bool = True) -> runner.Report:
        asked.append((plan.stack, scan, dead_keys))
        return prod

    monkeypatch.setattr(synth_module, "synthesize", lambda stack: synth(stack))
    monkeypatch.setattr(runner, "run", run)
    assert main(["conform", "--stack", "prod", "--offline"]) == 0
    out = capsys.readouterr().out
    assert asked == [("prod", True, True)]
    assert "seldon-core-v2-runtime" in out and "OK in" in out

    failing = copy.copy(prod)
    failing.problems = [Problem("schema", "Model seldon/fraud", "spec.minReplicas: 'two' is not of type 'integer'")]
    monkeypatch.setattr(runner, "run", lambda *args, **kwargs: failing)
    assert main(["conform", "--stack", "prod", "--offline", "--no-scan"]) == 1
    out = capsys.readouterr().out
    assert "[schema] Model seldon/fraud: spec.minReplicas" in out and "1 problems in" in out


# ---------------------------------------------------------------- the defects stay fixed

def test_seldon_models_set_no_bound_the_pinned_scheduler_ignores(plan_of: Callable[[str], Plan]) -> None:
    """Seldon Core 2.10.2 disables native model autoscaling in the scheduler (docs/CONFORMANCE.md):
    a Model's maxReplicas does nothing there, so the program sets the replica count it honours."""
    models = [o for o in ownership.tree_objects(plan_of("prod")) if o.kind == "Model"]  # Argo CD applies them
    assert models
    for model in models:
        spec = model.manifest["spec"]
        assert "maxReplicas" not in spec, model.name
        assert spec["replicas"] == spec["minReplicas"] >= 1


def test_jaeger_index_cleaner_uses_the_collectors_index_prefix(plan_of: Callable[[str], Plan]) -> None:
    jaeger = plan_of("prod").release("jaeger").values
    prefix = jaeger["userconfig"]["extensions"]["jaeger_storage"]["backends"]["main_store"]["opensearch"][
        "indices"]["index_prefix"]
    assert jaeger["esIndexCleaner"]["cmdlineParams"]["index-prefix"] == prefix


# ---------------------------------------------------------------- deliberate breakage is caught

def _with(plan: Plan, edit: Callable[[Plan], None]) -> Plan:
    changed = copy.deepcopy(plan)
    edit(changed)
    return changed


def test_a_wrong_type_for_a_crd_field_is_reported_with_object_and_field(
        plan_of: Callable[[str], Plan], store: ChartStore) -> None:
    def edit(plan: Plan) -> None:
        project = next(o for o in plan.objects if o.kind == "AppProject")
        project.manifest["spec"]["description"] = 2

    rep = runner.run(_with(plan_of("dev"), edit), store, scan=False, dead_keys=False)
    found = _problems(rep, "schema")
    assert len(found) == 1
    assert "AppProject argocd/models" in found[0] and "spec.description: 2 is not of type 'string'" in found[0]


def test_a_wrong_type_in_the_deploy_tree_is_reported(plan_of: Callable[[str], Plan], store: ChartStore,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The tree Argo CD applies is checked against the Seldon CRDs in the same run."""
    render = ownership.tree_objects

    def broken(plan: Plan) -> list:
        objects = render(plan)
        next(o for o in objects if o.kind == "Model").manifest["spec"]["minReplicas"] = "two"
        return objects

    monkeypatch.setattr(ownership, "tree_objects", broken)
    found = _problems(runner.run(plan_of("dev"), store, scan=False, dead_keys=False), "schema")
    assert len(found) == 1
    assert "Model seldon/" in found[0] and "deploy tree deploy/dev/" in found[0]
    assert "spec.minReplicas: 'two' is not of type 'integer'" in found[0]


def test_an_unknown_crd_field_is_reported(plan_of: Callable[[str], Plan], store: ChartStore) -> None:
    def edit(plan: Plan) -> None:
        next(o for o in plan.objects if o.kind == "ApplicationSet").manifest["spec"]["generator"] = []

    found = _problems(runner.run(_with(plan_of("dev"), edit), store, scan=False, dead_keys=False), "schema")
    assert len(found) == 1 and "ApplicationSet argocd/models" in found[0] and "unknown field ('generator'" in found[0]


def test_a_misspelt_values_key_is_reported_with_its_path(plan_of: Callable[[str], Plan], store: ChartStore) -> None:
    plan = _with(plan_of("dev"), lambda p: p.release("seldon-core-v2-servers").values["mlserver"].update(
        {"maxReplicaz": 3}))
    release = plan.release("seldon-core-v2-servers")
    from infra.conformance.render import load_chart, render_templates

    chart = load_chart(store.path(release.chart, release.version))
    verdicts = deadkeys.analyse(chart, release, render_templates(chart, release, release.values))
    found = [str(p) for p in deadkeys.problems(verdicts, {})]
    assert found == [f"[dead-key] release seldon-core-v2-servers: values.mlserver.maxReplicaz: changes nothing in "
                     f"the rendered chart (value 3); remove it or list it with a reason in {deadkeys.ALLOWLIST.name}"]


def test_a_monitor_port_that_exists_nowhere_is_reported(plan_of: Callable[[str], Plan], store: ChartStore) -> None:
    def edit(plan: Plan) -> None:
        mon = next(o for o in plan.objects if o.kind == "PodMonitor" and o.name == "seldon-mlserver")
        mon.manifest["spec"]["podMetricsEndpoints"][0]["port"] = "metricz"

    found = _problems(runner.run(_with(plan_of("dev"), edit), store, scan=False, dead_keys=False), "wiring")
    assert any("PodMonitor seldon/seldon-mlserver" in p and "podMetricsEndpoints.0.port: 'metricz'" in p
               for p in found), found


def test_a_custom_resource_without_its_crd_release_dependency_is_reported(plan_of: Callable[[str], Plan],
                                                                         store: ChartStore) -> None:
    plan = plan_of("dev")
    mon = next(o for o in plan.objects if o.kind == "PodMonitor")
    broken = _with(plan, lambda p: p.dependencies.__setitem__(mon.urn, []))
    rep = runner.run(broken, store, scan=False, dead_keys=False)
    found = _problems(rep, "ordering")
    assert len(found) == 1 and mon.name in found[0] and "kube-prometheus-stack" in found[0]


def test_a_secret_nobody_creates_is_reported() -> None:
    pod = KubeObject({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "x"},
                      "spec": {"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "missing"}}]}]}},
                     origin="test")
    assert [p.message for p in wiring.check([pod])] == [
        "container c envFrom references Secret x/missing, which is neither in the plan nor rendered by a release"]


def test_ordering_needs_no_crd_for_core_kinds(plan_of: Callable[[str], Plan]) -> None:
    from infra.conformance.schemas import CrdRegistry

    assert ordering.check(plan_of("dev"), [o for o in plan_of("dev").objects if o.group == ""], CrdRegistry()) == []


# ---------------------------------------------------------------- chart sources

def test_without_mirror_cache_or_network_the_message_says_how_to_get_the_charts(tmp_path: Path) -> None:
    store = ChartStore(cache=tmp_path / "cache", mirror=None, online=False)
    with pytest.raises(ChartSourceError) as caught:
        store.get(pins()[0])
    assert HOW_TO in str(caught.value) and "MLPLAT_CHART_MIRROR" in str(caught.value)


def test_charts_pull_fills_the_cache_from_the_mirror_and_checks_digests(tmp_path: Path) -> None:
    mirror = mirror_from_env()
    assert mirror is not None
    store = ChartStore(cache=tmp_path / "cache", mirror=mirror, online=False)
    got, errors = store.pull_all(pins())
    assert errors == [] and len(got) == len(pins())
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(p.archive for p in pins())
    # A file whose digest is not the reviewed one is refused, from the mirror as from the cache.
    fake = tmp_path / "fake"
    fake.mkdir()
    pin = pins()[0]
    (fake / pin.archive).write_bytes(b"not the chart")
    with pytest.raises(ChartSourceError, match="is not a reviewed digest"):
        ChartStore(cache=tmp_path / "c2", mirror=fake, online=False)._from_mirror(pin)


def test_every_bom_chart_has_a_reviewed_digest_and_the_cache_is_ignored_by_git() -> None:
    from infra.conformance.charts import load_digests

    digests = load_digests()
    assert {p.archive for p in pins()} <= set(digests)
    assert ".cache/" in (ROOT / ".gitignore").read_text().split()


def test_charts_pull_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from infra.conformance.manifests import manifest_pins
    from mlplat.cli import main

    assert main(["charts", "pull", "--offline"]) == 0
    out = capsys.readouterr().out
    assert f"{len(pins())} charts and {len(manifest_pins())} manifest tree(s) in" in out
    assert all(p.archive in out for p in [*pins(), *manifest_pins()])


def test_chart_pin_archive_name() -> None:
    assert ChartPin("k", "https://x", "jaeger", "4.11.1").archive == "jaeger-4.11.1.tgz"


def test_plan_reads_releases_and_own_objects_from_a_preview_plan(synth: Callable[[str], Synthesis]) -> None:
    preview = json.loads(json.dumps(synth("dev").to_preview_json()))
    plan = Plan.from_preview(preview)
    assert {r.name for r in plan.releases} >= {"seldon-core-v2-runtime", "kube-prometheus-stack", "jaeger"}
    assert plan.kubernetes_version.count(".") == 1
    assert any(o.kind == "ApplicationSet" for o in plan.objects)
