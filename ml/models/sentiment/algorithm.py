"""Learning algorithm of the sentiment model: negation-aware word features + linear SVM.

Model: binary presence of whitespace tokens (``not_<word>`` after a negation word), each token's
feature value set by how often it occurs in neutral training texts (see ``tokens.py``), one-vs-rest
linear SVM (liblinear). Probabilities are a softmax of the three decision scores with one
temperature fitted on the training scores. Serving needs no scikit-learn: the artifact is the
vocabulary (JSON) and a weight matrix (NPZ), and a prediction is a sum of weight rows.

No sentiment lexicon or lexicon tool is used anywhere: every weight is learned from labelled text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.svm import LinearSVC

from ml.models.sentiment import tokens as tok

CLASSES = (-1, 0, 1)
FORMAT = "mlplat-sentiment-linear/1"
DEFAULT_PARAMS: dict[str, Any] = {
    "C": 1.0,  # C and neutral_ratio: best of the validation grid in measure.py (see README)
    "neutral_ratio": 0.05,
    "off_weight": 0.3,
    "negations": ["not", "never"],
    "max_chars": 2000,  # Reddit comments reach 8.7k characters; the first 2k carry the signal
    "max_iter": 5000,
}


def _check_texts(texts: list[str]) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings, not a single string")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise ValueError(f"text {i} is {type(t).__name__}, expected str")
        if not t.strip():
            raise ValueError(f"text {i} is empty or whitespace-only")
    return out


@dataclass
class SentimentModel:
    """Vocabulary + per-token weight rows (feature scaling already folded in) + bias."""

    vocabulary: dict[str, int]
    weights: np.ndarray  # (n_tokens, 3) float64, columns in CLASSES order
    bias: np.ndarray  # (3,)
    temperature: float
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def max_chars(self) -> int:
        return int(self.params["max_chars"])

    def __post_init__(self) -> None:
        self._negations = frozenset(self.params["negations"])

    def decision_function(self, texts: list[str]) -> np.ndarray:
        texts = _check_texts(texts)
        out = np.empty((len(texts), len(CLASSES)))
        vocab, weights = self.vocabulary, self.weights
        for i, text in enumerate(texts):
            ids = {vocab[t] for t in tok.tokenize(text, self.max_chars, self._negations) if t in vocab}
            out[i] = weights[list(ids)].sum(axis=0) + self.bias if ids else self.bias
        return out

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """(n, 3) class probabilities, columns in CLASSES order (-1, 0, 1)."""
        return softmax(self.decision_function(texts) / self.temperature, axis=1)

    def predict(self, texts: list[str]) -> np.ndarray:
        return np.asarray(CLASSES)[self.decision_function(texts).argmax(axis=1)]

    def save(self, dir: Path) -> None:
        """Write ``model.json`` (vocabulary, params) and ``weights.npz``; no pickle."""
        dir = Path(dir)
        dir.mkdir(parents=True, exist_ok=True)
        vocab = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        meta = {
            "format": FORMAT,
            "classes": list(CLASSES),
            "params": self.params,
            "temperature": self.temperature,
            "vocabulary": vocab,
        }
        (dir / "model.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        np.savez(dir / "weights.npz", weights=self.weights, bias=self.bias)

    @classmethod
    def load(cls, dir: Path) -> SentimentModel:
        dir = Path(dir)
        try:
            meta = json.loads((dir / "model.json").read_text(encoding="utf-8"))
            arrays = np.load(dir / "weights.npz", allow_pickle=False)
        except FileNotFoundError as exc:
            raise ValueError(f"{dir}: not a sentiment model directory ({exc.filename} missing)") from exc
        if meta.get("format") != FORMAT or meta.get("classes") != list(CLASSES):
            raise ValueError(f"{dir}: unsupported model format {meta.get('format')!r}, expected {FORMAT!r}")
        vocab = {t: i for i, t in enumerate(meta["vocabulary"])}
        weights = arrays["weights"]
        if weights.shape != (len(vocab), len(CLASSES)):
            raise ValueError(f"{dir}: weights shape {weights.shape} does not match {len(vocab)} tokens")
        return cls(vocab, weights, arrays["bias"], float(meta["temperature"]), meta["params"])


def split(df: pd.DataFrame, seed: int = 0, test_size: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train / held-out split stratified by label and (when present) source."""
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be between 0 and 1, got {test_size}")
    strata = df["label"].astype(str)
    if "source" in df.columns:
        strata = strata + "/" + df["source"].astype(str)
    train, test = train_test_split(df, test_size=test_size, random_state=seed, stratify=strata)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def _fit_temperature(scores: np.ndarray, y_idx: np.ndarray) -> float:
    def nll(log_t: float) -> float:
        lp = log_softmax(scores / np.exp(log_t), axis=1)
        return float(-lp[np.arange(len(y_idx)), y_idx].mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded").x))


def fit(texts: list[str], labels: np.ndarray, params: dict | None = None, seed: int = 0) -> SentimentModel:
    """Train on ``texts`` with labels in CLASSES; ``params`` override DEFAULT_PARAMS."""
    unknown = set(params or {}) - set(DEFAULT_PARAMS)
    if unknown:
        raise ValueError(f"unknown sentiment params {sorted(unknown)}; known: {sorted(DEFAULT_PARAMS)}")
    p = {**DEFAULT_PARAMS, **(params or {})}
    texts = _check_texts(texts)
    y = np.asarray(labels)
    if len(y) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(y)} labels")
    bad = ~np.isin(y, CLASSES)
    if bad.any():
        raise ValueError(f"label {y[bad][:1].tolist()[0]!r} is not one of {CLASSES}")
    missing = set(CLASSES) - set(np.unique(y).tolist())
    if missing:
        raise ValueError(f"training labels lack class(es) {sorted(missing)}; need all of {CLASSES}")

    negations = frozenset(p["negations"])
    token_lists = [tok.tokenize(t, int(p["max_chars"]), negations) for t in texts]
    vocab = tok.build_vocabulary(token_lists)
    x = tok.binary_matrix(token_lists, vocab)
    scale = tok.neutral_weights(x, y, float(p["neutral_ratio"]), float(p["off_weight"]))
    svm = LinearSVC(C=float(p["C"]), max_iter=int(p["max_iter"]), random_state=seed)
    svm.fit(x.multiply(scale).tocsr(), y)
    order = [list(svm.classes_).index(c) for c in CLASSES]
    # Fold the per-token scale into the weights: serving only sums rows.
    weights = np.ascontiguousarray((svm.coef_[order] * scale).T)
    bias = svm.intercept_[order].copy()
    model = SentimentModel(vocab, weights, bias, 1.0, p)
    y_idx = np.searchsorted(CLASSES, y)
    model.temperature = _fit_temperature(model.decision_function(texts), y_idx)
    return model


def evaluate(model: SentimentModel, df: pd.DataFrame) -> dict:
    """Macro-F1, accuracy and per-class F1 of ``model`` on ``df`` (columns text, label)."""
    if df.empty:
        raise ValueError("cannot evaluate on an empty frame")
    y = df["label"].to_numpy()
    pred = model.predict(df["text"].tolist())
    per_class = f1_score(y, pred, labels=list(CLASSES), average=None, zero_division=0)
    return {
        "macro_f1": float(f1_score(y, pred, labels=list(CLASSES), average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y, pred)),
        "f1_negative": float(per_class[0]),
        "f1_neutral": float(per_class[1]),
        "f1_positive": float(per_class[2]),
        "rows": len(df),
    }


if __name__ == "__main__":
    from ml.models.sentiment.measure import main

    raise SystemExit(main())
