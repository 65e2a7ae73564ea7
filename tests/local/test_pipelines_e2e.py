"""The training pipelines on the local platform, end to end.

1. The demo platform (`make demo`'s own command, conftest `demo_up`) trained every registered model by
   running its compiled pipeline with kfp.local against real MLflow, Feast (Redis online store) and the
   local slots: every run succeeded with all eight steps, each champion is published to its slot and served.
2. A platform of its own (`mlplat local up --models <first> --redis`, Prometheus evaluating every second):
   - `mlplat pipeline run NAME --local` with a gate nobody can pass stops before publish: the version is
     registered as challenger, the champion and the slot keep the old version, serving too;
   - a real drift: requests whose inputs are far from the training data move the runtime's PSI gauge, the
     retrain rule of contracts/pipelines.py fires in the real Prometheus, which posts it to the retrain
     receiver, which runs the model's pipeline (trigger `drift`): the new version passes its gates, becomes
     champion, is published to the slot and served. Nobody intervenes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from contracts import model_registry
from contracts.pipelines import RETRAIN_ALERT, STEPS, TRIGGER_TAG
from ml.model_plugin import load_plugin
from ml.training.directory_bucket import LOCAL_BUCKET

pytestmark = [pytest.mark.integration, pytest.mark.ml]

REPO = Path(__file__).resolve().parents[2]
MODEL = model_registry.names()[0]  # a model with stored features (read through Feast) and a drift reference
BUDGET_S = 420  # drift -> a new champion served: alert (6 s), then one pipeline run on a loaded 2-core machine


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _marker(state: Path, model: str) -> dict:
    return json.loads((state / "model-slots" / LOCAL_BUCKET / model / "champion" / "PUBLISHED.json").read_text())


def _served(base: str, model: str) -> str:
    return _get(f"{base}/v2/models/{model}")["versions"][0]


def test_demo_trains_every_model_through_its_pipeline(demo_up):
    state = demo_up["state"]
    summary = demo_up["summary"]  # what the first `up` wrote (later tests run `up` again and reuse the models)
    client = MlflowClient(tracking_uri=demo_up["mlflow"])
    assert sorted(summary["pipelines"]) == sorted(model_registry.names())
    for name, run in summary["pipelines"].items():
        assert run["status"] == "SUCCEEDED", (name, run)
        assert [s[0] for s in run["steps"]] == list(STEPS)
        assert all(status == "ok" for _step, status, _seconds in run["steps"]), run["steps"]
        first = client.get_model_version(name, run["version"])
        assert run["published"] is True and first.tags[TRIGGER_TAG] == "manual"
        # The run recorded the exact data `prepare-data` read: its content hash as MLflow's dataset input.
        (data_input,) = client.get_run(first.run_id).inputs.dataset_inputs
        assert data_input.dataset.digest == first.tags["mlplat.data.md5"] and len(data_input.dataset.digest) == 32
        assert json.loads(data_input.dataset.source)["uri"] == first.tags["mlplat.data.uri"]
        assert Path(first.tags["mlplat.data.uri"]).is_dir()  # the generated sample's directory, as `up` passed it
        # Other tests of the session (chaos, fuzzing) shift the served inputs, and the platform's drift
        # receiver may have retrained and promoted a newer version since: the champion is the first `up`'s
        # version or such a retrain, and the local slot holds whichever it is.
        champion = client.get_model_version_by_alias(name, "champion")
        assert champion.version == run["version"] or (
            int(champion.version) > int(run["version"]) and champion.tags[TRIGGER_TAG] == "drift"), champion.tags
        assert _marker(state, name)["version"] == champion.version
    out = demo_up["up"].stdout
    for name in model_registry.names():
        assert f"{name}: pipeline {name}-training (kfp.local" in out
    assert out.count("publish        ok") == len(model_registry.names())


@pytest.fixture(scope="module")
def platform(retrain_platform):
    up = retrain_platform["up"]
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-3000:]
    return retrain_platform


def _run(*args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlplat", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


def test_a_failing_gate_stops_before_publish(platform, consistent):
    client = MlflowClient(tracking_uri=platform["mlflow"])
    before = client.get_model_version_by_alias(MODEL, "champion").version
    assert _marker(platform["state"], MODEL)["version"] == before
    floors = {metric: 1.01 for metric in model_registry.get(MODEL).sample_gates}  # no model reaches these
    run = _run("pipeline", "run", MODEL, "--local", "--gates", json.dumps(floors), env=platform["env"])
    assert run.returncode == 3, run.stdout[-3000:] + run.stderr[-3000:]  # completed, but nothing published
    assert "NOT PUBLISHED" in run.stdout and "SUCCEEDED" not in run.stdout, run.stdout
    lines = {line.split()[0]: line for line in run.stdout.splitlines() if line.startswith("  ") and line.split()}
    assert [s for s in STEPS if s in lines] == list(STEPS), run.stdout
    assert "FAIL" in lines["gate"] and "skipped" in lines["publish"], run.stdout
    new = max(int(v.version) for v in client.search_model_versions(f"name='{MODEL}'"))
    assert new > int(before)
    assert client.get_model_version(MODEL, str(new)).tags["gate.passed"] == "false"
    assert client.get_model_version_by_alias(MODEL, "challenger").version == str(new)
    assert client.get_model_version_by_alias(MODEL, "champion").version == before
    assert _marker(platform["state"], MODEL)["version"] == before  # the slot keeps the old version
    assert _served(platform["serving"], MODEL) == before
    consistent(platform["env"], **{MODEL: before})


def test_drift_starts_a_run_that_publishes_a_new_champion(platform, consistent):
    client = MlflowClient(tracking_uri=platform["mlflow"])
    before = client.get_model_version_by_alias(MODEL, "champion").version
    rules = _get(f"{platform['prometheus']}/api/v1/rules")
    assert RETRAIN_ALERT in {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
    # Requests far from the training data: every numeric input scaled up. The runtime's PSI gauge
    # (ml/data/drift.py) reports after 100 observations.
    bodies = load_plugin(MODEL).sample_requests(platform["state"] / "data" / "sample", Path("."), n=300, seed=3)
    started = time.time()
    for body in bodies:
        for tensor in body["inputs"]:
            if tensor["datatype"].startswith("FP"):
                tensor["data"] = [v * 40 + 5000 for v in tensor["data"]]
        req = urllib.request.Request(f"{platform['serving']}/v2/models/{MODEL}/infer", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200
    deadline = time.time() + BUDGET_S
    decisions: list = []
    while time.time() < deadline:
        decisions = _get(f"{platform['retrain']}/decisions")
        if any(d.get("decision") in ("run finished", "run failed") for d in decisions):
            break
        time.sleep(2)
    done = [d for d in decisions if d.get("decision") in ("run finished", "run failed")]
    assert done and done[0]["decision"] == "run finished", decisions
    assert done[0]["alert"] == RETRAIN_ALERT and done[0]["model"] == MODEL
    report = done[0]["run"]
    assert report["status"] == "SUCCEEDED" and report["published"] is True
    version = report["version"]
    assert int(version) > int(before)
    mv = client.get_model_version(MODEL, version)
    assert mv.tags[TRIGGER_TAG] == "drift"
    assert client.get_model_version_by_alias(MODEL, "champion").version == version
    assert _marker(platform["state"], MODEL)["version"] == version
    assert _marker(platform["state"], MODEL)["actor"] == "pipeline/drift"
    assert _served(platform["serving"], MODEL) == version
    consistent(platform["env"], **{MODEL: version})
    print(f"\ndrift requests -> alert at the receiver {done[0]['received'] - started:.1f}s; pipeline run "
          f"{report['seconds']:.1f}s; drift -> v{version} served {done[0]['finished'] - started:.1f}s")
