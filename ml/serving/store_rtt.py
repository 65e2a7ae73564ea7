"""Round trip of the online feature read, as the fraud runtime makes it, for `mlplat bench store`.

Each timed call is `OnlineFeatureReader.get_many` for one row: one pipelined round trip of the two
HMGETs of fraud's feature views (common/online.py), on entity keys that are not in the store (the
reply is two arrays of nils, so the figure is the round trip, not Feast's payload decoding).

Against a local redis-server the figure depends on where the two processes run: on one CPU the reply
is read as soon as redis-server yields it; on two CPUs the sleeping reader is woken by an
inter-processor interrupt, which a virtual machine may turn into an exit to the hypervisor (the dev
VM pays ~120 us for it, docs/BENCHMARKS.md). Against a remote store (--url) it is the network round
trip the runtimes pay per request.
"""

from __future__ import annotations

import time
from typing import Any

from ml.common.online import OnlineFeatureReader, ViewSpec
from ml.serving.bench import percentiles

# Fraud's two views (ml/models/fraud/features.py), by name only: any feature view layout serves.
VIEWS = (ViewSpec("device_features", "device_id", ("device_trust_score",)),
         ViewSpec("card_features", "card_id", ("velocity_last_24h", "cardholder_age")))
MISSING_ID = -1  # no Feast entity has a negative id


def round_trips(url: str, n: int, warmup: int = 200) -> dict[str, Any]:
    """p50/p99 (ms) and the mean (us) of n single-row reads against the store at `url`."""
    reader = OnlineFeatureReader(url, "mlplat-bench", VIEWS, timeout_s=1.0)
    rows = [{"card_id": MISSING_ID, "device_id": MISSING_ID}]
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
    if found != [{"device_trust_score": None, "velocity_last_24h": None, "cardholder_age": None}]:
        raise RuntimeError(f"online store at {url} answered {found!r} for entities that should not exist")
    return {**percentiles(times), "mean_us": round(sum(times) / n * 1e6, 1), "reads": n}
