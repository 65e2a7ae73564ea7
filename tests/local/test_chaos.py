"""Faults under load on the demo platform (`make demo`'s `mlplat local up --redis`), through the CLI a
user runs: `mlplat local chaos` (see local/chaos.py for what each fault does and expects), and
`mlplat local status` with a service that died.

Bounded: the chaos command has deadlines on every wait and the subprocess a timeout; the platform is
left with every service up (the command checks that itself, and so does the status test).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from local.supervisor import Supervisor, group_members

pytestmark = [pytest.mark.integration, pytest.mark.ml]


def test_faults_under_load(demo_up, run_mlplat, capsys, tmp_path):
    report_path = tmp_path / "chaos.json"
    started = time.perf_counter()
    out = run_mlplat(demo_up["env"], "local", "chaos", "--json", str(report_path), timeout=480)
    with capsys.disabled():  # the counts and the restart window belong in the suite's output
        print(f"\n$ mlplat local chaos  ({time.perf_counter() - started:.0f}s)\n{out.stdout}")
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    report = json.loads(report_path.read_text())
    checks = {(c["fault"], c["expectation"]): c for c in report["checks"]}
    assert all(c["ok"] for c in checks.values()), [c for c in checks.values() if not c["ok"]]
    assert {fault for fault, _ in checks} == {"baseline", "redis", "mlflow", "mlserver", "slot", "after"}
    figures = report["figures"]
    # Redis down: the two models with online features answered degraded, nobody failed.
    outage = figures["redis"]["outage"]
    assert outage["fraud"]["degraded"] > 0 and outage["recommendation"]["degraded"] > 0
    assert sum(c["5xx"] + c["failed"] + c["4xx"] for c in outage.values()) == 0
    assert all(t is not None for t in figures["redis"]["recovery_s"].values())
    # MLflow down: every request answered.
    assert all(c["ok"] == c["requests"] > 0 for c in figures["mlflow"]["outage"].values())
    # Model server killed and restarted: failures only inside the measured window, never a 5xx.
    server = figures["mlserver"]
    assert server["window_s"] is not None and server["failed_outside"] == 0 and server["5xx"] == 0
    # Corrupt slot: the publish said why, the old version kept answering.
    assert figures["slot"]["publish_status"] != 200 and "cannot be loaded" in figures["slot"]["publish_error"]
    assert sum(c["5xx"] for c in figures["total"].values()) == 0


def test_status_names_a_dead_service_with_its_log_and_fails(demo_up, run_mlplat):
    sup = Supervisor(demo_up["state"])
    victim = "prometheus" if sup.get("prometheus") else "redis"
    rec = sup.get(victim)
    assert rec is not None
    os.killpg(rec.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while group_members(rec.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        out = run_mlplat(demo_up["env"], "local", "status", timeout=120)
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"{victim} (pid {rec.pid}) is not running; last lines of {rec.log}:" in out.stdout
        assert "  | " in out.stdout.split(f"{victim} (pid {rec.pid})", 1)[1]  # the log tail follows
        assert f"DOWN: {victim}." in out.stdout
        doc = json.loads(run_mlplat(demo_up["env"], "local", "status", "--json", timeout=120).stdout)
        states = {s["name"]: s["state"] for s in doc["services"]}
        assert states[victim] == "dead" and doc["ok"] is False
        assert {s for s, v in states.items() if v != "up"} == {victim}  # every other service is reported up
        assert next(s for s in doc["services"] if s["name"] == victim)["log_tail"]
    finally:
        # `up` again (the demo's own command) restarts what is down and reuses the rest.
        again = subprocess.run(demo_up["argv"], cwd=demo_up["repo"], env=demo_up["env"], text=True, capture_output=True,
                               timeout=600, check=False)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    summary = json.loads((demo_up["state"] / "summary.json").read_text())
    assert summary["services"][victim] == "started"
    assert run_mlplat(demo_up["env"], "local", "status", timeout=120).returncode == 0
