"""Fit entry point of the sentiment model (`train`): human-labelled tweets + lexicon-labelled files -> stacked
classifier -> artifact.

Held-out rows: 20 % of the human-labelled file (stratified by label) and 20 % of the lexicon-labelled
rows (stratified by label and source), both from `algorithm.split` with the run's seed; the model
is fitted on the other 80 % of each. Metrics (`algorithm.evaluate`):

- `human_macro_f1`, `human_accuracy`, `human_f1_*`: against people's labels -- the quality gate;
- `lexicon_macro_f1`, `lexicon_accuracy`, `lexicon_f1_*`: against the lexicon tool's labels.

Without the human-labelled file in the data directory the model learns from lexicon labels only and
reports no `human_*` metric, so the human gate fails and the version is never promoted. The
artifact is the classifier's save dir plus the drift reference (confidence score and text length)
and `mlplat-model.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ml.data.drift import Reference
from ml.models.sentiment import algorithm, data
from ml.training.outputs import TrainOutput, write_metadata

NAME = "sentiment"
HUMAN, LEXICON = "human", "lexicon"  # metric prefixes


def reference_columns(model: Any, texts: list[str]) -> dict[str, np.ndarray]:
    """What the runtime monitors for drift: the top-class probability and the text length (words)."""
    proba = np.asarray(model.predict_proba(texts))
    return {"score": proba.max(axis=1), "text_length": np.array([len(t.split()) for t in texts], dtype=float)}


def _prefixed(prefix: str, metrics: dict) -> dict[str, float]:
    return {f"{prefix}_{k}": float(v) for k, v in metrics.items()}


def train(data_dir: Path, out_dir: Path, params: dict[str, Any] | None = None, seed: int = 0) -> TrainOutput:
    weak = data.load(Path(data_dir))
    human = data.load_human(Path(data_dir))
    weak_train, weak_test = algorithm.split(weak, seed)
    if human is not None:
        human_train, human_test = algorithm.split(human, seed)
        model = algorithm.fit(human_train["text"].tolist(), human_train["label"].to_numpy(),
                              weak_train["text"].tolist(), weak_train["label"].to_numpy(), params, seed)
    else:
        human_train = human_test = None
        model = algorithm.fit(weak_train["text"].tolist(), weak_train["label"].to_numpy(), params=params, seed=seed)
    metrics: dict[str, float] = {}
    segments: dict[str, dict[str, float]] = {}
    if human_test is not None:
        metrics |= _prefixed(HUMAN, algorithm.evaluate(model, human_test))
        segments[data.HUMAN] = metrics.copy()
    metrics |= _prefixed(LEXICON, algorithm.evaluate(model, weak_test))
    for source, rows in weak_test.groupby("source"):
        segments[str(source)] = _prefixed(LEXICON, algorithm.evaluate(model, rows))
    out_dir = Path(out_dir)
    model.save(out_dir)
    served = human_test if human_test is not None else weak_test  # raw tweets are what the service gets
    Reference.from_columns(reference_columns(model, served["text"].tolist()[:5000])).save(out_dir)
    used = dict(model.params)
    write_metadata(out_dir, NAME, metrics, used)
    info = {"rows": len(weak) + (0 if human is None else len(human)), "seed": seed,
            "train_rows_lexicon": len(weak_train), "test_rows_lexicon": len(weak_test),
            **{f"rows_{s}": int(n) for s, n in weak["source"].value_counts().items()}}
    if human is not None:
        info |= {"rows_human": len(human), "train_rows_human": len(human_train), "test_rows_human": len(human_test)}
    return TrainOutput(NAME, out_dir, used, metrics, info, segments=segments)
