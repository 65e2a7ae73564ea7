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

import math
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from ml.models.fraud import data
from ml.models.fraud.algorithm import BOOSTER_FILE


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
        path = Path(model_dir) / BOOSTER_FILE
        if not path.is_file():
            raise NotExplainable(f"{model_dir}: {BOOSTER_FILE} is missing; this fraud version predates "
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
