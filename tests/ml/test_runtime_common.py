"""Shared runtime pieces without processes: PSI drift, reference files, the Feast Redis key layout,
and the metric-name contract with ml/METRICS.md."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from ml.data.drift import DriftMonitor, Reference, feature_reference, psi
from ml.serving.metrics import METRICS
from ml.serving.online import entity_key_bytes, field_key

METRICS_DOC = Path(__file__).resolve().parents[2] / "ml" / "METRICS.md"


def test_psi_is_zero_for_identical_and_large_for_shifted():
    assert psi([0.5, 0.5], [0.5, 0.5]) == pytest.approx(0.0)
    assert psi([0.5, 0.5], [0.9, 0.1]) > 0.25


def test_discrete_column_gets_one_bin_per_value():
    ref = feature_reference([0, 1, 1, 1, 2, 2, 2, 2])
    assert len(ref.fractions) == 3
    assert ref.fractions == pytest.approx((1 / 8, 3 / 8, 4 / 8))
    assert [ref.bin_of(v) for v in (0, 1, 2)] == [0, 1, 2]


def test_empty_column_is_refused():
    with pytest.raises(ValueError, match="empty"):
        feature_reference([float("nan")])


def test_window_detects_shift_and_forgets_old_values(tmp_path):
    rng = np.random.default_rng(0)
    Reference.from_columns({"x": rng.normal(size=5000)}).save(tmp_path)
    monitor = DriftMonitor(Reference.load(tmp_path), window=500, min_samples=100)
    monitor.observe("x", rng.normal(size=50))
    assert monitor.psi() == {}  # below min_samples: no claim either way
    monitor.observe("x", rng.normal(size=500))
    assert monitor.psi()["x"] < 0.1
    monitor.observe("x", rng.normal(loc=2.0, size=500))  # window now holds only shifted values
    assert monitor.psi()["x"] > 0.25
    monitor.observe("unknown", [1.0])  # features without a reference are ignored
    assert set(monitor.psi()) == {"x"}


@pytest.mark.parametrize("value", [7, 2**40, "card-7"])
def test_redis_key_layout_equals_feasts(value):
    proto = Value(int64_val=value) if isinstance(value, int) else Value(string_val=value)
    expected = serialize_entity_key(EntityKey(join_keys=["card_id"], entity_values=[proto]), 3) + b"mlplat"
    assert entity_key_bytes("mlplat", "card_id", value) == expected
    assert field_key("card_features", "velocity_last_24h") == _mmh3("card_features:velocity_last_24h")


def test_entity_value_type_is_checked():
    with pytest.raises(TypeError, match="card_id"):
        entity_key_bytes("p", "card_id", 1.5)


def test_metrics_doc_lists_exactly_the_exported_metrics():
    documented = set(re.findall(r"^\| `(mlplat_[a-z0-9_]+)` \| (\w+) \|", METRICS_DOC.read_text(), re.MULTILINE))
    assert documented == {(name, kind) for name, (kind, _labels, _help) in METRICS.items()}


def test_fast_path_selects_the_url_database_and_surfaces_store_errors(redis_server):
    import redis

    from ml.serving.online import OnlineFeatureReader, StoreError, ViewSpec

    db2 = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/2")
    key = entity_key_bytes("mlplat", "card_id", 11)
    db2.hset(key, mapping={field_key("card_features", "cardholder_age"): Value(int64_val=42).SerializeToString()})
    reader = OnlineFeatureReader(redis_server.url.rsplit("/", 1)[0] + "/2", "mlplat",
                                 [ViewSpec("card_features", "card_id", ("cardholder_age", "velocity_last_24h"))],
                                 client="resp")  # `get` reads with a blocking client; every client: test_online_clients
    assert reader.get({"card_id": 11}) == {"cardholder_age": 42, "velocity_last_24h": None}
    assert reader.get({"card_id": 12}) == {"cardholder_age": None, "velocity_last_24h": None}
    db2.set(entity_key_bytes("mlplat", "card_id", 13), b"not a hash")
    with pytest.raises(StoreError, match="WRONGTYPE"):
        reader.get({"card_id": 13})
    assert reader.get({"card_id": 11})["cardholder_age"] == 42  # reconnects after an error
    db2.flushdb()
    with pytest.raises(ValueError, match="redis://"):
        OnlineFeatureReader("http://x", "p", [])


def test_scalar_values_are_read_straight_from_the_wire_format_as_protobuf_reads_them():
    """`_decode`'s fast path (int64/int32 varints, doubles, floats) against the protobuf parse, at the edges of
    every range and on random values; other messages (strings, lists, empty) still go through protobuf."""
    import random

    from ml.serving.online import _decode, _decode_proto

    rng = random.Random(0)
    ints = [0, 1, -1, 127, 128, 300, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)]
    ints += [rng.randint(-(2**63), 2**63 - 1) for _ in range(2000)]
    for v in ints:
        messages = [Value(int64_val=v)] + ([Value(int32_val=v)] if -(2**31) <= v < 2**31 else [])
        for m in messages:
            raw = m.SerializeToString()
            assert _decode(raw) == _decode_proto(raw) == v
    for x in [0.0, -0.0, 1.5, -3.25e300, float("inf"), 1e-300] + [rng.uniform(-1e6, 1e6) for _ in range(1000)]:
        for m in (Value(double_val=x), Value(float_val=x)):
            raw = m.SerializeToString()
            assert _decode(raw) == _decode_proto(raw)
    for m in (Value(), Value(string_val="x"), Value(bool_val=True), Value(int64_list_val={"val": [1, 2]})):
        raw = m.SerializeToString()
        assert _decode(raw) == _decode_proto(raw)
    assert _decode(Value(int64_val=5).SerializeToString() + b"\x20\x06") == 6  # a field twice: protobuf's reading


def test_precomputed_hmget_is_the_command_built_from_the_key_layout():
    """`_ViewRead.command` (head + 8-byte id + tail) is byte for byte the general command for int64 ids; other
    values (strings, ids outside int64) take the general path."""
    from ml.serving.online import ViewSpec, _command, _ViewRead

    read = _ViewRead("mlplat", ViewSpec("card_features", "card_id", ("cardholder_age", "velocity_last_24h")))
    for value in [0, 1, -1, 2**63 - 1, -(2**63), 123456789, "abc", "ünï"]:
        assert read.command(value) == _command(b"HMGET", entity_key_bytes("mlplat", "card_id", value), *read.fields)
    with pytest.raises(TypeError, match="int or str"):
        read.command(True)
