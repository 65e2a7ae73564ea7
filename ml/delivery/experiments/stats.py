"""The statistics of an A/B test: is the challenger's success rate better than the champion's by a margin?

A success rate is a proportion (clicks per ranking served, correct decisions per labelled decision,
...), so each variant is a binomial sample: `ArmCounts(successes, trials)`.

Hypothesis (one-sided, on the relative uplift). With p_A the champion's rate, p_B the challenger's and
the margin d (default 0.02, the platform's rule "promote when better by at least 2 %"):

    H0: p_B / p_A <= 1 + d        H1: p_B / p_A > 1 + d

Rejecting H0 at level alpha says the challenger is better by at least d, with significance alpha; a
challenger that is merely better (but perhaps by 0.5 %) does not pass. The test is the Wald test on
the log of the rate ratio (Katz et al. 1978), as statsmodels implements it
(`statsmodels.stats.proportion.test_proportions_2indep(compare="ratio", method="log")`); the
confidence interval of the uplift is the same method's (`confint_proportions_2indep`), two-sided at
1 - 2 alpha so that its lower bound is the one-sided test's bound. The sample size per arm
(`required_samples`) uses the same normal approximation of the log ratio, so plan and test agree.

Peeking: the design has a fixed horizon. The decision is taken once, when every arm has the planned
number of outcomes and the minimum duration has passed (`decide`); earlier looks report counts and an
interim p-value marked as such, and act on nothing. A test that looks repeatedly and stops at the
first p < alpha would have a much larger false-positive rate than alpha; the horizon depends on counts
and time only, never on the outcomes, so the single look keeps the level alpha.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from scipy.stats import norm
from statsmodels.stats.proportion import confint_proportions_2indep, test_proportions_2indep

TEST_NAME = "Wald test of the log rate ratio (Katz), one-sided; statsmodels test_proportions_2indep"
DEFAULT_MARGIN = 0.02
DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8


class StatsError(ValueError):
    """Counts or a plan that no test can use; the message names the value."""

    user_error = True


@dataclass(frozen=True)
class ArmCounts:
    """Successes out of trials of one variant (e.g. clicks out of recommendations with feedback)."""

    successes: int
    trials: int

    def __post_init__(self) -> None:
        if self.trials < 0 or self.successes < 0:
            raise StatsError(f"counts must not be negative, got {self.successes} successes of {self.trials}")
        if self.successes > self.trials:
            raise StatsError(f"{self.successes} successes is more than the {self.trials} trials")

    @property
    def rate(self) -> float | None:
        return self.successes / self.trials if self.trials else None


def _check_share(name: str, value: float, *, low: float = 0.0, high: float = 1.0) -> float:
    if not (low < value < high):
        raise StatsError(f"{name} must be between {low} and {high} (exclusive), got {value}")
    return float(value)


@dataclass(frozen=True)
class UpliftTest:
    """The outcome of the test of H1: challenger / champion > 1 + margin."""

    test: str
    hypothesis: str
    alpha: float
    margin: float
    champion: ArmCounts
    challenger: ArmCounts
    uplift: float  # challenger / champion - 1
    ci_low: float  # of the uplift, two-sided 1 - 2 alpha
    ci_high: float
    statistic: float
    p_value: float  # of H0: uplift <= margin
    p_value_better: float  # of H0: uplift <= 0 (for information: "better at all")

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["champion"] = {**asdict(self.champion), "rate": self.champion.rate}
        doc["challenger"] = {**asdict(self.challenger), "rate": self.challenger.rate}
        return doc


def uplift_test(champion: ArmCounts, challenger: ArmCounts, *, margin: float = DEFAULT_MARGIN,
                alpha: float = DEFAULT_ALPHA) -> UpliftTest:
    """Test H0: challenger rate / champion rate <= 1 + margin against the larger alternative.

    Both arms need at least one success and one failure: the log ratio and its variance are undefined
    otherwise (StatsError says which arm)."""
    _check_share("alpha", alpha, high=0.5)
    if not (0.0 <= margin < 1.0):
        raise StatsError(f"margin must be a relative uplift in [0, 1), got {margin}")
    for name, arm in (("champion", champion), ("challenger", challenger)):
        if arm.successes == 0 or arm.successes == arm.trials:
            raise StatsError(f"the {name} has {arm.successes} successes of {arm.trials}: the rate ratio's test "
                             "needs at least one success and one failure in each arm")
    args = (challenger.successes, challenger.trials, champion.successes, champion.trials)
    shifted = test_proportions_2indep(*args, value=1.0 + margin, compare="ratio", method="log",
                                      alternative="larger")
    better = test_proportions_2indep(*args, value=1.0, compare="ratio", method="log", alternative="larger")
    low, high = confint_proportions_2indep(*args, compare="ratio", method="log", alpha=2 * alpha)
    ratio = (challenger.successes / challenger.trials) / (champion.successes / champion.trials)
    return UpliftTest(
        test=TEST_NAME,
        hypothesis=f"H0: rate(challenger)/rate(champion) <= {1 + margin:g}; "
                   f"H1: rate(challenger)/rate(champion) > {1 + margin:g}",
        alpha=alpha, margin=margin, champion=champion, challenger=challenger,
        uplift=ratio - 1.0, ci_low=float(low) - 1.0, ci_high=float(high) - 1.0,
        statistic=float(shifted.statistic), p_value=float(shifted.pvalue), p_value_better=float(better.pvalue))


def required_samples(baseline: float, expected_uplift: float, *, margin: float = DEFAULT_MARGIN,
                     alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER) -> int:
    """Outcomes per arm for `uplift_test` to reject H0 with probability `power` when the challenger's
    true rate is baseline * (1 + expected_uplift):

        n = (z[1-alpha] + z[power])^2 * ((1-p_A)/p_A + (1-p_B)/p_B) / (ln(p_B/p_A) - ln(1+margin))^2
    """
    _check_share("baseline", baseline)
    _check_share("alpha", alpha, high=0.5)
    _check_share("power", power, low=0.5)
    if expected_uplift <= margin:
        raise StatsError(f"expected uplift {expected_uplift} must exceed the margin {margin}: a test cannot have "
                         "power to show more uplift than there is")
    treated = baseline * (1.0 + expected_uplift)
    if treated >= 1.0:
        raise StatsError(f"baseline {baseline} with uplift {expected_uplift} is a rate of {treated:.3f} >= 1")
    z = norm.ppf(1.0 - alpha) + norm.ppf(power)
    variance = (1.0 - baseline) / baseline + (1.0 - treated) / treated
    effect = math.log(1.0 + expected_uplift) - math.log(1.0 + margin)
    return math.ceil(z * z * variance / (effect * effect))


class Verdict(StrEnum):
    PROMOTE = "promote"
    KEEP_CHAMPION = "keep-champion"
    INCONCLUSIVE = "inconclusive"
    RUNNING = "running"  # before the horizon: no decision


@dataclass(frozen=True)
class Plan:
    """The fixed horizon of one A/B test and its error rates."""

    min_samples: int  # outcomes per arm
    min_duration_s: float
    alpha: float = DEFAULT_ALPHA
    margin: float = DEFAULT_MARGIN
    power: float = DEFAULT_POWER

    def __post_init__(self) -> None:
        if self.min_samples < 1:
            raise StatsError(f"min_samples must be at least 1 outcome per arm, got {self.min_samples}")
        if self.min_duration_s < 0:
            raise StatsError(f"min_duration must not be negative, got {self.min_duration_s}s")
        _check_share("alpha", self.alpha, high=0.5)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str
    test: UpliftTest | None

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": str(self.verdict), "reason": self.reason,
                "test": self.test.as_dict() if self.test else None}


def at_horizon(plan: Plan, champion: ArmCounts, challenger: ArmCounts, elapsed_s: float) -> bool:
    return min(champion.trials, challenger.trials) >= plan.min_samples and elapsed_s >= plan.min_duration_s


def decide(plan: Plan, champion: ArmCounts, challenger: ArmCounts, elapsed_s: float, *,
           final: bool = False) -> Decision:
    """The decision at the horizon (or, with `final`, at a deadline past the minimum duration); before it,
    `running` with the interim test for information.

    promote: H0 rejected (better by at least the margin, p < alpha). keep-champion: the confidence bound of
    the uplift lies below the margin (the challenger is not better by the margin, at confidence 1 - alpha).
    inconclusive: neither — too few outcomes to tell."""
    have = min(champion.trials, challenger.trials)
    try:
        test = uplift_test(champion, challenger, margin=plan.margin, alpha=plan.alpha)
    except StatsError as exc:
        test, untestable = None, str(exc)
    if not at_horizon(plan, champion, challenger, elapsed_s) and not (final and elapsed_s >= plan.min_duration_s):
        return Decision(Verdict.RUNNING, f"{have} of {plan.min_samples} outcomes per arm, "
                        f"{elapsed_s:.0f}s of at least {plan.min_duration_s:.0f}s; interim statistics act on nothing",
                        test)
    if test is None:
        return Decision(Verdict.INCONCLUSIVE, untestable, None)
    if test.p_value < plan.alpha:
        return Decision(Verdict.PROMOTE, f"uplift {test.uplift:+.2%} (CI {test.ci_low:+.2%} .. {test.ci_high:+.2%}) "
                        f"is more than {plan.margin:.0%} with p = {test.p_value:.3g} < {plan.alpha}", test)
    if test.ci_high < plan.margin:
        return Decision(Verdict.KEEP_CHAMPION, f"uplift {test.uplift:+.2%}: its upper bound {test.ci_high:+.2%} is "
                        f"below the {plan.margin:.0%} margin (p = {test.p_value:.3g})", test)
    return Decision(Verdict.INCONCLUSIVE, f"uplift {test.uplift:+.2%} (CI {test.ci_low:+.2%} .. {test.ci_high:+.2%}) "
                    f"neither exceeds nor rules out the {plan.margin:.0%} margin (p = {test.p_value:.3g}); "
                    "the champion stays", test)
