"""MLServer runtime of the fraud model, with the online feature fetch on the request path.

Request (V2), n rows (1 <= n <= max_batch), one value per row in each input:
  card_id, device_id (INT*)           entities of the Feast views card_features / device_features
  amount (numeric), transaction_hour (INT, 0-23), merchant_category (BYTES),
  foreign_transaction, location_mismatch (INT or BOOL, 0/1)
Response: `fraud_probability` (FP32 [n]), `is_fraud` (BOOL [n], probability >= the model's
threshold), `degraded` (BOOL [n]); response parameter `degraded` is true if any row is.

Online features (device_trust_score, velocity_last_24h, cardholder_age) come from Redis through the
Feast key layout (ml/serving/online.py) in one round trip per request (all rows pipelined), with a
`feature_timeout_ms` (default 20) socket timeout and no retries; opening the connection (TCP, TLS,
AUTH) is bounded apart by `feature_connect_timeout_ms` (default 250), so the first request is judged
like the others. If the store errors or times out, or an entity is not
in it, the row is scored with the training medians saved in `mlplat-model.json`
(`params.online_defaults`), marked degraded and counted in `mlplat_model_degraded_responses_total` (reason
`feature_store_error`, or `unknown_entity` for each row whose card or device the store does not hold).

`parameters.extra`: `redis_url` (no store configured -> every row degraded, reason `no_store`),
`feast_project` (default `mlplat`), `feature_timeout_ms`, `feature_connect_timeout_ms`,
`online_client` (`resp-async` by default, `resp`, `redis-asyncio` or `redis-py`, see ml/serving/online.py),
plus the common keys of ReferenceRuntime.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlserver.types import InferenceRequest, InferenceResponse, RequestInput

from ml.data.feast_repo import PROJECT
from ml.models.fraud import data
from ml.models.fraud.algorithm import FraudModel
from ml.models.fraud.features import (
    CARD_FEATURES,
    CARD_VIEW,
    DEVICE_FEATURES,
    DEVICE_VIEW,
    ONLINE_FEATURES,
    REQUEST_FEATURES,
)
from ml.serving.runtime_base import FLOAT_MAX, INT_RANGE, ReferenceRuntime, Unprocessable, spec, tensor
from ml.training.outputs import read_metadata

log = logging.getLogger(__name__)
ENTITIES = ("card_id", "device_id")
_DRIFT = ("amount", "transaction_hour", *ONLINE_FEATURES)
# `FraudRuntime._one_row`: each input's datatype on the fast path (anything else takes the checked one).
_ONE_ROW = {**dict.fromkeys((*ENTITIES, "transaction_hour", "foreign_transaction", "location_mismatch"), "INT64"),
            "amount": "FP64", "merchant_category": "BYTES"}
_INT64_MIN, _INT64_MAX = INT_RANGE["INT64"]


def _seconds(extra: dict[str, Any], key: str, default_s: float) -> float:
    """A bound given in milliseconds in `parameters.extra`, as seconds; ValueError naming the key."""
    raw = extra.get(key, default_s * 1000)
    try:
        ms = float(raw)
    except (TypeError, ValueError):
        ms = math.nan
    if not (math.isfinite(ms) and ms > 0):
        raise ValueError(f"parameters.extra.{key} must be a number of milliseconds > 0, got {raw!r}")
    return ms / 1000


class FraudRuntime(ReferenceRuntime):
    INPUTS = (
        spec("card_id", "INT64", [-1], "card entity (Feast view card_features)"),
        spec("device_id", "INT64", [-1], "device entity (Feast view device_features)"),
        spec("amount", "FP64", [-1], "transaction amount (any numeric datatype)"),
        spec("transaction_hour", "INT64", [-1], "hour of day, 0-23"),
        spec("merchant_category", "BYTES", [-1], "one of the training data's merchant categories"),
        spec("foreign_transaction", "INT64", [-1], "0 or 1 (INT or BOOL)"),
        spec("location_mismatch", "INT64", [-1], "0 or 1 (INT or BOOL)"),
    )
    OUTPUTS = (
        spec("fraud_probability", "FP32", [-1]),
        spec("is_fraud", "BOOL", [-1], "fraud_probability >= the model's threshold"),
        spec("degraded", "BOOL", [-1], "the row was scored without its stored online features"),
    )

    def load_artifact(self, model_dir: Path, extra: dict[str, Any]) -> None:
        self.model = FraudModel.load(model_dir)
        self.threshold = float(self.model.threshold)
        defaults = read_metadata(model_dir).get("params", {}).get("online_defaults")
        if not defaults or set(defaults) != set(ONLINE_FEATURES):
            raise ValueError(f"{model_dir}: mlplat-model.json lacks params.online_defaults for {ONLINE_FEATURES}")
        self.defaults = {k: float(v) for k, v in defaults.items()}
        self.categories = set(data.MERCHANT_CATEGORIES)
        self._category_code = {c: float(i) for i, c in enumerate(data.MERCHANT_CATEGORIES)}
        self._fast = self._fast_encoding_matches()
        self.reader = None
        if extra.get("redis_url"):  # optional: the online-store client (Feast's protobufs) only with a store
            from ml.serving.online import (
                CONNECT_TIMEOUT_S,
                DEFAULT_CLIENT,
                READ_TIMEOUT_S,
                OnlineFeatureReader,
                ViewSpec,
            )

            self.reader = OnlineFeatureReader(
                extra["redis_url"], extra.get("feast_project", PROJECT),
                [ViewSpec(DEVICE_VIEW, "device_id", DEVICE_FEATURES), ViewSpec(CARD_VIEW, "card_id", CARD_FEATURES)],
                timeout_s=_seconds(extra, "feature_timeout_ms", READ_TIMEOUT_S),
                client=extra.get("online_client", DEFAULT_CLIENT),
                connect_timeout_s=_seconds(extra, "feature_connect_timeout_ms", CONNECT_TIMEOUT_S),
            )

    def _numbers(self, inp: RequestInput, integer: bool = False) -> list[Any]:
        """The input's values as a list: a fast path for the flat, well-typed tensors online traffic sends
        (~5x cheaper than the generic checks for one row); anything else goes through `numeric`, which
        applies every check and raises the 4xx naming the problem."""
        data = inp.data.root if hasattr(inp.data, "root") else inp.data
        datatype = inp.datatype.value if hasattr(inp.datatype, "value") else str(inp.datatype)
        shape = inp.shape
        if type(data) is list and len(shape) == 1 and shape[0] == len(data):
            if integer and datatype in INT_RANGE and datatype != "BOOL":
                low, high = INT_RANGE[datatype]
                if all(type(v) is int and low <= v <= high for v in data):
                    return data
            elif integer and datatype == "BOOL":
                if all(type(v) is bool for v in data):
                    return [int(v) for v in data]
            elif not integer and datatype in FLOAT_MAX:
                largest = FLOAT_MAX[datatype]
                if all((type(v) is float or type(v) is int) and -largest <= v <= largest for v in data):
                    return [float(v) for v in data]
        return self.numeric(inp, integer=integer).tolist()

    def _one_row(self, request: InferenceRequest) -> dict[str, list[Any]] | None:
        """The columns of the usual online request, one transaction with each input once as a [1] tensor of the
        datatype clients send (INT64, amount FP64, merchant_category BYTES) holding a valid value, checked value
        by value (~3x cheaper than the generic checks); None for anything else, which `_checked_columns` checks
        in full, answering a bad request with the 4xx that names its problem."""
        inputs = request.inputs
        if len(inputs) != len(_ONE_ROW) or self.max_batch < 1:
            return None
        values: dict[str, Any] = {}
        for inp in inputs:
            data = inp.data.root
            if _ONE_ROW.get(inp.name) != inp.datatype or type(data) is not list or len(data) != 1 \
                    or inp.shape != [1]:
                return None
            values[inp.name] = data[0]
        if len(values) != len(_ONE_ROW):  # a name twice
            return None
        card, device, hour = values["card_id"], values["device_id"], values["transaction_hour"]
        amount, category = values["amount"], values["merchant_category"]
        foreign, mismatch = values["foreign_transaction"], values["location_mismatch"]
        if not (type(card) is int and type(device) is int and _INT64_MIN <= card <= _INT64_MAX
                and _INT64_MIN <= device <= _INT64_MAX and type(hour) is int and 0 <= hour <= 23
                and (type(amount) is float or type(amount) is int) and 0 <= amount <= FLOAT_MAX["FP64"]
                and type(category) is str and category in self.categories
                and (foreign == 0 or foreign == 1) and type(foreign) is int
                and (mismatch == 0 or mismatch == 1) and type(mismatch) is int):
            return None
        return {"card_id": [card], "device_id": [device], "amount": [float(amount)], "transaction_hour": [hour],
                "merchant_category": [category], "foreign_transaction": [foreign], "location_mismatch": [mismatch]}

    def _request_columns(self, request: InferenceRequest) -> dict[str, Any]:
        one = self._one_row(request)
        return one if one is not None else self._checked_columns(request)

    def _checked_columns(self, request: InferenceRequest) -> dict[str, Any]:
        """The columns of any request, every value checked; BadRequest/Unprocessable naming the problem."""
        inputs = self.inputs(request, (*ENTITIES, *REQUEST_FEATURES))
        cols: dict[str, Any] = {
            "card_id": self._numbers(inputs["card_id"], integer=True),
            "device_id": self._numbers(inputs["device_id"], integer=True),
            "amount": self._numbers(inputs["amount"]),
            "transaction_hour": self._numbers(inputs["transaction_hour"], integer=True),
            "merchant_category": self.strings(inputs["merchant_category"]),
            "foreign_transaction": self._numbers(inputs["foreign_transaction"], integer=True),
            "location_mismatch": self._numbers(inputs["location_mismatch"], integer=True),
        }
        self.batch_size(cols)
        if min(cols["amount"]) < 0:
            raise Unprocessable(f"input 'amount' must be >= 0, got {float(min(cols['amount']))}")
        bad_hours = [h for h in cols["transaction_hour"] if not 0 <= h <= 23]
        if bad_hours:
            raise Unprocessable(f"input 'transaction_hour' must be 0-23, got {int(bad_hours[0])}")
        for flag in ("foreign_transaction", "location_mismatch"):
            bad = [v for v in cols[flag] if v != 0 and v != 1]
            if bad:
                raise Unprocessable(f"input '{flag}' must be 0 or 1, got {int(bad[0])}")
        unknown = sorted(set(cols["merchant_category"]) - self.categories)
        if unknown:
            expected = ", ".join(sorted(self.categories))
            raise Unprocessable(f"input 'merchant_category' has unknown value(s) {unknown}; expected: {expected}")
        return cols

    async def _online(self, cards: list[int], devices: list[int]) -> tuple[dict[str, list[float]], list[bool]]:
        """Online features of every row, all rows in one pipelined round trip; a row is degraded when any of
        its features is a default."""
        values, defaulted = await self._online_features(cards, devices)
        return values, [bool(names) for names in defaulted]

    async def _online_features(self, cards: list[int], devices: list[int]
                               ) -> tuple[dict[str, list[float]], list[list[str]]]:
        """Online features of every row and, per row, the features served as their training default."""
        n = len(cards)
        found_rows: list[dict[str, Any]] = [{}] * n
        store_answered = False
        if self.reader is None:
            self.metrics.degraded("no_store", n)
        else:
            started = time.perf_counter()
            try:
                found_rows = await self.reader.fetch_many(
                    [{"card_id": card, "device_id": device} for card, device in zip(cards, devices, strict=True)])
                store_answered = True
            except Exception:  # any store failure (down, timeout, protocol) -> defaults
                self.metrics.degraded("feature_store_error", n)
            finally:
                self.metrics.fetch_seconds.observe(time.perf_counter() - started)
        values: dict[str, list[float]] = {f: [] for f in ONLINE_FEATURES}
        defaulted: list[list[str]] = []
        for found in found_rows:
            row_defaults = []
            for f in ONLINE_FEATURES:
                v = found.get(f)
                if v is None:
                    row_defaults.append(f)
                    values[f].append(self.defaults[f])
                else:
                    values[f].append(float(v))
            if row_defaults and store_answered:
                self.metrics.degraded("unknown_entity")
            defaulted.append(row_defaults)
        return values, defaulted

    def _matrix(self, cols: dict[str, Any]) -> np.ndarray:
        """`data.encode` without building a DataFrame (~1 ms saved per request on 2 cores): columns
        in `data.FEATURES` order, merchant_category as its index in `data.MERCHANT_CATEGORIES`."""
        if len(cols["amount"]) == 1:  # online traffic: one flat row, not a transposed matrix of columns
            return np.array([[self._category_code[cols[name][0]] if name == "merchant_category" else cols[name][0]
                              for name in data.FEATURES]], dtype=np.float32)
        columns = [[self._category_code[c] for c in cols[name]] if name == "merchant_category" else cols[name]
                   for name in data.FEATURES]
        return np.ascontiguousarray(np.array(columns, dtype=np.float32).T)

    def _fast_encoding_matches(self) -> bool:
        # Self-check at load: if the data contract's encoding ever changes, serve through it instead.
        probe = {"amount": [12.5, 900.0], "transaction_hour": [0, 23], "foreign_transaction": [0, 1],
                 "location_mismatch": [1, 0], "merchant_category": list(data.MERCHANT_CATEGORIES)[:2],
                 **{f: [float(self.defaults[f]), 1.0] for f in ONLINE_FEATURES}}
        try:
            same = np.array_equal(self._matrix(probe), data.encode(pd.DataFrame(probe)))
        except (KeyError, ValueError, TypeError):
            same = False
        if not same:
            log.warning("fast fraud encoding differs from data.encode; using data.encode (slower)")
        return same

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        cols = self._request_columns(request)
        online, degraded = await self._online(cols.pop("card_id"), cols.pop("device_id"))
        cols.update(online)
        x = self._matrix(cols) if self._fast else data.encode(pd.DataFrame(cols))
        proba = np.asarray(self.model.predict_proba(x), dtype=np.float32).ravel()
        decision = proba >= self.threshold
        for p in proba.tolist():
            self.metrics.prediction.observe(p)
        n_fraud = decision.tolist().count(True)  # ndarray.sum costs ~5 us on one row
        if n_fraud:
            self.metrics.predicted("fraud", n_fraud)
        if len(decision) - n_fraud:
            self.metrics.predicted("legit", len(decision) - n_fraud)
        self.observe({"score": proba, **{f: cols[f] for f in _DRIFT}})
        return self.response(request, [
            tensor("fraud_probability", proba),
            tensor("is_fraud", decision),
            tensor("degraded", np.asarray(degraded, dtype=bool)),
        ], degraded=any(degraded))
