"""Base class of the reference models' MLServer runtimes (V2 inference protocol).

What every runtime shares lives here: resolving the model URI (`models:/<name>@champion` through
MLflow, or a local directory), loading the drift reference, the Prometheus metrics of
`common/metrics.py`, and input validation that answers a bad request with a 4xx whose message names
the problem: 400 for a missing input or a wrong type, 422 for a well-typed but unusable value (empty
text, unknown id, oversize batch).

Model-settings `parameters.extra` keys understood by every runtime:
  tracking_uri   MLflow tracking URI for `models:/` URIs (else $MLFLOW_TRACKING_URI)
  redis_url      online store for runtimes that read features (else $MLPLAT_ONLINE_STORE_URL)
  online_client  client of that store, ml/serving/online.py CLIENTS (else $MLPLAT_ONLINE_CLIENT, else `resp-async`)
  max_batch      largest accepted batch (rows per request), default 256
  drift_window   observations per feature in the PSI window, default 1000
  drift_min_samples  observations needed before a PSI is reported (and so before a drift alert can fire and
                 retrain the model), else $MLPLAT_DRIFT_MIN_SAMPLES, default 100; the window holds at least as many
  serving_samples  where sampled serving inputs go (a directory or s3://bucket/prefix; else
                 $MLPLAT_SERVING_SAMPLES; unset: no sampling), read by the drift reports
  serving_sample_rate  share of rows sampled, default 0.1
"""

from __future__ import annotations

import gc
import logging
import math
import os
import sys
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
from mlserver import MLModel
from mlserver.errors import MLServerError
from mlserver.types import (
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    Parameters,
    RequestInput,
    ResponseOutput,
)

from ml.data.drift import REFERENCE_FILE, DriftMonitor, Reference
from ml.serving.metrics import RuntimeMetrics, VersionMetrics
from ml.serving.serving_log import ServingSampler, served_identity
from ml.training.tracking import pin_alias, resolve_model_dir

log = logging.getLogger(__name__)

NUMERIC = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"}
INTEGER = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
STORE_URL_ENV = "MLPLAT_ONLINE_STORE_URL"  # redis:// or rediss:// URL, when not in parameters.extra
ONLINE_CLIENT_ENV = "MLPLAT_ONLINE_CLIENT"  # ml/serving/online.py CLIENTS, when not in parameters.extra
# The PSI gauges are refreshed after DRIFT_EVERY observed rows, and, once a window's worth of rows has been
# observed, at most every DRIFT_REFRESH_S: a refresh bins each window and computes its PSI (~0.2 ms for
# six features), which every 50 rows at a pod's 2,500 requests/s would cost more than the model's own
# inference, while Prometheus reads the gauges every 15-30 s.
DRIFT_EVERY = 50
DRIFT_REFRESH_S = 1.0


class BadRequest(MLServerError):
    """400: the request is malformed (missing input, wrong datatype, wrong shape)."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, status_code=400)


class Unprocessable(MLServerError):
    """422: well-formed but unusable values (empty text, unknown id, out of range, oversize batch)."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, status_code=422)


# Value range of each integer datatype and the largest finite magnitude of each float datatype: a
# value outside its tensor's datatype contradicts the metadata (and would overflow on conversion).
INT_RANGE = {"BOOL": (0, 1), "UINT8": (0, 2**8 - 1), "UINT16": (0, 2**16 - 1), "UINT32": (0, 2**32 - 1),
             "UINT64": (0, 2**64 - 1), "INT8": (-(2**7), 2**7 - 1), "INT16": (-(2**15), 2**15 - 1),
             "INT32": (-(2**31), 2**31 - 1), "INT64": (-(2**63), 2**63 - 1)}
FLOAT_MAX = {"FP16": 65504.0, "FP32": 3.4028234663852886e38, "FP64": sys.float_info.max}


def _flat(inp: RequestInput) -> list[Any]:
    """The tensor's values in row-major order; nested lists ([[1], [2]]) are flattened at any depth."""
    data = inp.data.root if hasattr(inp.data, "root") else inp.data
    if not isinstance(data, list):
        data = [data]
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            out.append(value)
        else:
            stack.pop()
    return out


