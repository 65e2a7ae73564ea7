"""MLServer runtime `fraud-explainer`: why the fraud model scored one request as it did.

A V2 model of its own, loaded from the same artifact as the fraud model (its champion: locally
`models:/fraud@champion`, on the cluster the fraud champion slot's `explainer/` folder). It takes the
fraud model's request unchanged, reads the same online features from the store (with the same
defaults when the store fails or does not know an entity) and answers, per row:

  feature            BYTES [F]      names of the model's features, in the order of the columns below
  contribution       FP64  [n, F]   log-odds contribution of each feature (LightGBM TreeSHAP)
  base_value         FP64  [n]      the expected raw score (the same for every row)
  raw_score          FP64  [n]      base_value + sum(contribution): the model's raw score (log-odds)
  fraud_probability  FP32  [n]      what the fraud model serves for the row (its ONNX graph)
  is_fraud           BOOL  [n]      fraud_probability >= the model's threshold
  degraded           BOOL  [n]      some online feature of the row was a default
  defaulted          BOOL  [n, F]   which features were defaults (training medians), not read from the store

The explainer's requests are counted under its own name (requests, latency, degraded responses), not
under the fraud model's version: the automatic rollback reads those, and explaining is not scoring.
It does not feed the drift window or the serving samples either, for the same reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlserver.types import InferenceRequest, InferenceResponse

from ml.models.fraud import data
from ml.models.fraud.explain import TreeExplainer, explain_rows
from ml.models.fraud.runtime import ENTITIES, FraudRuntime
from ml.serving.metrics import VersionMetrics
from ml.serving.runtime_base import spec, tensor


class FraudExplainerRuntime(FraudRuntime):
    OUTPUTS = (
        spec("feature", "BYTES", [-1], "feature names, the column order of contribution and defaulted"),
        spec("contribution", "FP64", [-1, -1], "log-odds contribution of each feature (TreeSHAP)"),
        spec("base_value", "FP64", [-1], "expected raw score; base_value + sum(contribution) = raw_score"),
        spec("raw_score", "FP64", [-1], "the model's raw score (log-odds) of the row"),
        spec("fraud_probability", "FP32", [-1], "the fraud model's served probability"),
        spec("is_fraud", "BOOL", [-1], "fraud_probability >= the model's threshold"),
        spec("degraded", "BOOL", [-1], "some online feature of the row was a default"),
        spec("defaulted", "BOOL", [-1, -1], "per feature: served as its training default, not from the store"),
    )

    def load_artifact(self, model_dir: Path, extra: dict[str, Any]) -> None:
        super().load_artifact(model_dir, extra)
        self.explainer = TreeExplainer.load(model_dir)
        self.feature_names = list(data.FEATURES)
        self._column = {name: i for i, name in enumerate(self.feature_names)}
        # Own counters (see the module docstring); no drift window, no serving samples.
        self.version_metrics = VersionMetrics(self.name, self.registry_version or "unknown")
        if self.samples is not None:
            self.samples.close()
        self.samples = None
        self.drift = None

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        cols = self._request_columns(request)
        online, defaulted_names = await self._online_features(*(cols.pop(e) for e in ENTITIES))
        cols.update(online)
        x = self._matrix(cols) if self._fast else data.encode(pd.DataFrame(cols))
        proba = np.asarray(self.model.predict_proba(x), dtype=np.float32).ravel()
        explained = explain_rows(self.explainer, x)
        defaulted = np.zeros((len(proba), len(self.feature_names)), dtype=bool)
        for row, names in enumerate(defaulted_names):
            for name in names:
                defaulted[row, self._column[name]] = True
        degraded = defaulted.any(axis=1)
        return self.response(request, [
            tensor("feature", self.feature_names),
            tensor("contribution", explained["contributions"]),
            tensor("base_value", explained["base_value"]),
            tensor("raw_score", explained["raw_score"]),
            tensor("fraud_probability", proba),
            tensor("is_fraud", proba >= self.threshold),
            tensor("degraded", degraded),
            tensor("defaulted", defaulted),
        ], degraded=bool(degraded.any()))
