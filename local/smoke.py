"""Smoke test of the local platform: one real V2 inference request per served model, over HTTP.

The request bodies come from each model's plugin (`ModelPlugin.smoke_request`: a fixed body from the
model's spec, or one built from the same data the model was trained on, as `mlplat bench` does), so
a success means the whole path works: registry -> MLServer runtime -> (online features) -> answer.
Latency: the first request, then the median of a few more.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml.model_plugin import load_plugin

REPEATS = 20


@dataclass
class SmokeResult:
    model: str
    ok: bool
    status: int
    first_ms: float
    p50_ms: float | None
    answer: str  # short human-readable prediction, or the error
    request: dict[str, Any] = field(default_factory=dict)
    degraded: bool = False  # answered with fallback inputs (e.g. no online feature store)


def build_request(model: str, data_dir: Path, redis: bool, model_dir: Path | None) -> dict[str, Any]:
    """The model's own smoke request (`ModelPlugin.smoke_request`); `redis`: the online store is the
    local redis-server (`--redis`), so a model may send entity ids only and read features online."""
    return load_plugin(model).smoke_request(data_dir, model_dir, online_store=redis)


def _post(url: str, body: bytes, timeout_s: float) -> tuple[int, bytes, float]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            payload, status = resp.read(), resp.status
    except urllib.error.HTTPError as exc:
        payload, status = exc.read(), exc.code
    return status, payload, (time.perf_counter() - started) * 1000


def summarize(response: dict[str, Any]) -> str:
    """'score=0.91 label=positive ...': the first value of each output, for the summary table."""
    parts = []
    for out in response.get("outputs", [])[:4]:
        data = out.get("data", [])
        value = data[0] if isinstance(data, list) and data else data
        if isinstance(value, float):
            value = round(value, 4)
        text = str(value)
        parts.append(f"{out.get('name')}={text[:40]}")
    return " ".join(parts) or "(no outputs)"


def smoke(base_url: str, model: str, request: dict[str, Any], repeats: int = REPEATS,
          timeout_s: float = 30.0) -> SmokeResult:
    url = f"{base_url}/v2/models/{model}/infer"
    body = json.dumps(request).encode()
    try:
        status, payload, first_ms = _post(url, body, timeout_s)
    except OSError as exc:
        return SmokeResult(model, False, 0, 0.0, None, f"no answer: {exc}", request)
    try:
        doc = json.loads(payload)
    except json.JSONDecodeError:
        doc = {"error": payload[:200].decode(errors="replace")}
    if status != 200:
        return SmokeResult(model, False, status, first_ms, None, str(doc.get("error", doc))[:300], request)
    times = [_post(url, body, timeout_s)[2] for _ in range(repeats)]
    return SmokeResult(model, True, status, first_ms, statistics.median(times), summarize(doc), request,
                       degraded=is_degraded(doc))


def is_degraded(response: dict[str, Any]) -> bool:
    """The runtimes flag fallback answers in the response parameters and a `degraded` output."""
    if (response.get("parameters") or {}).get("degraded"):
        return True
    return any(o.get("name") == "degraded" and any(bool(v) for v in o.get("data", []))
               for o in response.get("outputs", []))