def check_shape(inp: RequestInput, values: list[Any]) -> None:
    """400 unless the shape is non-negative and holds exactly as many elements as the data."""
    shape = list(inp.shape)
    if any(d < 0 for d in shape):
        raise BadRequest(f"input '{inp.name}' has shape {shape} with a negative dimension")
    expected = 1
    for d in shape:
        expected *= d
    if expected != len(values):
        raise BadRequest(f"input '{inp.name}' has shape {shape} ({expected} element(s)) but its data holds "
                         f"{len(values)} value(s)")


def check_values(inp: RequestInput, values: list[Any]) -> None:
    """400 unless every value is of the tensor's datatype and within its range (BOOL: true/false,
    integers: whole numbers, floats: numbers; booleans only in BOOL tensors)."""
    datatype = str(inp.datatype.value if hasattr(inp.datatype, "value") else inp.datatype)
    for i, v in enumerate(values):
        problem = None
        if datatype == "BOOL":
            problem = None if isinstance(v, bool) else "which is not a boolean (true/false)"
        elif isinstance(v, bool):
            problem = "a boolean: send datatype BOOL, or 0/1"
        elif not isinstance(v, int | float):
            problem = "which is non-numeric"
        elif datatype in INT_RANGE:
            low, high = INT_RANGE[datatype]
            if isinstance(v, float) and not v.is_integer():
                problem = "which is not a whole number"
            elif not low <= v <= high:
                problem = f"outside the {datatype} range {low}..{high}"
        elif datatype in FLOAT_MAX and _beyond(v, FLOAT_MAX[datatype]):
            problem = f"outside the {datatype} range"
        if problem is not None:
            kind = "a non-numeric value" if problem == "which is non-numeric" else "the value"
            where = f" at position {i}" if len(values) > 1 else ""
            raise BadRequest(f"input '{inp.name}' ({datatype}) holds {kind} {v!r:.60}{where}"
                             + ("" if problem == "which is non-numeric" else f", {problem}"))


def _beyond(value: int | float, largest: float) -> bool:
    # NaN and infinity are refused later, with their own message (422).
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return abs(value) > largest


DRIFT_MIN_SAMPLES_ENV = "MLPLAT_DRIFT_MIN_SAMPLES"


def spec(name: str, datatype: str, shape: list[int], doc: str = "") -> MetadataTensor:
    """One tensor of a runtime's V2 metadata; -1 in `shape` is a dimension the request chooses (rows, k)."""
    return MetadataTensor(name=name, datatype=datatype, shape=shape,
                          parameters=Parameters(description=doc) if doc else None)  # type: ignore[call-arg]


