"""The Feast Redis layout the streaming job writes without Feast (contracts/feast_redis.py,
ml/data/online_writer.py), proven against Feast itself: byte for byte against Feast's serializers, and
end to end through `FeatureStore.get_online_features` on a real redis-server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from google.protobuf.timestamp_pb2 import Timestamp

from contracts import feast_redis
from ml.data.feast_repo import PROJECT, apply_and_materialize, write_repo
from ml.data.online_writer import RedisOnlineWriter, Row
from ml.models.fraud import features

NAMES = ["", "a", "ab", "abc", "abcd", "card_features:velocity_last_24h", "device_features:device_trust_score",
         "ünïcode:ß", "x" * 37]


@pytest.mark.parametrize("text", NAMES)
def test_murmur3_equals_feasts_field_hash(text):
    assert feast_redis.murmur3_32(text.encode()).to_bytes(4, "little") == _mmh3(text)


def test_field_key_equals_feasts():
    for view, feature in [(features.CARD_VIEW, f) for f in features.CARD_FEATURES]:
        assert feast_redis.field_key(view, feature) == _mmh3(f"{view}:{feature}")


@pytest.mark.parametrize("value", [0, 1, 7, 127, 128, 2**40, -1, -(2**63), 2**63 - 1, "card-7"])
def test_entity_key_equals_feasts(value):
    proto = Value(string_val=value) if isinstance(value, str) else Value(int64_val=value)
    expected = serialize_entity_key(EntityKey(join_keys=["card_id"], entity_values=[proto]), 3) + PROJECT.encode()
    assert feast_redis.entity_key(PROJECT, "card_id", value) == expected


@pytest.mark.parametrize("value", [0, 1, 300, 2**40, -1, -(2**63), 2**63 - 1])
def test_int64_value_equals_protobufs(value):
    assert feast_redis.int64_value(value) == Value(int64_val=value).SerializeToString()
    assert feast_redis.parse_int64_value(Value(int64_val=value).SerializeToString()) == value


@pytest.mark.parametrize("when", [datetime(1970, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC),
                                  datetime(2026, 12, 7, 3, 4, 5, 678901, tzinfo=UTC)])
def test_timestamp_equals_protobufs_and_parses_back(when):
    ts = Timestamp()
    ts.FromDatetime(when)
    assert feast_redis.timestamp(when) == ts.SerializeToString()
    assert feast_redis.parse_timestamp(ts.SerializeToString()) == ts.seconds * 10**9 + ts.nanos


def test_bad_values_are_refused_by_name():
    with pytest.raises(TypeError, match="card_id"):
        feast_redis.entity_key(PROJECT, "card_id", 1.5)
    with pytest.raises(TypeError, match="int64"):
        feast_redis.int64_value(True)
    with pytest.raises(ValueError, match="out of range"):
        feast_redis.int64_value(2**63)
    with pytest.raises(ValueError, match="timezone"):
        feast_redis.timestamp(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="redis://"):
        RedisOnlineWriter("http://x", PROJECT, "v", "k")


@pytest.mark.integration
def test_rows_written_without_feast_are_read_by_feast(tmp_path, redis_factory):
    redis = redis_factory()
    data_dir = tmp_path / "data"
    from ml.model_plugin import load_plugin

    load_plugin("fraud").generate_sample(data_dir, seed=3)
    features.write_parquet(data_dir, tmp_path / "parquet")
    store = apply_and_materialize(write_repo(tmp_path / "feast", redis.url), features.definitions(tmp_path / "parquet"))
    writer = RedisOnlineWriter(redis.url, PROJECT, features.CARD_VIEW, "card_id")
    t0 = datetime(2026, 12, 7, 12, tzinfo=UTC)
    rows = [Row(1, {"cardholder_age": 41, "velocity_last_24h": 3}, t0),
            Row(1, {"cardholder_age": 41, "velocity_last_24h": 5}, t0 + timedelta(minutes=1)),  # newest wins
            Row(10**9, {"cardholder_age": 29, "velocity_last_24h": 1}, t0)]  # a card Feast never materialized
    assert writer.write(rows) == 2

    def read(card: int) -> dict:
        got = store.get_online_features(features=[f"{features.CARD_VIEW}:{f}" for f in features.CARD_FEATURES],
                                        entity_rows=[{"card_id": card}]).to_dict()
        return {f: got[f][0] for f in features.CARD_FEATURES}

    assert read(1) == {"cardholder_age": 41, "velocity_last_24h": 5}
    assert read(10**9) == {"cardholder_age": 29, "velocity_last_24h": 1}
    # An older row never moves a feature back (Feast's rule); a row at the same time corrects it.
    assert writer.write([Row(1, {"cardholder_age": 41, "velocity_last_24h": 99}, t0)]) == 0
    assert read(1)["velocity_last_24h"] == 5
    assert writer.write([Row(1, {"cardholder_age": 41, "velocity_last_24h": 6}, t0 + timedelta(minutes=1))]) == 1
    assert read(1)["velocity_last_24h"] == 6
    # And Feast's own push over a row written here follows the same key (one row, not two).
    import pandas as pd
    from feast.data_source import PushMode

    store.push("card_activity_push", pd.DataFrame([{"card_id": 1, "cardholder_age": 41, "velocity_last_24h": 7,
                                                    "event_timestamp": t0 + timedelta(minutes=2)}]),
               to=PushMode.ONLINE)
    assert read(1)["velocity_last_24h"] == 7
    writer.close()
