"""End to end: the demo path, `make demo`'s own command (`.venv/bin/mlplat local up --redis`, read from
the Makefile by tests/local/conftest.py) on generated sample data: every model answers over HTTP with
its online features from the local Redis (nothing degraded), registry aliases, status, a second `up`
that reuses everything. `mlplat local down` runs at the end of the session (conftest), whose teardown
fails if a process, a process-group member or a port is left behind.

Runs the real CLI in a subprocess as a user would, with its own state directory and free ports given
through the environment, so it never touches a developer's running `.local/` platform.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from contracts import model_registry
from local.supervisor import Supervisor

pytestmark = [pytest.mark.integration, pytest.mark.ml]

MODELS = tuple(model_registry.names())


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


@pytest.fixture(scope="module")
def platform(demo_up):
    return demo_up


def test_demo_command_is_the_makefiles(platform):
    assert platform["argv"] == [".venv/bin/mlplat", "local", "up", "--redis"]


def test_up_succeeds_and_serves_every_model(platform):
    up = platform["up"]
    assert "mlplat local platform is up" in up.stdout and "Total time:" in up.stdout
    assert {"redis", "mlflow", "mlserver"} <= set(platform["pids"])
    summary = json.loads((platform["state"] / "summary.json").read_text())
    assert summary["ok"] is True
    assert summary["feast"]["online_store"] == "redis" and summary["feast"]["check"].startswith("online read-back ok")
    for name in MODELS:
        assert summary["smoke"][name]["ok"], summary["smoke"][name]
        # The demo's point: the full online path, no fallback answer.
        assert summary["smoke"][name]["degraded"] is False, summary["smoke"][name]
    # With Redis the recommendation request carries only a user id: the history comes from the store.
    assert [i["name"] for i in summary["smoke"]["recommendation"]["request"]["inputs"]] == ["user_id"]
    print(f"\nlocal up --redis took {platform['seconds']:.1f}s")


def test_one_prediction_per_model_over_http(platform):
    summary = json.loads((platform["state"] / "summary.json").read_text())
    base = f"http://127.0.0.1:{platform['ports']['http']}"
    for name in MODELS:
        status, doc = _post(f"{base}/v2/models/{name}/infer", summary["smoke"][name]["request"])
        assert status == 200 and doc["model_name"] == name
        assert doc["outputs"] and all(o["data"] for o in doc["outputs"])
        assert not (doc.get("parameters") or {}).get("degraded"), doc
    with urllib.request.urlopen(f"http://127.0.0.1:{platform['ports']['metrics']}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    assert "mlplat_model_prediction" in metrics  # the runtimes' own metrics are exported


def test_champion_aliases_in_mlflow(platform):
    from mlflow import MlflowClient

    url = f"http://127.0.0.1:{platform['ports']['mlflow']}"
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    summary = json.loads((platform["state"] / "summary.json").read_text())
    for name in MODELS:
        model = client.get_registered_model(name)
        assert "champion" in model.aliases, f"{name} has no champion: {summary['models']}"
        served = next(m for m in summary["models"] if m["name"] == name)
        assert served["alias"] == "champion" and model.aliases["champion"] == served["version"]
        assert client.get_model_version(name, served["version"]).tags["gate.passed"] == "true"


def test_status_reports_healthy_services(platform, run_mlplat, consistent):
    out = run_mlplat(platform["env"], "local", "status", "--json", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert {s["name"] for s in doc["services"]} == {r.name for r in Supervisor(platform["state"]).records()}
    assert {"redis", "mlflow", "mlserver"} <= {s["name"] for s in doc["services"]}
    assert doc["ok"] is True and all(s["state"] == "up" for s in doc["services"])
    consistent(platform["env"])  # every model: registry alias = champion slot = what MLServer serves


def test_second_up_reuses_what_is_healthy(platform):
    before = {r.name: r.pid for r in Supervisor(platform["state"]).records()}
    again = subprocess.run(platform["argv"], cwd=platform["repo"], env=platform["env"], text=True,
                           capture_output=True, timeout=600, check=False)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    summary = json.loads((platform["state"] / "summary.json").read_text())
    assert set(summary["services"].values()) == {"reused"}
    assert not any(m["trained"] for m in summary["models"])
    assert {r.name: r.pid for r in Supervisor(platform["state"]).records()} == before


def readme_lifecycle_commands() -> list[str]:
    """The commands of the README's "model lifecycle on the running platform" block, comments dropped."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("### The model lifecycle on the running platform", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def _wait_for_retrain_idle(platform: dict, timeout_s: float = 300) -> None:
    """Until the drift-retrain receiver (when the platform runs one) has no pipeline run in flight."""
    if not (platform["state"] / "run" / "retrain.json").is_file():
        return
    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(f"{platform['retrain']}/decisions", timeout=10) as resp:
            running = [d for d in json.loads(resp.read()) if d.get("decision") == "running"]
        if not running:
            return
        assert time.monotonic() < deadline, f"a drift retrain still runs after {timeout_s:.0f} s: {running}"
        time.sleep(1)


