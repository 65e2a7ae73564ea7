"""The A/B test's statistics (ml/delivery/experiments/stats.py) against values computed by hand, its
power and level by simulation, and the decision rule on the horizon."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from ml.delivery.experiments.stats import (
    ArmCounts,
    Plan,
    StatsError,
    Verdict,
    decide,
    required_samples,
    uplift_test,
)

Z95 = 1.6448536269514722  # standard normal quantile at 0.95 (one-sided alpha 0.05)
Z80 = 0.8416212335729143  # at 0.80 (power)


def test_uplift_test_matches_the_log_ratio_wald_test_by_hand():
    champion, challenger = ArmCounts(1000, 10000), ArmCounts(1100, 10000)
    result = uplift_test(champion, challenger, margin=0.02, alpha=0.05)
    se = math.sqrt(1 / 1100 - 1 / 10000 + 1 / 1000 - 1 / 10000)
    z = (math.log(1.1) - math.log(1.02)) / se
    assert result.uplift == pytest.approx(0.10)
    assert result.statistic == pytest.approx(z, rel=1e-9)
    assert result.p_value == pytest.approx(norm.sf(z), rel=1e-9)
    assert result.p_value == pytest.approx(0.033891, abs=1e-6)
    assert result.p_value_better == pytest.approx(norm.sf(math.log(1.1) / se), rel=1e-9)
    assert result.ci_low == pytest.approx(1.1 * math.exp(-Z95 * se) - 1, rel=1e-9)
    assert result.ci_high == pytest.approx(1.1 * math.exp(Z95 * se) - 1, rel=1e-9)
    assert "<= 1.02" in result.hypothesis and "statsmodels" in result.test


def test_required_samples_is_the_normal_approximation_of_the_log_ratio():
    baseline, uplift = 0.10, 0.10
    treated = 0.11
    by_hand = (Z95 + Z80) ** 2 * ((1 - baseline) / baseline + (1 - treated) / treated) / (
        math.log(1.10) - math.log(1.02)) ** 2
    assert required_samples(baseline, uplift) == math.ceil(by_hand)
    assert 18_000 < required_samples(baseline, uplift) < 19_000


def _rejections(rng: np.random.Generator, p_a: float, p_b: float, n: int, runs: int) -> float:
    a, b = rng.binomial(n, p_a, size=runs), rng.binomial(n, p_b, size=runs)
    return float(np.mean([uplift_test(ArmCounts(int(x), n), ArmCounts(int(y), n)).p_value < 0.05
                          for x, y in zip(a, b, strict=True)]))


def test_the_planned_sample_size_has_the_planned_power_and_the_test_its_level():
    rng = np.random.default_rng(7)
    n = required_samples(0.30, 0.15)
    power = _rejections(rng, 0.30, 0.30 * 1.15, n, 600)
    assert 0.74 <= power <= 0.86, power  # planned 0.80; 600 runs: standard error ~0.016
    level = _rejections(rng, 0.30, 0.30 * 1.02, n, 600)  # exactly on the margin: H0 is true
    assert level <= 0.08, level  # alpha 0.05


def test_a_true_uplift_is_promoted_at_the_horizon_and_not_before():
    rng = np.random.default_rng(1)
    plan = Plan(min_samples=required_samples(0.30, 0.15), min_duration_s=600)
    n = plan.min_samples
    champion, challenger = ArmCounts(int(rng.binomial(n, 0.30)), n), ArmCounts(int(rng.binomial(n, 0.345)), n)
    early = decide(plan, champion, challenger, elapsed_s=599)
    assert early.verdict is Verdict.RUNNING and "act on nothing" in early.reason
    decision = decide(plan, champion, challenger, elapsed_s=600)
    assert decision.verdict is Verdict.PROMOTE, decision.reason
    assert decision.test is not None and decision.test.p_value < 0.05 and decision.test.ci_low > 0


def test_no_difference_is_never_promoted():
    rng = np.random.default_rng(2)
    plan = Plan(min_samples=20_000, min_duration_s=0)
    verdicts = []
    for _ in range(50):
        champion = ArmCounts(int(rng.binomial(20_000, 0.30)), 20_000)
        challenger = ArmCounts(int(rng.binomial(20_000, 0.30)), 20_000)
        verdicts.append(decide(plan, champion, challenger, elapsed_s=1).verdict)
    assert Verdict.PROMOTE not in verdicts
    # keep-champion when the upper bound of the uplift is below the margin: with no true difference that
    # happens with probability Phi(ln(1.02) / se - z[0.95]), about 0.36 here; the rest are inconclusive.
    se = math.sqrt(2 * 0.7 / (0.3 * 20_000))
    expected = norm.cdf(math.log(1.02) / se - Z95)
    assert verdicts.count(Verdict.KEEP_CHAMPION) / 50 == pytest.approx(expected, abs=0.15), verdicts
    assert set(verdicts) <= {Verdict.KEEP_CHAMPION, Verdict.INCONCLUSIVE}


def test_an_uncertain_result_is_inconclusive_and_an_untestable_one_says_why():
    plan = Plan(min_samples=100, min_duration_s=0)
    decision = decide(plan, ArmCounts(30, 100), ArmCounts(33, 100), elapsed_s=1)
    assert decision.verdict is Verdict.INCONCLUSIVE and "champion stays" in decision.reason
    zero = decide(plan, ArmCounts(0, 100), ArmCounts(3, 100), elapsed_s=1)
    assert zero.verdict is Verdict.INCONCLUSIVE and "champion has 0 successes" in zero.reason
    # a deadline past the minimum duration decides with what there is
    final = decide(Plan(min_samples=10_000, min_duration_s=60), ArmCounts(30, 100), ArmCounts(33, 100),
                   elapsed_s=61, final=True)
    assert final.verdict is Verdict.INCONCLUSIVE


@pytest.mark.parametrize(("call", "message"), [
    (lambda: ArmCounts(5, 3), "more than the 3 trials"),
    (lambda: ArmCounts(-1, 3), "must not be negative"),
    (lambda: required_samples(0.1, 0.01), "must exceed the margin"),
    (lambda: required_samples(0.95, 0.10), ">= 1"),
    (lambda: required_samples(0.0, 0.10), "baseline must be between"),
    (lambda: Plan(min_samples=0, min_duration_s=0), "min_samples"),
    (lambda: uplift_test(ArmCounts(1, 2), ArmCounts(1, 2), alpha=0.7), "alpha"),
])
def test_bad_input_names_what_is_wrong(call, message):
    with pytest.raises(StatsError, match=message):
        call()
