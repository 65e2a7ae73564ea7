"""Runbook `model-rollback` end to end on the local platform: `fraud@champion` moves back to the
previous version and MLServer serves it, while a client keeps sending requests that all succeed; the
runbook finds the platform's non-default ports itself, and a repeated run after a cut-short one does not
move the alias again. Also: `local up` interrupted (Ctrl-C) on this platform and on a fresh one.

Real processes throughout: `mlplat local up` (MLflow, MLServer) with its own state directory and free
ports, a second registered version trained by `mlplat model train`, and the runbook run by the CLI.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from contracts import local_platform
from local.supervisor import Supervisor
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


def _interrupted_up(argv: list[str], env: dict[str, str], ready, what: str) -> subprocess.CompletedProcess[str]:
    """Start `local up`, wait until `ready()`, then Ctrl-C it (SIGINT, as a terminal sends) and wait for it."""
    # A suite started in the background (`cmd &` without job control) inherits SIGINT ignored, and Python then
    # keeps ignoring it: give the child the default disposition a terminal's Ctrl-C meets.
    proc = subprocess.Popen(argv, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for(lambda: ready() or proc.poll() is not None, what, timeout_s=180)
        assert proc.poll() is None, "`local up` ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def test_an_interrupted_up_is_half_started_and_the_next_up_completes(platform, run_mlplat, consistent):
    began = time.time()

    def starting() -> bool:
        found = local_platform.read(platform["state"])
        return found is not None and found.phase == "starting" and found.updated >= began

    cut = _interrupted_up(platform["argv"], platform["env"], starting, "`local up` recorded that it is starting")
    assert cut.returncode == 130, cut.stdout[-2000:] + cut.stderr[-2000:]
    assert "Traceback" not in cut.stderr and cut.stderr.count("interrupted") == 1, cut.stderr
    assert "mlplat local up: interrupted; it had started nothing yet" in cut.stderr  # it reused every service
    status = run_mlplat(platform["env"], "local", "status", timeout=120)
    assert status.returncode == 1 and "was interrupted: the platform is half-started" in status.stdout, status.stdout
    again = subprocess.run(platform["argv"], cwd=REPO, env=platform["env"], text=True, capture_output=True,
                           timeout=600, check=False)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    consistent(platform["env"], fraud="1")


def test_an_interrupted_fresh_up_stops_what_it_started(platform_env_for, run_mlplat, tmp_path):
    state = tmp_path / "fresh"
    env = platform_env_for(state)
    sup = Supervisor(state)
    argv = [str(REPO / ".venv" / "bin" / "mlplat"), "local", "up", "--models", "fraud", "--no-prometheus"]
    cut = _interrupted_up(argv, env, lambda: sup.get("mlflow") is not None, "MLflow started and recorded")
    assert cut.returncode == 130, cut.stdout[-2000:] + cut.stderr[-2000:]
    assert "Traceback" not in cut.stderr and "stopped what it had started (mlflow)" in cut.stderr, cut.stderr
    assert sup.records() == []
    _wait_for(lambda: not _processes_of(state), "no process of the interrupted `up` left", timeout_s=20)
    status = run_mlplat(env, "local", "status", timeout=120)
    assert status.returncode == 1 and "interrupted" in status.stdout, status.stdout


def _processes_of(state: Path) -> list[int]:
    """Live processes whose command line points into the state directory (services, pipeline runs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(state) in cmdline:
                found.append(int(entry.name))
    return found


def test_rollback_switches_the_served_version_without_failed_requests(platform, tmp_path, consistent,
                                                                       platform_env_without_ports):
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
    # No port variables: the runbook finds the platform's (non-default) ports from what `local up` recorded.
    rollback = _run("runbook", "run", "model-rollback", "--env", "local", "--execute", "--param", "model=fraud",
                    "--audit-log", str(audit), env=platform_env_without_ports(platform["env"]))
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
    assert f"using the local platform in {platform['state']} (MLflow {platform['mlflow']}, MLServer " \
           f"{platform['serving']})" in rollback.stderr
    consistent(platform["env"], fraud="1")


def test_a_repeated_rollback_does_not_move_the_alias_again(platform, run_mlplat, consistent, tmp_path):
    """A rollback whose serving step did not finish left the alias ahead of what serves: status names the
    mismatch and exits 1; running the runbook again only makes serving follow, it does not move the alias."""
    client = MlflowClient(tracking_uri=platform["mlflow"])
    client.set_registered_model_alias("fraud", "champion", "2")  # the alias moved, serving did not follow
    status = run_mlplat(platform["env"], "local", "status", timeout=120)
    assert status.returncode == 1, status.stdout
    assert "registry and serving disagree: fraud: champion alias v2, slot v1, served v1" in status.stdout
    again = _run("runbook", "run", "model-rollback", "--env", "local", "--execute", "--param", "model=fraud",
                 "--audit-log", str(tmp_path / "audit.jsonl"), env=platform["env"])
    assert again.returncode == 0, again.stdout + again.stderr
    assert "only serving follows" in again.stdout and "unchanged=already there" in again.stdout
    assert client.get_model_version_by_alias("fraud", "champion").version == "2"
    consistent(platform["env"], fraud="2")
