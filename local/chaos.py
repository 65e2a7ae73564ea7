"""`mlplat local chaos`: faults injected into the running local platform while every model takes load.

Steady load (the smoke requests of `local up`, paced per model) runs throughout; each fault is done,
watched, undone and watched again, and what was seen is counted from the load's own responses:

- redis     SIGKILL the online store: the models with online features (`ModelSpec.features`) must
            answer `degraded` (their fallbacks), with no 5xx and no failed request; restarted (same
            port, its append-only file restores the features), they must answer non-degraded again.
- mlflow    SIGKILL the tracking server: serving is unaffected (every request 200); restarted.
- mlserver  SIGKILL the model server and start it again at once: requests fail only inside the restart
            window (kill -> first answer per model), which is measured; no 5xx at all.
- slot      fill a model's slot (its folder in the MLServer repository) with a corrupt copy of its
            artifact and publish it (repository load): the publish reports the error, the old version
            keeps serving every request; the slot is then restored and published again.

Every restart goes through the same launcher and records as `local up`, so `local status`, `up` and
`down` keep working on what the faults left. Bounded: each wait has a deadline.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts import model_registry
from contracts.local_platform import SLOTS_DIR
from local import consistency, serving
from local.config import LocalConfig
from local.platform_status import status_rows
from local.services import launch
from local.smoke import is_degraded
from local.supervisor import Supervisor, group_members, same_program, wait_ports_free

FAULTS = ("redis", "mlflow", "mlserver", "slot")
KEEP_IN_CORRUPT_COPY = ("mlplat-model.json", "reference.json")  # metadata stays readable: the model is bad


class ChaosError(RuntimeError):
    """The platform is not in a state the fault run can start from."""


@dataclass
class Sample:
    t: float  # monotonic time the request was sent
    model: str
    status: int  # HTTP status; 0 = no answer (refused, reset, timeout)
    degraded: bool = False
    error: str = ""


class Load:
    """One thread per model sending its request `rate` times a second (paced), until stopped."""

    def __init__(self, host: str, port: int, requests: dict[str, dict[str, Any]], rate: float = 20.0,
                 timeout_s: float = 5.0) -> None:
        self.host, self.port, self.rate, self.timeout_s = host, port, rate, timeout_s
        self.bodies = {m: json.dumps(r).encode() for m, r in requests.items()}
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(m,), daemon=True) for m in self.bodies]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout_s + 2)

    def _run(self, model: str) -> None:
        conn: http.client.HTTPConnection | None = None
        next_at = time.monotonic()
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
                conn.request("POST", f"/v2/models/{model}/infer", self.bodies[model],
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                payload = response.read()
                sample = Sample(sent, model, response.status)
                if response.status == 200:
                    sample.degraded = is_degraded(json.loads(payload))
                else:
                    sample.error = payload[:200].decode(errors="replace")
            except (OSError, http.client.HTTPException, ValueError) as exc:
                sample = Sample(sent, model, 0, error=f"{type(exc).__name__}: {exc}"[:200])
                if conn is not None:
                    conn.close()
                conn = None
            self.samples.append(sample)
            next_at = max(next_at + 1 / self.rate, time.monotonic() - 1)
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def between(self, start: float, end: float | None = None) -> list[Sample]:
        return [s for s in list(self.samples) if s.t >= start and (end is None or s.t < end)]


def tally(samples: list[Sample]) -> dict[str, dict[str, int]]:
    """Per model: requests, ok (200), degraded (200 with fallback), 4xx, 5xx, failed (no answer)."""
    out: dict[str, dict[str, int]] = {}
    for s in samples:
        row = out.setdefault(s.model, {"requests": 0, "ok": 0, "degraded": 0, "4xx": 0, "5xx": 0, "failed": 0})
        row["requests"] += 1
        if s.status == 200:
            row["ok"] += 1
            row["degraded"] += s.degraded
        elif s.status >= 500:
            row["5xx"] += 1
        elif s.status >= 400:
            row["4xx"] += 1
        else:
            row["failed"] += 1
    return out


def fmt(counts: dict[str, dict[str, int]]) -> str:
    return "; ".join(f"{m}: {c['requests']} req, {c['ok']} ok ({c['degraded']} degraded), {c['4xx']} 4xx, "
                     f"{c['5xx']} 5xx, {c['failed']} failed" for m, c in sorted(counts.items()))


@dataclass
class Check:
    fault: str
    expectation: str
    observed: str
    ok: bool


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)


class Chaos:
    def __init__(self, cfg: LocalConfig, rate: float = 20.0, slot_model: str | None = None,
                 say: Callable[[str], None] = print) -> None:
        self.cfg, self.sup, self.rate = cfg, Supervisor(cfg.state_dir), rate
        self.slot_model = slot_model or cfg.models[0]
        self.t0 = time.monotonic()
        self._say = say
        self.report = Report()
        summary_path = cfg.state_dir / "summary.json"
        if not summary_path.is_file():
            raise ChaosError(f"no {summary_path}: start the platform first (`mlplat local up --redis`)")
        try:
            smoke = json.loads(summary_path.read_text()).get("smoke") or {}
        except (OSError, ValueError) as exc:
            raise ChaosError(f"{summary_path} is unreadable ({exc}): run `mlplat local up` again") from None
        self.requests = {m: d["request"] for m, d in smoke.items() if d.get("ok") and "request" in d}
        down = [n for n in ("mlflow", "mlserver") if not self._alive(n)]
        if down or not self.requests:
            raise ChaosError(f"the platform is not up ({', '.join(down) or 'no model answered'}): "
                             "`mlplat local status`, then `mlplat local up`")
        self.load = Load(cfg.host, cfg.ports["http"], self.requests, rate=rate)

    # ---- helpers --------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self._say(f"[{time.monotonic() - self.t0:6.1f}s] {text}")

    def check(self, fault: str, expectation: str, observed: str, ok: bool) -> None:
        self.report.checks.append(Check(fault, expectation, observed, ok))
        self._say(f"          {'ok  ' if ok else 'FAIL'} {expectation}: {observed}")

    def _alive(self, name: str) -> bool:
        rec = self.sup.get(name)
        return rec is not None and same_program(rec)

    def kill(self, name: str) -> float:
        rec = self.sup.get(name)
        if rec is None or not same_program(rec):
            raise ChaosError(f"{name} is not running")
        killed_at = time.monotonic()
        os.killpg(rec.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while group_members(rec.pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(rec.pid, os.WNOHANG)
            time.sleep(0.05)
        wait_ports_free(list(rec.ports.values()), timeout_s=10)
        self.say(f"killed {name} (pid {rec.pid}, SIGKILL to its process group)")
        return killed_at

    def restart(self, name: str, **launch_kw: Any) -> float:
        old = self.sup.get(name)
        started = time.monotonic()
        self.sup.forget(name)
        rec = launch(self.cfg, self.sup, name, info=old.info if old else None, url=old.url if old else "",
                     **launch_kw)
        self.say(f"restarted {name}: pid {rec.pid}, ready after {time.monotonic() - started:.1f}s")
        return time.monotonic()

    def wait_until(self, what: str, cond: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.2)
        self.say(f"gave up waiting after {timeout_s:.0f}s for {what}")
        return False

    def _seen(self, since: float, models: tuple[str, ...], pred: Callable[[Sample], bool], n: int) -> bool:
        """Each model's last `n` answers since `since` satisfy `pred`."""
        for m in models:
            recent = [s for s in self.load.between(since) if s.model == m][-n:]
            if len(recent) < n or not all(pred(s) for s in recent):
                return False
        return True

    # ---- the faults -----------------------------------------------------------------------------

    def redis(self) -> None:
        if self.sup.get("redis") is None:
            self.check("redis", "platform runs with --redis", "no redis-server was started by `up`", False)
            return
        online = tuple(s.name for s in model_registry.specs() if s.features is not None and s.name in self.requests)
        killed = self.kill("redis")
        self.wait_until("degraded answers", lambda: self._seen(killed, online, lambda s: s.degraded, 5), 20)
        time.sleep(1.0)
        back = self.restart("redis")
        outage = tally(self.load.between(killed, back))
        self.say(f"saw while Redis was down: {fmt(outage)}")
        recovered = self.wait_until("non-degraded answers", lambda: self._seen(
            back, online, lambda s: s.status == 200 and not s.degraded, 10), 20)
        recovery = [s for s in self.load.between(back) if s.model in online]
        first_ok = {m: next((s.t - back for s in recovery if s.model == m and s.status == 200 and not s.degraded),
                            None) for m in online}
        self.say(f"saw after Redis came back: {fmt(tally(self.load.between(back)))}")
        bad = sum(c["5xx"] + c["failed"] + c["4xx"] for c in outage.values())
        self.check("redis", "no failed request and no 5xx while Redis is down", f"{bad} failed/4xx/5xx", bad == 0)
        self.check("redis", f"{' and '.join(online)} answer degraded while Redis is down",
                   ", ".join(f"{m} {outage.get(m, {}).get('degraded', 0)} degraded" for m in online),
                   all(outage.get(m, {}).get("degraded", 0) > 0 for m in online))
        others = {m: c for m, c in outage.items() if m not in online}
        if others:
            self.check("redis", "models without online features are not degraded",
                       ", ".join(f"{m} {c['degraded']} degraded" for m, c in others.items()),
                       all(c["degraded"] == 0 for c in others.values()))
        self.check("redis", "non-degraded again once Redis is back",
                   ", ".join(f"{m} after {t:.1f}s" if t is not None else f"{m} never" for m, t in first_ok.items()),
                   recovered)
        self.report.figures["redis"] = {"outage": outage, "recovery_s": first_ok}

    def mlflow(self) -> None:
        killed = self.kill("mlflow")
        time.sleep(4.0)
        back = self.restart("mlflow")
        outage = tally(self.load.between(killed, back))
        self.say(f"saw while MLflow was down: {fmt(outage)}")
        bad = sum(c["requests"] - c["ok"] for c in outage.values())
        self.check("mlflow", "serving unaffected while MLflow is down (every request 200)",
                   f"{sum(c['requests'] for c in outage.values())} requests, {bad} not 200", bad == 0)
        self.report.figures["mlflow"] = {"outage": outage}

    def mlserver(self) -> None:
        killed = self.kill("mlserver")
        self.restart("mlserver", extra_env=serving.server_env(self.cfg))
        ready = time.monotonic()
        time.sleep(3.0)
        samples = self.load.between(killed)
        windows: dict[str, float | None] = {}
        outside: list[Sample] = []
        for m in self.requests:
            mine = [s for s in samples if s.model == m]
            first = next((s.t for s in mine if s.status == 200), None)
            windows[m] = None if first is None else first - killed
            outside += [s for s in mine if first is not None and s.t > first and s.status != 200]
        counts = tally(samples)
        window = max((w for w in windows.values() if w is not None), default=None)
        failed_inside = sum(1 for s in samples if s.status != 200) - len(outside)
        self.say(f"saw from the kill on: {fmt(counts)}")
        self.say("restart window (kill -> first answer): " + ", ".join(
            f"{m} {w:.1f}s" if w is not None else f"{m} never" for m, w in windows.items())
            + f"; server ready {ready - killed:.1f}s after the kill")
        self.check("mlserver", "every model answers again after the restart",
                   f"restart window {window:.1f}s" if window is not None else "no answer",
                   all(w is not None for w in windows.values()))
        self.check("mlserver", "requests fail only inside the restart window",
                   f"{failed_inside} failed inside, {len(outside)} outside", not outside)
        fivexx = sum(c["5xx"] for c in counts.values())
        self.check("mlserver", "no 5xx", f"{fivexx} 5xx", fivexx == 0)
        self.report.figures["mlserver"] = {"window_s": window, "per_model_s": windows,
                                           "failed_inside": failed_inside, "failed_outside": len(outside),
                                           "5xx": fivexx, "ready_s": ready - killed}

    def slot(self) -> None:
        model = self.slot_model
        settings_path = self.cfg.path("mlserver", model, "model-settings.json")
        original = settings_path.read_text()
        served_before = self._served_version(model)
        corrupt = self._corrupt_copy(model)
        started = time.monotonic()
        settings = json.loads(original)
        settings["parameters"]["uri"] = str(corrupt)
        settings_path.write_text(json.dumps(settings, indent=1))
        status, message = self._publish(model)
        self.say(f"published a corrupt artifact to the {model} slot ({corrupt}): {status} {message[:300]}")
        served_after = self._served_version(model)
        settings_path.write_text(original)
        restored, restored_message = self._publish(model)
        self.say(f"restored the {model} slot and published it again: {restored} {restored_message[:120]}")
        time.sleep(1.0)
        counts = tally([s for s in self.load.between(started) if s.model == model])
        self.say(f"saw during the corrupt publish: {fmt(counts)}")
        self.check("slot", "the publish reports the error", f"{status}: {message[:160]}",
                   status != 200 and "cannot be loaded" in message)
        c = counts.get(model, {})
        self.check("slot", f"the old {model} version keeps serving",
                   f"served v{served_before} before, v{served_after} after; {c.get('requests', 0)} requests, "
                   f"{c.get('requests', 0) - c.get('ok', 0)} not 200",
                   served_before == served_after and c.get("requests", 0) > 0 and c.get("ok") == c.get("requests"))
        self.check("slot", "the restored slot publishes again", f"{restored}", restored == 200)
        self.report.figures["slot"] = {"publish_status": status, "publish_error": message, "traffic": counts}

    def _served_version(self, model: str) -> str | None:
        """The version MLServer reports for `model` (model metadata)."""
        conn = http.client.HTTPConnection(self.cfg.host, self.cfg.ports["http"], timeout=10)
        try:
            conn.request("GET", f"/v2/models/{model}")
            doc = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        return (doc.get("versions") or [None])[0] or doc.get("version")

    def _publish(self, model: str) -> tuple[int, str]:
        """The local publish: MLServer (re)loads the slot (`POST /v2/repository/models/<model>/load`)."""
        conn = http.client.HTTPConnection(self.cfg.host, self.cfg.ports["http"], timeout=120)
        try:
            conn.request("POST", f"/v2/repository/models/{model}/load")
            response = conn.getresponse()
            body = response.read().decode(errors="replace")
        finally:
            conn.close()
        with contextlib.suppress(ValueError):
            body = json.loads(body).get("error") or body
        return response.status, body

    def _corrupt_copy(self, model: str) -> Path:
        """The served version's artifact with every model file overwritten by garbage of the same size."""
        import mlflow

        target = self.cfg.path("chaos", f"{model}-corrupt")
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        mlflow.set_tracking_uri(self.cfg.mlflow_url)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model}@champion",
                                                         dst_path=str(target)))
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            if path.name not in KEEP_IN_CORRUPT_COPY:
                size = max(path.stat().st_size, 16)
                path.write_bytes((b"\x00corrupt\xff" * (size // 10 + 1))[:size])
        return local

    # ---- the run --------------------------------------------------------------------------------

    def run(self, faults: tuple[str, ...] = FAULTS, baseline_s: float = 2.0) -> Report:
        unknown = [f for f in faults if f not in FAULTS]
        if unknown:
            raise ChaosError(f"unknown fault(s) {unknown}; expected some of {', '.join(FAULTS)}")
        self.say(f"steady load: {', '.join(self.requests)} at {self.rate:g} requests/s each "
                 f"on {self.cfg.url('http')}")
        with self.load:
            time.sleep(baseline_s)
            base = tally(self.load.between(self.t0))
            self.say(f"baseline: {fmt(base)}")
            bad = sum(c["requests"] - c["ok"] for c in base.values())
            self.check("baseline", "every model answers 200 before any fault", f"{bad} not 200", bad == 0)
            for fault in faults:
                self.say(f"--- fault: {fault}")
                try:
                    getattr(self, fault)()
                except Exception as exc:  # a fault that could not be carried out is a failed check
                    self.check(fault, "the fault runs to the end", f"{type(exc).__name__}: {exc}", False)
            time.sleep(1.0)

        rows = status_rows(self.cfg)
        self.check("after", "every service `up` started is up again",
                   ", ".join(f"{r['name']} {r['state']}" for r in rows), all(r["state"] == "up" for r in rows))
        agreed = consistency.check(self.cfg.mlflow_url, self.cfg.url("http"), self.cfg.path(SLOTS_DIR),
                                   tuple(self.requests))
        self.check("after", "registry alias, slot and served version agree for every model",
                   "; ".join(a.line() for a in agreed), all(a.ok for a in agreed))
        total = tally(self.load.samples)
        self.report.figures["total"] = total
        self.say(f"total: {fmt(total)}")
        return self.report


def summary(report: Report) -> str:
    width = max(len(c.expectation) for c in report.checks)
    lines = [f"{'fault':<9} {'expectation':<{width}}  result  observed"]
    lines += [f"{c.fault:<9} {c.expectation:<{width}}  {'ok' if c.ok else 'FAIL':<6}  {c.observed}"
              for c in report.checks]
    lines.append(f"\nchaos: {'all expectations held' if report.ok else 'SOME EXPECTATIONS FAILED'} "
                 f"({sum(c.ok for c in report.checks)}/{len(report.checks)})")
    return "\n".join(lines)
