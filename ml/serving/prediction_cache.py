"""A Redis cache of predictions in front of deterministic models.

Key: ``mlplat:pred:<model>:<version>:<sha256 of the canonical inputs>``. The version part is the
registry version the runtime loaded *and* a digest of the artifact's files, so a new version (or a
retrained artifact in the same local directory) never reads an older version's answers: they are
simply never asked for again and expire with their TTL. The inputs are canonicalised by the caller
(for the recommender: the set of history books, sorted, and k) and serialised as compact, key-sorted
JSON before hashing, so two requests that the model treats alike share one entry.

Failing open: every cache call is bounded by a socket timeout (default 5 ms) and any error (refused
connection, timeout, a Redis error, a value that does not decode) is counted and treated as a miss;
after ``ERRORS_BEFORE_BACKOFF`` (3) errors in a row the cache is skipped for ``backoff_s`` (1 s), so a
dead Redis costs at most three timeouts per second, not one per request, while a single slow answer
(a busy machine) does not switch the cache off for a whole second. A request never fails because of the cache.

The client is the online store's minimal RESP client (``ml/serving/online.py``): the same URL forms
(``redis://`` or ``rediss://`` with TLS, ``user:password@`` for AUTH, ``/db``) as the feature reads,
so the local redis-server and ElastiCache are configured the same way.

Configuration (``parameters.extra`` first, then the environment): ``prediction_cache_url`` /
``$MLPLAT_PREDICTION_CACHE_URL`` (default: the online store's URL), ``prediction_cache_ttl_s`` /
``$MLPLAT_PREDICTION_CACHE_TTL_S`` (0 or unset: no cache), ``prediction_cache_timeout_ms`` /
``$MLPLAT_PREDICTION_CACHE_TIMEOUT_MS`` (default 5). On the cluster the model server's environment
carries the stack's `workloads.predictionCache` and the ElastiCache URL (infra/workloads/seldon.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ml.serving.metrics import CacheMetrics
from ml.serving.online import StoreError, _command, _Resp

log = logging.getLogger(__name__)

CACHE_URL_ENV = "MLPLAT_PREDICTION_CACHE_URL"
CACHE_TTL_ENV = "MLPLAT_PREDICTION_CACHE_TTL_S"
CACHE_TIMEOUT_ENV = "MLPLAT_PREDICTION_CACHE_TIMEOUT_MS"
DEFAULT_TIMEOUT_MS = 5.0
BACKOFF_S = 1.0
ERRORS_BEFORE_BACKOFF = 3
KEY_PREFIX = "mlplat:pred"


def canonical_json(inputs: Mapping[str, Any]) -> bytes:
    """Key-sorted compact JSON of the inputs (ints, floats, strings, lists, dicts only)."""
    try:
        return json.dumps(inputs, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"prediction cache inputs must be plain JSON values: {exc}") from exc


def artifact_digest(model_dir: Path) -> str:
    """First 16 hex digits of a SHA-256 over the artifact's files (relative path and content)."""
    digest = hashlib.sha256()
    root = Path(model_dir)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


