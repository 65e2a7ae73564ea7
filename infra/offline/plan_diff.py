"""Offline plan diff: compare two plans (mlplat synth JSON) resource by resource.

Both sides come from Pulumi mocks, so the diff shows what the program *declares* differently; it
cannot tell which updates the provider would turn into replacements, and secret values (masked as
"[secret]" when synthesized) never show as changed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.offline.policy_eval import PlanFormatError

OFFLINE_NOTE = ("Offline plan (Pulumi mocks, no cloud state): it cannot predict replacements or changes made "
                "outside Pulumi, and secret values are masked, so their changes do not show.")
OPTION_KEYS = ("protect", "retainOnDelete", "ignoreChanges", "deleteBeforeReplace", "parent", "provider")
SECRET_MARK = "[secret]"
SECRET_WORDS = ("password", "secret", "authtoken", "kubeconfig", "privatekey", "accesskey", "apikey")


@dataclass
class Change:
    urn: str
    type: str
    op: str  # create | delete | update
    paths: list[str] = field(default_factory=list)
    old: Mapping[str, Any] | None = None
    new: Mapping[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]


@dataclass
class PlanDiff:
    stack: str
    base_label: str
    head_label: str
    changes: list[Change]
    unchanged: int

    def count(self, op: str) -> int:
        return sum(1 for c in self.changes if c.op == op)


def states(document: Any, source: str) -> dict[str, Mapping[str, Any]]:
    if not isinstance(document, Mapping) or not isinstance(document.get("steps"), list):
        raise PlanFormatError(f"{source}: not a plan (expected an object with a `steps` list)")
    out: dict[str, Mapping[str, Any]] = {}
    for i, step in enumerate(document["steps"]):
        state = step.get("newState") if isinstance(step, Mapping) else None
        if not isinstance(state, Mapping) or not isinstance(state.get("urn"), str):
            raise PlanFormatError(f"{source}: steps[{i}] has no newState.urn")
        out[state["urn"]] = state
    return out


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from _flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


def changed_paths(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Property paths whose values differ between two input maps (leaf level)."""
    a, b = dict(_flatten(old)), dict(_flatten(new))
    return sorted(p for p in a.keys() | b.keys() if a.get(p, _MISSING) != b.get(p, _MISSING))


_MISSING = object()


def diff_plans(base: Any, head: Any, stack: str, base_label: str, head_label: str) -> PlanDiff:
    old, new = states(base, base_label), states(head, head_label)
    changes: list[Change] = []
    unchanged = 0
    for urn in sorted(old.keys() | new.keys()):
        o, n = old.get(urn), new.get(urn)
        if o is None:
            changes.append(Change(urn, n["type"], "create", new=n))
        elif n is None:
            changes.append(Change(urn, o["type"], "delete", old=o))
        else:
            paths = changed_paths(o.get("inputs") or {}, n.get("inputs") or {})
            paths += [f"[option] {k}" for k in OPTION_KEYS if o.get(k) != n.get(k)]
            if paths:
                changes.append(Change(urn, n["type"], "update", paths, o, n))
            else:
                unchanged += 1
    return PlanDiff(stack, base_label, head_label, changes, unchanged)


def mask(path: str, value: Any) -> str:
    if value is _MISSING:
        return "(absent)"
    leaf = path.rsplit(".", 1)[-1].lower().replace("_", "")
    if value == SECRET_MARK or any(w in leaf for w in SECRET_WORDS):
        return SECRET_MARK
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def _values(change: Change, path: str) -> str:
    if path.startswith("[option] "):
        key = path.removeprefix("[option] ")
        return f"{mask(key, (change.old or {}).get(key))} → {mask(key, (change.new or {}).get(key))}"
    a = dict(_flatten((change.old or {}).get("inputs") or {}))
    b = dict(_flatten((change.new or {}).get("inputs") or {}))
    return f"{mask(path, a.get(path, _MISSING))} → {mask(path, b.get(path, _MISSING))}"


def to_markdown(d: PlanDiff, limit: int = 200) -> str:
    lines = [
        f"### Offline plan diff: `{d.stack}` ({d.base_label} → {d.head_label})",
        "",
        f"> {OFFLINE_NOTE}",
        "",
        "| create | update | delete | unchanged |",
        "|---:|---:|---:|---:|",
        f"| {d.count('create')} | {d.count('update')} | {d.count('delete')} | {d.unchanged} |",
        "",
    ]
    if not d.changes:
        lines.append("No resource changes.")
    for op, title in (("delete", "Deleted"), ("create", "Created"), ("update", "Updated")):
        items = [c for c in d.changes if c.op == op]
        if not items:
            continue
        lines += [f"<details{' open' if op != 'create' else ''}><summary><b>{title} ({len(items)})</b></summary>",
                  ""]
        for c in items[:limit]:
            lines.append(f"- `{c.type}` **{c.name}**")
            for p in c.paths:
                lines.append(f"  - `{p}`: {_values(c, p)}")
        if len(items) > limit:
            lines.append(f"- … {len(items) - limit} more (see the JSON artifact)")
        lines += ["", "</details>", ""]
    return "\n".join(lines) + "\n"


def to_preview_json(d: PlanDiff) -> dict[str, Any]:
    """The diff in `pulumi preview --json` shape (steps with op, detailedDiff; changeSummary)."""
    steps = []
    for c in d.changes:
        step: dict[str, Any] = {"op": c.op, "urn": c.urn, "type": c.type}
        if c.old is not None:
            step["oldState"] = c.old
        if c.new is not None:
            step["newState"] = c.new
        if c.op == "update":
            step["diffReasons"] = sorted({p.split(".")[0].split("[")[0] for p in c.paths})
            step["detailedDiff"] = {p: {"kind": "update", "inputDiff": True} for p in c.paths}
        steps.append(step)
    summary = {op: d.count(op) for op in ("create", "update", "delete") if d.count(op)}
    summary["same"] = d.unchanged
    return {"generator": "mlplat diff (offline; cannot predict replacements)", "note": OFFLINE_NOTE,
            "stack": d.stack, "base": d.base_label, "head": d.head_label, "steps": steps,
            "changeSummary": summary}
