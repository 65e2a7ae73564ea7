"""The prediction cache: canonical keys, hits and misses against a real redis-server, invalidation by a
new model version, TTL expiry, and failing open (an unreachable or killed Redis never fails a call and
costs at most the timeout, then nothing while the cache backs off)."""

from __future__ import annotations

import socket
import time

import pytest
from prometheus_client import REGISTRY

from ml.serving.prediction_cache import PredictionCache, artifact_digest, canonical_json

pytestmark = [pytest.mark.ml]


def _count(model: str, result: str) -> float:
    value = REGISTRY.get_sample_value("mlplat_model_cache_requests_total", {"model": model, "result": result})
    return value or 0.0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with-block ends: connections are refused


def test_canonical_key_ignores_dict_order_and_names_model_and_version():
    cache = PredictionCache("redis://127.0.0.1:1/0", "rec", "3-abc", ttl_s=60)
    assert cache.key({"k": 5, "history": [1, 2]}) == cache.key({"history": [1, 2], "k": 5})
    assert cache.key({"k": 5, "history": [1, 2]}) != cache.key({"k": 5, "history": [2, 1]})
    assert cache.key({"k": 5}).startswith(b"mlplat:pred:rec:3-abc:")
    other = PredictionCache("redis://127.0.0.1:1/0", "rec", "4-abc", ttl_s=60)
    assert other.key({"k": 5}) != cache.key({"k": 5})
    assert canonical_json({"b": 1, "a": [1.5, "x"]}) == b'{"a":[1.5,"x"],"b":1}'
    with pytest.raises(ValueError, match="plain JSON"):
        canonical_json({"x": float("nan")})


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"url": "http://x:1", "ttl_s": 1}, "redis://"),
    ({"url": "redis://127.0.0.1:1/0", "ttl_s": 0}, "TTL must be > 0"),
    ({"url": "redis://127.0.0.1:1/0", "ttl_s": 1, "timeout_ms": 0}, "timeout must be > 0"),
])
def test_bad_settings_are_refused_with_the_reason(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        PredictionCache(model="m", version="1", **kwargs)


def test_from_settings_needs_a_ttl_and_a_url_and_keys_by_the_artifact(tmp_path, monkeypatch):
    monkeypatch.delenv("MLPLAT_PREDICTION_CACHE_TTL_S", raising=False)
    monkeypatch.delenv("MLPLAT_PREDICTION_CACHE_URL", raising=False)
    (tmp_path / "w.npy").write_bytes(b"one")
    assert PredictionCache.from_settings({"redis_url": "redis://127.0.0.1:1/0"}, "m", "1", tmp_path) is None
    assert PredictionCache.from_settings({"prediction_cache_ttl_s": 30}, "m", "1", tmp_path) is None
    with pytest.raises(ValueError, match="number of seconds"):
        PredictionCache.from_settings({"prediction_cache_ttl_s": "soon", "redis_url": "redis://h:1"}, "m", "1",
                                      tmp_path)
    monkeypatch.setenv("MLPLAT_PREDICTION_CACHE_TTL_S", "30")
    first = PredictionCache.from_settings({"redis_url": "redis://127.0.0.1:1/0"}, "m", "1", tmp_path)
    assert first is not None and first.ttl_ms == 30_000
    digest = artifact_digest(tmp_path)
    (tmp_path / "w.npy").write_bytes(b"two")  # retrained into the same directory: another key space
    assert artifact_digest(tmp_path) != digest
    second = PredictionCache.from_settings({"redis_url": "redis://127.0.0.1:1/0"}, "m", "1", tmp_path)
    assert second is not None and second.key({"a": 1}) != first.key({"a": 1})


def test_unreachable_redis_fails_open_within_the_timeout_then_backs_off():
    cache = PredictionCache(f"redis://127.0.0.1:{_closed_port()}/0", "cache-unreachable", "1", ttl_s=60,
                            timeout_ms=5, backoff_s=0.2)
    started = time.perf_counter()
    assert cache.get({"k": 1}) is None
    cache.put({"k": 1}, {"v": 1}, compute_seconds=0.001)  # never raises
    assert cache.get({"k": 1}) is None
    assert time.perf_counter() - started < 0.5
    assert _count("cache-unreachable", "error") == 3
    assert cache.get({"k": 1}) is None  # three errors in a row: backing off, not even tried
    assert _count("cache-unreachable", "skipped") == 1
    time.sleep(0.25)
    assert cache.get({"k": 1}) is None  # tried again after the back-off, fails again
    assert _count("cache-unreachable", "error") == 4


@pytest.fixture
def redis(redis_factory):
    return redis_factory()


def test_miss_then_hit_then_expiry(redis):
    cache = PredictionCache(redis.url, "cache-hits", "1", ttl_s=0.3)
    key = {"history": [3, 1], "k": 10}
    assert cache.get(key) is None
    cache.put(key, {"book_id": [7, 8], "score": [0.5, 0.25]}, compute_seconds=0.5)  # a slow model
    assert cache.get({"k": 10, "history": [3, 1]}) == {"book_id": [7, 8], "score": [0.5, 0.25]}
    assert (_count("cache-hits", "miss"), _count("cache-hits", "hit")) == (1, 1)
    saved = REGISTRY.get_sample_value("mlplat_model_cache_saved_seconds_total", {"model": "cache-hits"})
    assert 0.4 < saved < 0.5  # the compute time less the lookup's
    time.sleep(0.45)
    assert cache.get(key) is None  # the TTL (PX) expired the entry


def test_a_new_version_never_reads_the_old_versions_entries(redis):
    old = PredictionCache(redis.url, "cache-versions", "1-aaaa", ttl_s=60)
    old.put({"k": 1}, {"v": "old"})
    assert old.get({"k": 1}) == {"v": "old"}
    new = PredictionCache(redis.url, "cache-versions", "2-bbbb", ttl_s=60)
    assert new.get({"k": 1}) is None
    new.put({"k": 1}, {"v": "new"})
    assert (new.get({"k": 1}), old.get({"k": 1})) == ({"v": "new"}, {"v": "old"})
    assert old.clear() == 1  # only its own version's entries
    assert (new.get({"k": 1}), old.get({"k": 1})) == ({"v": "new"}, None)


def test_killed_redis_fails_open(redis_factory):
    redis = redis_factory()
    cache = PredictionCache(redis.url, "cache-killed", "1", ttl_s=60, timeout_ms=5, backoff_s=0.0)
    cache.put({"k": 1}, {"v": 1})
    assert cache.get({"k": 1}) == {"v": 1}
    redis.stop()
    started = time.perf_counter()
    for _ in range(5):
        assert cache.get({"k": 1}) is None
        cache.put({"k": 1}, {"v": 2})
    assert time.perf_counter() - started < 1.0  # each call bounded by the 5 ms timeout (refused at once here)
    assert _count("cache-killed", "error") >= 5
