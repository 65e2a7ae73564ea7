"""Learning algorithm of the recommendation model: tuned EASE over books rated often enough.

Public API (called by the training pipeline, the MLServer runtime and the CLI):
``split_users``, ``history_split``, ``EvalCase``, ``fit``, ``Recommender``, ``UnknownItemError``,
``evaluate``, ``evaluate_baselines``.

Why EASE: on ~2k users x ~10k books the closed-form item-item model beats neighbourhood and
popularity models by a wide margin, trains in one matrix inverse, and serves a request as a sum of
a few rows (no user state, so held-out users are handled by fold-in for free). Books rated by fewer
than ``min_item_ratings`` training users are not modelled: they carry almost no signal and each
one grows the Gram matrix that must be inverted.

Run ``python -m ml.models.recommendation.algorithm --data DIR`` for the protocol metrics of
this model and the three baselines on the shared data (JSON on stdout).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ml.models.recommendation.data import load
from ml.models.recommendation.ease import (
    ease_weights,
    interaction_matrix,
    item_counts,
    knn_weights,
    prune_rows,
)
from ml.models.recommendation.protocol import (
    EvalCase,
    EvalCases,
    evaluate,
    history_split,
    score_cases,
    split_users,
)
from ml.models.recommendation.recommender import Recommender, UnknownItemError

__all__ = [
    "DEFAULT_PARAMS",
    "EvalCase",
    "EvalCases",
    "Recommender",
    "UnknownItemError",
    "evaluate",
    "evaluate_baselines",
    "fit",
    "history_split",
    "score_cases",
    "split_users",
]

log = logging.getLogger(__name__)

MODELS = ("ease", "knn", "popularity")
# Chosen on a validation split carved from the training users only (see README, "Tuning").
DEFAULT_PARAMS: dict = {
    "model": "ease",
    "min_item_ratings": 2,  # books with fewer training ratings are not recommended
    "l2": 100.0,  # EASE ridge penalty
    "dropout": 0.0,  # EDLAE popularity-proportional penalty, as a dropout rate (no gain here)
    "low_weight": 0.5,  # weight of a rating below 4 in the training matrix (1 = binary)
    "pop_exponent": 0.2,  # score of book j divided by its training count ** pop_exponent
    "neighbors": 200,  # keep only this many largest weights per book (None = dense)
}
# Baselines spell out every parameter so that tuning DEFAULT_PARAMS never leaks into them.
_PLAIN = {"min_item_ratings": 1, "dropout": 0.0, "low_weight": 1.0, "pop_exponent": 0.0}
POPULARITY = {**_PLAIN, "model": "popularity", "l2": 1.0, "neighbors": None}
KNN_BASELINE = {**_PLAIN, "model": "knn", "l2": 1.0, "neighbors": 100}
UNTUNED_EASE = {**_PLAIN, "model": "ease", "l2": 500.0, "neighbors": None}


def _params(params: dict | None) -> dict:
    merged = {**DEFAULT_PARAMS, **(params or {})}
    unknown = sorted(set(merged) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; allowed: {sorted(DEFAULT_PARAMS)}")
    if merged["model"] not in MODELS:
        raise ValueError(f"params['model'] must be one of {MODELS}, got {merged['model']!r}")
    if int(merged["min_item_ratings"]) < 1:
        raise ValueError(f"params['min_item_ratings'] must be >= 1, got {merged['min_item_ratings']}")
    if merged["neighbors"] is not None and int(merged["neighbors"]) < 1:
        raise ValueError(f"params['neighbors'] must be >= 1 or None, got {merged['neighbors']}")
    return merged


def _catalog(books: pd.DataFrame | None, ratings: pd.DataFrame) -> dict[int, tuple[str, str]]:
    if books is None:  # baselines on ratings only: ids without titles
        return {int(b): ("", "") for b in ratings["book_id"].unique()}
    missing = [c for c in ("book_id", "title", "authors") if c not in books.columns]
    if missing:
        raise ValueError(f"books frame lacks column(s) {missing}")
    unknown = sorted(set(ratings["book_id"].unique()) - set(books["book_id"]))
    if unknown:
        raise ValueError(f"{len(unknown)} rated book id(s) not in books, e.g. {unknown[:5]}")
    ids = books["book_id"].astype(int).tolist()
    return dict(zip(ids, zip(books["title"].astype(str), books["authors"].astype(str), strict=True), strict=True))


def item_weights(ratings: pd.DataFrame, item_ids: np.ndarray, p: dict) -> np.ndarray | sp.csr_matrix | None:
    """The item x item weight matrix of model ``p['model']`` before popularity debiasing/pruning."""
    if p["model"] == "popularity":
        return None
    x = interaction_matrix(ratings, item_ids, low_weight=float(p["low_weight"]))
    if p["model"] == "knn":
        return knn_weights(x, neighbors=int(p["neighbors"] or 100))
    return ease_weights(x, l2=float(p["l2"]), dropout=float(p["dropout"]))


def finish_weights(
    weights: np.ndarray | sp.csr_matrix | None, counts: np.ndarray, p: dict
) -> np.ndarray | sp.csr_matrix | None:
    """Apply the popularity debiasing and the optional per-row pruning (cheap; reused in tuning)."""
    if weights is None:
        return None
    beta = float(p["pop_exponent"])
    if beta:
        scale = (counts.astype(np.float32) ** -beta).astype(np.float32)
        weights = weights @ sp.diags(scale) if sp.issparse(weights) else weights * scale[np.newaxis, :]
    if p["model"] == "ease" and p["neighbors"] is not None and not sp.issparse(weights):
        weights = prune_rows(weights, int(p["neighbors"]))
    return sp.csr_matrix(weights) if sp.issparse(weights) else weights


def fit(ratings: pd.DataFrame, books: pd.DataFrame | None, params: dict | None = None, seed: int = 0) -> Recommender:
    """Train on ``ratings`` (user_id, book_id, rating). All models here are deterministic; ``seed``
    is accepted for a uniform training interface and recorded in the params."""
    p = _params(params)
    if ratings.empty:
        raise ValueError("cannot fit on an empty ratings frame")
    catalog = _catalog(books, ratings)
    counts = item_counts(ratings)
    counts = counts[counts >= int(p["min_item_ratings"])]
    if counts.empty:
        raise ValueError(f"no book has >= {p['min_item_ratings']} ratings; lower min_item_ratings")
    item_ids = counts.index.to_numpy(dtype=np.int64)
    started = time.perf_counter()
    weights = finish_weights(item_weights(ratings, item_ids, p), counts.to_numpy(), p)
    log.info("fitted %s over %d items in %.1f s", p["model"], len(item_ids), time.perf_counter() - started)
    return Recommender(item_ids, weights, counts.to_numpy(np.float32), catalog, params={**p, "seed": seed})


def evaluate_baselines(train: pd.DataFrame, eval_ratings: pd.DataFrame, seed: int = 0) -> dict[str, dict]:
    """Popularity, item-kNN (cosine, 100 neighbours) and untuned EASE (lambda 500) on one split."""
    cases = history_split(eval_ratings, seed=seed)
    catalog_ratings = pd.concat([train[["book_id"]], eval_ratings[["book_id"]]])
    out: dict[str, dict] = {}
    for name, params in (
        ("popularity", POPULARITY),
        ("item_knn", KNN_BASELINE),
        ("ease_untuned", UNTUNED_EASE),
    ):
        started = time.perf_counter()
        model = fit(train, None, {**params})
        model.catalog = {int(b): ("", "") for b in catalog_ratings["book_id"].unique()}
        model.known_items = set(model.catalog)
        out[name] = {**score_cases(model, cases), "fit_seconds": round(time.perf_counter() - started, 2)}
    return out


def latency(model: Recommender, cases: list[EvalCase], k: int = 10, repeats: int = 1) -> dict:
    """Single-request ``recommend`` latency over the cases' histories (p50/p99 in milliseconds)."""
    times = []
    for _ in range(repeats):
        for case in cases:
            history = [b for b in case.history if b in model.known_items]
            started = time.perf_counter()
            model.recommend(history, k)
            times.append(time.perf_counter() - started)
    ms = np.array(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="directory with the goodbooks files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--params", type=json.loads, default=None, help="JSON overriding DEFAULT_PARAMS")
    parser.add_argument("--no-baselines", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")

    data = load(args.data)
    train, test = split_users(data.ratings, test_fraction=args.test_fraction, seed=args.seed)
    started = time.perf_counter()
    model = fit(train, data.books, args.params, seed=args.seed)
    fit_seconds = time.perf_counter() - started
    cases = history_split(test, seed=args.seed)
    report = {
        "model": {**score_cases(model, cases), "fit_seconds": round(fit_seconds, 2)},
        "params": model.params,
        "items_modelled": len(model.item_ids),
        "latency_k10": latency(model, cases, k=10, repeats=3),
        "train_users": int(train["user_id"].nunique()),
        "data_defects": data.defects,
    }
    if not args.no_baselines:
        report["baselines"] = evaluate_baselines(train, test, seed=args.seed)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
