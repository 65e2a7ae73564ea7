"""Progressive delivery: the challenger's share moves step by step (default 10 → 50 → 100 %), each step
analysed against the champion with the automatic-rollback rules; a breach returns all traffic to the
champion, a challenger that passes every step becomes champion through the platform's promotion path.

The controller is independent of where it runs: a `Splitter` (HAProxy locally, the Seldon Experiment on the
cluster), an `Analyzer` (Prometheus: the same PromQL, thresholds and `for` durations as the rollback
alerts of contracts/rollback.py, one definition) and a `promote` callable (locally
ml/training/follow.py's `promote`; on the cluster the deploy-tree commit). Its state is a JSON file per
model, rewritten at every change, so `mlplat rollout status` works from another process.

Per step: the weights are set, then every `poll_s` the analysis runs. A rule counts as breached by the
challenger once it has held for the rule's `for` duration (the alert's own semantics) while the champion
meets it; a rule both versions break points at the machine, not the challenger, and holds the step. A step
passes once `interval_s` has elapsed and the challenger answered at least `min_requests`; a step that
cannot get there within three intervals (no traffic, or a held rule) ends the rollout with the champion at
100 % (`aborted`), as a breach does (`stopped`).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from contracts import rollback
from ml.delivery.splitter import CHALLENGER, CHAMPION, TOTAL, Splitter, split

DEFAULT_STEPS = (10, 50, 100)
PHASES = ("running", "stopped", "aborted", "promoted", "failed")


class RolloutError(RuntimeError):
    """A rollout that cannot start or continue (the message says why and what to do)."""


def parse_steps(raw: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(s) for s in raw.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--steps must be comma-separated whole percentages like 10,50,100, got {raw!r}") from None
    if not steps or any(not 0 < s <= TOTAL for s in steps) or list(steps) != sorted(set(steps)):
        raise ValueError(f"--steps must rise strictly within 1..100, got {raw!r}")
    if steps[-1] != TOTAL:
        raise ValueError(f"--steps must end at 100 (the challenger then becomes champion), got {raw!r}")
    return steps


def parse_duration(raw: str | float) -> float:
    """'30s', '2m', '1h', '500ms' or plain seconds -> seconds."""
    if isinstance(raw, int | float):
        seconds = float(raw)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", raw)
        if match is None:
            raise ValueError(f"duration {raw!r}: expected e.g. 30s, 2m, 1h")
        seconds = float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"duration {raw!r} must be positive")
    return seconds


@dataclass
class Check:
    """One rollback rule at one moment: both versions' values and whether the challenger breaches it."""

    trigger: str  # contracts/rollback.py Trigger.kind
    alert: str  # the alert of the same rule
    rule: str  # the threshold in words
    champion: float | None
    challenger: float | None
    challenger_breaks: bool  # the rule's condition holds for the challenger's version now
    champion_breaks: bool
    for_s: float  # how long the condition must hold (the alert's `for`)
    held_s: float = 0.0  # how long it has held for the challenger (while the champion met it)
    breached: bool = False


@dataclass
class StepRecord:
    share: int
    started: float
    ended: float | None = None
    challenger_requests: float = 0.0
    champion_requests: float = 0.0
    verdict: str = "running"  # running | passed | breached | aborted
    checks: list[Check] = field(default_factory=list)


@dataclass
class Rollout:
    model: str
    version: str
    champion_version: str
    steps: list[int]
    interval_s: float
    min_requests: int = 20
    phase: str = "running"
    step: int = -1
    shares: dict[str, int] = field(default_factory=lambda: {CHAMPION: TOTAL, CHALLENGER: 0})
    history: list[StepRecord] = field(default_factory=list)
    reason: str = ""
    promotion: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    pid: int = field(default_factory=os.getpid)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Rollout:
        history = [StepRecord(**{**h, "checks": [Check(**c) for c in h.get("checks", [])]})
                   for h in doc.get("history", [])]
        return cls(**{**doc, "history": history})


