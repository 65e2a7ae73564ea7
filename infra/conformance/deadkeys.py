"""Values keys that change nothing.

For every leaf the program sets in a release's values (a mapping is walked; a list or scalar is a
leaf), the release is rendered again without that key. If the output is identical, it is rendered
once more with the value changed (a number +1, a flag flipped, a string extended, a list doubled):
- output changes: the chart reads the key and our value equals its default -> reported as a note;
- output identical again (or the same render error as without the key): no template reads the key ->
  a dead key, a problem unless `deadkeys-allowlist.yaml` lists it with a reason.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.conformance.capabilities import Capabilities
from infra.conformance.model import Problem
from infra.conformance.plan import Release
from infra.conformance.render import RenderError, render_templates

ALLOWLIST = Path(__file__).with_name("deadkeys-allowlist.yaml")

Path_ = tuple[str, ...]


def leaves(values: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    if isinstance(values, dict) and values:
        for key, value in values.items():
            yield from leaves(value, (*path, str(key)))
    elif path:
        yield path, values


def _set(values: dict[str, Any], path: Path_, value: Any = None, delete: bool = False) -> dict[str, Any]:
    out = copy.deepcopy(values)
    node = out
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


def perturb(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "-x" if value else "x"
    if isinstance(value, list):
        return value + value if value else ["x"]
    if isinstance(value, dict):
        return {"x-conformance-probe": "x"}
    return "x"


@dataclass(frozen=True)
class KeyVerdict:
    release: str
    key: str
    value: Any
    verdict: str  # "dead" | "default"


def _render(chart: Any, release: Release, values: dict[str, Any], caps: Capabilities | None) -> Any:
    try:
        return render_templates(chart, release, values, caps)
    except RenderError as exc:
        return ("error", str(exc))


def analyse(chart: Any, release: Release, baseline: dict[str, str],
            caps: Capabilities | None = None) -> list[KeyVerdict]:
    """`caps`: the capabilities the baseline was rendered with (a key read only behind a capability gate
    is alive only when the gate is open)."""
    out = []
    for path, value in leaves(release.values):
        if _render(chart, release, _set(release.values, path, delete=True), caps) != baseline:
            continue
        probe = _render(chart, release, _set(release.values, path, perturb(value)), caps)
        verdict = "default" if probe != baseline else "dead"
        out.append(KeyVerdict(release.name, ".".join(path), value, verdict))
    return out


def load_allowlist(path: Path = ALLOWLIST) -> dict[tuple[str, str], str]:
    """(release, key) -> reason. Every entry needs a reason."""
    data = yaml.safe_load(path.read_text()) if path.exists() else None
    out = {}
    for entry in (data or {}).get("allow") or []:
        reason = str(entry.get("reason") or "").strip()
        if not reason:
            raise ValueError(f"{path.name}: entry {entry} has no reason")
        out[(str(entry["release"]), str(entry["key"]))] = reason
    return out


def problems(verdicts: list[KeyVerdict], allow: dict[tuple[str, str], str]) -> list[Problem]:
    return [Problem("dead-key", f"release {v.release}: values.{v.key}",
                    f"changes nothing in the rendered chart (value {v.value!r}); remove it or list it with a "
                    f"reason in {ALLOWLIST.name}", v.release)
            for v in verdicts if v.verdict == "dead" and (v.release, v.key) not in allow]
