"""The experiment controllers: an A/B test that decides once at its horizon, and a bandit that moves
traffic every round. Both drive the traffic splitter (ml/delivery/splitter.py: HAProxy locally, the
Seldon Experiment on the cluster) and read outcomes from the feedback endpoint; neither knows which.

Everything they touch is passed in (splitter, outcome query, MLflow recorder, promotion, clock), so the
same loop runs in a terminal (`mlplat experiment ab|bandit`), beside the local platform and in a pod,
and the unit tests run it on fakes.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ml.delivery.experiments import bandit, stats
from ml.delivery.experiments.exporter import ExperimentMetrics
from ml.delivery.experiments.state import ExperimentState, save

log = logging.getLogger("mlplat.experiment")

CHAMPION, CHALLENGER = "champion", "challenger"
# success-rate: successes per outcome received (a label arrives for every decision, e.g. a chargeback);
# ctr: successes per request served (only clicks are reported: click-through of served rankings).
METRICS = ("success-rate", "ctr")


class Splitter(Protocol):
    def weights(self, model: str) -> dict[str, int]: ...
    def set_weights(self, model: str, weights: Mapping[str, int]) -> None: ...


class VariantCounts(Protocol):
    served: int
    outcomes: int
    successes: int


class OutcomeQuery(Protocol):
    """Per variant counts of `model`'s requests served in [since, until) (ml/delivery/feedback.py VariantOutcomes);
    `until` None: up to now."""

    def __call__(self, model: str, since: float, *, until: float | None = None) -> Mapping[str, VariantCounts]: ...


class ExperimentError(RuntimeError):
    """An experiment cannot start or continue; the message names what is wrong."""

    user_error = True


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90`, `90s`, `15m`, `2h`, `1d` -> seconds (ValueError naming the text otherwise)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (e.g. 90s, 15m, 2h, 1d)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def arm_counts(found: Mapping[str, VariantCounts], variants: list[str], metric: str) -> dict[str, stats.ArmCounts]:
    """The metric's successes and trials per variant (zero for a variant with no traffic yet)."""
    if metric not in METRICS:
        raise ExperimentError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    out = {}
    for variant in variants:
        c = found.get(variant)
        trials = 0 if c is None else (c.outcomes if metric == "success-rate" else c.served)
        out[variant] = stats.ArmCounts(0 if c is None else min(c.successes, trials), trials)
    return out


def _counts_doc(arms: Mapping[str, stats.ArmCounts]) -> dict[str, dict[str, float]]:
    return {v: {"trials": a.trials, "successes": a.successes, "rate": a.rate} for v, a in arms.items()}


def controller_info(metrics_url: str | None, splitter: str) -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "metrics_url": metrics_url, "splitter": splitter}


@dataclass(frozen=True)
class ABSettings:
    split: int  # challenger's percent of traffic during the test
    plan: stats.Plan
    interval_s: float
    max_duration_s: float | None = None  # then decide with what there is (past the minimum duration)


