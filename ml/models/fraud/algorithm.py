"""Learning algorithm of the fraud model: LightGBM gradient-boosted trees served through ONNX.

Protocol (docs in README.md next to this file):
- `split`: stratified hold-out (default 25 %) of the labelled file; the hold-out is only scored.
- `fit`: the decision threshold is chosen on out-of-fold scores of a stratified K-fold inside the
  training rows (K = `threshold_folds`, default 5) -- every training positive is a validation
  positive once, which matters with ~100 positives. Goal: maximise F1 subject to precision >= 0.90
  (`min_precision`); if no threshold reaches that precision, the F1-maximising one is used and
  `validation["goal_met"]` is False. The served model is then refit on all training rows.
- `FraudModel.predict_proba` always runs the exported ONNX graph in onnxruntime, so training-time
  evaluation, the MLServer runtime and the benchmarks score with the same artifact.

No MLflow/MLServer/Feast imports here: the pipeline and the runtime wrap this module.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import onnxruntime as ort
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

from ml.models.fraud import data
from ml.models.fraud.onnx_export import INPUT, OUTPUT, to_onnx

# Chosen by 2x4-fold cross-validation inside the training rows of split(seed=0) of the shared file
# (README "How the defaults were chosen"); the hold-out was not used.
DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 400, "learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 5,
    "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8,
    "min_precision": 0.9, "threshold_folds": 5,
}
_PROTOCOL_KEYS = ("min_precision", "threshold_folds")
METRIC_KEYS = ("auc", "pr_auc", "precision", "recall", "f1")
BOOSTER_FILE = "model.lgb.txt"  # the booster beside the ONNX graph, for explanations


def _labels(df: pd.DataFrame, what: str) -> np.ndarray:
    if data.LABEL not in df.columns:
        raise ValueError(f"{what}: column '{data.LABEL}' (0/1 label) is missing")
    y = df[data.LABEL].to_numpy()
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{what}: '{data.LABEL}' must be 0/1 (use data.load_transactions to parse TRUE/FALSE)")
    return y.astype(np.int64)


def split(df: pd.DataFrame, seed: int = 0, test_size: float = 0.25) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified (train, test) split of labelled transactions."""
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    y = _labels(df, "split")
    counts = np.bincount(y, minlength=2)
    if counts.min() < 2:
        raise ValueError(f"split needs >= 2 rows of each class, got {counts[0]} legit and {counts[1]} fraud")
    train, test = train_test_split(df, test_size=test_size, stratify=y, random_state=seed)
    return train.copy(), test.copy()


def choose_threshold(y: np.ndarray, scores: np.ndarray, min_precision: float = 0.9) -> tuple[float, dict]:
    """Threshold maximising F1 among those with precision >= min_precision (else plain max F1).

    The cut is placed half-way, in logit space, between the lowest score kept and the next lower
    score, so it does not sit on a validation score.
    """
    precision, recall, cuts = precision_recall_curve(y, scores)
    precision, recall = precision[:-1], recall[:-1]
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    ok = precision >= min_precision
    best = int(np.flatnonzero(ok)[np.argmax(f1[ok])]) if ok.any() else int(np.argmax(f1))
    cut = float(cuts[best])
    below = scores[scores < cut]
    if below.size:
        logit = lambda p: np.log(np.clip(p, 1e-9, 1 - 1e-9) / (1 - np.clip(p, 1e-9, 1 - 1e-9)))  # noqa: E731
        mid = (logit(cut) + logit(float(below.max()))) / 2
        cut = float(1 / (1 + np.exp(-mid)))
    info = {"precision": float(precision[best]), "recall": float(recall[best]), "f1": float(f1[best]),
            "goal": f"max F1 s.t. precision >= {min_precision}", "goal_met": bool(ok.any())}
    return cut, info


