"""The experiment controllers (ml/delivery/experiments/controller.py) on a fake splitter, seeded simulated
outcomes and a fake clock: the A/B test reaches the right decision and promotes only then; the bandit
moves traffic; both persist their state for `status` and export it as Prometheus metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest

from ml.delivery.experiments import controller as ctl
from ml.delivery.experiments.exporter import ExperimentMetrics
from ml.delivery.experiments.state import ExperimentNotFound, load
from ml.delivery.experiments.stats import Plan, Verdict


@dataclass
class Counts:
    served: int = 0
    outcomes: int = 0
    successes: int = 0


class World:
    """A splitter whose traffic earns outcomes at known true rates: every tick of the clock routes
    `per_tick` requests by the current weights and labels each one."""

    def __init__(self, rates: dict[str, float], per_tick: int = 500, seed: int = 0, clicks_only: bool = False):
        self.rates, self.per_tick, self.clicks_only = rates, per_tick, clicks_only
        self.rng = np.random.default_rng(seed)
        self.current = {"champion": 100, "challenger": 0}
        self.counts = {v: Counts() for v in rates}
        self.now = 1000.0
        self.set_calls: list[dict[str, int]] = []

    def weights(self, model: str) -> dict[str, int]:
        return dict(self.current)

    def set_weights(self, model: str, weights) -> None:
        self.current = dict(weights)
        self.set_calls.append(dict(weights))

    def outcomes(self, model: str, since: float, *, until: float | None = None) -> dict[str, Counts]:
        assert until is None  # no attribution window in these runs: every request counts at once
        return self.counts

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        names = list(self.current)
        routed = self.rng.multinomial(self.per_tick, [self.current[v] / 100 for v in names])
        for name, n in zip(names, routed, strict=True):
            c = self.counts[name]
            clicks = int(self.rng.binomial(n, self.rates[name]))
            c.served += int(n)
            c.successes += clicks
            c.outcomes += clicks if self.clicks_only else int(n)


def ab(world: World, tmp_path, plan: Plan, promoted: list[str], recorded: list[str]) -> ctl.ABTest:
    settings = ctl.ABSettings(split=50, plan=plan, interval_s=60)
    return ctl.ABTest.new("recommendation", "1", "2", "success-rate", settings, ctl.controller_info(None, "fake"),
                          clock=world.clock, splitter=world, outcomes=world.outcomes, state_dir=tmp_path,
                          record=lambda state: recorded.append(state.decision["verdict"]) or "run-1",
                          promote=lambda version: promoted.append(version) or {"champion": version},
                          metrics=ExperimentMetrics(), sleep=world.sleep)


def test_a_true_uplift_is_promoted_through_the_promotion_path(tmp_path):
    world = World({"champion": 0.30, "challenger": 0.345}, seed=11)  # 15 % better
    promoted, recorded = [], []
    test = ab(world, tmp_path, Plan(min_samples=3000, min_duration_s=1800), promoted, recorded)
    decision = test.run()
    assert decision.verdict is Verdict.PROMOTE, decision.reason
    assert decision.test.p_value < 0.05 and decision.test.ci_low > 0
    assert promoted == ["2"] and recorded == ["promote"]
    assert world.set_calls[0] == {"champion": 50, "challenger": 50} and world.current == {"champion": 100,
                                                                                           "challenger": 0}
    assert world.now - 1000.0 >= 1800  # not before the minimum duration
    state = load(tmp_path, "recommendation")  # as `status` in another process reads it
    assert state.status == "decided" and state.mlflow_run_id == "run-1" and state.promotion == {"champion": "2"}
    assert state.counts["challenger"]["trials"] >= 3000 and state.decision["test"]["p_value"] < 0.05
    text = generate_latest(test.metrics.registry).decode()
    assert 'mlplat_experiment_ab_p_value{model="recommendation"}' in text
    assert 'mlplat_experiment_traffic_weight{kind="ab",model="recommendation",variant="champion"} 100.0' in text


def test_no_difference_is_not_promoted(tmp_path):
    world = World({"champion": 0.30, "challenger": 0.30}, seed=12)
    promoted, recorded = [], []
    decision = ab(world, tmp_path, Plan(min_samples=3000, min_duration_s=600), promoted, recorded).run()
    assert decision.verdict in (Verdict.KEEP_CHAMPION, Verdict.INCONCLUSIVE), decision.reason
    assert promoted == [] and recorded == [str(decision.verdict)]
    assert world.current == {"champion": 100, "challenger": 0}


def test_interim_looks_act_on_nothing(tmp_path):
    world = World({"champion": 0.10, "challenger": 0.60}, seed=13)  # a huge uplift, visible at once
    promoted: list[str] = []
    test = ab(world, tmp_path, Plan(min_samples=100, min_duration_s=3600), promoted, [])
    test.start()
    world.sleep(60)
    decision = test.step()
    assert decision.verdict is Verdict.RUNNING and decision.test.p_value < 1e-6
    assert promoted == [] and load(tmp_path, "recommendation").status == "running"


def test_the_bandit_moves_traffic_to_the_better_variant_and_exports_it(tmp_path):
    world = World({"champion": 0.10, "challenger": 0.15}, per_tick=300, seed=14, clicks_only=True)
    world.current = {"champion": 50, "challenger": 50}
    settings = ctl.BanditSettings(floor=0.05, interval_s=10, rounds=12, seed=1)
    run = ctl.Bandit.new("recommendation", {"champion": "1", "challenger": "2"}, "ctr", settings,
                         ctl.controller_info("http://127.0.0.1:1/metrics", "fake"), clock=world.clock,
                         splitter=world, outcomes=world.outcomes, state_dir=tmp_path, metrics=ExperimentMetrics(),
                         sleep=world.sleep)
    state = run.run()
    assert state.rounds == 12 and state.status == "stopped"
    assert world.current["challenger"] >= 80 and world.current["champion"] >= 5, world.set_calls
    saved = load(tmp_path, "recommendation")
    assert saved.posteriors["challenger"]["p_best"] > 0.9 and saved.weights == world.current
    assert saved.posteriors["champion"]["alpha"] == 1 + world.counts["champion"].successes
    text = generate_latest(run.metrics.registry).decode()
    assert 'mlplat_experiment_posterior_alpha{kind="bandit",model="recommendation",variant="challenger"}' in text
    assert "mlplat_experiment_probability_best" in text


def test_arm_counts_of_each_metric_and_bad_input():
    found = {"champion": Counts(served=100, outcomes=10, successes=7)}
    assert ctl.arm_counts(found, ["champion", "challenger"], "success-rate")["champion"].trials == 10
    ctr = ctl.arm_counts(found, ["champion", "challenger"], "ctr")
    assert (ctr["champion"].successes, ctr["champion"].trials, ctr["challenger"].trials) == (7, 100, 0)
    with pytest.raises(ctl.ExperimentError, match="metric must be one of"):
        ctl.arm_counts(found, ["champion"], "precision@k")
    with pytest.raises(ExperimentNotFound, match="no experiment for fraud"):
        load(Path("/nonexistent"), "fraud")


def test_a_failed_promotion_still_returns_all_traffic_to_the_champion(tmp_path):
    world = World({"champion": 0.30, "challenger": 0.45}, seed=15)

    def broken(version: str) -> dict:
        raise RuntimeError("the model server did not load v2")

    test = ab(world, tmp_path, Plan(min_samples=1000, min_duration_s=0), [], [])
    test.promote = broken
    with pytest.raises(RuntimeError, match="did not load"):
        test.run()
    assert world.current == {"champion": 100, "challenger": 0}
    state = load(tmp_path, "recommendation")
    assert state.status == "failed" and "did not load v2" in state.message and state.mlflow_run_id == "run-1"


@dataclass(frozen=True)
class Batch:
    variant: str
    served_at: float
    requests: int
    clicks: int
    clicked_at: float  # when its clicks reach the feedback endpoint


class DelayedClicks:
    """Requests served in batches whose clicks arrive later, counted as the feedback endpoint counts them: the
    requests served in [since, until) and the clicks that have arrived by now."""

    def __init__(self, batches: list[Batch], now: float) -> None:
        self.batches, self.now = batches, now
        self.queries: list[float | None] = []
        self.current: dict[str, int] = {}

    def outcomes(self, model: str, since: float, *, until: float | None = None) -> dict[str, Counts]:
        self.queries.append(until)
        out: dict[str, Counts] = {}
        for b in self.batches:
            if b.served_at >= since and (until is None or b.served_at < until):
                c = out.setdefault(b.variant, Counts())
                arrived = b.clicks if b.clicked_at <= self.now else 0
                c.served, c.outcomes, c.successes = c.served + b.requests, c.outcomes + arrived, c.successes + arrived
        return out

    def weights(self, model: str) -> dict[str, int]:
        return dict(self.current)

    def set_weights(self, model: str, weights) -> None:
        self.current = dict(weights)


def _round(world: DelayedClicks, tmp_path: Path, window_s: float) -> dict[str, float]:
    settings = ctl.BanditSettings(floor=0.05, seed=3, attribution_window_s=window_s)
    run = ctl.Bandit.new("recommendation", {"champion": "1", "challenger": "2"}, "ctr", settings,
                         ctl.controller_info(None, "fake"), clock=lambda: world.now, splitter=world,
                         outcomes=world.outcomes, state_dir=tmp_path)
    run.state.started_at = 0.0
    run.step()
    return {v: p["p_best"] for v, p in run.state.posteriors.items()}


def test_requests_inside_the_click_window_are_not_counted_as_non_clicks(tmp_path):
    # Both variants click at 20 %; clicks take up to ten minutes to arrive. The challenger got most of the last
    # minute's traffic, whose clicks have not arrived yet.
    now = 10_000.0
    world = DelayedClicks([Batch("champion", 1000.0, 1000, 200, 1600.0), Batch("challenger", 1000.0, 1000, 200,
                                                                              1600.0),
                           Batch("challenger", now - 60, 1000, 200, now + 540), Batch("champion", now - 60, 50, 10,
                                                                                      now + 540)], now)
    biased = _round(world, tmp_path, 0.0)
    assert world.queries == [None] and biased["champion"] > 0.99  # 200/2000 against 210/1050: a false leader
    fair = _round(world, tmp_path, 600.0)
    assert world.queries[-1] == now - 600  # only requests whose click window has passed
    assert 0.2 < fair["champion"] < 0.8, fair  # 200/1000 each: no leader
    assert 40 <= world.current["champion"] <= 60


def test_the_window_applies_to_clicks_only_and_must_not_be_negative(tmp_path):
    world = DelayedClicks([Batch("champion", 1000.0, 10, 5, 1000.0)], 5000.0)
    run = ctl.Bandit.new("fraud", {"champion": "1", "challenger": "2"}, "success-rate",
                         ctl.BanditSettings(attribution_window_s=600), ctl.controller_info(None, "fake"),
                         clock=lambda: world.now, splitter=world, outcomes=world.outcomes, state_dir=tmp_path)
    assert run.counting_until(5000.0) is None  # success-rate counts outcomes received: no bias to correct
    with pytest.raises(ctl.ExperimentError, match="attribution window must be >= 0 seconds, got -1"):
        ctl.Bandit.new("fraud", {"champion": "1", "challenger": "2"}, "ctr",
                       ctl.BanditSettings(attribution_window_s=-1), ctl.controller_info(None, "fake"),
                       splitter=world, outcomes=world.outcomes, state_dir=tmp_path)
