"""Hyper-parameter search for the recommendation model on a validation split of the TRAINING users.

The held-out test users of ``split_users`` never enter this search: the training users are split
again (whole users, another seed) into a fitting part and a validation part, and the protocol is
applied to the validation part. ``DEFAULT_PARAMS`` in ``algorithm.py`` holds the winner.

Run: ``python -m ml.models.recommendation.tuning --data DIR`` (JSON on stdout).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import time
from pathlib import Path

import pandas as pd

from ml.models.recommendation.algorithm import DEFAULT_PARAMS, _params, finish_weights, item_weights
from ml.models.recommendation.data import load
from ml.models.recommendation.ease import item_counts
from ml.models.recommendation.protocol import history_split, score_cases, split_users
from ml.models.recommendation.recommender import Recommender

log = logging.getLogger(__name__)

# Parameters that need a new matrix inverse, and cheap post-processing ones tried on each inverse.
DEFAULT_GRID: dict[str, list] = {
    "l2": [250.0, 500.0, 1000.0, 2000.0],
    "dropout": [0.0, 0.15, 0.3],
    "low_weight": [1.0, 0.5],
}
DEFAULT_POST_GRID: dict[str, list] = {"pop_exponent": [0.0, 0.1, 0.2, 0.3]}


def _combos(grid: dict[str, list]) -> list[dict]:
    keys = sorted(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def tune(
    train: pd.DataFrame,
    grid: dict[str, list] | None = None,
    post_grid: dict[str, list] | None = None,
    base: dict | None = None,
    seed: int = 0,
    validation_fraction: float = 0.2,
    metric: str = "ndcg@10",
) -> dict:
    """Best params by ``metric`` on validation users carved from ``train``, plus the full table."""
    fit_part, val_part = split_users(train, test_fraction=validation_fraction, seed=seed + 1)
    cases = history_split(val_part, seed=seed)
    catalog = {int(b): ("", "") for b in train["book_id"].unique()}
    rows = []
    for combo in _combos(grid or DEFAULT_GRID):
        p = _params({**DEFAULT_PARAMS, **(base or {}), **combo})
        counts = item_counts(fit_part)
        counts = counts[counts >= int(p["min_item_ratings"])]
        started = time.perf_counter()
        raw = item_weights(fit_part, counts.index.to_numpy(), p)
        seconds = time.perf_counter() - started
        for post in _combos(post_grid or DEFAULT_POST_GRID):
            q = {**p, **post}
            weights = finish_weights(raw, counts.to_numpy(), q)
            model = Recommender(counts.index.to_numpy(), weights, counts.to_numpy(), catalog, q)
            scores = score_cases(model, cases)
            rows.append({**combo, **post, **{m: round(scores[m], 4) for m in ("ndcg@10", "recall@10")}})
            log.info("%s fit %.1fs -> %s", {**combo, **post}, seconds, rows[-1][metric])
    best = max(rows, key=lambda r: r[metric])
    best_params = {**DEFAULT_PARAMS, **(base or {}), **{k: v for k, v in best.items() if k in DEFAULT_PARAMS}}
    return {
        "best": best,
        "best_params": best_params,
        "validation_users": len(cases),
        "fit_users": int(fit_part["user_id"].nunique()),
        "table": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tune the recommender on a validation split of train users")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", type=json.loads, default=None, help="JSON {param: [values]} (inverse)")
    parser.add_argument("--post-grid", type=json.loads, default=None, help="JSON {param: [values]} (cheap)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    data = load(args.data)
    train, _test = split_users(data.ratings, seed=args.seed)  # the test users are never looked at
    print(json.dumps(tune(train, args.grid, args.post_grid, seed=args.seed), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
