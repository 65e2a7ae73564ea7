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
        texts = self._texts(request)
        proba = np.asarray(self.model.predict_proba(texts), dtype=np.float32)
        outputs = self._one_output(proba) if len(texts) == 1 else self._outputs(proba)
        self.observe({"score": outputs[2]["data"], "text_length": [len(t.split()) for t in texts]})
        return self.response(request, outputs)

    def _texts(self, request: InferenceRequest) -> list[str]:
        inputs = request.inputs
        if len(inputs) == 1 and inputs[0].name == "text" and inputs[0].datatype == "BYTES" and inputs[0].shape == [1]:
            data = inputs[0].data.root  # the usual request, one text: nothing to flatten or count
            if type(data) is list and len(data) == 1 and type(data[0]) is str and self.max_batch >= 1:
                texts = data
            else:
                texts = self.strings(inputs[0])
        else:
            texts = self.strings(self.inputs(request, ("text",))["text"])
        self.batch_size({"text": texts})
        for i, t in enumerate(texts):
            if not t.strip():
                raise Unprocessable(f"input 'text' row {i} is empty; send non-empty text")
            if len(t) > MAX_TEXT_CHARS:
                raise Unprocessable(f"input 'text' row {i} has {len(t)} characters; the limit is {MAX_TEXT_CHARS}")
        return texts

    def _outputs(self, proba: np.ndarray) -> list[dict[str, Any]]:
        """label, probabilities and confidence of every row; the metrics of the predictions."""
        labels = self.classes[proba.argmax(axis=1)]
        confidence = proba.max(axis=1)
        for c in confidence.tolist():
            self.metrics.prediction.observe(c)
        for label, count in Counter(labels.tolist()).items():  # np.unique costs more than it saves on 1 row
            self.metrics.predicted(str(label), count)
        return [tensor("label", labels), tensor("probabilities", proba), tensor("confidence", confidence)]

    def _one_output(self, proba: np.ndarray) -> list[dict[str, Any]]:
        """`_outputs` of one row with Python numbers instead of numpy reductions (~5 us less), the same tensors:
        the first largest probability (as argmax), its class and value."""
        values = proba[0].tolist()
        best = values.index(max(values))
        label, confidence = CLASSES[best], values[best]
        self.metrics.prediction.observe(confidence)
        self.metrics.predicted(str(label), 1)
        return [{"name": "label", "shape": [1], "datatype": "INT64", "data": [label]},
                {"name": "probabilities", "shape": [1, len(CLASSES)], "datatype": "FP32", "data": values},
                {"name": "confidence", "shape": [1], "datatype": "FP32", "data": [confidence]}]