class PredictionCache:
    """GET/SET of serialised predictions under a version-scoped key; never raises on a cache fault."""

    def __init__(self, url: str, model: str, version: str, ttl_s: float, timeout_ms: float = DEFAULT_TIMEOUT_MS,
                 metrics_name: str | None = None, backoff_s: float = BACKOFF_S) -> None:
        if ttl_s <= 0:
            raise ValueError(f"prediction cache TTL must be > 0 seconds, got {ttl_s}")
        if timeout_ms <= 0:
            raise ValueError(f"prediction cache timeout must be > 0 ms, got {timeout_ms}")
        self.model, self.version = model, version
        self.ttl_ms = max(round(ttl_s * 1000), 1)
        self.backoff_s = backoff_s
        self._client = _Resp(url, timeout_ms / 1000)  # validates the URL (redis:// or rediss://)
        self._prefix = f"{KEY_PREFIX}:{model}:{version}:".encode()
        self._skip_until = 0.0
        self._errors_in_a_row = 0
        self._compute_ewma: float | None = None  # seconds a miss took to compute, smoothed
        self.metrics = CacheMetrics(metrics_name or model)

    @classmethod
    def from_settings(cls, extra: Mapping[str, Any], model: str, version: str, model_dir: Path,
                      metrics_name: str | None = None) -> PredictionCache | None:
        """The cache configured by ``extra``/environment, or None when no TTL or no Redis URL is set."""
        ttl = extra.get("prediction_cache_ttl_s", os.environ.get(CACHE_TTL_ENV))
        url = extra.get("prediction_cache_url") or os.environ.get(CACHE_URL_ENV) or extra.get("redis_url")
        try:
            ttl_s = float(ttl) if ttl not in (None, "") else 0.0
        except ValueError:
            raise ValueError(f"prediction cache TTL must be a number of seconds, got {ttl!r}") from None
        if ttl_s <= 0 or not url:
            return None
        timeout_ms = float(extra.get("prediction_cache_timeout_ms") or os.environ.get(CACHE_TIMEOUT_ENV)
                           or DEFAULT_TIMEOUT_MS)
        return cls(str(url), model, f"{version}-{artifact_digest(model_dir)}", ttl_s, timeout_ms, metrics_name)

    def key(self, inputs: Mapping[str, Any]) -> bytes:
        return self._prefix + hashlib.sha256(canonical_json(inputs)).hexdigest().encode()

    def _failed(self, op: str, exc: Exception) -> None:
        self.metrics.result("error")
        self._errors_in_a_row += 1
        if self._errors_in_a_row >= ERRORS_BEFORE_BACKOFF:
            self._errors_in_a_row = 0
            self._skip_until = time.monotonic() + self.backoff_s
            log.warning("prediction cache %s failed %d times in a row (skipped for %.1fs): %s", op,
                        ERRORS_BEFORE_BACKOFF, self.backoff_s, exc)

    def get(self, inputs: Mapping[str, Any]) -> Any | None:
        """The cached value (decoded JSON) or None on a miss, an error or while backing off."""
        if time.monotonic() < self._skip_until:
            self.metrics.result("skipped")
            return None
        started = time.perf_counter()
        try:
            raw = self._client.pipeline([_command(b"GET", self.key(inputs))])[0]
            value = None if raw is None else json.loads(raw)
        except (StoreError, OSError, ValueError) as exc:
            self._failed("get", exc)
            return None
        finally:
            self.metrics.lookup_seconds.observe(time.perf_counter() - started)
        self._errors_in_a_row = 0
        if value is None:
            self.metrics.result("miss")
            return None
        self.metrics.result("hit")
        if self._compute_ewma is not None:
            self.metrics.saved_seconds.inc(max(self._compute_ewma - (time.perf_counter() - started), 0.0))
        return value

    def put(self, inputs: Mapping[str, Any], value: Any, compute_seconds: float | None = None) -> None:
        """Store ``value`` (JSON-serialisable) with the TTL; ``compute_seconds`` feeds the saving estimate."""
        if compute_seconds is not None:
            prior = self._compute_ewma
            self._compute_ewma = compute_seconds if prior is None else 0.9 * prior + 0.1 * compute_seconds
        if time.monotonic() < self._skip_until:
            return
        try:
            payload = canonical_json(value)
            self._client.pipeline([_command(b"SET", self.key(inputs), payload, b"PX", str(self.ttl_ms).encode())])
            self._errors_in_a_row = 0
        except (StoreError, OSError, ValueError) as exc:
            self._failed("set", exc)

    def clear(self) -> int:
        """Delete this model version's entries (SCAN + DEL); the number deleted. Raises StoreError:
        an operator's or a benchmark's call, not the request path."""
        cursor, deleted = b"0", 0
        while True:
            cursor, keys = self._client.pipeline([_command(b"SCAN", cursor, b"MATCH", self._prefix + b"*",
                                                           b"COUNT", b"1000")])[0]
            if keys:
                deleted += int(self._client.pipeline([_command(b"DEL", *keys)])[0])
            if cursor in (b"0", 0):
                return deleted

    def close(self) -> None:
        self._client.close()