class FraudModel:
    """A fitted fraud model: the ONNX graph, its decision threshold and its input contract."""

    def __init__(self, onnx_bytes: bytes, threshold: float, features: list[str] | None = None,
                 params: dict[str, Any] | None = None, categories: list[str] | None = None,
                 validation: dict[str, Any] | None = None, booster_text: str | None = None) -> None:
        self.onnx_bytes = onnx_bytes
        # The LightGBM booster the graph was exported from (its text format): what explanations read
        # (ml/models/fraud/explain.py); scoring never uses it. None for versions saved before it shipped.
        self.booster_text = booster_text
        self.threshold = float(threshold)
        self.features = list(features or data.FEATURES)
        self.params = dict(params or {})
        self.categories = list(categories or data.MERCHANT_CATEGORIES)
        self.validation = dict(validation or {})
        opts = ort.SessionOptions()
        # One thread: a single-row call is a few microseconds of tree walking; thread hand-off
        # would cost more than it saves, and MLServer scales with worker processes instead.
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """1-D fraud probability (float32) for an encoded matrix [n, len(features)]."""
        x = np.asarray(X, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(f"expected an encoded matrix of shape [n, {len(self.features)}] "
                             f"(columns {self.features}), got shape {list(x.shape)}")
        return self._session.run([OUTPUT], {INPUT: np.ascontiguousarray(x)})[0][:, 0]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """0/1 fraud decision: probability >= threshold."""
        return (self.predict_proba(X) >= self.threshold).astype(np.int64)

    def save(self, dir: Path) -> None:
        dir = Path(dir)
        dir.mkdir(parents=True, exist_ok=True)
        (dir / "model.onnx").write_bytes(self.onnx_bytes)
        if self.booster_text is not None:
            (dir / BOOSTER_FILE).write_text(self.booster_text)
        meta = {"format": "mlplatform-fraud/1", "threshold": self.threshold, "features": self.features,
                "categories": self.categories, "params": self.params, "validation": self.validation,
                "onnx": {"input": INPUT, "output": OUTPUT}, "decision": "fraud if fraud_probability >= threshold"}
        (dir / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, dir: Path) -> FraudModel:
        dir = Path(dir)
        for name in ("model.onnx", "model.json"):
            if not (dir / name).is_file():
                raise FileNotFoundError(f"{dir}: {name} is missing (not a fraud model directory)")
        meta = json.loads((dir / "model.json").read_text())
        # The encoding lives in code (data.encode): refuse a model saved with another contract.
        if meta.get("features") != data.FEATURES or meta.get("categories") != list(data.MERCHANT_CATEGORIES):
            raise ValueError(f"{dir}/model.json: features/categories {meta.get('features')}/{meta.get('categories')} "
                             f"differ from this code's encoding {data.FEATURES}/{list(data.MERCHANT_CATEGORIES)}")
        booster = dir / BOOSTER_FILE
        return cls((dir / "model.onnx").read_bytes(), meta["threshold"], meta["features"], meta.get("params"),
                   meta["categories"], meta.get("validation"),
                   booster.read_text() if booster.is_file() else None)


def _split_params(params: dict[str, Any] | None) -> tuple[dict[str, Any], float, int]:
    merged = {**DEFAULT_PARAMS, **(params or {})}
    min_precision = float(merged["min_precision"])
    folds = int(merged["threshold_folds"])
    if not 0.0 <= min_precision <= 1.0:
        raise ValueError(f"min_precision must be in [0, 1], got {min_precision}")
    if folds < 2:
        raise ValueError(f"threshold_folds must be >= 2, got {folds}")
    return {k: v for k, v in merged.items() if k not in _PROTOCOL_KEYS}, min_precision, folds


def _classifier(lgb_params: dict[str, Any], seed: int) -> lgb.LGBMClassifier:
    # n_jobs=1: on a busy 2-core box LightGBM's OpenMP threads fight each other (10x slower).
    return lgb.LGBMClassifier(**{"verbose": -1, "n_jobs": 1, "random_state": seed, **lgb_params})


def fit(train: pd.DataFrame, params: dict | None = None, seed: int = 0) -> FraudModel:
    """Fit on `train` (encoded with data.encode); threshold from out-of-fold validation scores."""
    lgb_params, min_precision, folds = _split_params(params)
    y = _labels(train, "fit")
    positives = int(y.sum())
    if positives < folds or len(y) - positives < folds:
        raise ValueError(f"fit needs >= {folds} rows of each class for {folds}-fold threshold selection, "
                         f"got {len(y) - positives} legit and {positives} fraud")
    X = data.encode(train)
    oof = np.zeros(len(y))
    for tr, va in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        oof[va] = _classifier(lgb_params, seed).fit(X[tr], y[tr]).predict_proba(X[va])[:, 1]
    threshold, info = choose_threshold(y, oof, min_precision)
    info.update({"auc": float(roc_auc_score(y, oof)), "pr_auc": float(average_precision_score(y, oof)),
                 "method": f"{folds}-fold out-of-fold scores on the training rows", "rows": len(y),
                 "positives": positives})
    final = _classifier(lgb_params, seed).fit(X, y)
    onnx_model = to_onnx(final.booster_, X.shape[1])
    used = {**lgb_params, "min_precision": min_precision, "threshold_folds": folds, "seed": seed}
    return FraudModel(onnx_model.SerializeToString(), threshold, data.FEATURES, used,
                      list(data.MERCHANT_CATEGORIES), info, final.booster_.model_to_string())


def evaluate(model: FraudModel, df: pd.DataFrame) -> dict:
    """auc, pr_auc, precision, recall, f1 (at model.threshold) plus threshold, rows, positives."""
    y = _labels(df, "evaluate")
    if len(np.unique(y)) < 2:
        raise ValueError(f"evaluate needs both classes in the labels, got only {int(y[0])} ({len(y)} rows)")
    p = model.predict_proba(data.encode(df))
    decided = p >= model.threshold
    tp = int((decided & (y == 1)).sum())
    precision = tp / int(decided.sum()) if decided.any() else 0.0
    recall = tp / int(y.sum())
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"auc": float(roc_auc_score(y, p)), "pr_auc": float(average_precision_score(y, p)),
            "precision": float(precision), "recall": float(recall), "f1": float(f1),
            "threshold": model.threshold, "rows": len(y), "positives": int(y.sum())}


