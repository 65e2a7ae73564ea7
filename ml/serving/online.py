"""Fast path to Feast's Redis online store: pipelined HMGETs instead of the Feast SDK.

Measured on the 2-core dev machine when this was decided: `FeatureStore.get_online_features` ~1.8 ms p50 per
row, a raw `HGETALL` of the same key ~0.13 ms. So the runtimes read the key Feast writes
directly. The layout (Feast 0.63 Redis online store, entity key serialization version 3) is:

    key    = serialize_entity_key(EntityKey)            + project (utf-8)
             <u32 n_keys> {<u32 STRING=2> <u32 len> join_key}* {<u32 value_type> <u32 len> value}*
             (single join key; int64 values little-endian 8 bytes, strings utf-8)
    fields = murmur3_32("<feature_view>:<feature>") as 4 little-endian bytes -> serialized ValueProto
             "_ts:<feature_view>"                                           -> serialized Timestamp

All rows of a request go out as one pipeline, bounded by `timeout_s` (the read bound, default 20 ms). Opening a
connection (TCP, TLS handshake, AUTH/SELECT) has its own bound, `connect_timeout_s` (default
`CONNECT_TIMEOUT_S`): it takes several round trips plus the handshake's CPU, across zones and on a loaded
machine more than a read's 20 ms, and happens once per connection (the first request, or after an error), so
the first request is not degraded for a cost no other request pays. With the hand-written clients a set-up
that fails is not tried again for `RECONNECT_BACKOFF_S` (reads fail at once meanwhile): an unreachable store
then costs one set-up bound per back-off period, not one per request. Four clients (`client=`):
- `resp-async` (default): the minimal non-blocking client below, one connection per event loop. The commands
  of every request in flight go out in one write per event-loop pass and the event loop serves other
  requests during the round trip. Measured against the others in docs/BENCHMARKS.md ("Online read across a
  network"): the least server CPU per request at loopback and at every round trip, and the throughput of an
  overlapped read; the cluster's choice is stack config `workloads.seldon.onlineClient`.
- `resp`: the minimal blocking client: the event loop waits for each round trip, which costs little on
  loopback and a pod's whole throughput share of the wait across a network.
- `redis-asyncio`: redis.asyncio (hiredis parser, a connection per request in flight, non-transactional
  pipeline, no retries): overlapped like `resp-async`, for several times its CPU per read.
- `redis-py`: blocking redis-py, for comparison only.
Runtimes call `await reader.fetch_many(rows)`, which suspends only with the asynchronous clients.

`tests/ml/test_runtime_fraud.py` materializes through Feast and reads through this module, so a
Feast upgrade that changes the layout fails a test instead of silently serving defaults.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import socket
import ssl
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import hiredis
import mmh3
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from contracts.feast import ASYNC_ONLINE_CLIENTS, DEFAULT_ONLINE_CLIENT, ONLINE_CLIENTS

_STRING, _INT64 = 2, 4  # feast ValueType enum values
CLIENTS, ASYNC_CLIENTS, DEFAULT_CLIENT = ONLINE_CLIENTS, ASYNC_ONLINE_CLIENTS, DEFAULT_ONLINE_CLIENT
READ_TIMEOUT_S = 0.02  # one pipelined read
CONNECT_TIMEOUT_S = 0.25  # opening a connection: TCP, TLS handshake, AUTH/SELECT
RECONNECT_BACKOFF_S = 1.0  # the blocking client's pause after a failed connection set-up


def _bound(name: str, value: float) -> float:
    """A timeout in seconds: finite and > 0, else ValueError naming the setting."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return seconds


def entity_key_bytes(project: str, join_key: str, value: int | str) -> bytes:
    """The Redis key under which Feast stores the features of one entity (one join key)."""
    k = join_key.encode()
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"entity value for {join_key!r} must be int or str, got {type(value).__name__}")
    if isinstance(value, int):
        vtype, vbytes = _INT64, struct.pack("<q", value)
    else:
        vtype, vbytes = _STRING, value.encode()
    return b"".join(
        (struct.pack("<III", 1, _STRING, len(k)), k, struct.pack("<II", vtype, len(vbytes)), vbytes, project.encode())
    )


