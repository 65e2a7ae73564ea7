"""Fit entry point of the fraud model (`train`): transactions file -> gradient-boosted trees -> ONNX artifact.

Stratified held-out split (`algorithm.split`); the decision threshold is chosen by the algorithm on
training data for its stated precision/recall goal; AUC, PR-AUC, precision, recall and F1 are
measured on the held-out rows only. The artifact is the algorithm's save dir (model.onnx +
model.json + the LightGBM booster model.lgb.txt, which explanations read) plus the drift reference
(score and numeric inputs), `importances.json` (global importances of the held-out rows' explanations,
for the model card), and `mlplat-model.json` whose `params.online_defaults` (training medians of the
online-store features) is what the runtime serves when the store fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.data.drift import Reference
from ml.models.fraud import algorithm, data
from ml.models.fraud.explain import TreeExplainer
from ml.models.fraud.features import ONLINE_FEATURES
from ml.training.outputs import IMPORTANCES_FILE, TrainOutput, write_metadata

NAME = "fraud"
DRIFT_FEATURES = ("amount", "transaction_hour", "device_trust_score", "velocity_last_24h", "cardholder_age")


def online_defaults(train_df: pd.DataFrame) -> dict[str, float]:
    """Fallback values of the online-store features: their training medians."""
    return {f: float(train_df[f].median()) for f in ONLINE_FEATURES}


def reference_columns(model: Any, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    cols = {"score": np.asarray(model.predict_proba(data.encode(frame)), dtype=float)}
    cols.update({f: frame[f].to_numpy(dtype=float) for f in DRIFT_FEATURES})
    return cols


def train(data_dir: Path, out_dir: Path, params: dict[str, Any] | None = None, seed: int = 0) -> TrainOutput:
    frame = data.load(Path(data_dir))
    train_df, test_df = algorithm.split(frame, seed)
    model = algorithm.fit(train_df, params, seed)
    metrics = {k: float(v) for k, v in algorithm.evaluate(model, test_df).items()}
    out_dir = Path(out_dir)
    model.save(out_dir)
    Reference.from_columns(reference_columns(model, train_df)).save(out_dir)
    importances = TreeExplainer(model.booster_text).importances(data.encode(test_df))
    (out_dir / IMPORTANCES_FILE).write_text(json.dumps(importances, indent=2) + "\n")
    used = {**dict(getattr(model, "params", None) or params or {}), "threshold": float(model.threshold),
            "online_defaults": online_defaults(train_df)}
    write_metadata(out_dir, NAME, metrics, used)
    info = {"rows": len(frame), "train_rows": len(train_df), "test_rows": len(test_df),
            "positives": int(frame["is_fraud"].sum()), "seed": seed}
    return TrainOutput(NAME, out_dir, used, metrics, info, segments=segment_metrics(model, test_df))


SEGMENTS = {"domestic": ("foreign_transaction", 0), "foreign": ("foreign_transaction", 1)}


def segment_metrics(model: Any, test_df: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Held-out metrics per segment (domestic / foreign transactions); a segment with one class only
    reports its size (AUC and F1 need both classes)."""
    out: dict[str, dict[str, float]] = {}
    for name, (column, value) in SEGMENTS.items():
        part = test_df[test_df[column] == value]
        if part.empty:
            continue
        if part["is_fraud"].nunique() < 2:
            out[name] = {"rows": float(len(part)), "positives": float(part["is_fraud"].sum())}
            continue
        out[name] = {k: float(v) for k, v in algorithm.evaluate(model, part).items() if k != "threshold"}
    return out
