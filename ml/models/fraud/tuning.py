"""How DEFAULT_PARAMS were chosen: repeated stratified K-fold inside the TRAINING rows only.

    python -m ml.models.fraud.tuning --data DIR [--seed 0] [--repeats 2] [--folds 4]

Takes `algorithm.split(frame, seed)`'s training part, and for each candidate scores the full
`algorithm.fit` (threshold selection included) on inner folds. The hold-out of `split` is never
read, so the hold-out numbers of `algorithm --data DIR` stay an honest estimate.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from ml.models.fraud import algorithm, data

_BASE = {"n_estimators": 400, "learning_rate": 0.05, "num_leaves": 31, "subsample": 0.8, "subsample_freq": 1,
         "colsample_bytree": 0.8}
CANDIDATES: dict[str, dict[str, Any]] = {
    "shallow (8 leaves, 500 x 0.03)": {"n_estimators": 500, "learning_rate": 0.03, "num_leaves": 8,
                                       "min_child_samples": 5, "subsample": 1.0, "colsample_bytree": 1.0},
    "31 leaves, min_child 2": {**_BASE, "min_child_samples": 2},
    "31 leaves, min_child 5 (default)": {**_BASE, "min_child_samples": 5},
    "31 leaves, min_child 10": {**_BASE, "min_child_samples": 10},
    "min_child 5, 800 trees": {**_BASE, "min_child_samples": 5, "n_estimators": 800},
    "min_child 2, 200 trees": {**_BASE, "min_child_samples": 2, "n_estimators": 200},
    "min_child 2, colsample 0.5": {**_BASE, "min_child_samples": 2, "colsample_bytree": 0.5},
    "min_child 2, scale_pos_weight 5": {**_BASE, "min_child_samples": 2, "scale_pos_weight": 5},
}


def inner_cv(train: pd.DataFrame, params: dict[str, Any], seed: int, repeats: int, folds: int) -> dict:
    y = train[data.LABEL].to_numpy()
    scores = []
    for r in range(repeats):
        for tr, va in StratifiedKFold(folds, shuffle=True, random_state=seed + r).split(train, y):
            scores.append(algorithm.evaluate(algorithm.fit(train.iloc[tr], params, seed + r), train.iloc[va]))
    return {k: {"mean": round(float(np.mean([s[k] for s in scores])), 4),
                "std": round(float(np.std([s[k] for s in scores])), 4)} for k in algorithm.METRIC_KEYS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--folds", type=int, default=4)
    args = parser.parse_args(argv)
    train, _holdout_not_used = algorithm.split(data.load(args.data), args.seed)
    results = {}
    for name, params in CANDIDATES.items():
        results[name] = inner_cv(train, params, args.seed, args.repeats, args.folds)
        print(f"{name:34s} f1 {results[name]['f1']['mean']:.3f} +- {results[name]['f1']['std']:.3f}  "
              f"pr_auc {results[name]['pr_auc']['mean']:.3f}  auc {results[name]['auc']['mean']:.4f}", flush=True)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
