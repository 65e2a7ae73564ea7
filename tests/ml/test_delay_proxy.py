"""The delay proxy (ml/serving/delay_proxy.py) and its calibration (ml/serving/store_rtt.py).

This machine's two cores are shared, so no test here bounds a measured time from above: a reply that
comes late proves nothing about the proxy. What is checked instead holds under any load:
- a reply never comes before its round trip (a lower bound on a measured time, and the shortest hold
  the proxy itself observed);
- overlap: the proxy is seen holding the requests of many connections at the same moment, on a clock
  the test moves itself (`ManualClock`), and they all come back after one round trip of that clock;
- the calibration's arithmetic, on measurements the test gives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from ml.serving.delay_proxy import DelayLine, DelayProxy, main, one_way_delay_s, parse_hostport, serve
from ml.serving.online import OnlineFeatureReader, ViewSpec
from ml.serving.processes import RedisServer, free_port
from ml.serving.store_rtt import RoundTripTooShort, calibrate, delayed_store, round_trips

VIEWS = [ViewSpec("card_features", "card_id", ("cardholder_age",))]
ONE_WAY_S = 0.02
WAIT_S = 30.0  # how long a test waits for the proxy thread to act: generous, it only bounds a hang


@dataclass
class ManualClock:
    """A clock that moves only when the test says so (the proxy's `DelayLine` reads it)."""

    now: float = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S:g} s: {what}")
        time.sleep(0.001)


@contextlib.contextmanager
def proxy_thread(upstream: tuple[str, int], line: DelayLine[socket.socket]) -> Iterator[int]:
    """The proxy's loop in a thread of this process (so the test can read `line`); yields its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(listener, upstream, line, stop), daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=WAIT_S)
        listener.close()
    assert not thread.is_alive(), "the proxy loop did not stop"


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def echo_upstream() -> Iterator[tuple[str, int]]:
    """An echo server in a thread: an upstream without a process."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[0], server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def step(line: DelayLine[Any], clock: ManualClock) -> None:
    """Move the clock by one hold and wait until the proxy has sent what was due."""
    released, before = line.released, line.held
    clock.advance(ONE_WAY_S)
    wait_until(lambda: line.released >= released + before, f"the proxy sends the {before} chunk(s) now due")


# --- the schedule alone ---------------------------------------------------------------------------


def test_a_chunk_leaves_only_once_its_delay_has_passed_and_in_the_order_it_came():
    clock = ManualClock()
    line: DelayLine[str] = DelayLine(ONE_WAY_S, clock)
    line.hold("a", b"1")
    clock.advance(0.005)
    line.hold("a", b"2")
    line.hold("b", b"3")
    line.hold("a", b"")  # the end of a's stream keeps its place behind a's bytes
    assert (line.held, line.in_flight, line.most_in_flight) == (4, 2, 2)
    clock.advance(ONE_WAY_S - 0.005 - 1e-9)
    assert line.release() == [] and line.wait_s() == pytest.approx(1e-9)
    clock.advance(1e-9)
    assert line.release() == [("a", b"1")]
    clock.advance(0.005)
    assert line.release() == [("a", b"2"), ("b", b"3"), ("a", b"")]
    assert (line.held, line.in_flight, line.wait_s(), line.released) == (0, 0, None, 4)
    assert line.shortest_hold_s == pytest.approx(ONE_WAY_S)


def test_a_shorter_delay_never_lets_a_chunk_overtake_one_that_came_before():
    clock = ManualClock()
    line: DelayLine[str] = DelayLine(ONE_WAY_S, clock)
    line.hold("a", b"first")
    line.one_way_s = 0.001
    clock.advance(0.001)
    line.hold("a", b"second")
    clock.advance(0.002)
    assert line.release() == []  # "second" is due by its own delay, but "first" is still held
    clock.advance(ONE_WAY_S)
    assert line.release() == [("a", b"first"), ("a", b"second")]


def test_a_negative_delay_is_refused():
    with pytest.raises(ValueError, match="cannot be negative"):
        DelayLine(-0.001)
    assert one_way_delay_s(3.0) == pytest.approx(0.0015)  # half the round trip each way, in seconds


# --- the proxy's loop on sockets (threads of this process, no process started) ---------------------


