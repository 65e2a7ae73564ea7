"""A TCP proxy on 127.0.0.1 that holds every chunk of bytes for a fixed time in each direction: a
network round trip of a chosen length between a model runtime and its online store, reproducible on
one machine (`mlplat bench store --rtt-ms`, `mlplat bench models --rtt-ms`).

Why a proxy: the kernel's netem qdisc is the usual tool, but this machine's kernel has no `sch_netem`
(`tc qdisc add dev lo root netem delay 1ms` answers "Specified qdisc kind is unknown", even inside a
private network namespace), and netem on the shared loopback would delay every other process too.
`netem_available()` probes for it, so the bench can say which method it used.

Like a network link, the proxy delays without serialising: pipelined requests and several connections
are in flight at once, each chunk leaves `one_way_s` after it arrived, in order per direction. One
thread runs a `select` loop whose timeout is the next departure (select takes microseconds; the timer
slack of the thread is set to 1 us so the kernel does not round the wake-up by its default 50 us). It
costs CPU of its own per forwarded chunk and some latency at zero delay: `store_rtt.delayed_store`
measures that floor and adds only the rest, so the round trip a client measures is the one asked for
(the bench prints the floor and the proxy's CPU per request). The schedule (`DelayLine`) reads a clock it
is given, so that its holds and the overlap it observes can be checked on a clock a test moves itself.

    python -m ml.serving.delay_proxy --upstream 127.0.0.1:6379 --rtt-ms 0.5 [--port 0]

prints the port it listens on as its first line of output.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import heapq
import itertools
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Generic, TypeVar

PR_SET_TIMERSLACK = 29
CHUNK = 65536
STOP_POLL_S = 0.05  # how often a stoppable loop (one run in a thread) looks at its stop event
Dest = TypeVar("Dest")


def _tight_timer_slack() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)


def netem_available() -> bool:
    """Whether the kernel's netem qdisc can be used (probed in a private network namespace, so nothing
    else on the machine is touched)."""
    if not (shutil.which("unshare") and shutil.which("tc")):
        return False
    probe = "ip link set lo up && tc qdisc add dev lo root netem delay 1ms"
    try:
        done = subprocess.run(["unshare", "-rn", "sh", "-c", probe], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


class DelayLine(Generic[Dest]):
    """The proxy's schedule, apart from its sockets: each chunk is held `one_way_s` from the moment it
    arrived (read from `clock`) and leaves in order of arrival per destination. It also keeps what the
    proxy has observed: how many destinations had bytes held at once at most (connections in flight
    together) and the shortest time any chunk was held.

    `one_way_s` may be changed while it runs: it applies to the chunks that arrive after the change, and
    a chunk never leaves before one that arrived earlier (a byte stream must not be reordered)."""

    def __init__(self, one_way_s: float, clock: Callable[[], float] = time.perf_counter) -> None:
        if one_way_s < 0:
            raise ValueError(f"a one-way delay cannot be negative, got {one_way_s} s")
        self.one_way_s = one_way_s
        self.clock = clock
        self._due: list[tuple[float, int, float, Dest, bytes]] = []  # (departure, order, arrival, dest, data)
        self._order = itertools.count()
        self._latest = float("-inf")  # the latest departure given so far
        self._held_for: dict[Dest, int] = {}
        self.most_in_flight = 0
        self.released = 0  # chunks sent on so far
        self.shortest_hold_s: float | None = None

    @property
    def held(self) -> int:
        """Chunks waiting for their departure."""
        return len(self._due)

    @property
    def in_flight(self) -> int:
        """Destinations that have at least one chunk waiting."""
        return len(self._held_for)

    def hold(self, dest: Dest, data: bytes) -> None:
        """Take a chunk bound for `dest` (an empty one is the end of the stream and keeps its place)."""
        now = self.clock()
        self._latest = max(self._latest, now + self.one_way_s)
        heapq.heappush(self._due, (self._latest, next(self._order), now, dest, data))
        self._held_for[dest] = self._held_for.get(dest, 0) + 1
        self.most_in_flight = max(self.most_in_flight, len(self._held_for))

    def wait_s(self) -> float | None:
        """Seconds until the next departure (0 when one is due; None when nothing is held)."""
        return max(0.0, self._due[0][0] - self.clock()) if self._due else None

    def release(self) -> list[tuple[Dest, bytes]]:
        """The chunks whose time has come, in the order they leave."""
        now = self.clock()
        out: list[tuple[Dest, bytes]] = []
        while self._due and self._due[0][0] <= now:
            _, _, arrived, dest, data = heapq.heappop(self._due)
            left = self._held_for[dest] - 1
            if left:
                self._held_for[dest] = left
            else:
                del self._held_for[dest]
            held_s = now - arrived
            if self.shortest_hold_s is None or held_s < self.shortest_hold_s:
                self.shortest_hold_s = held_s
            out.append((dest, data))
        self.released += len(out)
        return out


def one_way_delay_s(rtt_ms: float) -> float:
    """The hold in each direction, in seconds, for a round trip of `rtt_ms` milliseconds: half of it."""
    return rtt_ms / 2000.0


def serve(listener: socket.socket, upstream: tuple[str, int], line: DelayLine[socket.socket],
          stop: threading.Event | None = None) -> None:
    """Forward every connection accepted on `listener` to `upstream`, each chunk held by `line` in each
    direction. Runs until the process is terminated, or until `stop` is set (checked at least every
    `STOP_POLL_S`)."""
    _tight_timer_slack()
    peer: dict[socket.socket, socket.socket] = {}

    def drop(sock: socket.socket) -> None:
        other = peer.pop(sock, None)
        if other is not None:
            peer.pop(other, None)
            other.close()
        sock.close()

    try:
        while stop is None or not stop.is_set():
            timeout = line.wait_s()
            if stop is not None:
                timeout = STOP_POLL_S if timeout is None else min(timeout, STOP_POLL_S)
            readable, _, _ = select.select([listener, *peer], [], [], timeout)
            for sock in readable:
                if sock is listener:
                    client, _ = listener.accept()
                    try:
                        server = socket.create_connection(upstream, timeout=5)
                    except OSError:
                        client.close()
                        continue
                    for s in (client, server):
                        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        s.settimeout(None)
                    peer[client], peer[server] = server, client
                    continue
                if sock not in peer:  # dropped earlier in this pass, with its partner
                    continue
                try:
                    data = sock.recv(CHUNK)
                except OSError:
                    data = b""
                # An empty chunk is the end of the stream: it departs in order, then closes the pair.
                line.hold(peer[sock], data)
            for dest, data in line.release():
                if dest not in peer:
                    continue
                if not data:
                    drop(dest)
                    continue
                try:
                    dest.sendall(data)
                except OSError:
                    drop(dest)
    finally:
        for sock in list(peer):
            if sock in peer:
                drop(sock)


class DelayProxy:
    """The proxy as a child process (context manager): `url` is the store's URL through the proxy."""

    def __init__(self, upstream_url: str, rtt_ms: float, workdir: Path) -> None:
        from urllib.parse import urlparse

        if rtt_ms < 0:
            raise ValueError(f"a round trip cannot be negative, got {rtt_ms} ms")
        parsed = urlparse(upstream_url)
        if not parsed.hostname or not parsed.port:
            raise ValueError(f"the proxy needs a store URL with host and port, got {upstream_url!r}")
        self.upstream_url, self.rtt_ms = upstream_url, rtt_ms
        self.upstream = (parsed.hostname, parsed.port)
        self.log_path = workdir / f"delay-proxy-{parsed.port}-{rtt_ms:g}ms.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        from urllib.parse import urlparse

        parsed = urlparse(self.upstream_url)
        netloc = parsed.netloc.rsplit("@", 1)
        auth = netloc[0] + "@" if len(netloc) == 2 else ""
        return parsed._replace(netloc=f"{auth}127.0.0.1:{self.port}").geturl()

    def start(self) -> DelayProxy:
        host, port = self.upstream
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ml.serving.delay_proxy", "--upstream", f"{host}:{port}",
                 "--rtt-ms", repr(self.rtt_ms)], stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"delay proxy did not start: {line!r}; log {self.log_path}")
        self.port = int(line)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.serving.delay_proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--rtt-ms", type=float, required=True, help="round trip to add (half in each direction)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on, 127.0.0.1 (default: a free one)")
    args = parser.parse_args(argv)
    if args.rtt_ms < 0:
        parser.error(f"--rtt-ms must be >= 0, got {args.rtt_ms}")
    try:
        upstream = parse_hostport(args.upstream)
    except ValueError as exc:
        parser.error(f"--upstream: {exc}")
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(128)
    print(listener.getsockname()[1], flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(listener, upstream, DelayLine(one_way_delay_s(args.rtt_ms)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