def test_readme_model_commands_run_verbatim_after_make_demo(platform, consistent, platform_env_without_ports):
    """The README's model commands, verbatim, on the demo platform: only MLPLAT_LOCAL_DIR tells them where it
    is (no port variables), and after each one the registry, the slot and the server agree."""
    commands = readme_lifecycle_commands()
    assert len(commands) >= 4 and all(c.startswith(".venv/bin/mlplat ") for c in commands)
    env = platform_env_without_ports(platform["env"])
    client = MlflowClient(tracking_uri=platform["mlflow"])
    # The session's other tests (chaos, fuzzing) send inputs far from the training data, so the demo's drift
    # receiver may retrain fraud at any time: it is paused (its pause file) and any run in flight finishes
    # first, so that only the README's commands change what serves here.
    pause = platform["state"] / "retrain.paused"
    pause.touch()
    try:
        _wait_for_retrain_idle(platform)
        first = client.get_model_version_by_alias("fraud", "champion").version
        outputs = []
        for command in commands:
            out = subprocess.run(["bash", "-c", command], cwd=platform["repo"], env=env, text=True,
                                 capture_output=True, timeout=600, check=False)
            assert out.returncode == 0, f"{command}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
            outputs.append(out)
            consistent(platform["env"], fraud=client.get_model_version_by_alias("fraud", "champion").version)
    finally:
        pause.unlink(missing_ok=True)
    train, card = outputs[0], outputs[1]
    assert f"using the local platform in {platform['state']} (MLflow {platform['mlflow']}" in train.stderr
    doc = json.loads(train.stdout)
    new = doc["registry"]["version"]
    assert int(new) > int(first) and doc["registry"]["aliases"] == ["challenger", "champion"]
    assert doc["registry"]["tracking_uri"] == platform["mlflow"]  # through the server: mlflow-artifacts:/
    assert client.get_model_version("fraud", new).source.startswith("mlflow-artifacts:/")
    assert f"v{new}" in card.stdout and "has no model card" not in card.stdout + card.stderr
    assert "registry and serving disagree" not in outputs[2].stdout
    # The rollback returned to the version served before, so the modules after this one see the demo as it was.
    assert client.get_model_version_by_alias("fraud", "champion").version == first
    # The version the demo's pipeline trained has its card too, read through the platform's MLflow server.
    piped = subprocess.run([str(platform["repo"] / ".venv" / "bin" / "mlplat"), "model", "card", "fraud", "--version",
                            first], cwd=platform["repo"], env=env, text=True, capture_output=True, timeout=300,
                           check=False)
    assert piped.returncode == 0 and f"# Model card: fraud v{first}" in piped.stdout, piped.stderr[-2000:]