def test_no_reply_comes_before_its_round_trip(echo_upstream):
    line: DelayLine[socket.socket] = DelayLine(ONE_WAY_S)  # the real clock
    with proxy_thread(echo_upstream, line) as port, socket.create_connection(("127.0.0.1", port)) as conn:
        conn.settimeout(WAIT_S)
        for i in range(5):
            started = time.perf_counter()
            conn.sendall(b"ping %d" % i)
            assert conn.recv(64) == b"ping %d" % i
            assert time.perf_counter() - started >= 2 * ONE_WAY_S  # a lower bound holds under any load
    assert line.shortest_hold_s is not None and line.shortest_hold_s >= ONE_WAY_S


def test_connections_in_flight_together_all_come_back_after_one_round_trip(echo_upstream):
    clock = ManualClock()
    line: DelayLine[socket.socket] = DelayLine(ONE_WAY_S, clock)
    with proxy_thread(echo_upstream, line) as port:
        conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
        try:
            for i, conn in enumerate(conns):
                conn.sendall(b"request %d" % i)
            # Ten requests held at one moment: the proxy does not serialise connections.
            wait_until(lambda: line.in_flight == 10, "the proxy holds the ten requests")
            for conn in conns:
                conn.setblocking(False)
                with pytest.raises(BlockingIOError):  # nothing comes back while the clock stands still
                    conn.recv(64)
                conn.setblocking(True)
                conn.settimeout(WAIT_S)
            step(line, clock)  # the requests reach the upstream, which answers at once
            wait_until(lambda: line.in_flight == 10, "the proxy holds the ten replies")
            step(line, clock)
            assert [conn.recv(64) for conn in conns] == [b"request %d" % i for i in range(10)]
        finally:
            for conn in conns:
                conn.close()
    assert line.most_in_flight == 10


def test_a_dead_upstream_closes_the_client_connection():
    line: DelayLine[socket.socket] = DelayLine(ONE_WAY_S)
    with (proxy_thread(("127.0.0.1", free_port()), line) as port,
          socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as s):
        assert s.recv(16) == b""  # closed at once, not hung


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_hostport("6379")
    with pytest.raises(SystemExit):
        main(["--upstream", "127.0.0.1:6379", "--rtt-ms", "-1"])
    with pytest.raises(ValueError, match="cannot be negative"):
        DelayProxy("redis://127.0.0.1:6379/0", -1, None)  # type: ignore[arg-type]


# --- the calibration's arithmetic ------------------------------------------------------------------


def test_calibration_adds_the_round_trip_less_the_floor_and_the_timer_wake_up():
    # A path through the proxy of 0.4 ms, and 0.1 ms more for the timer wake-up once anything is held.
    asked: list[float] = []

    def p50_through(added_ms: float) -> float:
        asked.append(added_ms)
        return 0.4 + added_ms + (0.1 if added_ms > 0 else 0.0)

    floor, added = calibrate(3.0, p50_through)
    assert asked == [0.0, pytest.approx(2.6)]  # the floor first, then through the first guess
    assert (floor, added) == (0.4, pytest.approx(2.5))
    assert p50_through(added) == pytest.approx(3.0)  # what a reader then measures is what was asked


def test_calibration_never_asks_for_a_negative_delay():
    # A first guess that overshoots by more than itself: the correction stops at nothing added.
    floor, added = calibrate(1.0, lambda added_ms: 0.9 if added_ms == 0 else 3.0)
    assert (floor, added) == (0.9, 0.0)


def test_a_round_trip_below_the_floor_is_refused_with_the_floor():
    with pytest.raises(RoundTripTooShort, match=r"1 ms is shorter .* \(1\.500 ms with nothing added\)"):
        calibrate(1.0, lambda added_ms: 1.5)
    with pytest.raises(ValueError, match="must be > 0"):
        calibrate(0, lambda added_ms: 0.1)


# --- with a real redis-server (integration) -------------------------------------------------------


