"""Fixtures of the mock-based unit tests (each stack's synthesis, `synth`, is in tests/conftest.py)."""

from __future__ import annotations

import asyncio

import pytest

ENVIRONMENTS = ("dev", "staging", "prod")


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
