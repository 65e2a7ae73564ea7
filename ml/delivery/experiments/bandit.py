"""Thompson sampling over the variants of a model, as traffic weights for a splitter.

Each variant's click rate has a Beta posterior: Beta(1 + clicks, 1 + impressions - clicks) from a uniform
prior. Per-request Thompson sampling sends a request to the variant whose posterior draw is highest; a
splitter cannot draw per request, but in expectation that policy sends each variant the share of traffic
equal to its probability of being the best (randomized probability matching). So every round the
controller estimates those probabilities from `draws` joint posterior samples and sets them as weights,
after mixing in a floor: every variant keeps at least `floor` of the traffic, so a variant that was
unlucky early keeps collecting evidence and a change in the rates is noticed.

Posteriors are recomputed from cumulative counts (not updated incrementally), so a restarted controller
that reads the same counts arrives at the same posteriors; the random generator is seeded for tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

DEFAULT_FLOOR = 0.05
DEFAULT_DRAWS = 4000
TOTAL_WEIGHT = 100  # weights are integer percentages (Seldon Experiment weights, HAProxy server weights)


class BanditError(ValueError):
    """A variant set or floor no bandit can use; the message names the value."""

    user_error = True


@dataclass(frozen=True)
class Posterior:
    alpha: float
    beta: float

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @classmethod
    def of(cls, clicks: int, impressions: int) -> Posterior:
        if clicks < 0 or impressions < clicks:
            raise BanditError(f"{clicks} clicks of {impressions} impressions is not a count of successes")
        return cls(1.0 + clicks, 1.0 + impressions - clicks)


def check_floor(floor: float, variants: int) -> None:
    if variants < 2:
        raise BanditError(f"a bandit needs at least two variants, got {variants}")
    if not (0.0 <= floor < 1.0 / variants):
        raise BanditError(f"the exploration floor must be in [0, 1/{variants}) for {variants} variants, got {floor}")


def probability_best(posteriors: Mapping[str, Posterior], rng: np.random.Generator,
                     draws: int = DEFAULT_DRAWS) -> dict[str, float]:
    """P(variant has the highest rate) under independent Beta posteriors, by Monte Carlo."""
    names = list(posteriors)
    samples = np.column_stack([rng.beta(posteriors[n].alpha, posteriors[n].beta, size=draws) for n in names])
    wins = np.bincount(np.argmax(samples, axis=1), minlength=len(names))
    return {name: float(w) / draws for name, w in zip(names, wins, strict=True)}


def integer_weights(shares: Mapping[str, float], total: int = TOTAL_WEIGHT) -> dict[str, int]:
    """Shares as integers summing to `total` (largest remainder), each at least 1 where its share is > 0."""
    raw = {k: v * total for k, v in shares.items()}
    out = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - out[k], reverse=True)[: total - sum(out.values())]:
        out[k] += 1
    for k, v in shares.items():
        if v > 0 and out[k] == 0:
            donor = max(out, key=lambda d: out[d])
            out[donor] -= 1
            out[k] = 1
    return out


def weights(posteriors: Mapping[str, Posterior], rng: np.random.Generator, *, floor: float = DEFAULT_FLOOR,
            draws: int = DEFAULT_DRAWS) -> tuple[dict[str, int], dict[str, float]]:
    """(integer traffic weights summing to 100, the probabilities of being best they come from)."""
    check_floor(floor, len(posteriors))
    best = probability_best(posteriors, rng, draws)
    share = {k: floor + (1.0 - floor * len(best)) * p for k, p in best.items()}
    return integer_weights(share), best