def test_every_command_waits_the_round_trip_and_replies_keep_their_order(redis_server: RedisServer, tmp_path):
    with DelayProxy(redis_server.url, 40.0, tmp_path) as proxy:
        client = redis.Redis.from_url(proxy.url, socket_timeout=WAIT_S)
        client.ping()  # connection set-up crosses the proxy too
        started = time.perf_counter()
        assert client.ping()
        one = time.perf_counter() - started
        pipe = client.pipeline(transaction=False)
        for i in range(50):
            pipe.echo(str(i))
        replies = pipe.execute()
        blocking = OnlineFeatureReader(proxy.url, "mlplat", VIEWS, timeout_s=WAIT_S, client="resp")
        blocking.get({"card_id": 1})
        started = time.perf_counter()
        for i in range(10):
            blocking.get({"card_id": i})
        serial = time.perf_counter() - started
        blocking.close()
        client.close()
    assert [r.decode() for r in replies] == [str(i) for i in range(50)]
    assert one >= 0.040  # 40 ms asked for
    assert serial >= 10 * 0.040  # the blocking client waits out each round trip in turn


def test_a_pipeline_is_one_round_trip(redis_server: RedisServer):
    clock = ManualClock()
    line: DelayLine[socket.socket] = DelayLine(0.0, clock)
    with proxy_thread(("127.0.0.1", redis_server.port), line) as proxy_port:
        client = redis.Redis(host="127.0.0.1", port=proxy_port, socket_timeout=WAIT_S)
        client.ping()  # the connection's set-up, with nothing held
        line.one_way_s = ONE_WAY_S
        pipe = client.pipeline(transaction=False)
        for i in range(50):
            pipe.echo(str(i))
        replies: list[Any] = []
        worker = threading.Thread(target=lambda: replies.extend(pipe.execute()))
        worker.start()
        wait_until(lambda: line.held > 0, "the proxy holds the pipeline")
        step(line, clock)
        wait_until(lambda: line.held > 0, "the proxy holds the replies")
        step(line, clock)
        worker.join(timeout=WAIT_S)
        client.close()
    assert [r.decode() for r in replies] == [str(i) for i in range(50)]


@pytest.mark.parametrize(("client", "writes"), [("redis-asyncio", 10), ("resp-async", 1)])
def test_readers_on_one_event_loop_are_in_flight_together(redis_server: RedisServer, client: str, writes: int):
    # Ten reads with an asynchronous client: the proxy holds all ten at once (redis-asyncio: ten writes on ten
    # connections; resp-async: one write on one) and they come back after one round trip of its clock, not ten.
    clock = ManualClock()
    line: DelayLine[socket.socket] = DelayLine(0.0, clock)
    warm, go = threading.Event(), threading.Event()
    found: list[Any] = []

    async def ten(reader: OnlineFeatureReader) -> None:
        await asyncio.gather(*(reader.fetch({"card_id": i}) for i in range(10)))  # open the connections
        warm.set()
        go.wait(WAIT_S)
        found.extend(await asyncio.gather(*(reader.fetch({"card_id": i}) for i in range(10))))

    with proxy_thread(("127.0.0.1", redis_server.port), line) as proxy_port:
        reader = OnlineFeatureReader(f"redis://127.0.0.1:{proxy_port}/0", "mlplat", VIEWS, timeout_s=WAIT_S,
                                     client=client)
        worker = threading.Thread(target=lambda: asyncio.run(ten(reader)))
        worker.start()
        assert warm.wait(WAIT_S), "the connections did not open"
        line.one_way_s = ONE_WAY_S
        go.set()
        wait_until(lambda: line.in_flight == writes, "the proxy holds the ten reads at once")
        step(line, clock)
        wait_until(lambda: line.in_flight == writes, "the proxy holds the ten replies at once")
        step(line, clock)
        worker.join(timeout=WAIT_S)
    assert found == [{"cardholder_age": None}] * 10


def test_a_calibrated_store_holds_each_read_at_least_the_delay_it_adds(redis_server: RedisServer, tmp_path):
    delayed = delayed_store(redis_server.url, 5.0, tmp_path, reads=200)
    try:
        figures = round_trips(delayed.url, 50, warmup=5)
    finally:
        delayed.stop()
    assert delayed.floor_ms > 0 and delayed.added_ms >= 0
    assert figures["p50_ms"] >= delayed.added_ms


def test_a_store_round_trip_below_the_floor_is_refused(redis_server: RedisServer, tmp_path):
    with pytest.raises(RoundTripTooShort, match="shorter than this machine's path through the delay proxy"):
        delayed_store(redis_server.url, 1e-6, tmp_path, reads=50)
