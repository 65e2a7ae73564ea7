"""Training pipeline of the fraud model: transactions file -> gradient-boosted trees -> ONNX artifact.

Stratified held-out split (`algorithm.split`); the decision threshold is chosen by the algorithm on
training data for its stated precision/recall goal; AUC, PR-AUC, precision, recall and F1 are
measured on the held-out rows only. The artifact is the algorithm's save dir (model.onnx +
model.json) plus the drift reference (score and numeric inputs), and `mlplat-model.json` whose
`params.online_defaults` (training medians of the online-store features) is what the runtime
serves when the store fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.data.drift import Reference
from ml.models.fraud import algorithm, data
from ml.models.fraud.features import ONLINE_FEATURES
from ml.training.outputs import TrainOutput, write_metadata

NAME = "fraud"
DRIFT_FEATURES = ("amount", "transaction_hour", "device_trust_score", "velocity_last_24h", "cardholder_age")


def generate_sample(out_dir: Path, seed: int = 0) -> Path:
    """A small synthetic transactions file (real name and schema) in `out_dir`."""
    data.generate_sample(Path(out_dir), seed=seed)
    return Path(out_dir)


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


def evaluate(model_dir: Path, data_file: Path) -> dict[str, float]:
    """Metrics on a file with the schema of credit_card_fraud_10k.csv."""
    model = algorithm.FraudModel.load(Path(model_dir))
    frame = data.load_transactions(Path(data_file))
    return {k: float(v) for k, v in algorithm.evaluate(model, frame).items()}


def _rows(data_dir: Path, n: int, seed: int) -> pd.DataFrame:
    frame = data.load(Path(data_dir))
    return frame.sample(n=min(n, len(frame)), random_state=seed)


def request_body(row: pd.Series) -> dict[str, Any]:
    """One transaction as a V2 request; card_id/device_id as materialized by features.write_parquet."""
    tid = int(row["transaction_id"])
    inputs = [
        {"name": "card_id", "datatype": "INT64", "shape": [1], "data": [tid]},
        {"name": "device_id", "datatype": "INT64", "shape": [1], "data": [tid]},
        {"name": "amount", "datatype": "FP64", "shape": [1], "data": [float(row["amount"])]},
        {"name": "transaction_hour", "datatype": "INT64", "shape": [1], "data": [int(row["transaction_hour"])]},
        {"name": "merchant_category", "datatype": "BYTES", "shape": [1], "data": [str(row["merchant_category"])]},
        {"name": "foreign_transaction", "datatype": "INT64", "shape": [1], "data": [int(row["foreign_transaction"])]},
        {"name": "location_mismatch", "datatype": "INT64", "shape": [1], "data": [int(row["location_mismatch"])]},
    ]
    return {"inputs": inputs}


def sample_requests(data_dir: Path, model_dir: Path, n: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """V2 request bodies for benchmarks: single transactions from the data."""
    return [request_body(row) for _, row in _rows(data_dir, n, seed).iterrows()]


def bare_requests(data_dir: Path, model_dir: Path, n: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """Bodies for the bare ONNX runtime: the same rows, already encoded (FP32 [1, n_features])."""
    x = data.encode(_rows(data_dir, n, seed))
    return [{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, x.shape[1]], "data": r.tolist()}]}
            for r in x]