class StateStore:
    """`<dir>/<model>.json`, replaced atomically at every change."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, model: str) -> Path:
        return self.directory / f"{model}.json"

    def save(self, rollout: Rollout) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        rollout.updated = time.time()
        tmp = self.path(rollout.model).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(rollout), indent=1))
        tmp.replace(self.path(rollout.model))

    def load(self, model: str) -> Rollout | None:
        try:
            return Rollout.from_dict(json.loads(self.path(model).read_text()))
        except FileNotFoundError:
            return None


class Store(Protocol):
    """Where a rollout's state lives: `StateStore` locally, a ConfigMap on the cluster
    (ml/delivery/cluster_rollout.py)."""

    def save(self, rollout: Rollout) -> None: ...

    def load(self, model: str) -> Rollout | None: ...


class Analyzer(Protocol):
    def requests(self, model: str, version: str) -> float:
        """Requests the version has answered so far (a counter)."""
        ...

    def checks(self, model: str, champion: str, challenger: str) -> list[Check]:
        """Every rollback rule, evaluated now for both versions."""
        ...


def _seconds(duration: str) -> float:
    return parse_duration(duration)


RULE_TEXT = {"error_rate": f"error rate > {rollback.ERROR_RATE_MAX:.0%}",
             "latency_p99": f"p99 latency > {rollback.P99_MAX_SECONDS * 1000:.0f} ms",
             "f1_drop": f"F1 on labelled outcomes > {rollback.F1_DROP_MAX:.0%} below the best version"}


class PrometheusAnalyzer:
    """The rollback rules' PromQL (contracts/rollback.py) as instant queries against a Prometheus."""

    def __init__(self, query: Callable[[str], list[dict[str, Any]]], timing: rollback.Timing) -> None:
        self.query = query  # PromQL -> the `result` list of /api/v1/query (vector)
        self.timing = timing

    def _by_version(self, promql: str) -> dict[str, float]:
        out = {}
        for sample in self.query(promql):
            value = float(sample["value"][1])
            if value == value:  # NaN: no data in the window
                out[str(sample["metric"].get("version", ""))] = value
        return out

    def requests(self, model: str, version: str) -> float:
        found = self._by_version(f'sum by (version) ({rollback.REQUESTS}{{model="{model}",version="{version}"}})')
        return found.get(version, 0.0)

    def checks(self, model: str, champion: str, challenger: str) -> list[Check]:
        out = []
        fors = {"error_rate": self.timing.error_for, "latency_p99": self.timing.latency_for,
                "f1_drop": self.timing.f1_for}
        for trigger in rollback.TRIGGERS:
            values = self._by_version(rollback.value_expr(trigger, model, self.timing))
            breaking = self._by_version(rollback.expr(trigger, model, self.timing))
            out.append(Check(trigger.kind, trigger.name, RULE_TEXT[trigger.kind], values.get(champion),
                             values.get(challenger), challenger in breaking, champion in breaking,
                             _seconds(fors[trigger.kind])))
        return out


