"""Thompson sampling as traffic weights (ml/delivery/experiments/bandit.py), on seeded simulated clicks."""

from __future__ import annotations

import numpy as np
import pytest

from ml.delivery.experiments.bandit import BanditError, Posterior, integer_weights, probability_best, weights


def simulate(true_rates: dict[str, float], rounds: int, requests: int, seed: int,
             floor: float = 0.05) -> list[dict[str, int]]:
    """Rounds of `requests` routed by the current weights, clicks drawn with the true rates; the weights
    of every round."""
    rng = np.random.default_rng(seed)
    clicks = dict.fromkeys(true_rates, 0)
    shown = dict.fromkeys(true_rates, 0)
    current = integer_weights({k: 1 / len(true_rates) for k in true_rates})
    history = []
    for _ in range(rounds):
        names = list(current)
        routed = rng.multinomial(requests, [current[k] / 100 for k in names])
        for name, n in zip(names, routed, strict=True):
            shown[name] += int(n)
            clicks[name] += int(rng.binomial(n, true_rates[name]))
        current, _ = weights({k: Posterior.of(clicks[k], shown[k]) for k in names}, rng, floor=floor)
        history.append(current)
    return history


def test_the_better_of_two_variants_gets_80_percent_within_bounded_rounds():
    history = simulate({"v1": 0.10, "v2": 0.15}, rounds=20, requests=200, seed=3)
    first = next(i for i, w in enumerate(history) if w["v2"] >= 80)
    assert first < 10, history
    assert all(w["v2"] >= 80 for w in history[first + 3:]), history  # and it stays there
    assert all(sum(w.values()) == 100 and min(w.values()) >= 5 for w in history)  # the floor holds


def test_three_variants_converge_on_the_best_and_keep_the_floor():
    history = simulate({"v1": 0.10, "v2": 0.14, "v3": 0.08}, rounds=30, requests=300, seed=5, floor=0.05)
    assert history[-1]["v2"] >= 80, history[-1]
    assert min(history[-1].values()) >= 5


def test_weights_follow_the_probability_of_being_best_with_the_floor_mixed_in():
    rng = np.random.default_rng(0)
    posteriors = {"a": Posterior.of(100, 1000), "b": Posterior.of(100, 1000)}
    best = probability_best(posteriors, rng, draws=20_000)
    assert best["a"] == pytest.approx(0.5, abs=0.02)
    certain = {"a": Posterior.of(10, 1000), "b": Posterior.of(300, 1000)}
    w, p = weights(certain, rng, floor=0.1)
    assert p == {"a": 0.0, "b": 1.0} and w == {"a": 10, "b": 90}


def test_posterior_is_beta_of_clicks_over_a_uniform_prior():
    post = Posterior.of(3, 10)
    assert (post.alpha, post.beta) == (4.0, 8.0) and post.mean == pytest.approx(4 / 12)


def test_integer_weights_sum_to_100_and_keep_small_shares():
    assert integer_weights({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}) == {"a": 34, "b": 33, "c": 33}
    assert integer_weights({"a": 0.999, "b": 0.001}) == {"a": 99, "b": 1}


@pytest.mark.parametrize(("posteriors", "floor", "message"), [
    ({"a": Posterior(1, 1)}, 0.05, "at least two variants"),
    ({"a": Posterior(1, 1), "b": Posterior(1, 1)}, 0.5, "floor must be in"),
])
def test_bad_input_names_what_is_wrong(posteriors, floor, message):
    with pytest.raises(BanditError, match=message):
        weights(posteriors, np.random.default_rng(0), floor=floor)
    with pytest.raises(BanditError, match="is not a count"):
        Posterior.of(5, 3)
