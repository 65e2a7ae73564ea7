"""`mlplat local status`: what runs now, read from the running services, never from files written at `up`.

Per service: its record (`<state>/run/<name>.json`), whether the recorded process still runs and answers
its health check, the log tail when it does not. Per platform: the phase `up` recorded
(contracts/local_platform.py), so a half-started platform (an interrupted or failed `up`) is reported.
Per model: the registry alias, the champion slot and the version MLServer serves (local/consistency.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contracts import local_platform
from local import consistency
from local.config import LocalConfig
from local.report import table
from local.services import ORDER, healthy
from local.supervisor import Supervisor, same_program

LOG_TAIL_LINES = 12


def log_tail(path: str | Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 64 * 1024))  # a long log: read its end only
            return f.read().decode(errors="replace").splitlines()[-lines:]
    except OSError as exc:
        return [f"(no log: {exc})"]


def status_rows(cfg: LocalConfig) -> list[dict[str, Any]]:
    """Every service `up` started (its record), running or not: state `up`, `unhealthy` (running, not
    answering its health check) or `dead` (the recorded process is gone); the log tail when not up.
    Read-only: a dead service's record stays until the next `up` or `down`."""
    sup = Supervisor(cfg.state_dir)
    rows = []
    names = [*ORDER, *(r.name for r in sup.records() if r.name not in ORDER)]
    for name in names:
        rec = sup.get(name)
        if rec is None:
            continue
        alive = same_program(rec)
        ok = alive and healthy(cfg, rec)
        state = "up" if ok else ("unhealthy" if alive else "dead")
        rows.append({"name": name, "pid": rec.pid, "ports": rec.ports, "url": rec.url, "log": rec.log,
                     "healthy": ok, "state": state, "log_tail": [] if ok else log_tail(rec.log)})
    return rows


PHASE_PROBLEM = {
    "starting": "the last `mlplat local up` has not finished (it is still running, or was killed)",
    "interrupted": "the last `mlplat local up` was interrupted: the platform is half-started",
    "failed": "the last `mlplat local up` failed: the platform is half-started",
    "down": "the platform was stopped (`mlplat local down`)",
}


def live_state(cfg: LocalConfig) -> dict[str, Any]:
    """What runs now, from the running services: each service's health, the phase `up` recorded, services
    `up` meant to start that are missing, and per model the registry alias, slot and served version."""
    rows = status_rows(cfg)
    record = local_platform.read(cfg.state_dir)
    names = {r["name"] for r in rows}
    problems = []
    if record is not None and record.phase != "up":
        problems.append(PHASE_PROBLEM.get(record.phase, f"phase {record.phase}"))
    missing = [s for s in (record.services if record else ()) if s not in names]
    if missing and (record is None or record.phase != "down"):
        problems.append(f"not started: {', '.join(missing)}")
    down_ = [r["name"] for r in rows if r["state"] != "up"]
    if down_:
        problems.append(f"down: {', '.join(down_)}")
    models: list[consistency.Agreement] = []
    up_names = {r["name"] for r in rows if r["state"] == "up"}
    if record is not None and {"mlflow", "mlserver"} <= up_names:
        models = consistency.check(record.tracking_uri, record.serving_url, record.slot_dir, record.models)
        problems += [f"registry and serving disagree: {m.line()}" for m in models if not m.ok]
    ok = bool(rows) and not problems
    return {"ok": ok, "phase": record.phase if record else None, "services": rows, "missing": missing,
            "models": models, "problems": problems}


def status(cfg: LocalConfig, as_json: bool = False) -> int:
    """Exit 0 when every service `up` started is up, that `up` finished and every model's registry alias,
    slot and served version agree; 1 otherwise (also when nothing is recorded)."""
    state = live_state(cfg)
    rows = state["services"]
    if as_json:
        print(json.dumps({**state, "models": [m.as_dict() for m in state["models"]]}, indent=1, default=str))
        return 0 if state["ok"] else 1
    if not rows:
        print(f"nothing is running (state in {cfg.state_dir}); start with `mlplat local up`")
        for problem in state["problems"]:
            print(f"  {problem}")
        return 1
    print(table([[r["name"], str(r["pid"]), ",".join(str(v) for v in r["ports"].values()),
                  r["state"] if r["state"] == "up" else r["state"].upper(), r["url"], r["log"]] for r in rows],
                ["service", "pid", "ports", "state", "url", "log"]))
    for r in rows:
        if r["state"] != "up":
            what = "is not running" if r["state"] == "dead" else "runs but does not answer its health check"
            print(f"\n{r['name']} (pid {r['pid']}) {what}; last lines of {r['log']}:")
            print("\n".join(f"  | {line}" for line in r["log_tail"]) or "  | (empty)")
    if state["models"]:
        def v(x: str | None) -> str:
            return f"v{x}" if x else "-"

        print("\nmodels (live: registry alias, champion slot, what MLServer serves):")
        print(table([[m.model, m.alias or "-", v(m.alias_version), v(m.slot_version), v(m.served_version),
                      m.server_state or "-", "ok" if m.ok else "MISMATCH"] for m in state["models"]],
                    ["model", "alias", "registry", "slot", "served", "server", "agree"]))
    if not state["ok"]:
        print("\nPROBLEMS:")
        for problem in state["problems"]:
            print(f"  {problem}")
        if any(not m.ok for m in state["models"]):
            print("  the command that changed the model said how to recover; `mlplat model approve NAME VERSION ...` "
                  "and `mlplat runbook run model-rollback --env local --execute --param model=NAME` are safe to "
                  "repeat and make the slot and the server follow the alias")
        down_ = [r["name"] for r in rows if r["state"] != "up"]
        if down_:
            print(f"\nDOWN: {', '.join(down_)}. `mlplat local up` (same flags) restarts what is down.")
        elif state["missing"] or state["phase"] not in ("up", None):
            print("\n`mlplat local up` (same flags) starts what is missing; `mlplat local down` stops everything.")
    return 0 if state["ok"] else 1
