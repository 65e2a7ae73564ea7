"""Shared fixtures for the mock-based unit tests: each stack is synthesized once per session."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from infra.offline.synth import Synthesis, synthesize

ENVIRONMENTS = ("dev", "staging", "prod")


@pytest.fixture(scope="session")
def synth() -> Callable[[str], Synthesis]:
    cache: dict[str, Synthesis] = {}

    def get(stack: str) -> Synthesis:
        if stack not in cache:
            cache[stack] = synthesize(stack)
        return cache[stack]

    return get


@pytest.fixture(params=ENVIRONMENTS)
def env(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(autouse=True)
def _event_loop() -> None:
    # DESIGN §6 pitfall 6: keep an event loop available between tests.
    try:
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