class ReferenceRuntime(MLModel):
    """Subclasses implement `load_artifact(dir)` and `infer(request) -> InferenceResponse`."""

    max_batch: int = 256
    registry_version: str | None = None  # the registry version an alias resolved to at load time
    # What `GET /v2/models/<name>` describes (the V2 metadata clients read): every input a request may carry
    # and every output a response has, with datatype and shape. A model-settings.json that declares its own
    # inputs/outputs keeps them.
    INPUTS: tuple[MetadataTensor, ...] = ()
    OUTPUTS: tuple[MetadataTensor, ...] = ()

    async def load(self) -> bool:
        extra = self._extra()
        uri = self.settings.parameters.uri if self.settings.parameters else None
        if not uri:
            raise MLServerError(f"model {self.name}: parameters.uri is not set", status_code=500)
        uri, self.registry_version = pin_alias(_local_uri(uri), extra.get("tracking_uri"))
        if self.registry_version is not None:
            # Model metadata (GET /v2/models/<name>) then reports the version actually served.
            self.settings.versions = [self.registry_version]
        if not self.settings.inputs:
            self.settings.inputs = list(self.INPUTS)
        if not self.settings.outputs:
            self.settings.outputs = list(self.OUTPUTS)
        self.model_dir = resolve_model_dir(uri, extra.get("tracking_uri"))
        self.max_batch = int(extra.get("max_batch", self.max_batch))
        self.metrics = RuntimeMetrics(self.name)
        # Governance: service levels per registry version, and a sample of the inputs for drift reports.
        model_name, version = served_identity(self.model_dir, self.name, self.registry_version)
        self.version_metrics = VersionMetrics(model_name, version)
        self.samples = ServingSampler.from_settings(extra, model_name, version)
        self.drift: DriftMonitor | None = None
        if (self.model_dir / REFERENCE_FILE).is_file():
            min_samples = int(extra.get("drift_min_samples") or os.environ.get(DRIFT_MIN_SAMPLES_ENV) or 100)
            self.drift = DriftMonitor(
                Reference.load(self.model_dir),
                window=max(int(extra.get("drift_window", 1000)), min_samples),
                min_samples=min_samples,
            )
        self._since_drift = 0
        self._drift_rows = 0  # rows observed, counted up to the window size
        self._drift_refreshed = 0.0  # monotonic time of the last refresh
        try:
            self.load_artifact(self.model_dir, extra)
        except MLServerError:
            raise
        except Exception as exc:  # a corrupt or incomplete artifact: say which, keep the old version serving
            raise MLServerError(f"model {self.name}: the artifact in {self.model_dir} cannot be loaded: "
                                f"{type(exc).__name__}: {exc}", status_code=500) from exc
        # Move everything imported/loaded so far (MLflow, Feast, the model: ~280k objects) out of the
        # collector's reach: a full collection then takes ~0.01 ms instead of ~160 ms (measured on
        # the 2-core dev box), so an occasional gen-2 pass no longer stalls a request.
        gc.collect()
        gc.freeze()
        log.info("model %s loaded from %s", self.name, self.model_dir)
        return True

    def _extra(self) -> dict[str, Any]:
        params = self.settings.parameters
        extra = dict(params.extra or {}) if params is not None else {}
        # In the cluster the slot's model-settings.json carries no extras; the server pod's
        # environment names the online store instead.
        if "redis_url" not in extra and os.environ.get(STORE_URL_ENV):
            extra["redis_url"] = os.environ[STORE_URL_ENV]
        if "online_client" not in extra and os.environ.get(ONLINE_CLIENT_ENV):
            extra["online_client"] = os.environ[ONLINE_CLIENT_ENV]
        return extra

    @abstractmethod
    def load_artifact(self, model_dir: Path, extra: dict[str, Any]) -> None: ...

    @abstractmethod
    async def infer(self, request: InferenceRequest) -> InferenceResponse: ...

    async def unload(self) -> bool:
        samples = getattr(self, "samples", None)
        if samples is not None:
            samples.close()  # stop its timer; write what is buffered
        return await super().unload()

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        started = time.perf_counter()
        try:
            response = await self.infer(payload)
        except (BadRequest, Unprocessable) as exc:
            self.metrics.invalid(type(exc).__name__.lower())
            self.version_metrics.invalid.inc()
            raise
        except Exception:
            self.version_metrics.error.inc()
            raise
        self.version_metrics.seconds.observe(time.perf_counter() - started)
        self.version_metrics.ok.inc()
        return response

    # ---- validation helpers -------------------------------------------------------------------

    def by_name(self, request: InferenceRequest) -> dict[str, RequestInput]:
        """The request's inputs by name; 400 when a name appears twice (which one would count?)."""
        by_name: dict[str, RequestInput] = {}
        for inp in request.inputs:
            if inp.name in by_name:
                raise BadRequest(f"input '{inp.name}' appears more than once; send each input once")
            by_name[inp.name] = inp
        return by_name

    def inputs(self, request: InferenceRequest, required: tuple[str, ...]) -> dict[str, RequestInput]:
        by_name = self.by_name(request)
        missing = [n for n in required if n not in by_name]
        if missing:
            raise BadRequest(
                f"missing input(s) {', '.join(missing)}; this model needs: {', '.join(required)}"
            )
        return by_name

    def numeric(self, inp: RequestInput, integer: bool = False) -> np.ndarray:
        allowed = INTEGER if integer else NUMERIC
        if inp.datatype not in allowed:
            kind = "an integer" if integer else "a numeric"
            raise BadRequest(f"input '{inp.name}' must have {kind} datatype, got {inp.datatype}")
        values = _flat(inp)
        check_shape(inp, values)
        check_values(inp, values)
        try:
            arr = np.asarray(values, dtype=np.int64 if integer else np.float64)
        except OverflowError:  # a valid UINT64 above the INT64 range: no model here takes such a value
            raise Unprocessable(f"input '{inp.name}' holds a value beyond the signed 64-bit range") from None
        if not integer and not np.all(np.isfinite(arr)):
            raise Unprocessable(f"input '{inp.name}' holds NaN or infinite values")
        return arr

    def strings(self, inp: RequestInput) -> list[str]:
        if inp.datatype != "BYTES":
            raise BadRequest(f"input '{inp.name}' must have datatype BYTES (strings), got {inp.datatype}")
        out = []
        values = _flat(inp)
        check_shape(inp, values)
        for v in values:
            if isinstance(v, bytes):
                v = v.decode("utf-8", errors="replace")
            if not isinstance(v, str):
                raise BadRequest(f"input '{inp.name}' holds a non-string value {v!r}")
            out.append(v)
        return out

    def batch_size(self, columns: dict[str, np.ndarray | list[Any]]) -> int:
        sizes = {name: len(v) for name, v in columns.items()}
        distinct = set(sizes.values())
        if len(distinct) != 1:
            raise BadRequest(f"inputs have different lengths: {sizes}")
        n = distinct.pop()
        if n == 0:
            raise Unprocessable("empty batch: inputs hold no rows")
        if n > self.max_batch:
            raise Unprocessable(f"batch of {n} rows exceeds the limit of {self.max_batch} rows per request")
        return n

    # ---- monitoring -----------------------------------------------------------------------------

    def observe(self, columns: dict[str, np.ndarray | list[float]]) -> None:
        """Feed monitored columns (reference feature names) to the drift window; refresh gauges."""
        if self.samples is not None:
            self.samples.add(columns)
        if self.drift is None:
            return
        n = 0
        for name, values in columns.items():
            self.drift.observe(name, values)
            n = max(n, len(values))
        self._since_drift += n
        if self._since_drift >= DRIFT_EVERY:
            now = time.monotonic()
            if self._drift_rows >= self.drift.window and now - self._drift_refreshed < DRIFT_REFRESH_S:
                return
            self._drift_rows = min(self._drift_rows + self._since_drift, self.drift.window)
            self._since_drift, self._drift_refreshed = 0, now
            self.metrics.drift(self.drift.psi())

    def response(
        self, request: InferenceRequest, outputs: list[dict[str, Any] | ResponseOutput], **parameters: Any
    ) -> InferenceResponse:
        """The V2 response, validated in one call: `outputs` from `tensor`, response `parameters` as keywords."""
        response = {"model_name": self.name, "model_version": self.registry_version or self.version,
                    "id": request.id, "outputs": outputs}
        if parameters:
            response["parameters"] = parameters
        return InferenceResponse.model_validate(response)