def field_key(feature_view: str, feature: str) -> bytes:
    return struct.pack("<Q", mmh3.hash(f"{feature_view}:{feature}", signed=False))[:4]


_VARINT_TAGS = (0x18, 0x20)  # int32_val (3) and int64_val (4), wire type 0: a varint follows
_DOUBLE_TAG, _FLOAT_TAG = 0x29, 0x35  # double_val (5), wire type 1 (8 bytes); float_val (6), wire type 5 (4 bytes)
_unpack_double, _unpack_float = struct.Struct("<d").unpack_from, struct.Struct("<f").unpack_from


def _decode(raw: bytes) -> Any:
    """The value of a serialized Feast ValueProto. The scalar numbers Feast writes for numeric features are
    read straight from the wire format (the message holds one field: its tag, then the value), ~4x cheaper
    than a protobuf parse on the request path; any other message goes through protobuf."""
    if raw:
        tag, size = raw[0], len(raw)
        if tag in _VARINT_TAGS and 2 <= size <= 11:
            value = shift = 0
            for i in range(1, size):
                byte = raw[i]
                value |= (byte & 0x7F) << shift
                if byte < 0x80:  # the varint's last byte: it must also be the message's
                    if i == size - 1:
                        return value - (1 << 64) if value >= 1 << 63 else value  # negatives: two's complement
                    break
                shift += 7
        if tag == _DOUBLE_TAG and size == 9:
            return _unpack_double(raw, 1)[0]
        if tag == _FLOAT_TAG and size == 5:
            return _unpack_float(raw, 1)[0]
    return _decode_proto(raw)


def _decode_proto(raw: bytes) -> Any:
    v = ValueProto()
    v.ParseFromString(raw)
    kind = v.WhichOneof("val")
    if kind is None:
        return None
    value = getattr(v, kind)
    return list(value.val) if kind.endswith("_list_val") else value


@dataclass(frozen=True)
class ViewSpec:
    """One Feast feature view read by the fast path: its entity join key and the features wanted."""

    feature_view: str
    join_key: str
    features: tuple[str, ...]


class _ViewRead:
    """One view's HMGET, with the parts of the RESP command that do not depend on the entity precomputed: for an
    int64 entity the command is `head + <8-byte value> + tail`, byte for byte what `_command(b"HMGET",
    entity_key_bytes(...), *fields)` builds (tested); string entities take that general path."""

    __slots__ = ("fields", "head", "join_key", "project", "tail")

    def __init__(self, project: str, view: ViewSpec) -> None:
        self.join_key, self.project = view.join_key, project
        self.fields = [field_key(view.feature_view, f) for f in view.features]
        k = view.join_key.encode()
        prefix = struct.pack("<III", 1, _STRING, len(k)) + k + struct.pack("<II", _INT64, 8)
        suffix = project.encode()
        self.head = b"*%d\r\n$5\r\nHMGET\r\n$%d\r\n" % (2 + len(self.fields), len(prefix) + 8 + len(suffix)) + prefix
        self.tail = suffix + b"\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(f), f) for f in self.fields)

    def command(self, value: int | str) -> bytes:
        if type(value) is int and -(1 << 63) <= value < 1 << 63:
            return self.head + _pack_int64(value) + self.tail
        return _command(b"HMGET", entity_key_bytes(self.project, self.join_key, value), *self.fields)


_pack_int64 = struct.Struct("<q").pack


class StoreError(ConnectionError):
    """The online store could not be reached, answered an error, or exceeded the timeout."""


def _command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(p), p))
    return b"".join(out)


