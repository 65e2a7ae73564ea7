"""Every online feature client (hand-written RESP, redis.asyncio, redis-py; all with hiredis) reads the
same Feast keys the same way: several rows in one pipeline, None for absent features, StoreError on
failures. The runtimes call `await reader.fetch_many(...)`, as these tests do, on one event loop per test
(an asyncio client's connections belong to the loop that opened them)."""

from __future__ import annotations

import asyncio

import pytest
from feast.protos.feast.types.Value_pb2 import Value

from ml.serving.online import (
    ASYNC_CLIENTS,
    CLIENTS,
    OnlineFeatureReader,
    StoreError,
    ViewSpec,
    entity_key_bytes,
    field_key,
)

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


@pytest.mark.parametrize("client", sorted(ASYNC_CLIENTS))
def test_the_asynchronous_clients_are_only_read_by_awaiting(db3, client):
    # Their overlap of round trips is shown against a real delay in tests/ml/test_delay_proxy.py.
    reader = OnlineFeatureReader(db3, "mlplat", VIEWS, client=client)
    with pytest.raises(TypeError, match="fetch_many"):
        reader.get_many([{"card_id": 1, "device_id": 7}])


def test_unknown_client_is_refused():
    with pytest.raises(ValueError, match=", ".join(CLIENTS)):
        OnlineFeatureReader("redis://127.0.0.1:1/0", "p", VIEWS, client="memcached")


@pytest.fixture(scope="module")
def db4(redis_server):
    """Cards 0-199, each with its own age (1000 + id): a reply handed to the wrong caller shows."""
    import redis

    url = redis_server.url.rsplit("/", 1)[0] + "/4"
    r = redis.Redis.from_url(url)
    for card in range(200):
        r.hset(entity_key_bytes("mlplat", "card_id", card), mapping={
            field_key("card_features", "cardholder_age"): Value(int64_val=1000 + card).SerializeToString()})
    yield url
    r.flushdb()


def test_resp_async_shares_writes_and_hands_each_caller_its_own_replies(db4, loop):
    """Reads in flight together go out in one write on one connection (Redis answers them in order), and each
    caller gets the replies to its own commands, whatever the mix of row counts."""
    reader = OnlineFeatureReader(db4, "mlplat", VIEWS, client="resp-async")
    writes = []

    async def reads() -> list[list[dict]]:
        await reader.fetch({"card_id": 0, "device_id": 0})  # connects
        transport = reader._client._transport
        write = transport.write
        transport.write = lambda data: (writes.append(data), write(data))[1]
        calls = [reader.fetch_many([{"card_id": c, "device_id": 0} for c in range(start, start + 1 + start % 3)])
                 for start in range(0, 150, 3)]
        return await asyncio.gather(*calls)

    results = loop.run_until_complete(reads())
    for start, rows in zip(range(0, 150, 3), results, strict=True):
        assert [r["cardholder_age"] for r in rows] == [1000 + c for c in range(start, start + 1 + start % 3)]
    assert len(writes) == 1  # 50 reads, one write
    reader.close()


def test_resp_async_caller_gone_midway_does_not_shift_the_replies(db4, loop):
    """A read whose caller was cancelled after its commands went out still consumes its replies."""
    reader = OnlineFeatureReader(db4, "mlplat", VIEWS, client="resp-async")

    async def scenario() -> dict:
        await reader.fetch({"card_id": 1, "device_id": 0})
        gone = asyncio.ensure_future(reader.fetch({"card_id": 2, "device_id": 0}))
        kept = asyncio.ensure_future(reader.fetch({"card_id": 3, "device_id": 0}))
        await asyncio.sleep(0)  # both queued: the write goes out on a later pass
        gone.cancel()
        first = await kept
        return first, await reader.fetch({"card_id": 4, "device_id": 0})

    kept, after = loop.run_until_complete(scenario())
    assert kept["cardholder_age"] == 1003 and after["cardholder_age"] == 1004
    reader.close()


def test_resp_async_silent_store_fails_every_waiting_read_and_reconnects(loop):
    """A store that accepts but does not answer: every read waiting on the connection fails with StoreError at
    the read bound (the connection is dropped, so no late reply can reach a later caller); the next read
    opens a new connection."""
    connections: list[asyncio.StreamWriter] = []

    async def scenario() -> tuple[list[BaseException | dict], int]:
        async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(writer)

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader = OnlineFeatureReader(f"redis://127.0.0.1:{port}/0", "mlplat", VIEWS, timeout_s=0.05,
                                     client="resp-async")
        started = loop.time()
        results = await asyncio.gather(*(reader.fetch({"card_id": c, "device_id": 0}) for c in range(3)),
                                       return_exceptions=True)
        assert loop.time() - started >= 0.05  # not before the bound
        await asyncio.gather(reader.fetch({"card_id": 9, "device_id": 0}), return_exceptions=True)
        reader.close()
        server.close()
        return results, len(connections)

    results, opened = loop.run_until_complete(scenario())
    assert all(isinstance(r, StoreError) and "no reply within 50 ms" in str(r) for r in results), results
    assert opened == 2


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_resp_async_reply_that_arrived_while_the_loop_was_busy_is_not_a_timeout(db4, loop_kind):
    """A loop held up past the read bound by other work (another request's model) still hands over a reply that
    arrived meanwhile: the reply is read before the expired bound is judged, on asyncio's loop and on uvloop
    (MLServer's), so a busy server does not turn answered reads into degraded responses."""
    import time

    import uvloop

    loop = uvloop.new_event_loop() if loop_kind == "uvloop" else asyncio.new_event_loop()
    reader = OnlineFeatureReader(db4, "mlplat", VIEWS, timeout_s=0.05, client="resp-async")

    async def busy_read() -> dict:
        await reader.fetch({"card_id": 5, "device_id": 0})  # connects
        read = asyncio.ensure_future(reader.fetch({"card_id": 6, "device_id": 0}))
        while not reader._client._waiting:  # until the commands are written and the bound runs
            await asyncio.sleep(0)
        time.sleep(0.2)  # another request's work holds the loop four bounds long; Redis answers meanwhile
        return await read

    try:
        assert loop.run_until_complete(busy_read())["cardholder_age"] == 1006
    finally:
        reader.close()
        loop.close()
