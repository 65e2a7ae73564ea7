"""Fixtures of the IaC suite. Each stack's synthesis (`synth`) is in tests/conftest.py; here each stack's
conformance run (`report`), owned once per session by every conformance test module.

The charts come from the mirror beside the checkout (`../shared/charts`, the harness's default for
MLPLAT_CHART_MIRROR) or the cache; without either (and without network) the conformance tests fail with
the one message that says how to get them.
"""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.conformance import runner
from infra.conformance.charts import ChartSourceError, ChartStore, mirror_from_env
from infra.conformance.plan import Plan
from infra.offline.synth import Synthesis

ENVIRONMENTS = ("dev", "staging", "prod")
ROOT = Path(__file__).resolve().parents[2]
if not os.environ.get("MLPLAT_CHART_MIRROR"):
    os.environ["MLPLAT_CHART_MIRROR"] = str(ROOT.parent / "shared" / "charts")


@pytest.fixture(params=ENVIRONMENTS)
def env(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(autouse=True)
def _event_loop() -> None:
    # Pulumi's mock runs close the loop they used; later synchronous tests still need one.
    try:
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


@pytest.fixture(scope="session")
def store() -> ChartStore:
    return ChartStore(mirror=mirror_from_env(), online=False)


@pytest.fixture(scope="session")
def plan_of(synth: Callable[[str], Synthesis]) -> Callable[[str], Plan]:
    """A fresh Plan of the stack on every call: tests that break a plan on purpose edit their own copy,
    never the session's synthesis that other tests read."""
    return lambda stack: Plan.from_preview(copy.deepcopy(synth(stack).to_preview_json()))


@pytest.fixture(scope="session")
def report(plan_of: Callable[[str], Plan], store: ChartStore) -> Callable[[str], runner.Report]:
    """Every check of `mlplat conform` (scanner and dead-key analysis included), once per stack. Under xdist
    every test that uses it runs on one worker (tests/conftest.py, SHARED_SETUPS), so each run is made once."""
    cache: dict[str, runner.Report] = {}

    def get(stack: str) -> runner.Report:
        if stack not in cache:
            try:
                cache[stack] = runner.run(plan_of(stack), store, scan=True)
            except ChartSourceError as exc:
                pytest.fail(str(exc), pytrace=False)
        return cache[stack]

    return get
