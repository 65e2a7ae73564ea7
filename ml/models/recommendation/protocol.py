"""Evaluation protocol of the recommendation model: users held out whole, scored on their later ratings.

Whole users are held out from training. For each held-out user a random 80 % of their ratings is
the *history* the model sees at request time; the ratings >= 4 among the other 20 % are the
*relevant* set. Users whose relevant set is empty cannot be scored and are skipped (and counted).

Metrics, binary relevance, top-k list after removing the history:
- NDCG@k = DCG / IDCG with DCG = sum over hits at 0-based rank i of 1 / log2(i + 2), and IDCG the
  DCG of a list whose first min(k, |relevant|) entries are all hits.
- Recall@k = hits / min(k, |relevant|) (the normalised form used by Liang et al. 2018 and the EASE
  paper, so that a perfect list scores 1 even when a user has more than k relevant books).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

HISTORY_FRACTION = 0.8
RELEVANT_MIN_RATING = 4


@dataclass(frozen=True)
class EvalCase:
    """One held-out user: what the model is given and what it should find."""

    user_id: int
    history: list[int]  # book ids shown to the model
    relevant: list[int]  # held-out book ids rated >= 4


class EvalCases(list[EvalCase]):
    """A list of cases that also remembers how many users were skipped (empty relevant set)."""

    skipped_users: int = 0


class Scorer(Protocol):
    known_items: set[int]

    def recommend_batch(self, histories: Sequence[list[int]], k: int = 10) -> list[list[tuple[int, float]]]: ...


def _check_ratings(ratings: pd.DataFrame) -> None:
    missing = [c for c in ("user_id", "book_id", "rating") if c not in ratings.columns]
    if missing:
        raise ValueError(f"ratings frame lacks column(s) {missing}")


def split_users(ratings: pd.DataFrame, test_fraction: float = 0.2, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) ratings with whole users on one side: round(test_fraction * users) users held out."""
    _check_ratings(ratings)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    users = np.sort(ratings["user_id"].unique())
    n_test = round(test_fraction * len(users))
    if n_test < 1 or n_test >= len(users):
        raise ValueError(f"test_fraction={test_fraction} of {len(users)} users leaves an empty train or test side")
    test_users = np.random.default_rng(seed).choice(users, size=n_test, replace=False)
    is_test = ratings["user_id"].isin(test_users)
    return ratings[~is_test].reset_index(drop=True), ratings[is_test].reset_index(drop=True)


def history_split(ratings_of_users: pd.DataFrame, seed: int = 0) -> EvalCases:
    """Per user (in ascending user_id order): a random 80 % history, relevant = ratings >= 4 of the rest.

    The history size is round(0.8 * n) but at least 1 and at most n - 1, so every user with two or
    more ratings keeps something to predict. Deterministic for a given seed.
    """
    _check_ratings(ratings_of_users)
    rng = np.random.default_rng(seed)
    frame = ratings_of_users.sort_values(["user_id", "book_id"], kind="stable")
    cases = EvalCases()
    skipped = 0
    users = frame["user_id"].to_numpy()
    books = frame["book_id"].to_numpy()
    stars = frame["rating"].to_numpy()
    bounds = np.flatnonzero(np.diff(users)) + 1
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(users)], strict=True):
        n = stop - start
        n_hist = min(max(round(HISTORY_FRACTION * n), 1), max(n - 1, 1))
        order = rng.permutation(n) + start
        hist, rest = order[:n_hist], order[n_hist:]
        relevant = [int(b) for b in books[rest][stars[rest] >= RELEVANT_MIN_RATING]]
        if not relevant:
            skipped += 1
            continue
        cases.append(EvalCase(int(users[start]), [int(b) for b in books[hist]], sorted(relevant)))
    cases.skipped_users = skipped
    return cases


def ndcg_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def recall_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    if not relevant:
        return 0.0
    return sum(1 for item in ranked[:k] if item in relevant) / min(k, len(relevant))


def score_cases(model: Scorer, cases: EvalCases, k: int = 10) -> dict:
    """Mean NDCG@k / Recall@k of ``model`` over ``cases``.

    History books the model's catalogue does not know are dropped from the request (and counted
    in ``unknown_history_items``) rather than failing the whole evaluation.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    known = model.known_items
    histories = [[b for b in case.history if b in known] for case in cases]
    unknown = sum(len(c.history) for c in cases) - sum(len(h) for h in histories)
    ranked = model.recommend_batch(histories, k) if cases else []
    ndcg = [ndcg_at_k([b for b, _ in r], set(c.relevant), k) for r, c in zip(ranked, cases, strict=True)]
    recall = [recall_at_k([b for b, _ in r], set(c.relevant), k) for r, c in zip(ranked, cases, strict=True)]
    return {
        f"ndcg@{k}": float(np.mean(ndcg)) if ndcg else 0.0,
        f"recall@{k}": float(np.mean(recall)) if recall else 0.0,
        "users": len(cases),
        "skipped_users": cases.skipped_users,
        "unknown_history_items": int(unknown),
    }


def evaluate(model: Scorer, eval_ratings: pd.DataFrame, seed: int = 0, k: int = 10) -> dict:
    """Protocol metrics of ``model`` on held-out users' ratings: ``ndcg@10``, ``recall@10``, ``users``..."""
    return score_cases(model, history_split(eval_ratings, seed=seed), k=k)
