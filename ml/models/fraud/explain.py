"""Per-feature explanations of the fraud model: LightGBM's own TreeSHAP (`pred_contrib`).

The served score comes from the ONNX graph exported from a LightGBM booster; the booster itself ships
beside it (`model.lgb.txt`, algorithm.BOOSTER_FILE). For one encoded row, `predict(pred_contrib=True)`
returns one contribution per feature plus the expected value (the base value) in log-odds; they add up
to the booster's raw score, and `sigmoid(scale * raw)` is the fraud probability the graph serves (the
exporter keeps every split decision for float32 inputs, so the same leaves are reached). These are the
values SHAP's TreeExplainer computes for a tree ensemble (Lundberg et al., path-dependent TreeSHAP);
LightGBM implements the algorithm in C++, so request time needs no `shap` import.

Threads: one (`num_threads=1`); a single row is microseconds of tree walking and OpenMP hand-off on a
busy two-core box costs more than it saves (the same choice as the ONNX session).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from ml.models.fraud import algorithm, data


class NotExplainable(ValueError):
    """The model version has no booster to explain (saved before explanations shipped)."""


def _sigmoid_scale(booster: lgb.Booster) -> float:
    objective = str(booster.dump_model(num_iteration=0).get("objective", ""))
    if not objective.startswith("binary"):
        raise NotExplainable(f"only binary LightGBM models are explained, got objective {objective!r}")
    return float(objective.split("sigmoid:")[1].split()[0]) if "sigmoid:" in objective else 1.0


class TreeExplainer:
    """Contributions of every feature of `data.FEATURES` (log-odds), the base value and the raw score."""

    def __init__(self, booster_text: str) -> None:
        self.booster = lgb.Booster(model_str=booster_text)
        self.features = list(data.FEATURES)
        if self.booster.num_feature() != len(self.features):
            raise NotExplainable(f"the booster has {self.booster.num_feature()} features, the fraud encoding "
                                 f"{len(self.features)} ({self.features})")
        self.scale = _sigmoid_scale(self.booster)

    @classmethod
    def load(cls, model_dir: Path) -> TreeExplainer:
        path = Path(model_dir) / algorithm.BOOSTER_FILE
        if not path.is_file():
            raise NotExplainable(f"{model_dir}: {algorithm.BOOSTER_FILE} is missing; this fraud version predates "
                                 "explanations (retrain it: `mlplat model train fraud`)")
        return cls(path.read_text())

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """[n, n_features + 1] float64: per-feature contributions, then the base value (last column).

        The rows are read as float32 first, as the ONNX graph reads them, so both walk the same leaves."""
        rows = np.asarray(np.asarray(x, dtype=np.float32), dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(self.features):
            raise ValueError(f"expected an encoded matrix of shape [n, {len(self.features)}], got {list(rows.shape)}")
        return np.asarray(self.booster.predict(rows, pred_contrib=True, num_threads=1), dtype=np.float64)

    def probability(self, raw: np.ndarray | float) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.scale * np.asarray(raw, dtype=np.float64)))

    def logit(self, probability: float) -> float:
        """The raw score of a probability (inverse of `probability`)."""
        p = min(max(float(probability), 1e-15), 1 - 1e-15)
        return math.log(p / (1 - p)) / self.scale

    def importances(self, x: np.ndarray) -> dict[str, dict[str, float]]:
        """Global importance of each feature: mean |contribution| over the rows `x` (log-odds, the same
        unit as the explanations) and its share of the total split gain of the booster."""
        contrib = self.contributions(x)[:, :-1]
        mean_abs = np.abs(contrib).mean(axis=0)
        gain = np.asarray(self.booster.feature_importance(importance_type="gain"), dtype=np.float64)
        total = float(gain.sum()) or 1.0
        ranked = sorted(zip(self.features, mean_abs, gain, strict=True), key=lambda t: -t[1])
        return {name: {"mean_abs_contribution": float(m), "gain_share": float(g / total)} for name, m, g in ranked}


def explain_rows(explainer: TreeExplainer, x: np.ndarray) -> dict[str, Any]:
    """Contributions, base value and raw score of the encoded rows `x`, as plain arrays."""
    contrib = explainer.contributions(x)
    return {"contributions": contrib[:, :-1], "base_value": contrib[:, -1], "raw_score": contrib.sum(axis=1)}


def main(argv: list[str] | None = None) -> int:
    """`python -m ml.models.fraud.explain --data DIR`: fit the fraud model on DIR's training split and print, as
    JSON, how long one row's explanation takes with one thread (CPU and wall time per call) and how far
    sigmoid(base + sum of contributions) is from the probability the ONNX graph serves on the held-out rows."""
    parser = argparse.ArgumentParser(prog="python -m ml.models.fraud.explain", description=main.__doc__)
    parser.add_argument("--data", type=Path, required=True, help="directory holding " + data.FILE + "[.gz]")
    parser.add_argument("--trees", type=int, help="n_estimators (default: the model's default)")
    parser.add_argument("--calls", type=int, default=2000, help="timed single-row explanations")
    args = parser.parse_args(argv)
    train, test = algorithm.split(data.load(args.data), 0)
    model = algorithm.fit(train, {"n_estimators": args.trees} if args.trees else None, 0)
    explainer = TreeExplainer(str(model.booster_text))
    x = data.encode(test)
    gap = np.abs(explainer.probability(explainer.contributions(x).sum(axis=1)) - model.predict_proba(x)).max()
    wall, cpu = np.empty(args.calls), np.empty(args.calls)
    for i in range(args.calls):
        row = x[i % len(x)][None, :]
        started, started_cpu = time.perf_counter(), time.process_time()
        explainer.contributions(row)
        wall[i], cpu[i] = time.perf_counter() - started, time.process_time() - started_cpu
    print(json.dumps({
        "trees": explainer.booster.num_trees(), "calls": args.calls, "threads": 1,
        "wall_p50_ms": round(float(np.percentile(wall, 50)) * 1e3, 3),
        "wall_p99_ms": round(float(np.percentile(wall, 99)) * 1e3, 3),
        "cpu_mean_ms": round(float(cpu.mean()) * 1e3, 3),
        "max_abs_probability_gap_vs_onnx": float(gap), "load_average": list(os.getloadavg()),
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
