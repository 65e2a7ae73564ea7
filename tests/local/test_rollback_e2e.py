"""Runbook `model-rollback` end to end on the local platform: `fraud@champion` moves back to the
previous version and MLServer serves it, while a client keeps sending requests that all succeed.

Real processes throughout: `mlplat local up` (MLflow, MLServer) with its own state directory and free
ports, a second registered version trained by `mlplat model train`, and the runbook run by the CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ml.model_plugin import load_plugin

pytestmark = [pytest.mark.integration, pytest.mark.ml]

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlplat", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


def _served_version(base: str) -> str:
    with urllib.request.urlopen(f"{base}/v2/models/fraud", timeout=10) as resp:
        return json.loads(resp.read())["versions"][0]


@pytest.fixture(scope="module")
def platform(manual_platform):
    up = manual_platform["up"]
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    return manual_platform


def _wait_for(condition, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(0.05)


def test_rollback_switches_the_served_version_without_failed_requests(platform, tmp_path):
    client = MlflowClient(tracking_uri=platform["mlflow"])
    assert client.get_model_version_by_alias("fraud", "champion").version == "1"
    assert _served_version(platform["serving"]) == "1"

    # A second version, promoted and served: the state a rollback starts from.
    data = platform["state"] / "data" / "sample"
    trained = _run("model", "train", "fraud", "--data", str(data), "--tracking-uri", platform["mlflow"],
                   env=platform["env"])
    assert trained.returncode == 0, trained.stderr[-3000:]
    client.set_registered_model_alias("fraud", "champion", "2")
    reload = urllib.request.Request(f"{platform['serving']}/v2/repository/models/fraud/load", method="POST")
    with urllib.request.urlopen(reload, timeout=120) as resp:
        assert resp.status == 200
    assert _served_version(platform["serving"]) == "2"

    bodies = load_plugin("fraud").sample_requests(data, Path("."), n=20)
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        i = 0
        while not stop.is_set():
            req = urllib.request.Request(f"{platform['serving']}/v2/models/fraud/infer",
                                         data=json.dumps(bodies[i % len(bodies)]).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    results.append((resp.status, json.loads(resp.read()).get("model_version")))
            except urllib.error.HTTPError as exc:
                results.append((exc.code, exc.read().decode(errors="replace")[:300]))
            except OSError as exc:  # refused or reset connections count as failures too
                results.append((0, str(exc)))
            i += 1

    sender = threading.Thread(target=load, daemon=True)
    sender.start()
    # Requests are flowing (answered by version 2) before the rollback starts ...
    _wait_for(lambda: sum(v == "2" for _s, v in list(results)) >= 5, "5 answers from version 2")
    audit = tmp_path / "audit.jsonl"
    rollback = _run("runbook", "run", "model-rollback", "--env", "local", "--execute", "--param", "model=fraud",
                    "--audit-log", str(audit), env=platform["env"])
    # ... and go on being answered, now by version 1, after it.
    after = len(results)
    _wait_for(lambda: sum(v == "1" for _s, v in list(results)[after:]) >= 5, "5 answers from version 1 after it")
    stop.set()
    sender.join(timeout=60)

    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    assert client.get_model_version_by_alias("fraud", "champion").version == "1"
    assert _served_version(platform["serving"]) == "1"
    failures = [r for r in results if r[0] != 200]
    assert results and failures == []
    versions = [v for _status, v in results]
    assert versions[0] == "2" and versions[-1] == "1"  # the switch happened while requests kept flowing
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [e["step"] for e in entries] == ["move the champion alias back", "make serving follow the alias"]
    assert all(e["result"] == "ok" for e in entries)