# Keyed by dtype object: `dtype.name` is computed in Python on every access (~3.5 us, a tenth of a
# small response's cost).
_DATATYPES = {np.dtype(k): v for k, v in
              {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32", "bool": "BOOL"}.items()}


def tensor(name: str, values: np.ndarray | list[str]) -> dict[str, Any]:
    """A V2 output tensor as its JSON object, which the InferenceResponse holding it validates (`response`): one
    validation of the whole response costs less than one per tensor; ~6x cheaper than NumpyCodec.encode_output."""
    if isinstance(values, list):  # strings, as bytes: the gRPC codec accepts only bytes for BYTES tensors
        data = [v.encode() if isinstance(v, str) else v for v in values]  # (REST encodes them back to str)
        return {"name": name, "shape": [len(values)], "datatype": "BYTES", "data": data}
    datatype = _DATATYPES.get(values.dtype)
    if datatype is None:
        raise TypeError(f"output {name!r}: unsupported dtype {values.dtype}")
    return {"name": name, "shape": list(values.shape), "datatype": datatype, "data": values.ravel().tolist()}


def _local_uri(uri: str) -> str:
    # MLServer prefixes relative URIs with the model-settings folder; keep registry URIs intact.
    for scheme in ("models:/", "runs:/"):
        if scheme in uri:
            return uri[uri.index(scheme):]
    return uri
