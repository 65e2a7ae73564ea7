"""Round trip of the online feature read, as the runtimes make it, for `mlplat bench store`.

Each timed call is `OnlineFeatureReader.get_many` for one row: one pipelined round trip of one HMGET
per feature view (ml/serving/online.py) — as many views as the registered model that reads the most on
every request — on entity keys that are not in the store (the reply is arrays of nils, so the figure
is the round trip, not Feast's payload decoding).

Against a local redis-server the figure depends on where the two processes run: on one CPU the reply
is read as soon as redis-server yields it; on two CPUs the sleeping reader is woken by an
inter-processor interrupt, which a virtual machine may turn into an exit to the hypervisor (the dev
VM pays ~120 us for it, docs/BENCHMARKS.md). Against a remote store (--url) it is the network round
trip the runtimes pay per request.

`delayed_store` puts a round trip of a chosen length in between (ml/serving/delay_proxy.py), for the
figures at a cluster's round trip on one machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import model_registry
from ml.serving.delay_proxy import DelayProxy
from ml.serving.loadgen import percentiles, process_cpu_seconds
from ml.serving.online import OnlineFeatureReader, ViewSpec

MISSING_ID = -1  # no Feast entity has a negative id


def probe_views() -> list[ViewSpec]:
    """One probe view per feature view that a registered model reads on every request (the most any
    model reads; at least one)."""
    counts = [len(spec.features.feature_views) for spec in map(model_registry.get, model_registry.names())
              if spec.features is not None and spec.features.every_request]
    return [ViewSpec(f"probe_view_{i}", f"probe_id_{i}", (f"probe_{i}_a", f"probe_{i}_b"))
            for i in range(max(counts, default=1))]


def round_trips(url: str, n: int, warmup: int = 200) -> dict[str, Any]:
    """p50/p99 (ms) and the mean (us) of n single-row reads against the store at `url`."""
    views = probe_views()
    # One blocking read at a time: the round trip alone, without an event loop's scheduling in it.
    reader = OnlineFeatureReader(url, "mlplat-bench", views, timeout_s=1.0, client="resp")
    rows = [{v.join_key: MISSING_ID for v in views}]
    try:
        for _ in range(warmup):
            reader.get_many(rows)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            found = reader.get_many(rows)
            times.append(time.perf_counter() - t)
    finally:
        reader.close()
    if found != [dict.fromkeys(f for v in views for f in v.features)]:
        raise RuntimeError(f"online store at {url} answered {found!r} for entities that should not exist")
    return {**percentiles(times), "mean_us": round(sum(times) / n * 1e6, 1), "reads": n, "views": len(views)}


class RoundTripTooShort(ValueError):
    """The asked round trip is below what this machine's path through the proxy already takes."""


@dataclass
class DelayedStore:
    """A store behind the delay proxy: `url` for the clients; the measured floor and the delay added."""

    proxy: DelayProxy
    rtt_ms: float  # the round trip asked for (the p50 a single reader measures through the proxy)
    floor_ms: float  # p50 through the proxy with nothing added: its own cost plus the store's
    added_ms: float  # what the proxy holds the bytes for, both directions together

    @property
    def url(self) -> str:
        return self.proxy.url

    def cpu_seconds(self) -> float:
        assert self.proxy.proc is not None
        return process_cpu_seconds(self.proxy.proc.pid)

    def stop(self) -> None:
        self.proxy.stop()


def calibrate(rtt_ms: float, p50_through: Callable[[float], float]) -> tuple[float, float]:
    """(floor, delay to add), in ms, for a round trip of `rtt_ms`: `p50_through(added)` is the p50 a
    reader measures through a proxy that adds `added` ms. The floor (nothing added) is measured first; a
    held chunk also pays the proxy's wake-up from its timer, which the floor does not show, so the delay
    is then corrected once by what a reader measures through it."""
    if rtt_ms <= 0:
        raise ValueError(f"--rtt-ms must be > 0, got {rtt_ms:g}")
    floor_ms = p50_through(0.0)
    added = rtt_ms - floor_ms
    if added < 0:
        raise RoundTripTooShort(
            f"a round trip of {rtt_ms:g} ms is shorter than this machine's path through the delay proxy "
            f"({floor_ms:.3f} ms with nothing added); ask for more")
    measured = p50_through(added)
    return floor_ms, max(0.0, added - (measured - rtt_ms))


def delayed_store(url: str, rtt_ms: float, workdir: Path, reads: int = 2000) -> DelayedStore:
    """The store at `url` behind a delay proxy calibrated (`calibrate`) so that one reader measures a
    round trip of `rtt_ms` (p50).

    Start it under the CPU placement it should keep (`on_cpus`): its process inherits it."""
    def p50_through(added_ms: float) -> float:
        with DelayProxy(url, added_ms, workdir) as proxy:
            return float(round_trips(proxy.url, reads)["p50_ms"])

    floor_ms, added = calibrate(rtt_ms, p50_through)
    proxy = DelayProxy(url, added, workdir).start()
    return DelayedStore(proxy, rtt_ms, round(floor_ms, 4), round(added, 4))