class ABTest:
    """One A/B test of `challenger_version` against the serving champion."""

    def __init__(self, state: ExperimentState, settings: ABSettings, *, splitter: Splitter, outcomes: OutcomeQuery,
                 state_dir: Path, record: Callable[[ExperimentState], str | None],
                 promote: Callable[[str], dict[str, Any]], metrics: ExperimentMetrics | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        if not 1 <= settings.split <= 99:
            raise ExperimentError(f"--split must be a challenger share of 1..99 percent, got {settings.split}")
        self.state, self.settings = state, settings
        self.splitter, self.outcomes, self.state_dir = splitter, outcomes, state_dir
        self.record, self.promote, self.metrics = record, promote, metrics
        self.clock, self.sleep = clock, sleep

    @classmethod
    def new(cls, model: str, champion_version: str, challenger_version: str, metric: str, settings: ABSettings,
            controller: dict[str, Any], clock: Callable[[], float] = time.time, **kwargs: Any) -> ABTest:
        if metric not in METRICS:
            raise ExperimentError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        state = ExperimentState(model=model, kind="ab", variants={CHAMPION: champion_version,
                                                                  CHALLENGER: challenger_version},
                                metric=metric, started_at=clock(), controller=controller,
                                settings={**asdict(settings.plan), "split": settings.split,
                                          "interval_s": settings.interval_s, "max_duration_s": settings.max_duration_s,
                                          "test": stats.TEST_NAME})
        return cls(state, settings, clock=clock, **kwargs)

    def _save(self) -> None:
        save(self.state, self.state_dir)
        if self.metrics is not None:
            self.metrics.update(self.state)

    def start(self) -> None:
        weights = {CHAMPION: 100 - self.settings.split, CHALLENGER: self.settings.split}
        self.splitter.set_weights(self.state.model, weights)
        self.state.weights = weights
        self.state.history.append({"at": self.clock(), "weights": dict(weights)})
        self.state.message = f"splitting {weights} and collecting outcomes"
        self._save()

    def step(self) -> stats.Decision:
        """Read the counts since the start and decide (or report `running`)."""
        now = self.clock()
        elapsed = now - self.state.started_at
        arms = arm_counts(self.outcomes(self.state.model, self.state.started_at, until=None), [CHAMPION, CHALLENGER],
                          self.state.metric)
        deadline = self.settings.max_duration_s is not None and elapsed >= self.settings.max_duration_s
        decision = stats.decide(self.settings.plan, arms[CHAMPION], arms[CHALLENGER], elapsed, final=deadline)
        self.state.counts = _counts_doc(arms)
        self.state.decision = decision.as_dict()
        self.state.message = decision.reason
        self.state.record_round(self.splitter.weights(self.state.model), now)
        self._save()
        return decision

    def finish(self, decision: stats.Decision) -> None:
        """Record the decision in MLflow, promote through the platform's promotion path when it says so, and
        give the champion all traffic again (after a promotion the champion serves the winner)."""
        self.state.status = "decided"
        try:
            self.state.mlflow_run_id = self.record(self.state)
            if decision.verdict is stats.Verdict.PROMOTE:
                self.state.promotion = self.promote(self.state.variants[CHALLENGER])
        except Exception as exc:
            # The champion still takes all traffic back; the state says what did not happen.
            self.state.status = "failed"
            self.state.message = f"{decision.verdict}: recording or promoting failed: {exc}"
            raise
        finally:
            weights = {CHAMPION: 100, CHALLENGER: 0}
            self.splitter.set_weights(self.state.model, weights)
            self.state.record_round(weights, self.clock())
            self._save()

    def run(self) -> stats.Decision:
        self.start()
        while True:
            decision = self.step()
            log.info("%s: %s", self.state.model, decision.reason)
            if decision.verdict is not stats.Verdict.RUNNING:
                self.finish(decision)
                return decision
            self.sleep(self.settings.interval_s)


@dataclass(frozen=True)
class BanditSettings:
    floor: float = bandit.DEFAULT_FLOOR
    interval_s: float = 10.0
    rounds: int | None = None  # None: until stopped
    draws: int = bandit.DEFAULT_DRAWS
    seed: int | None = None
    # With `ctr`, a request counts as an impression only once this many seconds have passed since it was served:
    # before that a click may still come, and counting it as a non-click would bias the variant that recently
    # got more traffic (the bandit's leader) downwards. 0: every request at once (clicks arrive with the answer).
    attribution_window_s: float = 0.0


class Bandit:
    """Thompson sampling over the splitter's variants of one model, one weight update per round."""

    def __init__(self, state: ExperimentState, settings: BanditSettings, *, splitter: Splitter,
                 outcomes: OutcomeQuery, state_dir: Path, metrics: ExperimentMetrics | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        bandit.check_floor(settings.floor, len(state.variants))
        if not (math.isfinite(settings.attribution_window_s) and settings.attribution_window_s >= 0):
            raise ExperimentError(f"the attribution window must be >= 0 seconds, got {settings.attribution_window_s}")
        self.state, self.settings = state, settings
        self.splitter, self.outcomes, self.state_dir, self.metrics = splitter, outcomes, state_dir, metrics
        self.clock, self.sleep = clock, sleep
        self.rng = np.random.default_rng(settings.seed)

    @classmethod
    def new(cls, model: str, variants: dict[str, str], metric: str, settings: BanditSettings,
            controller: dict[str, Any], clock: Callable[[], float] = time.time, **kwargs: Any) -> Bandit:
        if metric not in METRICS:
            raise ExperimentError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        state = ExperimentState(model=model, kind="bandit", variants=dict(variants), metric=metric,
                                started_at=clock(), controller=controller, settings=asdict(settings))
        return cls(state, settings, clock=clock, **kwargs)

    def counting_until(self, now: float) -> float | None:
        """The end of the served requests this round counts: `now - attribution window` for `ctr` (clicks of later
        requests may still come), None (everything) otherwise."""
        window = self.settings.attribution_window_s
        return now - window if self.state.metric == "ctr" and window > 0 else None

    def step(self) -> dict[str, int]:
        names = list(self.state.variants)
        until = self.counting_until(self.clock())
        arms = arm_counts(self.outcomes(self.state.model, self.state.started_at, until=until), names,
                          self.state.metric)
        posteriors = {v: bandit.Posterior.of(a.successes, a.trials) for v, a in arms.items()}
        weights, best = bandit.weights(posteriors, self.rng, floor=self.settings.floor, draws=self.settings.draws)
        self.splitter.set_weights(self.state.model, weights)
        self.state.counts = _counts_doc(arms)
        self.state.posteriors = {v: {"alpha": p.alpha, "beta": p.beta, "mean": p.mean, "p_best": best[v]}
                                 for v, p in posteriors.items()}
        self.state.record_round(weights, self.clock())
        leader = max(best, key=lambda v: best[v])
        self.state.message = f"round {self.state.rounds}: {leader} leads (P(best) = {best[leader]:.2f})"
        save(self.state, self.state_dir)
        if self.metrics is not None:
            self.metrics.update(self.state)
        return weights

    def run(self) -> ExperimentState:
        try:
            while self.settings.rounds is None or self.state.rounds < self.settings.rounds:
                weights = self.step()
                log.info("%s: %s, weights %s", self.state.model, self.state.message, weights)
                if self.settings.rounds is None or self.state.rounds < self.settings.rounds:
                    self.sleep(self.settings.interval_s)
        except KeyboardInterrupt:
            pass
        self.state.status = "stopped"
        save(self.state, self.state_dir)
        return self.state
