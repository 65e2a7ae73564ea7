"""The two-stage recommender: FAISS retrieval over learned embeddings, then a LightGBM lambdarank ranker.

Stage one (``retrieval.py``) finds ``candidates`` books (100) whose item embeddings have the largest
inner product with the sum of the history's embeddings; the embeddings factorise the tuned EASE
matrix. Stage two scores those candidates with a LightGBM ranker (LambdaRank objective, NDCG) over
the features of ``rank_features.py`` and returns the top k.

Training (``fit_two_stage``) never lets the ranker see scores of users the first stage was fitted
on (cross-fitting): the training users are split (whole users) into ``rank_folds`` folds; for each
fold, stage one is fitted on the other folds, each of the fold's users has their ratings split like
a request (80 % history, the rest to find), and the candidates retrieved for the history, labelled 1
when the user rated the book >= 4 in the part kept back, become one LambdaRank query. The ranker is
trained on the queries of all folds, then fixed, and stage one is refitted on all training users, so
the version that serves uses every rating.

LightGBM trains with one thread: on the shared 2-core machine two OpenMP threads made the ranker
step many times slower in wall time whenever the other core was busy.

An empty history, or one with no modelled book, is answered with the most-rated books, as before.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ml.models.recommendation import algorithm
from ml.models.recommendation.ease import interaction_matrix, item_counts, knn_weights, prune_rows
from ml.models.recommendation.protocol import RELEVANT_MIN_RATING, history_split
from ml.models.recommendation.rank_features import FEATURE_NAMES, ItemTable, build_item_table, request_features
from ml.models.recommendation.recommender import Recommender, UnknownItemError, _check_k
from ml.models.recommendation.retrieval import Retriever, factorise, pin_threads

log = logging.getLogger(__name__)

TWO_STAGE_FILE = "two_stage.json"
RANKER_FILE = "ranker.txt"
KNN_FILE = "knn_csr.npz"
FORMAT_VERSION = 1

# Chosen on a validation split of the training users only (README, "Two-stage model").
TWO_STAGE_PARAMS: dict[str, Any] = {
    "dim": 256,  # embedding dimensions (rank of the EASE factorisation)
    "candidates": 100,  # books retrieved per request and ranked
    "rank_folds": 3,  # cross-fitting: each fold's ranking queries come from a stage one fitted on the others
    "knn_neighbors": 100,  # co-occurrence (cosine item-kNN) neighbours kept per book, a ranking feature
    "n_estimators": 300,  # at most: early stopping on NDCG@10 of held-out ranking queries picks fewer
    "early_stopping_share": 0.15,  # share of the ranking queries kept for early stopping
    "early_stopping_rounds": 30,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 50,
}


def _params(params: dict | None) -> tuple[dict, dict]:
    """(stage-one EASE params, two-stage params) from one flat dict; unknown names are refused."""
    params = dict(params or {})
    allowed = set(algorithm.DEFAULT_PARAMS) | set(TWO_STAGE_PARAMS)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; allowed: {sorted(allowed)}")
    ease = algorithm._params({k: v for k, v in params.items() if k in algorithm.DEFAULT_PARAMS})
    if ease["model"] != "ease":
        raise ValueError(f"the two-stage model retrieves over EASE embeddings; params['model'] must be 'ease', "
                         f"got {ease['model']!r}")
    two = {**TWO_STAGE_PARAMS, **{k: v for k, v in params.items() if k in TWO_STAGE_PARAMS}}
    if not 0.0 < float(two["early_stopping_share"]) < 0.5:
        raise ValueError(f"params['early_stopping_share'] must be in (0, 0.5), got {two['early_stopping_share']}")
    if int(two["rank_folds"]) < 2:
        raise ValueError(f"params['rank_folds'] must be >= 2, got {two['rank_folds']}")
    for name in ("dim", "candidates", "knn_neighbors", "n_estimators", "num_leaves", "min_child_samples",
                 "early_stopping_rounds"):
        if int(two[name]) < 1:
            raise ValueError(f"params[{name!r}] must be >= 1, got {two[name]}")
    return ease, two


class StageOne:
    """What a request needs before ranking: the EASE recommender, the retriever, co-occurrence, items."""

    def __init__(self, base: Recommender, retriever: Retriever, knn: sp.csr_matrix, items: ItemTable) -> None:
        n = len(base.item_ids)
        if retriever.index.ntotal != n or knn.shape != (n, n) or len(items.numeric) != n:
            raise ValueError(f"stage-one parts disagree on the number of items ({n})")
        self.base, self.retriever, self.knn, self.items = base, retriever, knn, items

    @classmethod
    def fit(cls, ratings: pd.DataFrame, books: pd.DataFrame | None, genres: pd.DataFrame | None, ease: dict,
            two: dict, seed: int) -> StageOne:
        counts = item_counts(ratings)
        counts = counts[counts >= int(ease["min_item_ratings"])]
        if counts.empty:
            raise ValueError(f"no book has >= {ease['min_item_ratings']} ratings; lower min_item_ratings")
        item_ids = counts.index.to_numpy(dtype=np.int64)
        kept = ratings[ratings["book_id"].isin(item_ids)]
        dense = algorithm.finish_weights(algorithm.item_weights(kept, item_ids, ease), counts.to_numpy(),
                                         {**ease, "neighbors": None})
        x = interaction_matrix(kept, item_ids, low_weight=float(ease["low_weight"]))
        history_emb, item_emb = factorise(dense, x, min(int(two["dim"]), min(x.shape) - 1), seed=seed)
        weights = prune_rows(dense, int(ease["neighbors"])) if ease["neighbors"] is not None else sp.csr_matrix(dense)
        del dense
        catalog = algorithm._catalog(books, ratings)
        base = Recommender(item_ids, weights, counts.to_numpy(dtype=np.float32), catalog, params=ease)
        knn = knn_weights(interaction_matrix(kept, item_ids, low_weight=1.0), neighbors=int(two["knn_neighbors"]))
        return cls(base, Retriever.build(history_emb, item_emb), knn, build_item_table(item_ids, kept, books, None
                                                                                         if genres is None else genres))

    def candidates(self, histories: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
        return self.retriever.search(histories, n)

    def features(self, history: np.ndarray, rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        valid = rows >= 0
        rows = rows[valid]
        return rows, request_features(history, rows, scores[valid], self.base.weights, self.knn, self.items)


def _rows(base: Recommender, history: Sequence[int]) -> np.ndarray:
    return np.array(base._indices(history), dtype=np.int64)


def ranking_queries(stage: StageOne, ratings: pd.DataFrame, n: int, seed: int) -> tuple[np.ndarray, np.ndarray,
                                                                                         np.ndarray, float]:
    """(features, labels, group sizes, recall@n of retrieval) of the users in ``ratings``."""
    cases = history_split(ratings, seed=seed)
    index = stage.base._index
    histories = [np.array(sorted({index[b] for b in c.history if b in index}), dtype=np.int64) for c in cases]
    rows, scores = stage.candidates(histories, n)
    xs, ys, groups, recalls = [], [], [], []
    for case, history, r, s in zip(cases, histories, rows, scores, strict=True):
        if not len(history):
            continue
        cand, x = stage.features(history, r, s)
        relevant = {index[b] for b in case.relevant if b in index}
        y = np.array([1 if c in relevant else 0 for c in cand], dtype=np.int32)
        recalls.append(y.sum() / max(min(len(case.relevant), n), 1))
        if y.sum() == 0:  # a query with no relevant candidate has no gradient under LambdaRank
            continue
        xs.append(x)
        ys.append(y)
        groups.append(len(cand))
    if not xs:
        raise ValueError("no ranking user has a relevant book among its candidates; too little data to rank")
    return np.vstack(xs), np.concatenate(ys), np.array(groups), float(np.mean(recalls))


class TwoStageRecommender:
    """Top-k books: FAISS retrieval of ``candidates`` books, re-ranked by the LightGBM ranker."""

    def __init__(self, stage: StageOne, ranker: lgb.Booster, params: dict, info: dict | None = None) -> None:
        if ranker.num_feature() != len(FEATURE_NAMES):
            raise ValueError(f"ranker expects {ranker.num_feature()} features, this code computes {len(FEATURE_NAMES)}")
        self.stage, self.ranker, self.params = stage, ranker, dict(params)
        self.info = dict(info or {})
        self.n_candidates = int(self.params["candidates"])

    # The serving interface of `Recommender` (runtime, protocol, drift reference use these).
    @property
    def known_items(self) -> set[int]:
        return self.stage.base.known_items

    @property
    def item_ids(self) -> np.ndarray:
        return self.stage.base.item_ids

    def title(self, book_id: int) -> str:
        return self.stage.base.title(book_id)

    def _rank(self, histories: list[np.ndarray], k: int) -> list[list[tuple[int, float]]]:
        out: list[list[tuple[int, float]] | None] = [None] * len(histories)
        todo = [i for i, h in enumerate(histories) if len(h)]
        for i in set(range(len(histories))) - set(todo):
            out[i] = self.stage.base._top(self.stage.base.popularity, [], k)
        if todo:
            rows, scores = self.stage.candidates([histories[i] for i in todo], self.n_candidates)
            parts = [self.stage.features(histories[i], r, s) for i, r, s in zip(todo, rows, scores, strict=True)]
            stacked = np.vstack([x for _, x in parts])
            predicted = self.ranker.predict(stacked, num_threads=1)
            start = 0
            for i, (cand, x) in zip(todo, parts, strict=True):
                p = predicted[start : start + len(x)]
                start += len(x)
                order = np.lexsort((cand, -p))[:k]
                out[i] = [(int(self.stage.base.item_ids[cand[j]]), float(p[j])) for j in order]
        return [o or [] for o in out]

    def history_rows(self, history: Sequence[int]) -> np.ndarray:
        """The sorted modelled item rows of ``history``: all of a history that the answer depends on
        (order, repeats and known-but-unmodelled books change nothing). Unknown ids raise UnknownItemError."""
        return _rows(self.stage.base, history)

    def recommend(self, history: list[int], k: int = 10) -> list[tuple[int, float]]:
        """Top-k (book_id, ranker score) not in ``history``; most-rated books when nothing in it is modelled."""
        k = _check_k(k)
        return self._rank([_rows(self.stage.base, history)], k)[0]

    def recommend_batch(self, histories: Sequence[list[int]], k: int = 10) -> list[list[tuple[int, float]]]:
        k = _check_k(k)
        return self._rank([_rows(self.stage.base, h) for h in histories], k)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """The EASE recommender's files, the FAISS index + history embeddings, co-occurrence, item table,
        the LightGBM model (text) and two_stage.json: one model version, nothing pickled."""
        directory = Path(directory)
        self.stage.base.save(directory)
        self.stage.retriever.save(directory)
        self.stage.items.save(directory)
        knn = self.stage.knn
        np.savez(directory / KNN_FILE, data=knn.data, indices=knn.indices, indptr=knn.indptr)
        self.ranker.save_model(str(directory / RANKER_FILE))
        meta = {"format_version": FORMAT_VERSION, "params": self.params, "features": list(FEATURE_NAMES),
                "info": self.info}
        (directory / TWO_STAGE_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> TwoStageRecommender:
        directory = Path(directory)
        meta = json.loads((directory / TWO_STAGE_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{directory / TWO_STAGE_FILE}: unsupported format_version {meta.get('format_version')!r}")
        if tuple(meta.get("features", ())) != FEATURE_NAMES:
            raise ValueError(f"{directory / TWO_STAGE_FILE}: feature list differs from this code's {FEATURE_NAMES}")
        base = Recommender.load(directory)
        n = len(base.item_ids)
        with np.load(directory / KNN_FILE, allow_pickle=False) as parts:
            knn = sp.csr_matrix((parts["data"], parts["indices"], parts["indptr"]), shape=(n, n))
        stage = StageOne(base, Retriever.load(directory), knn, ItemTable.load(directory))
        ranker = lgb.Booster(model_file=str(directory / RANKER_FILE))
        return cls(stage, ranker, meta["params"], meta.get("info"))


def load_model(directory: Path) -> Recommender | TwoStageRecommender:
    """The model saved in ``directory``: two-stage when it ships a ranker, else the EASE recommender."""
    pin_threads(1)
    if (Path(directory) / TWO_STAGE_FILE).is_file():
        return TwoStageRecommender.load(directory)
    return Recommender.load(directory)


def fit_two_stage(ratings: pd.DataFrame, books: pd.DataFrame | None, genres: pd.DataFrame | None = None,
                  params: dict | None = None, seed: int = 0) -> TwoStageRecommender:
    """Train both stages on ``ratings`` of the training users (see the module docstring)."""
    ease, two = _params(params)
    if ratings.empty:
        raise ValueError("cannot fit on an empty ratings frame")
    pin_threads(1)
    started = time.perf_counter()
    folds = int(two["rank_folds"])
    users = np.sort(ratings["user_id"].unique())
    if len(users) < 2 * folds:
        raise ValueError(f"{len(users)} training users cannot be split into {folds} ranking folds")
    fold_of = dict(zip(np.random.default_rng(seed + 7).permutation(users), np.arange(len(users)) % folds,
                       strict=True))
    user_fold = ratings["user_id"].map(fold_of).to_numpy()
    parts, recalls, ranking_users = [], [], 0
    for fold in range(folds):
        stage = StageOne.fit(ratings[user_fold != fold], books, genres, ease, two, seed)
        held = ratings[user_fold == fold]
        ranking_users += int(held["user_id"].nunique())
        x, y, groups, recall = ranking_queries(stage, held, int(two["candidates"]), seed)
        parts.append((x, y, groups))
        recalls.append(recall)
        del stage
    x, y, groups = (np.concatenate([p[i] for p in parts]) for i in range(3))
    recall = float(np.mean(recalls))
    ranker = lgb.LGBMRanker(
        objective="lambdarank", n_estimators=int(two["n_estimators"]), learning_rate=float(two["learning_rate"]),
        num_leaves=int(two["num_leaves"]), min_child_samples=int(two["min_child_samples"]),
        subsample=0.8, subsample_freq=1, colsample_bytree=0.8, random_state=seed, n_jobs=1, verbose=-1,
    )  # fmt: skip
    # Early stopping on a share of the queries (whole users): on little data (the generated sample's ~200
    # queries) the ranker otherwise learns noise for 300 rounds and ranks worse than stage one alone.
    stop = np.random.default_rng(seed + 11).random(len(groups)) < float(two["early_stopping_share"])
    row_stop = np.repeat(stop, groups)
    ranker.fit(x[~row_stop], y[~row_stop], group=groups[~stop], feature_name=list(FEATURE_NAMES),
               eval_X=(x[row_stop],), eval_y=(y[row_stop],), eval_group=[groups[stop]], eval_at=[10],
               callbacks=[lgb.early_stopping(int(two["early_stopping_rounds"]), verbose=False)])
    ranking_seconds = time.perf_counter() - started
    final = StageOne.fit(ratings, books, genres, ease, two, seed)
    info = {
        "ranking_queries": len(groups),
        "ranking_rows": len(y),
        "ranking_users": ranking_users,
        "ranking_recall_at_candidates": round(recall, 4),
        "ranker_trees": int(ranker.booster_.best_iteration or ranker.booster_.num_trees()),
        "ranker_stage_seconds": round(ranking_seconds, 1),
        "fit_seconds": round(time.perf_counter() - started, 1),
        "relevant_min_rating": RELEVANT_MIN_RATING,
    }
    return TwoStageRecommender(final, ranker.booster_, {**ease, **two}, info)


def retrieval_recall(model: TwoStageRecommender, cases: list, n: int | None = None) -> float:
    """Mean recall@n of stage one alone (relevant books among the n retrieved / min(n, |relevant|))."""
    n = int(n or model.n_candidates)
    index = model.stage.base._index
    histories = [np.array(sorted({index[b] for b in c.history if b in index}), dtype=np.int64) for c in cases]
    rows, _ = model.stage.candidates(histories, n)
    recalls = []
    for case, r in zip(cases, rows, strict=True):
        found = {int(model.item_ids[i]) for i in r if i >= 0}
        recalls.append(len(found & set(case.relevant)) / min(n, len(case.relevant)))
    return float(np.mean(recalls)) if recalls else 0.0


__all__ = ["TwoStageRecommender", "UnknownItemError", "fit_two_stage", "load_model", "retrieval_recall"]
