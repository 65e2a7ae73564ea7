"""The streaming-features Flink job on this machine (`mlplat local up --engines flink`): the same module the
cluster's FlinkDeployment runs (`python -m <ModelSpec.stream.job>`), on a local mini-cluster (one JVM) in the
streaming environment (.venv-flink), reading a continuously monitored directory with Flink's bundled file
source instead of the MSK topic (no Kafka connector jar or broker can be installed here), and writing the local
Redis online store in Feast's layout.

`demonstrate` shows the path end to end: a new transaction file for a card the store does not hold, the job
writes its velocity, and the next request of the model that declares the stream, for that card, is served
with it (no longer degraded).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis

from contracts import feast_redis, model_registry
from contracts.feast import PROJECT
from contracts.flink import RUNNING_MARKER
from local.config import REPO_ROOT
from ml.serving.processes import Service

FLINK_PYTHON = REPO_ROOT / ".venv-flink" / "bin" / "python"
DEMO_CARD = 900_000_001  # a card id the sample data never holds (its rows use transaction ids)
DEMO_TRANSACTIONS = 3



class FlinkEngineError(RuntimeError):
    """The streaming job cannot run here or did not do its work; the message says why."""


def job_module() -> str:
    stream = model_registry.stream()
    if stream is None or stream.job is None:
        raise FlinkEngineError("--engines flink: no registered model declares a streaming job (ModelSpec.stream.job)")
    return stream.job


class FlinkJob(Service):
    """The job as a supervised service; ready once it says its job graph runs (it serves no port)."""

    name = "flink"

    def __init__(self, workdir: str | Path, inbox: Path, redis_url: str) -> None:
        super().__init__(workdir)
        self.inbox, self.redis_url = Path(inbox), redis_url

    def command(self) -> list[str]:
        if not os.access(FLINK_PYTHON, os.X_OK):
            raise FlinkEngineError(f"--engines flink needs the streaming environment {FLINK_PYTHON.parent.parent}: "
                                   "run `scripts/bootstrap.sh flink` (apache-flink on a Java 17 runtime)")
        return [str(FLINK_PYTHON), "-m", job_module()]

    def env(self) -> dict[str, str]:
        self.inbox.mkdir(parents=True, exist_ok=True)
        return {**os.environ, "VELOCITY_SOURCE": "files", "INPUT_DIR": str(self.inbox), "REDIS_URL": self.redis_url,
                "FEAST_PROJECT": PROJECT, "MONITOR_INTERVAL_SECONDS": "0.5"}

    def start(self, timeout_s: float = 180.0) -> Service:
        # A fresh log per start: readiness is read from it (an earlier run's line must not count).
        self.log_path.write_bytes(b"")
        return super().start(timeout_s)

    def ready(self) -> bool:
        try:
            return RUNNING_MARKER in self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return False


@dataclass
class StreamCheck:
    """What the end-to-end check saw."""

    model: str
    card: int
    transactions: int
    velocity: int | None
    seconds: float
    degraded_before: bool
    degraded_after: bool
    probability_after: float | None

    @property
    def ok(self) -> bool:
        return self.velocity == self.transactions and self.degraded_before and not self.degraded_after

    def line(self) -> str:
        if not self.ok:
            return (f"FAILED: {self.transactions} new transaction(s) for card {self.card}: online velocity "
                    f"{self.velocity} after {self.seconds:.1f}s, request degraded before/after "
                    f"{self.degraded_before}/{self.degraded_after}")
        return (f"a new file of {self.transactions} transactions for card {self.card} -> velocity_last_24h="
                f"{self.velocity} in the online store {self.seconds:.1f}s later; the next {self.model} request "
                "for the card "
                f"is served with it (degraded before: unknown card; after: no, p={self.probability_after:.3f})")


def _transactions(card: int, n: int) -> str:
    now = datetime.now(UTC)
    return "".join(json.dumps({"transaction_id": f"demo-{card}-{i}", "card_id": card, "amount": 12.5 + i,
                               "event_time": (now - timedelta(minutes=n - i)).isoformat().replace("+00:00", "Z"),
                               "cardholder_age": 41}) + "\n" for i in range(n))


def online_velocity(redis_url: str, card: int, view: str = "card_features") -> int | None:
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        raw = client.hget(feast_redis.entity_key(PROJECT, "card_id", card),
                          feast_redis.field_key(view, "velocity_last_24h"))
    finally:
        client.close()
    return feast_redis.parse_int64_value(raw)


def infer_for_card(http_url: str, model: str, request: dict[str, Any], card: int) -> tuple[bool, float]:
    """(degraded, score) of one request of `model` with its `card_id` replaced by `card`."""
    body = json.loads(json.dumps(request))
    for inp in body["inputs"]:
        if inp["name"] == "card_id":
            inp["data"] = [card]
    reply = httpx.post(f"{http_url}/v2/models/{model}/infer", json=body, timeout=10)
    reply.raise_for_status()
    outputs = reply.json()["outputs"]
    degraded = next(o["data"][0] for o in outputs if o["name"] == "degraded")
    return bool(degraded), float(outputs[0]["data"][0])  # the first output is the model's score


def demonstrate(inbox: Path, redis_url: str, http_url: str, model: str, request: dict[str, Any],
                timeout_s: float = 90.0) -> StreamCheck:
    """A new transaction file -> the job -> the online store -> the next request of `model` for that card."""
    card = DEMO_CARD
    degraded_before, _ = infer_for_card(http_url, model, request, card)
    started = time.monotonic()
    name = f"transactions-{int(time.time() * 1000)}.jsonl"
    staging = inbox / f".{name}"  # hidden while written: the file source lists it only once complete
    staging.write_text(_transactions(card, DEMO_TRANSACTIONS))
    staging.rename(inbox / name)
    velocity = None
    while time.monotonic() - started < timeout_s:
        velocity = online_velocity(redis_url, card)
        if velocity == DEMO_TRANSACTIONS:
            break
        time.sleep(0.2)
    seconds = time.monotonic() - started
    degraded_after, probability = infer_for_card(http_url, model, request, card)
    return StreamCheck(model, card, DEMO_TRANSACTIONS, velocity, seconds, degraded_before, degraded_after, probability)
