"""Training pipeline of the sentiment model: Twitter + Reddit files -> text classifier -> artifact.

Held-out split from `algorithm.split` (stratified); metrics from `algorithm.evaluate` (macro-F1,
accuracy, per-class F1) on the held-out rows only. The artifact is the classifier's save dir plus
the drift reference (confidence score and text length) and `mlplat-model.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ml.common.drift import Reference
from ml.common.pipeline import TrainOutput, write_metadata
from ml.models.sentiment import algorithm, data

NAME = "sentiment"


def generate_sample(out_dir: Path, seed: int = 0) -> Path:
    """Small synthetic Twitter_Data.csv and Reddit_Data.csv (real schemas) in `out_dir`."""
    data.generate_sample(Path(out_dir), seed=seed)
    return Path(out_dir)


def reference_columns(model: Any, texts: list[str]) -> dict[str, np.ndarray]:
    """What the runtime monitors for drift: the top-class probability and the text length (words)."""
    proba = np.asarray(model.predict_proba(texts))
    return {"score": proba.max(axis=1), "text_length": np.array([len(t.split()) for t in texts], dtype=float)}


def train(data_dir: Path, out_dir: Path, params: dict[str, Any] | None = None, seed: int = 0) -> TrainOutput:
    frame = data.load(Path(data_dir))
    train_df, test_df = algorithm.split(frame, seed)
    model = algorithm.fit(train_df["text"].tolist(), train_df["label"].tolist(), params, seed)
    metrics = {k: float(v) for k, v in algorithm.evaluate(model, test_df).items()}
    out_dir = Path(out_dir)
    model.save(out_dir)
    sample = test_df["text"].tolist()[:5000]
    Reference.from_columns(reference_columns(model, sample)).save(out_dir)
    used = dict(getattr(model, "params", None) or params or {})
    write_metadata(out_dir, NAME, metrics, used)
    info = {"rows": len(frame), "train_rows": len(train_df), "test_rows": len(test_df), "seed": seed,
            **{f"rows_{s}": int(n) for s, n in frame["source"].value_counts().items()}}
    return TrainOutput(NAME, out_dir, used, metrics, info)


def evaluate(model_dir: Path, data_file: Path) -> dict[str, float]:
    """Metrics on one file of either schema (Twitter `clean_text` or Reddit `clean_comment`)."""
    model = algorithm.SentimentModel.load(Path(model_dir))
    frame = data.load_file(Path(data_file))
    return {k: float(v) for k, v in algorithm.evaluate(model, frame).items()}


def sample_requests(data_dir: Path, model_dir: Path, n: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """V2 request bodies for benchmarks: single texts drawn from the data."""
    frame = data.load(Path(data_dir))
    texts = frame["text"].sample(n=min(n, len(frame)), random_state=seed).tolist()
    return [{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [t]}]} for t in texts]
