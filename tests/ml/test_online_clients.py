"""Every online feature client (hand-written RESP, redis.asyncio, redis-py; all with hiredis) reads the
same Feast keys the same way: several rows in one pipeline, None for absent features, StoreError on
failures. The runtimes call `await reader.fetch_many(...)`, as these tests do, on one event loop per test
(an asyncio client's connections belong to the loop that opened them)."""

from __future__ import annotations

import pytest
from feast.protos.feast.types.Value_pb2 import Value

from ml.serving.online import CLIENTS, OnlineFeatureReader, StoreError, ViewSpec, entity_key_bytes, field_key

VIEWS = [ViewSpec("card_features", "card_id", ("cardholder_age", "velocity_last_24h")),
         ViewSpec("device_features", "device_id", ("device_trust_score",))]


@pytest.fixture(scope="module")
def db3(redis_server):
    import redis

    url = redis_server.url.rsplit("/", 1)[0] + "/3"
    r = redis.Redis.from_url(url)
    r.hset(entity_key_bytes("mlplat", "card_id", 1), mapping={
        field_key("card_features", "cardholder_age"): Value(int64_val=40).SerializeToString(),
        field_key("card_features", "velocity_last_24h"): Value(int64_val=3).SerializeToString()})
    r.hset(entity_key_bytes("mlplat", "device_id", 7), mapping={
        field_key("device_features", "device_trust_score"): Value(double_val=0.5).SerializeToString()})
    r.set(entity_key_bytes("mlplat", "card_id", 99), b"not a hash")
    yield url
    r.flushdb()


@pytest.mark.parametrize("client", CLIENTS)
def test_rows_in_one_pipeline(db3, client, loop):
    reader = OnlineFeatureReader(db3, "mlplat", VIEWS, client=client)
    rows = loop.run_until_complete(reader.fetch_many([{"card_id": 1, "device_id": 7}, {"card_id": 2, "device_id": 7}]))
    assert rows == [{"cardholder_age": 40, "velocity_last_24h": 3, "device_trust_score": 0.5},
                    {"cardholder_age": None, "velocity_last_24h": None, "device_trust_score": 0.5}]
    with pytest.raises(StoreError, match="WRONGTYPE"):
        loop.run_until_complete(reader.fetch({"card_id": 99, "device_id": 7}))
    # usable after an error
    assert loop.run_until_complete(reader.fetch({"card_id": 1, "device_id": 8}))["cardholder_age"] == 40


@pytest.mark.parametrize("client", CLIENTS)
def test_unreachable_store_raises_store_error(client, loop):
    from ml.serving.processes import free_port

    reader = OnlineFeatureReader(f"redis://127.0.0.1:{free_port()}/0", "mlplat", VIEWS, timeout_s=0.05, client=client)
    with pytest.raises(StoreError):
        loop.run_until_complete(reader.fetch({"card_id": 1, "device_id": 7}))


def test_blocking_clients_answer_without_suspending(db3):
    # `fetch_many` of a blocking client completes on its first step: the runtimes pay no event-loop pass.
    reader = OnlineFeatureReader(db3, "mlplat", VIEWS, client="resp")
    call = reader.fetch_many([{"card_id": 1, "device_id": 7}])
    with pytest.raises(StopIteration) as done:
        call.send(None)
    assert done.value.value[0]["cardholder_age"] == 40


def test_the_asynchronous_client_is_only_read_by_awaiting(db3):
    # Its overlap of round trips is shown against a real delay in tests/ml/test_delay_proxy.py.
    reader = OnlineFeatureReader(db3, "mlplat", VIEWS, client="redis-asyncio")
    with pytest.raises(TypeError, match="fetch_many"):
        reader.get_many([{"card_id": 1, "device_id": 7}])


def test_unknown_client_is_refused():
    with pytest.raises(ValueError, match="resp, redis-asyncio, redis-py"):
        OnlineFeatureReader("redis://127.0.0.1:1/0", "p", VIEWS, client="memcached")