class _Resp:
    """Minimal blocking RESP client: pipelined commands on one socket, replies parsed by hiredis.

    redis-py's pipeline costs ~0.1 ms of Python per call on this box, as much as the round trip
    itself; this is the whole hot path. Any socket error or timeout drops the connection (the
    next call reconnects) and raises StoreError. No retries: the caller degrades instead. A failed
    connection set-up is not retried for `RECONNECT_BACKOFF_S` (calls raise StoreError at once meanwhile).
    """

    def __init__(self, url: str, timeout_s: float, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
            raise ValueError(f"online store URL must look like redis://HOST:PORT/DB, got {url!r}")
        self.host, self.port = parsed.hostname, parsed.port or 6379
        self.tls = parsed.scheme == "rediss"
        self.db = int((parsed.path or "/0").lstrip("/") or 0)
        self.username, self.password = parsed.username, parsed.password
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._sock: socket.socket | None = None
        self._retry_at = 0.0  # monotonic time before which a failed set-up is not tried again

    def _connect(self) -> socket.socket:
        """Open the connection within the set-up bound; reads then run under the read bound."""
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            raise StoreError(f"connection set-up failed recently; next attempt in {wait:.2f} s")
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.host)
            self._sock = sock
            setup = self.set_up_commands()
            if setup:
                self._roundtrip(b"".join(setup), len(setup))
        except (OSError, StoreError):
            self._retry_at = time.monotonic() + RECONNECT_BACKOFF_S
            raise
        sock.settimeout(self.timeout_s)
        return sock

    def set_up_commands(self) -> list[bytes]:
        """What a new connection sends first: AUTH with the URL's credentials, SELECT of its database."""
        setup = []
        if self.password:
            auth = [self.username.encode(), self.password.encode()] if self.username else [self.password.encode()]
            setup.append(_command(b"AUTH", *auth))
        if self.db:
            setup.append(_command(b"SELECT", str(self.db).encode()))
        return setup

    def _roundtrip(self, payload: bytes, replies: int) -> list[Any]:
        sock = self._sock
        assert sock is not None
        sock.sendall(payload)
        reader = hiredis.Reader()
        out: list[Any] = []
        while len(out) < replies:
            chunk = sock.recv(65536)
            if not chunk:
                raise StoreError("online store closed the connection")
            reader.feed(chunk)
            while (reply := reader.gets()) is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise StoreError(f"online store error: {reply}")
                out.append(reply)
        return out

    def pipeline(self, commands: list[bytes]) -> list[Any]:
        try:
            if self._sock is None:
                self._connect()
            return self._roundtrip(b"".join(commands), len(commands))
        except (OSError, StoreError) as exc:
            self.close()
            raise StoreError(f"online store {self.host}:{self.port}: {exc or type(exc).__name__}") from exc

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


class _Batch:
    """Requests whose commands went out in one write: they share the read bound from that write."""

    __slots__ = ("bound_s", "open", "timer")

    def __init__(self, bound_s: float) -> None:
        self.bound_s = bound_s
        self.open = 0  # entries of this batch still waiting for replies
        self.timer: asyncio.TimerHandle | None = None


class _Waiting:
    __slots__ = ("batch", "error", "expected", "future", "replies")

    def __init__(self, future: asyncio.Future, expected: int) -> None:
        self.future, self.expected = future, expected
        self.batch: _Batch | None = None  # set when its commands are written
        self.replies: list[Any] = []
        self.error: str | None = None


class _Connection(asyncio.Protocol):
    """The callbacks of one connection of `_RespAsync`, passed on only while it is the client's connection: a
    connection the client dropped (a timeout) may still report its loss after a new one opened."""

    def __init__(self, client: _RespAsync) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        if self.client._conn is self:
            self.client._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client._conn is self:
            self.client._lost(exc)


