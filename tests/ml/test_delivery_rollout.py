"""The rollout controller on a recording splitter, a scripted analysis and a simulated clock (no process, no
sleeping): steps, a breach at the first step, a rule both versions break, missing traffic, an interruption;
the Prometheus analysis issues exactly the rollback rules' PromQL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from contracts import rollback
from ml.delivery.rollout import (
    Check,
    Controller,
    PrometheusAnalyzer,
    Rollout,
    StateStore,
    format_status,
    parse_duration,
    parse_steps,
)
from ml.delivery.splitter import CHALLENGER, CHAMPION

pytestmark = pytest.mark.ml


class RecordingSplitter:
    def __init__(self) -> None:
        self.history: list[dict[str, int]] = []
        self.current = {CHAMPION: 100, CHALLENGER: 0}

    def weights(self, model: str) -> dict[str, int]:
        return dict(self.current)

    def set_weights(self, model: str, weights: Mapping[str, int]) -> None:
        self.current = dict(weights)
        self.history.append(dict(weights))

    def mirror(self, model: str) -> tuple[str | None, int]:
        return None, 0

    def set_mirror(self, model: str, variant: str | None, percent: int) -> None:
        raise AssertionError("a rollout does not mirror")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


class ScriptedAnalysis:
    """20 requests per second in total, split by the current weights; `breaks(now, share)` says which rules
    the challenger (and the champion) break."""

    def __init__(self, clock: Clock, splitter: RecordingSplitter, breaks: Any = None) -> None:
        self.clock, self.splitter, self.breaks = clock, splitter, breaks or (lambda now, share: ({}, {}))
        self.counts = {"1": 0.0, "2": 0.0}
        self.last = clock()

    def _advance(self) -> None:
        dt, self.last = self.clock() - self.last, self.clock()
        self.counts["2"] += 20 * dt * self.splitter.current[CHALLENGER] / 100
        self.counts["1"] += 20 * dt * self.splitter.current[CHAMPION] / 100

    def requests(self, model: str, version: str) -> float:
        self._advance()
        return self.counts[version]

    def checks(self, model: str, champion: str, challenger: str) -> list[Check]:
        chall, champ = self.breaks(self.clock(), self.splitter.current[CHALLENGER])
        fors = {"error_rate": 2.0, "latency_p99": 6.0, "f1_drop": 12.0}
        return [Check(t.kind, t.name, t.kind, 0.0, 0.0, chall.get(t.kind, False), champ.get(t.kind, False),
                      fors[t.kind]) for t in rollback.TRIGGERS]


def _run(tmp_path, breaks=None, steps=(10, 50, 100), min_requests=5, fail=None):
    clock, sp = Clock(), RecordingSplitter()
    analysis = ScriptedAnalysis(clock, sp, breaks)
    if fail:
        analysis.checks = fail  # type: ignore[method-assign]
    promoted: list[tuple[str, str]] = []
    lines: list[str] = []
    ctl = Controller(sp, analysis, StateStore(tmp_path), lambda m, v: promoted.append((m, v)) or [f"champion -> v{v}"],
                     say=lines.append, poll_s=1.0, clock=clock, sleep=clock.sleep)
    r = ctl.run(Rollout("fraud", "2", "1", list(steps), interval_s=5.0, min_requests=min_requests))
    return r, sp, promoted, lines, StateStore(tmp_path)


def test_a_good_challenger_goes_through_every_step_and_becomes_champion(tmp_path):
    r, sp, promoted, lines, states = _run(tmp_path)
    assert r.phase == "promoted" and promoted == [("fraud", "2")]
    assert [w[CHALLENGER] for w in sp.history] == [10, 50, 100, 0]  # back to the champion's server, now v2
    assert [h.verdict for h in r.history] == ["passed", "passed", "passed"]
    assert all(h.ended - h.started >= 5.0 for h in r.history)
    assert states.load("fraud").phase == "promoted"  # what another process reads
    assert "promoted: champion -> v2" in lines[-1]


def test_a_breach_at_the_first_step_returns_all_traffic_to_the_champion(tmp_path):
    # Errors from the challenger's first seconds: the error rule holds for its 2 s and stops the rollout.
    r, sp, promoted, _, states = _run(tmp_path, breaks=lambda now, share: ({"error_rate": share > 0}, {}))
    assert r.phase == "stopped" and promoted == []
    assert [w[CHALLENGER] for w in sp.history] == [10, 0]
    assert len(r.history) == 1 and r.history[0].verdict == "breached"
    assert r.history[0].ended - r.history[0].started == pytest.approx(3.0)  # first seen at 1 s, held 2 s
    assert "error_rate" in r.reason and states.load("fraud").shares == {CHAMPION: 100, CHALLENGER: 0}
    assert "BREACHED" in format_status(states.load("fraud"))


def test_a_short_blip_shorter_than_the_rules_for_is_not_a_breach(tmp_path):
    r, *_ = _run(tmp_path, breaks=lambda now, share: ({"latency_p99": 1002 <= now < 1005}, {}))
    assert r.phase == "promoted"


def test_a_rule_both_versions_break_holds_the_step_and_then_aborts(tmp_path):
    r, sp, promoted, _, _ = _run(tmp_path, breaks=lambda now, share: ({"latency_p99": True}, {"latency_p99": True}))
    assert r.phase == "aborted" and promoted == [] and sp.current == {CHAMPION: 100, CHALLENGER: 0}
    assert "both versions break" in r.reason and r.history[0].ended - r.history[0].started == pytest.approx(15.0)


def test_a_step_without_enough_challenger_traffic_is_not_passed(tmp_path):
    r, sp, promoted, _, _ = _run(tmp_path, min_requests=10_000)
    assert r.phase == "aborted" and "< 10000" in r.reason and promoted == []
    assert sp.current == {CHAMPION: 100, CHALLENGER: 0}


def test_an_interrupted_rollout_leaves_the_champion_at_100(tmp_path):
    def fail(*_: object) -> list[Check]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, fail=fail)
    r = StateStore(tmp_path).load("fraud")
    assert r.phase == "failed" and r.shares == {CHAMPION: 100, CHALLENGER: 0}


def test_steps_and_durations_are_validated():
    assert parse_steps("10,50,100") == (10, 50, 100)
    assert parse_duration("2m") == 120 and parse_duration("500ms") == 0.5 and parse_duration("7") == 7
    for bad, why in (("50,10,100", "rise"), ("10,50", "end at 100"), ("10,x", "whole"), ("0,100", "rise")):
        with pytest.raises(ValueError, match=why):
            parse_steps(bad)
    with pytest.raises(ValueError, match=r"expected e\.g\. 30s"):
        parse_duration("soon")


def test_the_analysis_queries_the_rollback_rules_themselves():
    timing = rollback.Timing(rate_window="6s", error_for="2s", latency_for="6s", f1_window="10m", f1_for="12s",
                             interval="1s")
    asked: list[str] = []
    error_rule = rollback.TRIGGERS[0]
    answers = {rollback.expr(error_rule, "fraud", timing): [{"metric": {"version": "2"}, "value": [0, "0.1"]}],
               rollback.value_expr(error_rule, "fraud", timing): [
                   {"metric": {"version": "2"}, "value": [0, "0.1"]}, {"metric": {"version": "1"}, "value": [0, "0"]}]}

    def query(promql: str) -> list[dict[str, Any]]:
        asked.append(promql)
        return answers.get(promql, [])

    checks = PrometheusAnalyzer(query, timing).checks("fraud", "1", "2")
    assert {rollback.expr(t, "fraud", timing) for t in rollback.TRIGGERS} <= set(asked)
    error = next(c for c in checks if c.trigger == "error_rate")
    assert (error.challenger, error.champion, error.challenger_breaks, error.champion_breaks) == (0.1, 0.0, True, False)
    assert error.for_s == 2.0 and next(c for c in checks if c.trigger == "latency_p99").for_s == 6.0
