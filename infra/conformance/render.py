"""Render a release with the Helm engine itself (helm-python-sdk bundles Helm v4's Go library: no
binary, no cluster; `lookup` returns nothing), as `helm install` would: values validated against the
chart's values.schema.json, templates rendered with the release name and namespace, chart `crds/`
applied first. Hooks are kept (Helm applies them); test hooks and NOTES.txt are not installed."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.conformance import capabilities
from infra.conformance.capabilities import Capabilities
from infra.conformance.model import CLUSTER_SCOPED, KubeObject
from infra.conformance.plan import Plan, Release

try:  # libyaml when present: the CRDs are large
    _BaseLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _BaseLoader = yaml.SafeLoader


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """SafeLoader that reads `=` (YAML's value tag, which some CRDs use as an enum entry) as a string."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


class RenderError(Exception):
    """The Helm engine refused the values or a template failed."""


# Helm splits a rendered template into documents with this pattern (pkg/release/util SplitManifests), so a
# separator followed by a comment on the same line (`---# ...`, as cert-manager's rbac.yaml renders) still
# separates; a YAML parser alone would read it as part of the previous document.
_SEPARATOR = re.compile(r"(?:^|\s*\n)---\s*")


def load_documents(text: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    docs = [d for part in _SEPARATOR.split(text) for d in yaml.load_all(part, Loader=_Loader)]
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            out.extend(item for item in doc["items"] if isinstance(item, dict))
        else:
            out.append(doc)
    return out


def load_chart(path: Path) -> Any:
    from helm_python.chart import Chart

    return Chart.load(str(path))


def _render(chart: Any, release: Release, values: dict[str, Any], caps: Capabilities | None) -> dict[str, str]:
    if caps is None:
        return dict(chart.render(values, name=release.name, namespace=release.namespace, is_install=True))
    # Chart.render does not pass the engine's capability options on: call the native render as it does.
    from helm_python import _native

    options = {"name": release.name, "namespace": release.namespace, "is_install": True, **caps.options()}
    return dict(json.loads(_native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(options))))


def render_templates(chart: Any, release: Release, values: dict[str, Any],
                     caps: Capabilities | None = None) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt left out), with the cluster's capabilities when given
    (otherwise the engine's defaults). Raises RenderError."""
    from helm_python.errors import HelmError

    try:
        chart.validate_schema(values)
        out = _render(chart, release, values, caps)
    except HelmError as exc:
        raise RenderError(str(exc)) from exc
    return {path: text for path, text in out.items() if not path.endswith("NOTES.txt")}


def _is_test_hook(manifest: dict[str, Any]) -> bool:
    hooks = str(((manifest.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook", ""))
    return any(h.strip().startswith("test") for h in hooks.split(","))


@dataclass
class RenderedRelease:
    release: Release
    objects: list[KubeObject] = field(default_factory=list)
    crds: list[KubeObject] = field(default_factory=list)  # from chart (and subchart) crds/ folders
    templates: dict[str, str] = field(default_factory=dict)  # as the chart renders them (dead-key baseline)
    post_rendered: dict[str, str] | None = None  # after the release's post-renderer, when it has one
    error: str | None = None
    capabilities: Capabilities | None = None

    @property
    def applied(self) -> dict[str, str]:
        """What Helm applies: the post-renderer's output when there is one."""
        return self.templates if self.post_rendered is None else self.post_rendered


def objects_of(release: Release, rendered: dict[str, str], namespaced: Any = None) -> list[KubeObject]:
    """Parse rendered templates into objects; namespaced objects without a namespace get the release's."""
    objects = []
    for path in sorted(rendered):
        for manifest in load_documents(rendered[path]):
            if not manifest.get("kind") or _is_test_hook(manifest):
                continue
            meta = manifest.setdefault("metadata", {}) or {}
            manifest["metadata"] = meta
            scoped = namespaced(manifest) if namespaced else manifest["kind"] not in CLUSTER_SCOPED
            if scoped and not meta.get("namespace"):
                meta["namespace"] = release.namespace
            objects.append(KubeObject(manifest, origin=f"release {release.name}: {path}", release=release.name,
                                      urn=release.urn))
    return objects


def chart_crds(chart: Any, release: Release) -> list[KubeObject]:
    """The CRDs of the chart's (and subcharts') crds/ folders, which Helm applies first."""
    out = []
    if not release.skip_crds:
        for crd in chart.crds:
            for manifest in load_documents(crd["data"]):
                if manifest.get("kind") == "CustomResourceDefinition":
                    out.append(KubeObject(manifest, origin=f"release {release.name}: {crd['filename']}",
                                          release=release.name, urn=release.urn))
    return out


def render_release(chart: Any, release: Release, caps: Capabilities | None = None) -> RenderedRelease:
    out = RenderedRelease(release, capabilities=caps)
    out.crds = chart_crds(chart, release)
    try:
        out.templates = render_templates(chart, release, release.values, caps)
        if release.postrender:
            out.post_rendered = post_render(release, out.templates)
    except RenderError as exc:
        out.error = str(exc)
    return out


def post_render(release: Release, templates: dict[str, str]) -> dict[str, str]:
    """Pipe the rendered templates through the release's post-renderer as Helm does (the program's own
    executable, run from the project directory); hooks are kept apart, as Helm does not post-render them."""
    from infra.offline.synth import REPO_ROOT  # the project directory, where `pulumi up` runs

    hooks = {p: t for p, t in templates.items() if any(_hook(m) for m in load_documents(t))}
    text = "".join(f"---\n# Source: {p}\n{t}\n" for p, t in sorted(templates.items()) if p not in hooks)
    script = Path(REPO_ROOT) / str(release.postrender)
    if not script.is_file():
        raise RenderError(f"post-renderer {release.postrender} does not exist")
    done = subprocess.run([str(script)], input=text, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    if done.returncode != 0:
        raise RenderError(f"post-renderer {release.postrender} failed: {done.stderr.strip()}")
    return {**hooks, f"(post-renderer {release.postrender})": done.stdout}


def _hook(manifest: dict[str, Any]) -> bool:
    return bool(((manifest.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook"))


def rendered_crds(rendered: RenderedRelease) -> list[KubeObject]:
    """CRDs the release installs: its charts' crds/ folders and CRD templates."""
    templated = [o for o in objects_of(rendered.release, rendered.applied)
                 if o.kind == "CustomResourceDefinition"]
    return rendered.crds + templated


def render_in_creation_order(plan: Plan, charts: dict[str, Any]) -> list[RenderedRelease]:
    """Every release rendered with the capabilities the cluster has when it installs (see `capabilities`),
    returned in plan order."""
    installed: dict[str, list[KubeObject]] = {}
    by_name: dict[str, RenderedRelease] = {}
    for release in capabilities.creation_order(plan):
        chart = charts[release.name]
        caps = capabilities.for_release(plan, release, chart_crds(chart, release), installed)
        out = render_release(chart, release, caps)
        installed[release.name] = rendered_crds(out) + [o for o in objects_of(release, out.templates)
                                                        if o.kind == "APIService"]
        by_name[release.name] = out
    return [by_name[r.name] for r in plan.releases]
