"""One stack's conformance run: render every release with its pinned chart, validate every object,
find dead values keys, check wiring and ordering, scan; a table per release and the problems."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.conformance import (
    admission,
    aws_checks,
    capabilities,
    deadkeys,
    operators,
    ordering,
    ownership,
    reachability,
    scanner,
    selectors,
    wiring,
    workflows,
)
from infra.conformance.charts import ChartStore
from infra.conformance.model import KubeObject, Problem
from infra.conformance.plan import Plan
from infra.conformance.render import load_chart, objects_of, render_in_creation_order, rendered_crds
from infra.conformance.schemas import CrdRegistry, core_schemas, validate_object

PROGRAM = "(program)"


@dataclass
class Row:
    release: str
    chart: str
    version: str
    rendered: int = 0
    invalid: int = 0
    dead_keys: int = 0
    wiring: int = 0
    ordering: int = 0
    scanner: int = 0
    admission: int = 0


@dataclass
class Report:
    stack: str
    kubernetes_version: str
    rows: list[Row] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    objects: list[KubeObject] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def validated(self) -> int:
        return sum(1 for o in self.objects if not o.derived)

    def table(self) -> str:
        head = ("release", "chart", "version", "manifests", "invalid", "dead keys", "wiring", "ordering", "scanner",
                "admission")
        rows = [head] + [(r.release, r.chart, r.version, str(r.rendered), str(r.invalid), str(r.dead_keys),
                          str(r.wiring), str(r.ordering), str(r.scanner), str(r.admission)) for r in self.rows]
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                         for row in rows)


def _timed(report: Report, name: str, started: float) -> float:
    now = time.perf_counter()
    report.seconds[name] = round(now - started, 2)
    return now


def _kustomizations(plan: Plan, store: ChartStore, crds: CrdRegistry, rows: dict[str, Row],
                    report: Report) -> list[KubeObject]:
    """The overlays of the plan, read structurally from the mirrored release tree (infra/conformance/kustomize.py)."""
    from infra.conformance import kustomize
    from infra.conformance.manifests import ManifestPin, TreeStore
    from infra.offline.synth import REPO_ROOT
    from stacks.bom import load_bom

    out: list[KubeObject] = []
    for kz in plan.kustomizations:
        name = Path(kz.directory).name
        pinned = next(((n, m) for n, m in load_bom().manifests.items() if name.startswith(f"{n}-{m.version}")), None)
        if pinned is None:
            report.problems.append(Problem("kustomize", kz.directory, "overlay of no `manifests` entry of the BOM"))
            continue
        manifests, pin = pinned
        tree_pin = ManifestPin(manifests, pin.repository, pin.path, pin.version)
        rendered = kustomize.render(Path(REPO_ROOT) / kz.directory, TreeStore(store).tree(tree_pin), pin.version)
        label = f"{manifests} (kustomize)"
        rows[label] = Row(label, "kustomize", pin.version, rendered=len(rendered.objects))
        for obj in rendered.objects:
            if obj.kind == "CustomResourceDefinition":
                crds.add(obj)
        for obj in rendered.objects:
            obj.release = label
            if crds.namespaced(obj.manifest):
                obj.manifest.setdefault("metadata", {}).setdefault("namespace", kz.namespace)
        report.problems.extend(Problem(p.check, p.subject, p.message, label) for p in rendered.problems)
        report.notes.extend(f"{label}: {note}" for note in dict.fromkeys(rendered.notes))
        out.extend(rendered.objects)
    return out


def run(plan: Plan, store: ChartStore, scan: bool = True, dead_keys: bool = True) -> Report:
    report = Report(plan.stack, plan.kubernetes_version)
    t = time.perf_counter()
    # 1. Render every release with its pinned chart (ChartSourceError propagates: one clear message).
    charts: dict[str, Any] = {}
    for release in plan.releases:
        path: Path = store.path(release.chart, release.version, release.repository or "")
        charts[release.name] = load_chart(path)
    # ... in creation order, with the API versions and Kubernetes version the cluster has at that point.
    rendered = render_in_creation_order(plan, charts)
    report.notes.extend(capabilities.notes(rendered, charts))
    t = _timed(report, "render", t)
    # 2. CRDs the plan's releases install, then every object with its namespace as Helm would set it.
    crds = CrdRegistry()
    for r in rendered:
        for crd in rendered_crds(r):
            crds.add(crd)
    rows = {r.release.name: Row(r.release.name, r.release.chart, r.release.version) for r in rendered}
    rows[PROGRAM] = Row(PROGRAM, "-", "-")
    objects: list[KubeObject] = []
    for r in rendered:
        if r.error:
            report.problems.append(Problem("render", f"release {r.release.name}", r.error, r.release.name))
            continue
        found = objects_of(r.release, r.applied, crds.namespaced)
        rows[r.release.name].rendered = len(found) + len(r.crds)
        objects.extend(r.crds)
        objects.extend(found)
    objects.extend(_kustomizations(plan, store, crds, rows, report))
    objects.extend(plan.objects)
    rows[PROGRAM].rendered = len(plan.objects)
    # The deploy tree Argo CD applies: validated like the rest, and owned by Argo CD alone.
    tree = ownership.tree_objects(plan)
    if tree:
        rows[ownership.RELEASE] = Row(ownership.RELEASE, "contracts/deploy_tree.py", "-", rendered=len(tree))
        report.problems.extend(ownership.check(plan, objects, tree))
        objects.extend(tree)
    # 3. Schemas.
    core = core_schemas(plan.kubernetes_version)
    invalid: Counter[str] = Counter()
    for obj in objects:
        found_problems = validate_object(obj, core, crds)
        if found_problems:
            invalid[obj.release or PROGRAM] += 1
        report.problems.extend(found_problems)
    t = _timed(report, "schemas", t)
    # 4. Dead values keys.
    if dead_keys:
        allow = deadkeys.load_allowlist()
        for r in rendered:
            if r.error:
                continue
            verdicts = deadkeys.analyse(charts[r.release.name], r.release, r.templates, r.capabilities)
            report.problems.extend(deadkeys.problems(verdicts, allow))
            for v in verdicts:
                if v.verdict == "default":
                    report.notes.append(f"release {v.release}: values.{v.key} = {v.value!r} equals the chart default")
                elif (v.release, v.key) in allow:
                    report.notes.append(f"release {v.release}: values.{v.key} changes nothing; allowed: "
                                        f"{allow[(v.release, v.key)]}")
        t = _timed(report, "dead-keys", t)
    # 5. Wiring (with the operators' workloads and the cluster's own objects) and ordering.
    made_by_operators = operators.derived_workloads(objects)
    external = selectors.load_external()
    derived = made_by_operators + external
    report.problems.extend(wiring.check(objects + derived))
    report.problems.extend(ordering.check(plan, objects, crds))
    report.problems.extend(reachability.check(plan, objects + derived))
    t = _timed(report, "wiring+ordering", t)
    # 5b. Pod Security admission of every pod template at its namespace's enforce level.
    pods_of_operators = made_by_operators + workflows.workflow_pods(objects)
    found_admission, admission_notes = admission.check(objects, pods_of_operators, external, plan.kubernetes_version)
    report.problems.extend(found_admission)
    report.notes.extend(admission_notes)
    t = _timed(report, "admission", t)
    # 6. AWS: creation order, launch templates, day 2, accelerators, settings that create nothing.
    report.problems.extend(aws_checks.check(plan, objects))
    t = _timed(report, "aws", t)
    # 7. Scanner.
    if scan:
        try:
            found, notes = scanner.scan(objects)
        except (FileNotFoundError, RuntimeError) as exc:
            found, notes = [Problem("scanner", "checkov", str(exc))], []
        report.problems.extend(found)
        report.notes.extend(notes)
        _timed(report, "scanner", t)
    for p in report.problems:
        row = rows.get(p.release or PROGRAM, rows[PROGRAM])
        if p.check == "dead-key":
            row.dead_keys += 1
        elif p.check in ("wiring", "ordering", "scanner", "admission"):
            setattr(row, p.check, getattr(row, p.check) + 1)
        elif p.check == "render":
            row.invalid += 1
    for name, count in invalid.items():
        rows[name].invalid += count
    report.rows = [rows[r.release.name] for r in rendered] + [rows[k] for k in rows
                                                              if k not in {r.release.name for r in rendered}
                                                              and k != PROGRAM] + [rows[PROGRAM]]
    report.objects = objects + derived
    return report
