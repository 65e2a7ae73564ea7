"""Offline synthesis: run the Pulumi program under mocks and record the resource graph.

No Pulumi CLI, plugins or cloud credentials are needed. A recording `MockMonitor` captures every
`RegisterResource` request (inputs in wire form, plus protect, retainOnDelete, dependencies, parent,
provider, ignoreChanges) and every `RegisterResourceOutputs`; `RealisticMocks` answers with the
outputs a real provider would return, so dependent inputs keep their keys. The result can be
written as JSON shaped like `pulumi preview --json` (secrets as "[secret]").

`first_preview=True` synthesizes what the first `pulumi preview` of a stack sees, when no resource
exists yet: provider-computed outputs (ids, ARNs, endpoints, generated values) are unknown, and so is
every input built from them. Unknowns are written as `pulumi preview --json` writes them: the
placeholder string `UNKNOWN` (pkg/resource/stack computedValuePlaceholder, the Python SDK's
rpc.UNKNOWN). Without it, every output has the value it would have after `pulumi up`.
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from infra.offline.mock_outputs import RealisticMocks

REPO_ROOT = Path(__file__).resolve().parents[2]
PROGRAM = REPO_ROOT / "__main__.py"
PROJECT = "mlplatform"
SECRET = "[secret]"
# What `pulumi preview --json` prints for a value not known until `up` (and what the engine sends).
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
# Wire-format signatures (pulumi/sdk rpc.py).
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SIG_SECRET = "1b47061264138c4ac30d75fd1eb44270"
_SIG_RESOURCE = "5cf8f73096256a8f31e491e813e4eb8e"
_SIG_ASSET = "c44067f5952c0a294b673a41bacd8c17"
_SIG_ARCHIVE = "0def7320c3a5731c473e5ecbe6d01bc7"


def normalise(value: Any) -> Any:
    """Wire value -> plain JSON: secrets marked, integral floats as ints, references as URNs."""
    if isinstance(value, dict):
        sig = value.get(_SIG_KEY)
        if sig == _SIG_SECRET:
            return SECRET
        if sig == _SIG_RESOURCE:
            return value.get("urn")
        if sig in (_SIG_ASSET, _SIG_ARCHIVE):
            return {k: v for k, v in value.items() if k != _SIG_KEY}
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass
class SynthResource:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str | None
    inputs: dict[str, Any]
    provider: str | None = None
    protect: bool = False
    retain_on_delete: bool = False
    dependencies: list[str] = field(default_factory=list)
    ignore_changes: list[str] = field(default_factory=list)
    delete_before_replace: bool = False
    outputs: dict[str, Any] = field(default_factory=dict)  # component outputs (register_outputs)

    def step(self) -> dict[str, Any]:
        state = {
            "urn": self.urn, "type": self.type, "custom": self.custom, "parent": self.parent or "",
            "inputs": self.inputs, "protect": self.protect, "retainOnDelete": self.retain_on_delete,
            "dependencies": self.dependencies, "provider": self.provider or "",
            "ignoreChanges": self.ignore_changes, "deleteBeforeReplace": self.delete_before_replace,
        }
        if self.outputs:
            state["outputs"] = self.outputs
        return {"op": "create", "urn": self.urn, "provider": self.provider or "", "newState": state}


@dataclass
class Synthesis:
    stack: str
    resources: list[SynthResource]
    stack_outputs: dict[str, Any]
    config: dict[str, Any]
    first_preview: bool = False

    def of_type(self, type_: str) -> list[SynthResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> SynthResource:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            raise LookupError(f"expected one {type_} {name or ''}, found {[r.name for r in found]}")
        return found[0]

    def by_urn(self, urn: str) -> SynthResource:
        return next(r for r in self.resources if r.urn == urn)

    def aws_resources(self) -> Iterator[SynthResource]:
        return (r for r in self.resources if r.custom and r.type.startswith("aws:"))

    def to_preview_json(self) -> dict[str, Any]:
        steps = [r.step() for r in self.resources]
        generator = "mlplat synth (offline, Pulumi mocks; cannot predict replacements)"
        if self.first_preview:
            generator = "mlplat synth --preview (offline, Pulumi mocks; first preview: values unknown until up)"
        return {
            "generator": generator,
            "stack": self.stack,
            "config": self.config,
            "steps": steps,
            "outputs": self.stack_outputs,
            "changeSummary": {"create": len(steps)},
        }


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """Records each registration in engine form (full type-chain URNs) with its options."""

    def __init__(self, mocks: pulumi_mocks.Mocks, stack: str) -> None:
        super().__init__(mocks)
        self.stack = stack
        self.records: dict[str, SynthResource] = {}  # keyed by engine URN
        self._engine_urn: dict[str, str] = {}  # mock URN -> engine URN
        self._qualified_type: dict[str, str] = {}  # engine URN -> type chain
        self.stack_outputs: dict[str, Any] = {}

    def _to_engine_urn(self, parent_mock_urn: str, type_: str, name: str) -> str:
        parent = self._engine_urn.get(parent_mock_urn, "")
        chain = self._qualified_type.get(parent, "")
        qualified = f"{chain}${type_}" if chain else type_
        urn = f"urn:pulumi:{self.stack}::{PROJECT}::{qualified}::{name}"
        self._qualified_type[urn] = "" if type_ == "pulumi:pulumi:Stack" else qualified
        return urn

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        urn = self._to_engine_urn(request.parent, request.type, request.name)
        self._engine_urn[response.urn] = urn
        if request.type == "pulumi:pulumi:Stack":
            return response
        inputs = normalise(json_format.MessageToDict(request.object, preserving_proto_field_name=True))
        # Provider references are "<urn>::<id>".
        provider_ref = request.provider.rsplit("::", 1)[0] if request.provider else ""
        self.records[urn] = SynthResource(
            urn=urn,
            type=request.type,
            name=request.name,
            custom=bool(request.custom),
            parent=self._engine_urn.get(request.parent) or None,
            inputs=inputs,
            provider=self._engine_urn.get(provider_ref, provider_ref) or None,
            protect=bool(getattr(request, "protect", False)),
            retain_on_delete=bool(getattr(request, "retainOnDelete", False)),
            dependencies=sorted({self._engine_urn.get(d, d) for d in request.dependencies}),
            ignore_changes=list(request.ignoreChanges),
            delete_before_replace=bool(getattr(request, "deleteBeforeReplace", False)),
        )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        outputs = normalise(json_format.MessageToDict(request.outputs, preserving_proto_field_name=True))
        urn = self._engine_urn.get(request.urn, request.urn)
        if urn in self.records:
            self.records[urn].outputs = outputs
        elif urn.split("::")[2] == "pulumi:pulumi:Stack":
            self.stack_outputs = outputs
        return super().RegisterResourceOutputs(request)


def read_stack_config(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text()) or {}
    return dict(document.get("config") or {})


def _engine_config(flat: Mapping[str, Any]) -> dict[str, str]:
    """Config as the engine hands it to a program: strings, structured values JSON-encoded."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in flat.items()}