class _RespAsync:
    """Minimal non-blocking RESP client: one connection per event loop, commands of every request in flight
    written together once per loop pass, replies (Redis answers a connection's commands in order) parsed by
    hiredis and handed to each caller in order.

    A request costs a future and an event-loop pass instead of redis.asyncio's connection checkout,
    command packing and parser coroutine per command; the event loop serves other requests during the
    round trip, and requests arriving together share one write, one read and one Redis wake-up. Bounds as
    `_Resp`: `timeout_s` from the write of a request's commands to its last reply (then the connection is
    dropped, since the replies still owed would be handed to the wrong callers, and every caller waiting on
    it gets StoreError); connection set-up (TCP, TLS, AUTH/SELECT) under `connect_timeout_s`, not tried again
    for `RECONNECT_BACKOFF_S` after it fails. No retries: the caller degrades instead.
    """

    def __init__(self, target: _Resp) -> None:
        """`target`: the store's parsed URL and bounds (a `_Resp` whose own socket stays unused)."""
        self._target = target
        self.host, self.port, self.tls = target.host, target.port, target.tls
        self.timeout_s, self.connect_timeout_s = target.timeout_s, target.connect_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.Transport | None = None
        self._conn: _Connection | None = None
        self._connecting: asyncio.Future | None = None
        self._retry_at = 0.0
        self._reader = hiredis.Reader()
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._out: list[bytes] = []
        self._pending: list[_Waiting] = []  # queued since the last write, written by `_flush`

    # ---- the connection's callbacks (`_Connection`) -----------------------------------------------

    def _received(self, data: bytes) -> None:
        reader, waiting = self._reader, self._waiting
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self._drop("online store sent an unexpected reply")
                return
            head = waiting[0]
            if isinstance(reply, hiredis.ReplyError):
                head.error = f"online store error: {reply}"
            head.replies.append(reply)
            if len(head.replies) == head.expected:
                waiting.popleft()
                self._settle(head)

    def _lost(self, exc: Exception | None) -> None:
        self._conn, self._transport = None, None
        self._fail_all(f"online store {self.host}:{self.port} closed the connection"
                       + (f": {exc}" if exc else ""))

    # ---- calls --------------------------------------------------------------------------------------

    async def pipeline(self, commands: list[bytes]) -> list[Any]:
        loop = asyncio.get_running_loop()
        if self._transport is None or self._loop is not loop:
            await self._connect(loop)
        return await self._send(loop, commands)

    def _send(self, loop: asyncio.AbstractEventLoop, commands: list[bytes]) -> asyncio.Future:
        if not self._pending:  # written one event-loop pass later: requests read off the sockets meanwhile join
            loop.call_soon(loop.call_soon, self._flush)
        entry = _Waiting(loop.create_future(), len(commands))
        self._pending.append(entry)
        self._out.extend(commands)
        return entry.future

    def _flush(self) -> None:
        pending, out = self._pending, self._out
        self._pending, self._out = [], []
        if self._transport is None:  # lost between the call and this pass
            for entry in pending:
                entry.error = f"online store {self.host}:{self.port}: connection lost"
                self._settle(entry)
            return
        self._write(pending, b"".join(out), self.timeout_s)

    def _write(self, entries: list[_Waiting], payload: bytes, bound_s: float) -> None:
        """Send `payload` (the commands of `entries`, in order), every entry bounded by `bound_s` from now."""
        batch = _Batch(bound_s)
        batch.open = len(entries)
        batch.timer = self._loop.call_later(bound_s, self._expire, batch)  # type: ignore[union-attr]
        for entry in entries:
            entry.batch = batch
        self._waiting.extend(entries)
        self._transport.write(payload)  # type: ignore[union-attr]

    def _settle(self, entry: _Waiting) -> None:
        batch = entry.batch
        if batch is not None:
            batch.open -= 1
            if batch.open == 0 and batch.timer is not None:
                batch.timer.cancel()
        if entry.future.done():  # the caller went away (cancelled)
            return
        if entry.error is not None:
            entry.future.set_exception(StoreError(entry.error))
        else:
            entry.future.set_result(entry.replies)

    def _expire(self, batch: _Batch) -> None:
        if batch.open > 0:
            self._drop(f"online store {self.host}:{self.port}: no reply within {batch.bound_s * 1000:g} ms")

    def _drop(self, why: str) -> None:
        transport, self._transport, self._conn = self._transport, None, None
        if transport is not None:
            transport.abort()
        self._fail_all(why)

    def _fail_all(self, why: str) -> None:
        self._reader = hiredis.Reader()
        waiting, self._waiting = self._waiting, collections.deque()
        for entry in waiting:
            entry.error = why
            self._settle(entry)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._connecting is not None and self._loop is loop:  # another request is opening it: wait for that
            await asyncio.shield(self._connecting)
            if self._transport is None:
                raise StoreError(f"online store {self.host}:{self.port}: connection set-up failed")
            return
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            raise StoreError(f"online store {self.host}:{self.port}: connection set-up failed recently; "
                             f"next attempt in {wait:.2f} s")
        if self._transport is not None:  # opened on another event loop: its callbacks would run there
            self._drop("online store client moved to another event loop")
        self._loop, self._connecting = loop, loop.create_future()
        try:
            await asyncio.wait_for(self._open(loop), self.connect_timeout_s)
        except (OSError, StoreError, TimeoutError) as exc:
            self._retry_at = time.monotonic() + RECONNECT_BACKOFF_S
            self._drop("connection set-up failed")
            raise StoreError(f"online store {self.host}:{self.port}: connection set-up failed: "
                             f"{exc or type(exc).__name__}") from exc
        finally:
            self._connecting.set_result(None)
            self._connecting = None

    async def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        tls = ssl.create_default_context() if self.tls else None
        transport, conn = await loop.create_connection(
            lambda: _Connection(self), self.host, self.port, ssl=tls, server_hostname=self.host if tls else None)
        self._transport, self._conn = transport, conn  # type: ignore[assignment]
        self._reader = hiredis.Reader()
        setup = self._target.set_up_commands()
        if setup:  # under the set-up bound, ahead of any request's commands
            entry = _Waiting(loop.create_future(), len(setup))
            self._write([entry], b"".join(setup), self.connect_timeout_s)
            await entry.future

    def close(self) -> None:
        self._drop("online store client closed")



