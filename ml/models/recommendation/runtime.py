"""MLServer runtime of the recommendation model.

Request (V2): either `book_ids` (INT64, the reader's recent books; may be empty -> popular books)
or `user_id` (INT64, one value; the history is read from the Feast online store, view
`reader_recent_books`). Optional `k` (INT, 1..100, default 10) as an input or request parameter.
Response: `book_id` (INT64 [k]), `score` (FP32 [k]), `title` (BYTES [k]); books already in the
history are never returned. Unknown book ids -> 422 naming them.

`parameters.extra`: `redis_url`, `feast_project`, `feature_timeout_ms` (default 20), `online_client` for `user_id`.
If the store fails, or does not know the reader (`user_id` with no stored history), the runtime answers
with the popular-books fallback, output `degraded` = true, and counts it in
`mlplat_model_degraded_responses_total` (reason `feature_store_error` / `unknown_entity`): the same
meaning as every model's `degraded` (docs/MODELS.md): the answer did not use the entity's stored features.

A `user_id` request whose stored history is the one the version was trained with is answered from the
version's batch scores (`batch_scores.py`: each known reader's ranking, computed at training time by the
same two-stage code, used only when the history read now gives the same model input), without retrieval
or ranking; any other request (`book_ids`, an unknown reader, a history changed since training) runs the
two-stage model.

The model is deterministic, so with a prediction cache configured (`prediction_cache_ttl_s`, see
`ml/serving/prediction_cache.py`) the answer for a history and k is cached in Redis, keyed by the
version and the set of history books; a cache fault only means the model answers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from mlserver.types import InferenceRequest, InferenceResponse

from ml.data.feast_repo import PROJECT
from ml.models.recommendation.algorithm import UnknownItemError
from ml.models.recommendation.batch_scores import BatchScores
from ml.models.recommendation.features import READER_FEATURES, READER_VIEW
from ml.models.recommendation.two_stage import TwoStageRecommender, load_model
from ml.serving.prediction_cache import PredictionCache
from ml.serving.runtime_base import BadRequest, ReferenceRuntime, Unprocessable, spec, tensor
from ml.serving.serving_log import served_identity

MAX_K = 100


class RecommendationRuntime(ReferenceRuntime):
    CACHEABLE = True  # deterministic: `mlplat bench cache` measures it with the prediction cache
    max_batch = 1000  # longest accepted history
    INPUTS = (
        spec("book_ids", "INT64", [-1], "the reader's recent books (may be empty); send this or user_id"),
        spec("user_id", "INT64", [1], "a reader whose history is in the online store; send this or book_ids"),
        spec("k", "INT64", [1], f"optional: how many books, 1..{MAX_K} (default 10; also a request parameter)"),
    )
    OUTPUTS = (
        spec("book_id", "INT64", [-1]),
        spec("score", "FP32", [-1]),
        spec("title", "BYTES", [-1]),
        spec("degraded", "BOOL", [1], "answered without the reader's stored history (popular books)"),
    )

    def load_artifact(self, model_dir: Path, extra: dict[str, Any]) -> None:
        self.model = load_model(model_dir)
        self.batch = BatchScores.load(model_dir) if isinstance(self.model, TwoStageRecommender) else None
        name, version = served_identity(model_dir, self.name, self.registry_version)
        self.cache = PredictionCache.from_settings(extra, name, version, model_dir, metrics_name=self.name)
        self.reader = None
        if extra.get("redis_url"):  # optional: the online-store client (Feast's protobufs) only with a store
            from ml.serving.online import DEFAULT_CLIENT, OnlineFeatureReader, ViewSpec

            self.reader = OnlineFeatureReader(
                extra["redis_url"],
                extra.get("feast_project", PROJECT),
                [ViewSpec(READER_VIEW, "user_id", READER_FEATURES)],
                timeout_s=float(extra.get("feature_timeout_ms", 20)) / 1000,
                client=extra.get("online_client", DEFAULT_CLIENT),
            )

    def _k(self, request: InferenceRequest, inputs: dict[str, Any]) -> int:
        if "k" in inputs:
            values = self.numeric(inputs["k"], integer=True)
            if values.size != 1:
                raise BadRequest(f"input 'k' must hold one value, got {values.size}")
            k = int(values[0])
        else:
            raw = getattr(request.parameters, "k", None) if request.parameters else None
            if raw is None:
                return 10
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise BadRequest(f"parameter 'k' must be an integer, got {raw!r}")
            k = raw
        if not 1 <= k <= MAX_K:
            raise Unprocessable(f"k must be between 1 and {MAX_K}, got {k}")
        return k

    async def _history(self, inputs: dict[str, Any]) -> tuple[list[int], bool, int | None]:
        """(history, degraded, the reader whose stored history it is: None for book_ids or a fallback)."""
        if "book_ids" in inputs:
            ids = self.numeric(inputs["book_ids"], integer=True)
            if ids.size > self.max_batch:
                raise Unprocessable(f"history of {ids.size} books exceeds the limit of {self.max_batch}")
            return [int(b) for b in ids], False, None
        users = self.numeric(inputs["user_id"], integer=True)
        if users.size != 1:
            raise BadRequest(f"input 'user_id' must hold exactly one user id, got {users.size}")
        if self.reader is None:
            raise Unprocessable("user_id lookup needs an online store (parameters.extra.redis_url); send book_ids")
        user = int(users[0])
        started = time.perf_counter()
        try:
            found = await self.reader.fetch({"user_id": user})
        except Exception:  # any store failure degrades to the popular-books fallback
            self.metrics.degraded("feature_store_error")
            return [], True, None
        finally:
            self.metrics.fetch_seconds.observe(time.perf_counter() - started)
        history = found.get("recent_book_ids")
        if history is None:  # unknown reader: popular books, answered but without the reader's history
            self.metrics.degraded("unknown_entity")
            return [], True, None
        return [b for b in history if b in self.model.known_items], False, user

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        inputs = self.by_name(request)
        if "book_ids" not in inputs and "user_id" not in inputs:
            raise BadRequest("missing input: send 'book_ids' (INT64 list of recently read books) or 'user_id'")
        k = self._k(request, inputs)
        history, degraded, user = await self._history(inputs)
        hit = None
        if user is not None and self.batch is not None and isinstance(self.model, TwoStageRecommender):
            hit = self.batch.lookup(user, self.model.history_rows(history), k)
        ids, scores = hit if hit is not None else self._recommend(history, k)
        if len(scores):
            self.metrics.prediction.observe(float(scores[0]))
        self.observe({"history_length": [len(history)], "score": scores[:1]})
        outputs = [
            tensor("book_id", ids),
            tensor("score", scores),
            tensor("title", [self.model.title(int(b)) for b in ids]),
            tensor("degraded", np.array([degraded])),
        ]
        return self.response(request, outputs, degraded=degraded)

    def _recommend(self, history: list[int], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(book ids, scores): from the cache when it holds this history and k, else from the model."""
        key = {"history": sorted({int(b) for b in history}), "k": k}  # the model ignores order and repeats
        if self.cache is not None:
            hit = self.cache.get(key)
            if isinstance(hit, dict) and len(hit.get("book_id", ())) == len(hit.get("score", ())):
                return np.array(hit["book_id"], dtype=np.int64), np.array(hit["score"], dtype=np.float32)
        started = time.perf_counter()
        try:
            recs = self.model.recommend(history, k)
        except UnknownItemError as exc:
            raise Unprocessable(f"unknown book id(s) in book_ids: {exc.unknown[:20]}") from None
        ids = np.array([b for b, _ in recs], dtype=np.int64)
        scores = np.array([s for _, s in recs], dtype=np.float32)
        if self.cache is not None:
            self.cache.put(key, {"book_id": ids.tolist(), "score": scores.tolist()}, time.perf_counter() - started)
        return ids, scores

    async def unload(self) -> bool:
        if getattr(self, "cache", None) is not None:
            self.cache.close()
        return await super().unload()