def latency_us(model: FraudModel, df: pd.DataFrame, calls: int = 2000) -> dict[str, float]:
    """Single-row in-process latency percentiles (microseconds): ONNX call, and encode + ONNX call."""
    X = data.encode(df)
    rows = [df.iloc[[i % len(df)]] for i in range(min(len(df), 200))]
    for i in range(200):  # warm-up
        model.predict_proba(X[i % len(X)][None, :])

    def timed(fn: Any) -> np.ndarray:
        out = np.empty(calls)
        for i in range(calls):
            started = time.perf_counter()
            fn(i)
            out[i] = time.perf_counter() - started
        return out * 1e6

    onnx_only = timed(lambda i: model.predict_proba(X[i % len(X)][None, :]))
    with_encode = timed(lambda i: model.predict_proba(data.encode(rows[i % len(rows)])))
    pct = {"p50": 50, "p99": 99}
    out: dict[str, float] = {f"predict_{k}_us": float(np.percentile(onnx_only, q)) for k, q in pct.items()}
    out.update({f"encode_predict_{k}_us": float(np.percentile(with_encode, q)) for k, q in pct.items()})
    return {**out, "calls": calls}


def cross_validate(df: pd.DataFrame, folds: int = 5, seed: int = 0, params: dict | None = None) -> dict:
    """Outer stratified K-fold over the whole labelled file: fit (threshold inside) and evaluate per fold.

    Evidence of how much the hold-out numbers vary; never used to choose parameters.
    """
    y = _labels(df, "cross_validate")
    per_fold = []
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(df, y):
        per_fold.append(evaluate(fit(df.iloc[tr], params, seed), df.iloc[te]))
    summary = {k: {"mean": float(np.mean([m[k] for m in per_fold])), "std": float(np.std([m[k] for m in per_fold])),
                   "min": float(np.min([m[k] for m in per_fold]))} for k in METRIC_KEYS}
    return {"folds": folds, "seed": seed, "summary": summary, "per_fold": per_fold}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the fraud model on DIR/" + data.FILE + ", score the hold-out, "
                                     "print JSON (metrics, threshold, single-row latency).")
    parser.add_argument("--data", type=Path, required=True, help="directory holding " + data.FILE + "[.gz]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--cv", type=int, default=0, help="also run an outer K-fold cross-validation (evidence only)")
    parser.add_argument("--calls", type=int, default=2000, help="single-row calls for the latency measurement")
    parser.add_argument("--out", type=Path, help="save the fitted model (model.onnx + model.json) here")
    args = parser.parse_args(argv)
    frame = data.load(args.data)
    train, test = split(frame, args.seed, args.test_size)
    started = time.perf_counter()
    model = fit(train, seed=args.seed)
    fit_s = time.perf_counter() - started
    report: dict[str, Any] = {
        "data": frame.attrs["contract"], "train_rows": len(train), "test_rows": len(test),
        "fit_seconds": round(fit_s, 2), "threshold": model.threshold, "validation": model.validation,
        "test": evaluate(model, test), "latency": latency_us(model, test, args.calls), "params": model.params,
    }
    if args.cv:
        report["cross_validation"] = cross_validate(frame, args.cv, args.seed)
    if args.out:
        model.save(args.out)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