def _sync_set_up_bound(base: type) -> type:
    """`base` (a redis-py connection class) whose set-up commands (AUTH, SELECT) run under the connect bound:
    redis-py bounds the TCP/TLS connect by `socket_connect_timeout` but reads their answers under the read bound."""

    class SetUpBound(base):  # type: ignore[misc,valid-type]
        def on_connect_check_health(self, check_health: bool = True) -> None:
            self._sock.settimeout(self.socket_connect_timeout)
            try:
                super().on_connect_check_health(check_health)
            finally:
                if self._sock is not None:
                    self._sock.settimeout(self.socket_timeout)

    return SetUpBound


def _async_set_up_bound(base: type) -> type:
    """`_sync_set_up_bound` for redis.asyncio, which reads under the `socket_timeout` attribute of the moment."""

    class SetUpBound(base):  # type: ignore[misc,valid-type]
        async def on_connect_check_health(self, check_health: bool = True) -> None:
            read_bound, self.socket_timeout = self.socket_timeout, self.socket_connect_timeout
            try:
                await super().on_connect_check_health(check_health)
            finally:
                self.socket_timeout = read_bound

    return SetUpBound


class _RedisPy:
    """redis-py with the hiredis parser: connection pool, non-transactional pipeline, no retries."""

    def __init__(self, url: str, timeout_s: float, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._errors = (redis.RedisError, OSError)
        pool = redis.ConnectionPool.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=connect_timeout_s, retry=Retry(NoBackoff(), 0))
        pool.connection_class = _sync_set_up_bound(pool.connection_class)  # TCP or TLS, as the URL chose
        self._redis = redis.Redis(connection_pool=pool)

    def hmget_many(self, commands: list[tuple[bytes, list[bytes]]]) -> list[Any]:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key, fields in commands:
                pipe.hmget(key, fields)
            return pipe.execute()
        except self._errors as exc:
            raise StoreError(f"online store: {exc}") from exc

    def close(self) -> None:
        self._redis.close()


class _RedisAsyncio:
    """redis.asyncio with the hiredis parser: a pooled connection per request in flight, a
    non-transactional pipeline of HMGETs, no retries, the socket timeout as the hard bound. Bound to
    the event loop of its first call (MLServer's), like every asyncio client."""

    def __init__(self, url: str, timeout_s: float, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        import redis.asyncio as aredis
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError
        from redis.retry import Retry

        self._errors = (RedisError, OSError, TimeoutError)
        # No CLIENT SETINFO on connect: two round trips more per new connection, across a network.
        pool = aredis.ConnectionPool.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=connect_timeout_s, retry=Retry(NoBackoff(), 0),
            driver_info=None)
        pool.connection_class = _async_set_up_bound(pool.connection_class)  # TCP or TLS, as the URL chose
        self._redis = aredis.Redis(connection_pool=pool)

    async def hmget_many(self, commands: list[tuple[bytes, list[bytes]]]) -> list[Any]:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key, fields in commands:
                pipe.hmget(key, fields)
            return await pipe.execute()
        except self._errors as exc:
            raise StoreError(f"online store: {exc or type(exc).__name__}") from exc

    def close(self) -> None:
        # The pool's connections belong to the event loop that opened them; closing them needs that loop,
        # which the model server stops after unloading. Dropping the references closes the sockets.
        self._redis = None  # type: ignore[assignment]


