"""Fit entry point of the recommendation model (`train`): goodbooks files -> two-stage model -> artifact.

Whole users are held out (`split_users`, 20 %); the held-out users are scored with the protocol of
`protocol.py` (80 % history, ratings >= 4 of the rest relevant). Beside the two-stage model's figures
the metrics carry the tuned EASE model's on the same split (`baseline.ease.*`: the one-stage model
this replaces, which is also the two-stage model's first-stage matrix, so it costs no extra fit),
stage one's recall of the relevant books among its candidates (`retrieval_recall@100`), and, unless
`baselines=False`, the popularity, item-kNN and untuned EASE baselines. The artifact is the model's
save dir (FAISS index included) plus the drift reference (request history length and top-1 score) and
`mlplat-model.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ml.data.drift import Reference
from ml.models.recommendation import algorithm, data
from ml.models.recommendation.batch_scores import DEPTH, BatchScores
from ml.models.recommendation.features import recent_histories
from ml.models.recommendation.two_stage import TwoStageRecommender, fit_two_stage, retrieval_recall
from ml.training.outputs import TrainOutput, write_metadata

NAME = "recommendation"
TEST_FRACTION = 0.2
K = 10


def reference_columns(model: algorithm.Recommender | TwoStageRecommender,
                      histories: list[list[int]]) -> dict[str, np.ndarray]:
    """What the runtime monitors for drift: request history length and the top-1 score."""
    recs = model.recommend_batch(histories, k=1)
    return {
        "history_length": np.array([len(h) for h in histories], dtype=float),
        "score": np.array([r[0][1] if r else np.nan for r in recs], dtype=float),
    }


def train(
    data_dir: Path, out_dir: Path, params: dict[str, Any] | None = None, seed: int = 0, baselines: bool = True
) -> TrainOutput:
    rec = data.load(Path(data_dir))
    train_ratings, test_ratings = algorithm.split_users(rec.ratings, TEST_FRACTION, seed)
    model = fit_two_stage(train_ratings, rec.books, rec.genres, params, seed)
    cases = algorithm.history_split(test_ratings, seed=seed)
    metrics: dict[str, float] = {k: float(v) for k, v in algorithm.score_cases(model, cases, k=K).items()}
    for metric, value in algorithm.score_cases(model.stage.base, cases, k=K).items():
        if metric in (f"ndcg@{K}", f"recall@{K}"):
            metrics[f"baseline.ease.{metric}"] = float(value)
    metrics[f"retrieval_recall@{model.n_candidates}"] = retrieval_recall(model, cases)
    if baselines:
        for name, scores in algorithm.evaluate_baselines(train_ratings, test_ratings, seed).items():
            for metric in (f"ndcg@{K}", f"recall@{K}"):
                metrics[f"baseline.{name}.{metric}"] = float(scores[metric])
    out_dir = Path(out_dir)
    model.save(out_dir)
    # The reader view's histories, batch-scored for user_id requests.
    batch = BatchScores.build(model, recent_histories(rec.ratings).to_dict(), DEPTH)
    batch.save(out_dir)
    histories = [[b for b in c.history if b in model.known_items] for c in cases] or [[]]
    Reference.from_columns(reference_columns(model, histories)).save(out_dir)
    write_metadata(out_dir, NAME, metrics, model.params)
    info = {
        "ratings": len(rec.ratings),
        "users": int(rec.ratings["user_id"].nunique()),
        "train_users": int(train_ratings["user_id"].nunique()),
        "test_users": int(test_ratings["user_id"].nunique()),
        "items_modelled": len(model.item_ids),
        **model.info,
        "batch_scored_readers": len(batch.user_ids),
        "seed": seed,
        "test_fraction": TEST_FRACTION,
    }
    return TrainOutput(NAME, out_dir, dict(model.params), metrics, info)
