"""On the demo platform (`make demo`'s `mlplat local up --redis`): the served `fraud-explainer` explains what
the served `fraud` model scores (contributions + base value = raw score, and the raw score is the served
probability's), with the online features read from Feast's Redis or, for a card the store does not hold,
named as defaults; and `mlplat loadtest` runs Locust against every served model, meeting a generous
objective and missing an impossible one (exit 1)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from ml.models.fraud import data
from ml.models.fraud.features import ONLINE_FEATURES
from ml.models.fraud.plugin import request_body

pytestmark = [pytest.mark.ml, pytest.mark.integration]
REPO = Path(__file__).resolve().parents[2]


def mlplat(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlplat", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


def _post(base: str, model: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{base}/v2/models/{model}/infer", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return {o["name"]: o for o in response.json()["outputs"]} | {"_parameters": response.json().get("parameters")}


def _known_transaction(platform: dict[str, Any]) -> Any:
    return data.load(platform["state"] / "data" / "sample").iloc[11]


def test_the_served_explanation_adds_up_to_the_served_score(demo_up):
    base = demo_up["serving"]
    body = request_body(_known_transaction(demo_up))
    scored = _post(base, "fraud", body)
    explained = _post(base, "fraud-explainer", body)
    names = explained["feature"]["data"]
    contributions = dict(zip(names, explained["contribution"]["data"], strict=True))
    assert names == data.FEATURES and explained["contribution"]["shape"] == [1, len(data.FEATURES)]
    raw = explained["raw_score"]["data"][0]
    assert math.isclose(explained["base_value"]["data"][0] + sum(contributions.values()), raw, abs_tol=1e-9)
    served = scored["fraud_probability"]["data"][0]
    assert math.isclose(1 / (1 + math.exp(-raw)), served, abs_tol=2e-6)
    assert explained["fraud_probability"]["data"][0] == served
    # The online features came from the store (the card and device are materialized): none is a default.
    assert explained["degraded"]["data"] == [False] and not any(explained["defaulted"]["data"])
    # Both answer for the same registry version.
    meta = {m: httpx.get(f"{base}/v2/models/{m}", timeout=10).json()["versions"] for m in ("fraud", "fraud-explainer")}
    assert meta["fraud"] == meta["fraud-explainer"]


def test_an_explanation_of_a_degraded_request_names_the_defaults(demo_up):
    body = request_body(_known_transaction(demo_up))
    for inp in body["inputs"]:
        if inp["name"] in ("card_id", "device_id"):
            inp["data"] = [987_654_321]  # no such card or device in the online store
    explained = _post(demo_up["serving"], "fraud-explainer", body)
    defaulted = dict(zip(explained["feature"]["data"], explained["defaulted"]["data"], strict=True))
    assert {name for name, flag in defaulted.items() if flag} == set(ONLINE_FEATURES)
    assert explained["degraded"]["data"] == [True] and explained["_parameters"]["degraded"] is True


def test_loadtest_runs_locust_against_every_served_model(demo_up, tmp_path):
    report_file = tmp_path / "load.json"
    run = mlplat(demo_up["env"], "loadtest", "--users", "4", "--duration", "3s", "--p99-ms", "2000",
                 "--json", str(report_file), timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "objective met" in run.stdout and "p99 ms" in run.stdout
    report = json.loads(report_file.read_text())
    rows = {r["model"]: r for r in report["models"]}
    assert set(rows) == {"fraud", "fraud-explainer", "sentiment", "recommendation"}
    assert all(r["requests"] > 0 and r["failures"] == 0 and r["p50_ms"] <= r["p99_ms"] for r in rows.values())
    assert report["objective"]["latency_p99_ms"] == 2000 and report["misses"] == []


def test_loadtest_exits_1_when_the_objective_is_missed(demo_up):
    run = mlplat(demo_up["env"], "loadtest", "--model", "fraud", "--users", "1", "--duration", "1s",
                 "--p99-ms", "0.001", timeout=240)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "OBJECTIVE MISSED" in run.stdout and "fraud: p99" in run.stdout
