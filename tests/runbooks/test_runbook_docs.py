"""Each runbook's Markdown names only what its executable steps act on.

The documents sit beside their step modules in runbooks/. A document that names a Kubernetes object
(`namespace/name`) or an AWS resource (`mlplatform-<env>...`) the steps do not use has drifted from
them: an operator following the text would look at the wrong thing. The names the steps use are read
from the step module itself: the objects it holds (contracts/cluster.py), the physical names it takes
from the naming code (`ctx.stack.<name>`), and each step's target and plan under a prod context.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError

from contracts.cluster import WORKLOAD_IDENTITIES, KubeObject
from runbooks.catalog import documents
from runbooks.context import RunContext
from runbooks.engine import Runbook, StepFailed
from runbooks.kube import InMemoryKubeOps

ENV = "prod"
# Why a step's target or plan cannot render offline: it needs a --param or Prometheus (StepFailed, with
# the reason), AWS (no credentials here), or the result of an earlier step (KeyError on the run state).
# Anything else - a NameError, a TypeError in a step - fails the test instead of hiding names.
OFFLINE_GAPS = (StepFailed, BotoCoreError, KeyError)
NAMESPACES = {i.namespace for i in WORKLOAD_IDENTITIES.values()} | {"monitoring", "observability"}
BACKTICKED = re.compile(r"`([^`\n]+)`")


def _flatten(value: Any) -> Iterable[Any]:
    if isinstance(value, KubeObject | str):
        yield value
    elif isinstance(value, tuple | list | set | frozenset):
        if len(value) == 3 and all(isinstance(v, str) for v in value):  # (kind, namespace, name)
            yield KubeObject(*value)
        else:
            for item in value:
                yield from _flatten(item)


def _step_modules(runbook: Runbook) -> list[ModuleType]:
    names = {getattr(fn, "__module__", None) for step in runbook.steps
             for fn in (step.target, step.precondition, step.plan, step.action)}
    return [sys.modules[n] for n in sorted(n for n in names if n and n.startswith("runbooks."))]


def names_used(runbook: Runbook) -> set[str]:
    ctx = RunContext(env=ENV, kube=InMemoryKubeOps(), params={"model": "fraud", "nodegroup": "general"})
    used: set[str] = set()
    for module in _step_modules(runbook):
        for value in vars(module).values():
            for item in _flatten(value):
                used |= {item.ref, item.name} if isinstance(item, KubeObject) else {item}
        for attr in set(re.findall(r"ctx\.stack\.([a-z_]+)\b", inspect.getsource(module))):
            value = getattr(ctx.stack, attr)
            if isinstance(value, str):
                used.add(value)
    for step in runbook.steps:
        for render in (lambda s: [s.target(ctx)], lambda s: s.plan(ctx)):
            # A step that needs a live system or an earlier step's result: the module's names above count.
            with contextlib.suppress(*OFFLINE_GAPS):
                used |= {str(line) for line in render(step)}
    return used


def references(markdown: str) -> set[str]:
    """Kubernetes objects and AWS physical names a document names, with `<env>` read as the test's env."""
    refs = set()
    for token in BACKTICKED.findall(markdown):
        token = token.strip()
        head = token.split("/")[0]
        if re.fullmatch(r"[a-z0-9-]+/[a-z0-9][a-z0-9.-]*", token) and head in NAMESPACES:
            refs.add(token)
        elif token.startswith("mlplatform-<env>") and re.fullmatch(r"[a-z0-9<>/.-]+", token):
            refs.add(token.replace("<env>", ENV))
    return refs


def _mentioned(ref: str, used: set[str]) -> bool:
    return any(ref == u or ref in u for u in used)


EXECUTABLE_DOCS = [d for d in documents() if d.runbook is not None]


@pytest.mark.parametrize("doc", EXECUTABLE_DOCS, ids=lambda d: d.name)
def test_document_names_only_what_its_steps_use(doc):
    used = names_used(doc.runbook)
    stray = sorted(ref for ref in references(doc.path.read_text()) if not _mentioned(ref, used))
    assert stray == [], f"{doc.path.name} names {stray}, which its steps ({doc.runbook.name}) do not use"


def planned_objects(runbook: Runbook) -> set[str]:
    """`namespace/name` of every Kubernetes object the steps' plans and targets name."""
    ctx = RunContext(env=ENV, kube=InMemoryKubeOps(), params={"model": "fraud", "nodegroup": "general"})
    text = []
    for step in runbook.steps:
        for render in (lambda s: [s.target(ctx)], lambda s: s.plan(ctx)):
            with contextlib.suppress(*OFFLINE_GAPS):
                text += [str(line) for line in render(step)]
    pattern = re.compile(r"\b(" + "|".join(sorted(NAMESPACES)) + r")/([a-z0-9][a-z0-9-]*[a-z0-9])\b")
    return {f"{ns}/{name}" for line in text for ns, name in pattern.findall(line)}


@pytest.mark.parametrize("doc", EXECUTABLE_DOCS, ids=lambda d: d.name)
def test_document_names_every_object_its_steps_change(doc):
    """The other direction: an object a step restarts or patches is named in the text (e.g. every Redis client)."""
    text = doc.path.read_text().replace("<model>", "fraud")  # the model the plans are rendered for
    assert sorted(o for o in planned_objects(doc.runbook) if o not in text) == []


def test_every_document_sits_beside_its_steps():
    for doc in EXECUTABLE_DOCS:
        for module in _step_modules(doc.runbook):
            assert Path(inspect.getfile(module)).parent == doc.path.parent, (doc.name, module.__name__)


def test_drift_is_caught():
    """The check is not vacuous: the secret and group names of an older document are reported."""
    rotation = next(d for d in EXECUTABLE_DOCS if d.name == "redis-auth-rotation")
    used = names_used(rotation.runbook)
    old_text = "patch the Kubernetes secret `feast/redis-auth`; the group `mlplatform-<env>-redis`"
    assert sorted(r for r in references(old_text) if not _mentioned(r, used)) == [
        "feast/redis-auth", "mlplatform-prod-redis"]
    assert not [r for r in references("restart `feast/feast-feature-server`") if not _mentioned(r, used)]