def synthesize(stack: str, config: Mapping[str, Any] | None = None, preview: bool = True,
               program: Path = PROGRAM, first_preview: bool = False) -> Synthesis:
    """Run `program` for `stack` under mocks. `config` defaults to the stack file (stacks/Pulumi.<stack>.yaml,
    or in $MLPLAT_STACKS_DIR).

    `first_preview`: as the first `pulumi preview` sees it (nothing created yet; implies preview)."""
    if config is None:
        # Imported here: the policy pack's environment reads golden plans through this module and has no pydantic.
        from stacks.config import stack_file

        config = read_stack_config(stack_file(stack))
    preview = preview or first_preview
    mocks = RealisticMocks(region=str(config.get("aws:region", "eu-west-1")), first_preview=first_preview)
    monitor = RecordingMonitor(mocks, stack)
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    pulumi.runtime.set_all_config(_engine_config(config))
    # set_mocks registers a root stack of its own; the program needs a fresh one that collects exports.
    pulumi_settings.ROOT.set(None)
    try:
        _sync_await(run_in_stack(lambda: runpy.run_path(str(program), run_name="__main__")))
    finally:
        pulumi_settings.ROOT.set(None)
    return Synthesis(stack=stack, resources=list(monitor.records.values()),
                     stack_outputs=monitor.stack_outputs, config=dict(config), first_preview=first_preview)


def write_plan(synthesis: Synthesis, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(synthesis.to_preview_json(), indent=2, sort_keys=True) + "\n")