class OnlineFeatureReader:
    """Reads features of several views, for one or more rows, in one Redis round trip with a hard
    socket timeout; opening a connection has its own bound (`connect_timeout_s`, module docstring)."""

    def __init__(self, url: str, project: str, views: Sequence[ViewSpec], timeout_s: float = READ_TIMEOUT_S,
                 client: str = DEFAULT_CLIENT, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        timeout_s = _bound("timeout_s (the read bound)", timeout_s)
        connect_timeout_s = _bound("connect_timeout_s (the connection set-up bound)", connect_timeout_s)
        if client not in CLIENTS:
            raise ValueError(f"online store client must be one of {', '.join(CLIENTS)}, got {client!r}")
        self.project = project
        self.views = list(views)
        self._reads = [_ViewRead(project, v) for v in self.views]
        resp = _Resp(url, timeout_s, connect_timeout_s)  # validates the URL for every client
        self.client = client
        self._client: _Resp | _RespAsync | _RedisPy | _RedisAsyncio = (
            resp if client == "resp" else _RespAsync(resp) if client == "resp-async"
            else _RedisAsyncio(url, timeout_s, connect_timeout_s) if client == "redis-asyncio"
            else _RedisPy(url, timeout_s, connect_timeout_s))

    def _keys(self, rows: Sequence[dict[str, int | str]]) -> list[tuple[bytes, list[bytes]]]:
        return [(entity_key_bytes(self.project, read.join_key, row[read.join_key]), read.fields)
                for row in rows for read in self._reads]

    def _commands(self, rows: Sequence[dict[str, int | str]]) -> list[bytes]:
        return [read.command(row[read.join_key]) for row in rows for read in self._reads]

    def get_many(self, rows: Sequence[dict[str, int | str]]) -> list[dict[str, Any]]:
        """Per row, feature values by feature name (None where absent), all rows in one round trip.

        Raises StoreError on connection trouble, a Redis error or a timeout; KeyError if a join key
        is missing from a row. Blocking clients only (`fetch_many` serves every client).
        """
        if isinstance(self._client, _RedisAsyncio | _RespAsync):
            raise TypeError(f"the {self.client} client is read with `await reader.fetch_many(rows)`")
        if isinstance(self._client, _RedisPy):
            return self._decode_rows(rows, iter(self._client.hmget_many(self._keys(rows))))
        return self._decode_rows(rows, iter(self._client.pipeline(self._commands(rows))))

    async def fetch_many(self, rows: Sequence[dict[str, int | str]]) -> list[dict[str, Any]]:
        """`get_many` for a coroutine: with the asynchronous client the event loop serves other requests
        during the round trip; with a blocking one it returns without suspending (no event-loop pass)."""
        if isinstance(self._client, _RespAsync):
            return self._decode_rows(rows, iter(await self._client.pipeline(self._commands(rows))))
        if isinstance(self._client, _RedisAsyncio):
            return self._decode_rows(rows, iter(await self._client.hmget_many(self._keys(rows))))
        return self.get_many(rows)

    def _decode_rows(self, rows: Sequence[dict[str, int | str]], replies: Iterator[Any]) -> list[dict[str, Any]]:
        out = []
        for _row in rows:
            found: dict[str, Any] = {}
            for v, values in zip(self.views, replies, strict=False):  # views first: takes len(views) replies
                for f, raw in zip(v.features, values, strict=True):
                    found[f] = None if raw is None else _decode(raw)
            out.append(found)
        return out

    def get(self, entities: dict[str, int | str]) -> dict[str, Any]:
        """Feature values by feature name (None where absent) for the given join-key values."""
        return self.get_many([entities])[0]

    async def fetch(self, entities: dict[str, int | str]) -> dict[str, Any]:
        """`get` for a coroutine (see `fetch_many`)."""
        return (await self.fetch_many([entities]))[0]

    def close(self) -> None:
        self._client.close()
