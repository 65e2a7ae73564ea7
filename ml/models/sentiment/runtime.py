"""MLServer runtime of the sentiment model.

Request (V2): `text` (BYTES [n], 1 <= n <= max_batch). Response: `label` (INT64 [n], -1/0/1),
`probabilities` (FP32 [n, 3], columns in `CLASSES` order -1, 0, 1), `confidence` (FP32 [n]).
Empty or whitespace-only text -> 422 naming the row; missing `text` or a non-BYTES datatype -> 400.
Raw text is fine: the model normalises it (ml/models/sentiment/text.py) exactly as in training.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from mlserver.types import InferenceRequest, InferenceResponse

from ml.models.sentiment.algorithm import CLASSES, SentimentModel
from ml.serving.runtime_base import ReferenceRuntime, Unprocessable, spec, tensor

MAX_TEXT_CHARS = 20_000


class SentimentRuntime(ReferenceRuntime):
    INPUTS = (spec("text", "BYTES", [-1], f"raw texts, one per row, at most {MAX_TEXT_CHARS} characters each"),)
    OUTPUTS = (
        spec("label", "INT64", [-1], "-1 negative, 0 neutral, 1 positive"),
        spec("probabilities", "FP32", [-1, len(CLASSES)], "columns in the order -1, 0, 1"),
        spec("confidence", "FP32", [-1]),
    )

    def load_artifact(self, model_dir: Path, extra: dict[str, Any]) -> None:
        self.model = SentimentModel.load(model_dir)
        self.classes = np.asarray(CLASSES, dtype=np.int64)

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        texts = self.strings(self.inputs(request, ("text",))["text"])
        self.batch_size({"text": texts})
        for i, t in enumerate(texts):
            if not t.strip():
                raise Unprocessable(f"input 'text' row {i} is empty; send non-empty text")
            if len(t) > MAX_TEXT_CHARS:
                raise Unprocessable(f"input 'text' row {i} has {len(t)} characters; the limit is {MAX_TEXT_CHARS}")
        proba = np.asarray(self.model.predict_proba(texts), dtype=np.float32)
        labels = self.classes[proba.argmax(axis=1)]
        confidence = proba.max(axis=1)
        for c in confidence.tolist():
            self.metrics.prediction.observe(c)
        for label, count in Counter(labels.tolist()).items():  # np.unique costs more than it saves on 1 row
            self.metrics.predicted(str(label), count)
        self.observe({"score": confidence, "text_length": [len(t.split()) for t in texts]})
        return self.response(request, [
            tensor("label", labels),
            tensor("probabilities", proba),
            tensor("confidence", confidence),
        ])
