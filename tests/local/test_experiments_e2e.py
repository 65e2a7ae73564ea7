"""A/B tests and a bandit end to end on the local platform, through the real splitter (HAProxy) and the
real feedback endpoint, with outcomes simulated at known true rates (ml/delivery/experiments/simulate.py).

The platform is the module's own (tests/local/conftest.py `experiments_platform`: fraud, Prometheus every
second; other modules' rollouts and rollbacks would change the traffic and champions it decides on), with a
second registered version of the model (the champion's artifact registered again). The controllers are the
same for every model; the simulator decides outcomes by the variant that answered. HAProxy's weighted round
robin fixes how many requests each variant answers and the simulator's seeded per-variant draws fix their
outcomes, so every run decides the same:
- no true difference: `mlplat experiment ab` decides without promoting, champion unchanged;
- the challenger 25 % better: it decides `promote` with p < alpha, records the run in MLflow, and the
  challenger becomes champion through the promotion path (alias, slot, served version);
- `mlplat experiment bandit` puts >= 80 % of the traffic on the better variant within 10 rounds, and the
  local Prometheus scrapes its weights.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from contracts import local_platform
from ml.delivery.experiments.simulate import simulate
from ml.training.follow import Serving, promote

pytestmark = [pytest.mark.integration, pytest.mark.ml]

REPO = Path(__file__).resolve().parents[2]
MODEL = "fraud"


@pytest.fixture(scope="module")
def platform(experiments_platform) -> Any:
    p = dict(experiments_platform)
    assert p["up"].returncode == 0, p["up"].stdout[-3000:] + p["up"].stderr[-3000:]
    client = MlflowClient(tracking_uri=p["mlflow"], registry_uri=p["mlflow"])
    v1 = client.get_model_version_by_alias(MODEL, "champion")
    # A second registered version (the same artifact and gate results): the variants differ only in the
    # outcome rates the simulator gives them, which is what the statistics are tested on.
    v2 = client.create_model_version(MODEL, v1.source, run_id=v1.run_id, tags=dict(v1.tags))
    p.update(client=client, v1=str(v1.version), v2=str(v2.version),
             splitter=f"http://127.0.0.1:{p['ports']['splitter']}", feedback=f"http://127.0.0.1:{p['ports']['feedback']}")
    yield p
    if client.get_model_version_by_alias(MODEL, "champion").version != p["v1"]:
        promote(client, MODEL, p["v1"], Serving(Path(p["state"]) / local_platform.SLOTS_DIR, p["http"]))


def _cli(p: dict[str, Any], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mlplat", "experiment", *args], cwd=REPO, env=p["env"],
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _state(p: dict[str, Any]) -> dict[str, Any]:
    path = Path(p["state"]) / "experiments" / f"{MODEL}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _body(p: dict[str, Any]) -> dict[str, Any]:
    return json.loads((Path(p["state"]) / "summary.json").read_text())["smoke"][MODEL]["request"]


def _wait_split(p: dict[str, Any], proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Until the controller has set its first weights (the challenger server answers by then)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if _state(p).get("weights", {}).get("challenger", 0) > 0 and _state(p).get("status") == "running":
            return
        if proc.poll() is not None:
            pytest.fail(f"the controller exited early:\n{proc.stdout.read()}\n{proc.stderr.read()[-3000:]}")
        time.sleep(0.5)
    proc.kill()
    pytest.fail("the controller did not start splitting within 120 s")


def _ab(p: dict[str, Any], challenger: str, rates: dict[str, float], seed: int) -> dict[str, Any]:
    proc = _cli(p, "ab", MODEL, "--challenger", challenger, "--split", "50", "--min-samples", "1000",
                "--min-duration", "2s", "--interval", "1s", "--alpha", "0.01")
    started = time.perf_counter()
    _wait_split(p, proc)
    split_at = time.perf_counter()
    sim = simulate(p["splitter"], p["feedback"], MODEL, _body(p), rates, 2100, seed=seed, concurrency=4)
    print(f"split after {split_at - started:.1f}s, simulation {sim.seconds:.1f}s", file=sys.stderr)
    assert sim.failed == 0 and min(sim.served.values()) >= 1000, sim.as_dict()
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


def test_no_difference_is_not_promoted(platform):
    p = platform
    result = _ab(p, p["v2"], {"champion": 0.40, "challenger": 0.40}, seed=1)
    decision = result["decision"]
    assert decision["verdict"] in ("keep-champion", "inconclusive"), decision
    assert decision["test"]["p_value"] >= 0.01 and result["promotion"] is None
    assert p["client"].get_model_version_by_alias(MODEL, "champion").version == p["v1"]
    state = _state(p)
    assert state["status"] == "decided" and state["weights"] == {"champion": 100, "challenger": 0}


def test_a_true_uplift_is_promoted_and_recorded(platform):
    p = platform
    result = _ab(p, p["v2"], {"champion": 0.40, "challenger": 0.50}, seed=2)
    decision = result["decision"]
    assert decision["verdict"] == "promote", decision
    test = decision["test"]
    assert test["p_value"] < 0.01 and test["ci_low"] > 0.02 and test["uplift"] == pytest.approx(0.25, abs=0.1)
    assert result["promotion"]["promoted"] is True
    assert p["client"].get_model_version_by_alias(MODEL, "champion").version == p["v2"]
    run = p["client"].get_run(result["mlflow_run_id"])
    assert run.data.tags["mlplat.ab_test.verdict"] == "promote"
    assert (run.data.tags["mlplat.ab_test.champion_version"], run.data.tags["mlplat.ab_test.challenger_version"]) \
        == (p["v1"], p["v2"])
    assert run.data.metrics["p_value"] == pytest.approx(test["p_value"])
    status = subprocess.run([sys.executable, "-m", "mlplat", "experiment", "status", MODEL], cwd=REPO, env=p["env"],
                            text=True, capture_output=True, timeout=60, check=False)
    assert status.returncode == 0 and "decision: promote" in status.stdout, status.stderr


def test_the_bandit_moves_traffic_to_the_better_variant(platform):
    p = platform  # champion is now v2; the bandit's challenger is v1, and v1 gets the better click rate
    proc = _cli(p, "bandit", MODEL, "--challenger", p["v1"], "--interval", "1s", "--rounds", "10", "--seed", "3",
                "--floor", "0.05")
    _wait_split(p, proc)
    rounds = 0
    while proc.poll() is None:
        simulate(p["splitter"], p["feedback"], MODEL, _body(p), {"champion": 0.05, "challenger": 0.15}, 200,
                 seed=100 + rounds, concurrency=1, report="successes")
        rounds += 1
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    state = _state(p)
    assert state["rounds"] == 10 and state["status"] == "stopped"
    weights = [h["weights"]["challenger"] for h in state["history"]]
    assert max(weights) >= 80 and weights[-1] >= 80, weights
    assert state["posteriors"]["challenger"]["p_best"] > 0.9 and min(state["weights"].values()) >= 5
    # The controller served its gauges on the platform's `experiments` port while it ran; Prometheus kept them.
    # (The target is down now: last_over_time reads past the staleness marker its disappearance wrote.)
    selector = f'mlplat_experiment_traffic_weight{{model="{MODEL}",kind="bandit"}}'
    query = urllib.parse.urlencode({"query": f"last_over_time({selector}[5m])"})
    with urllib.request.urlopen(f"{p['prometheus']}/api/v1/query?{query}", timeout=10) as resp:
        series = {r["metric"]["variant"]: float(r["value"][1]) for r in json.loads(resp.read())["data"]["result"]}
    assert set(series) == {"champion", "challenger"} and sum(series.values()) == 100, series