class Controller:
    def __init__(self, splitter: Splitter, analyzer: Analyzer, store: Store,
                 promote: Callable[[str, str], list[str]], say: Callable[[str], None] = print,
                 poll_s: float = 1.0, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.splitter, self.analyzer, self.store, self.promote = splitter, analyzer, store, promote
        self.say, self.poll_s, self.clock, self.sleep = say, poll_s, clock, sleep

    def _set(self, r: Rollout, share: int) -> None:
        self.splitter.set_weights(r.model, split(r.model, share))
        r.shares = split(r.model, share)

    def _end(self, r: Rollout, phase: str, reason: str) -> Rollout:
        self._set(r, 0)
        r.phase, r.reason = phase, reason
        self.store.save(r)
        self.say(f"{r.model}: {phase}: {reason}; {CHAMPION} v{r.champion_version} back at 100 %")
        return r

    def run(self, r: Rollout) -> Rollout:
        try:
            return self._run(r)
        except BaseException as exc:  # Ctrl-C or a failure: the champion takes all traffic again
            self._end(r, "failed", f"the rollout itself failed: {exc or type(exc).__name__}")
            raise

    def _run(self, r: Rollout) -> Rollout:
        self.store.save(r)
        for index, share in enumerate(r.steps):
            r.step = index
            rec = StepRecord(share, self.clock())
            r.history.append(rec)
            base = {v: self.analyzer.requests(r.model, v) for v in (r.version, r.champion_version)}
            self._set(r, share)
            self.store.save(r)
            self.say(f"{r.model}: step {index + 1}/{len(r.steps)}: {CHALLENGER} v{r.version} {share} %, "
                     f"{CHAMPION} v{r.champion_version} {TOTAL - share} %")
            since: dict[str, float] = {}
            while True:
                self.sleep(self.poll_s)
                now = self.clock()
                rec.checks = self.analyzer.checks(r.model, r.champion_version, r.version)
                rec.challenger_requests = self.analyzer.requests(r.model, r.version) - base[r.version]
                rec.champion_requests = self.analyzer.requests(r.model, r.champion_version) - base[r.champion_version]
                held = False
                for c in rec.checks:
                    if c.challenger_breaks and not c.champion_breaks:
                        since.setdefault(c.trigger, now)
                        c.held_s = now - since[c.trigger]
                        c.breached = c.held_s >= c.for_s
                    else:
                        since.pop(c.trigger, None)
                    held = held or (c.challenger_breaks and c.champion_breaks)
                breached = [c for c in rec.checks if c.breached]
                if breached:
                    rec.verdict, rec.ended = "breached", now
                    what = "; ".join(f"{c.rule} ({_fmt(c.trigger, c.challenger)} vs {CHAMPION} "
                                     f"{_fmt(c.trigger, c.champion)})" for c in breached)
                    return self._end(r, "stopped", f"step {index + 1} ({share} %): {CHALLENGER} v{r.version} "
                                                   f"breached {what}")
                elapsed = now - rec.started
                if elapsed >= r.interval_s and rec.challenger_requests >= r.min_requests and not held:
                    rec.verdict, rec.ended = "passed", now
                    self.store.save(r)
                    self.say(f"{r.model}: step {index + 1} passed: {rec.challenger_requests:.0f} {CHALLENGER} "
                             f"requests; " + ", ".join(f"{c.trigger} {_fmt(c.trigger, c.challenger)} vs "
                                                        f"{_fmt(c.trigger, c.champion)}" for c in rec.checks))
                    break
                if elapsed >= 3 * r.interval_s:
                    rec.verdict, rec.ended = "aborted", now
                    why = ("a rule both versions break did not clear" if held else
                           f"only {rec.challenger_requests:.0f} {CHALLENGER} requests (< {r.min_requests})")
                    return self._end(r, "aborted", f"step {index + 1} ({share} %) could not be judged: {why}")
                self.store.save(r)
        r.promotion = self.promote(r.model, r.version)
        # The champion's server now serves the new version: it takes the traffic back from the challenger's.
        self._set(r, 0)
        r.phase, r.reason = "promoted", f"every step passed; v{r.version} is {CHAMPION}"
        self.store.save(r)
        self.say(f"{r.model}: promoted: " + "; ".join(r.promotion))
        return r


def _fmt(trigger: str, value: float | None) -> str:
    if value is None:
        return "no data"
    if trigger == "error_rate":
        return f"{value:.1%}"
    if trigger == "latency_p99":
        return f"{value * 1000:.1f} ms"
    return f"{value:.3f}"


def format_status(r: Rollout, live: dict[str, int] | None = None) -> str:
    lines = [f"rollout of {r.model}: {CHALLENGER} v{r.version} against {CHAMPION} v{r.champion_version}",
             f"phase: {r.phase}" + (f" ({r.reason})" if r.reason else ""),
             f"steps: {', '.join(f'{s} %' for s in r.steps)}; step {r.step + 1} of {len(r.steps)}; "
             f"interval {r.interval_s:g} s",
             f"shares: {CHAMPION} {r.shares[CHAMPION]} %, {CHALLENGER} {r.shares[CHALLENGER]} %"
             + (f" (splitter now: {CHAMPION} {live[CHAMPION]} %, {CHALLENGER} {live[CHALLENGER]} %)" if live else "")]
    for i, rec in enumerate(r.history, 1):
        lines.append(f"step {i} ({rec.share} %): {rec.verdict}, {rec.challenger_requests:.0f} {CHALLENGER} / "
                     f"{rec.champion_requests:.0f} {CHAMPION} requests")
        for c in rec.checks:
            flag = "BREACHED" if c.breached else ("held" if c.challenger_breaks and c.champion_breaks else "ok")
            lines.append(f"    {c.trigger:<12} {CHALLENGER} {_fmt(c.trigger, c.challenger):>9}  {CHAMPION} "
                         f"{_fmt(c.trigger, c.champion):>9}  rule: {c.rule} for {c.for_s:g} s  {flag}")
    if r.promotion:
        lines.append("promotion: " + "; ".join(r.promotion))
    return "\n".join(lines)
