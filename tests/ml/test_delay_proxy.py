"""The delay proxy (ml/serving/delay_proxy.py) between a real redis-server and the online-store clients:
it adds the round trip asked for, keeps pipelined replies in order, does not serialise connections, and
its calibrated form gives the round trip a reader measures. Delays are tens of milliseconds where the
test compares against them, far above this machine's scheduling noise."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import redis

from ml.serving.delay_proxy import DelayProxy, main, parse_hostport
from ml.serving.online import OnlineFeatureReader, ViewSpec
from ml.serving.processes import RedisServer
from ml.serving.store_rtt import RoundTripTooShort, delayed_store, round_trips

VIEWS = [ViewSpec("card_features", "card_id", ("cardholder_age",))]


def test_every_command_waits_the_round_trip_and_replies_keep_their_order(redis_server: RedisServer, tmp_path):
    with DelayProxy(redis_server.url, 40.0, tmp_path) as proxy:
        client = redis.Redis.from_url(proxy.url)
        client.ping()  # connection set-up crosses the proxy too
        started = time.perf_counter()
        assert client.ping()
        one = time.perf_counter() - started
        pipe = client.pipeline(transaction=False)
        for i in range(50):
            pipe.echo(str(i))
        started = time.perf_counter()
        replies = pipe.execute()
        fifty = time.perf_counter() - started
        client.close()
    assert [r.decode() for r in replies] == [str(i) for i in range(50)]
    assert 0.035 <= one < 0.2  # 40 ms asked for
    assert 0.035 <= fifty < 0.2  # a pipeline is one round trip, as on a network link


def test_connections_in_flight_together_share_the_delay(redis_server: RedisServer, tmp_path):
    # Ten readers on one event loop with the asynchronous client: ~one round trip in all, not ten.
    async def ten(reader: OnlineFeatureReader) -> float:
        await asyncio.gather(*(reader.fetch({"card_id": i}) for i in range(10)))  # open the connections
        started = time.perf_counter()
        await asyncio.gather(*(reader.fetch({"card_id": i}) for i in range(10)))
        return time.perf_counter() - started

    with DelayProxy(redis_server.url, 40.0, tmp_path) as proxy:
        reader = OnlineFeatureReader(proxy.url, "mlplat", VIEWS, timeout_s=2.0, client="redis-asyncio")
        elapsed = asyncio.run(ten(reader))
        blocking = OnlineFeatureReader(proxy.url, "mlplat", VIEWS, timeout_s=2.0, client="resp")
        blocking.get({"card_id": 1})
        started = time.perf_counter()
        for i in range(10):
            blocking.get({"card_id": i})
        serial = time.perf_counter() - started
        blocking.close()
    assert elapsed < 0.2, f"10 overlapped reads took {elapsed:.3f} s"
    assert serial >= 0.35  # the blocking client waits out each round trip in turn


def test_calibrated_store_gives_the_round_trip_asked_for(redis_server: RedisServer, tmp_path):
    delayed = delayed_store(redis_server.url, 5.0, tmp_path, reads=200)
    try:
        figures = round_trips(delayed.url, 200, warmup=20)
    finally:
        delayed.stop()
    assert 0 < delayed.floor_ms < 5.0 and 0 < delayed.added_ms <= 5.0 - delayed.floor_ms
    assert 4.5 <= figures["p50_ms"] <= 8.0, figures  # the upper side allows for a loaded machine


def test_a_round_trip_below_the_floor_is_refused_with_the_floor(redis_server: RedisServer, tmp_path):
    with pytest.raises(RoundTripTooShort, match="shorter than this machine's path through the delay proxy"):
        delayed_store(redis_server.url, 1e-6, tmp_path, reads=50)
    with pytest.raises(ValueError, match="must be > 0"):
        delayed_store(redis_server.url, 0, tmp_path)


@pytest.mark.integration  # starts the delay proxy's process
def test_a_dead_upstream_closes_the_client_connection(tmp_path):
    from ml.serving.processes import free_port

    with (DelayProxy(f"redis://127.0.0.1:{free_port()}/0", 1.0, tmp_path) as proxy,
          socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s):
        assert s.recv(16) == b""  # closed at once, not hung


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_hostport("6379")
    with pytest.raises(SystemExit):
        main(["--upstream", "127.0.0.1:6379", "--rtt-ms", "-1"])
    with pytest.raises(ValueError, match="cannot be negative"):
        DelayProxy("redis://127.0.0.1:6379/0", -1, None)  # type: ignore[arg-type]
