"""Consume fraud transactions from MSK, keep per-card velocity, push rows to a Feast push source.

Delivery is at-least-once: offsets are committed only after the batch they cover was pushed, and
`VelocityWindow` ignores redelivered transaction ids. Invalid messages are counted and skipped (a
poison message must not stall the partition). The consumer and the sink are small protocols, so
the loop is unit-tested with fakes; `make_consumer` builds the real confluent-kafka consumer with
MSK IAM (SASL/OAUTHBEARER) and `FeastPushSink` the real sink.

Run in the cluster as `python -m ml.models.fraud.streaming.ingestor` (configuration from environment,
see `Settings.from_env`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from ml.models.fraud.streaming.events import InvalidEvent, parse
from ml.models.fraud.streaming.velocity import VelocityWindow

log = logging.getLogger("mlplat.ingestor")

EVENTS = "mlplat_ingestor_events_total"
PUSH_SECONDS = "mlplat_ingestor_push_seconds"
EVENT_LAG = "mlplat_ingestor_event_lag_seconds"
PUSH_FAILURES = "mlplat_ingestor_push_failures_total"
LABELLED = "mlplat_ingestor_labelled_transactions_total"
OUTCOMES = "mlplat_ingestor_labelled_outcomes_total"  # per registry version: the F1 rollback trigger
# Every metric this module exports (dashboards and alerts may only query listed names).
METRIC_NAMES = (EVENTS, PUSH_SECONDS, EVENT_LAG, PUSH_FAILURES, LABELLED, OUTCOMES)


class Message(Protocol):
    def value(self) -> bytes | None: ...
    def error(self) -> Any: ...


class Consumer(Protocol):
    def poll(self, timeout: float) -> Message | None: ...
    def commit(self, asynchronous: bool = ...) -> Any: ...
    def close(self) -> None: ...


class Sink(Protocol):
    def push(self, rows: Sequence[dict[str, Any]]) -> None: ...


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(EVENTS, "Messages consumed, by outcome (pushed, invalid, duplicate).",
                              ["outcome"], registry=registry)
        self.push_seconds = Histogram(PUSH_SECONDS, "Latency of one push of a batch to Feast.", registry=registry,
                                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.lag = Gauge(EVENT_LAG, "Seconds between the newest pushed event's time and now.", registry=registry)
        self.push_failures = Counter(PUSH_FAILURES, "Batches whose push to Feast failed.", registry=registry)
        self.labelled = Counter(LABELLED, "Transactions with a confirmed outcome, by model decision and outcome "
                                "(false-positive rate of the fraud model).", ["flagged", "fraud"], registry=registry)
        self.outcomes = Counter(OUTCOMES, "Labelled transactions by the registry version that decided, its decision "
                                "(predicted 1 = flagged) and the outcome (actual); the per-version F1.",
                                ["model", "version", "predicted", "actual"], registry=registry)


class StreamIngestor:
    """The poll -> aggregate -> push -> commit loop. `sink=None`: metrics only (the Flink job writes the
    online features; the labelled-outcome counters still come from here)."""

    def __init__(self, consumer: Consumer, sink: Sink | None, window: VelocityWindow | None = None,
                 batch_size: int = 500, flush_seconds: float = 1.0,
                 registry: CollectorRegistry = REGISTRY, clock: Callable[[], datetime] | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.consumer, self.sink = consumer, sink
        self.window = window or VelocityWindow()
        self.batch_size, self.flush_seconds = batch_size, flush_seconds
        self.metrics = _Metrics(registry)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._rows: dict[int, dict[str, Any]] = {}  # newest row per card in the pending batch
        self._pending = 0  # messages consumed since the last commit

    def handle(self, raw: bytes | None) -> None:
        try:
            tx = parse(raw if raw is not None else b"")
        except InvalidEvent as exc:
            self.metrics.events.labels(outcome="invalid").inc()
            log.warning("skipping invalid message: %s", exc)
            self._pending += 1
            return
        self._pending += 1
        if self.window.seen(tx.card_id, tx.transaction_id):
            self.metrics.events.labels(outcome="duplicate").inc()
            return
        velocity = self.window.add(tx.card_id, tx.transaction_id, tx.event_time)
        if tx.flagged is not None and tx.fraud_label is not None:
            self.metrics.labelled.labels(flagged=str(tx.flagged).lower(), fraud=str(tx.fraud_label).lower()).inc()
            if tx.model_version is not None:
                self.metrics.outcomes.labels(model="fraud", version=tx.model_version, predicted=str(int(tx.flagged)),
                                             actual=str(int(tx.fraud_label))).inc()
        self.metrics.events.labels(outcome="pushed").inc()
        # Only the newest state of a card matters within one batch.
        self._rows[tx.card_id] = {"card_id": tx.card_id, "cardholder_age": tx.cardholder_age,
                                  "velocity_last_24h": velocity,
                                  # The count holds at the window's end, not at a late event's time.
                                  "event_timestamp": self.window.newest(tx.card_id)}

    def flush(self) -> int:
        """Push the pending rows, then commit the consumed offsets. Returns rows pushed."""
        rows = list(self._rows.values()) if self.sink is not None else []
        if rows and self.sink is not None:
            started = time.perf_counter()
            try:
                self.sink.push(rows)
            except Exception:
                # Offsets stay uncommitted: the batch is redelivered after a restart.
                self.metrics.push_failures.inc()
                raise
            self.metrics.push_seconds.observe(time.perf_counter() - started)
            newest = max(r["event_timestamp"] for r in rows)
            self.metrics.lag.set(max(0.0, (self._clock() - newest).total_seconds()))
        if self._pending:
            self.consumer.commit(asynchronous=False)
        self._rows.clear()
        self._pending = 0
        return len(rows)

    def run(self, max_messages: int | None = None, idle_polls: int | None = None) -> int:
        """Consume until `max_messages` were read or `idle_polls` empty polls in a row (None: forever)."""
        consumed, idle, last_flush = 0, 0, time.monotonic()
        try:
            while max_messages is None or consumed < max_messages:
                msg = self.consumer.poll(self.flush_seconds)
                if msg is None:
                    idle += 1
                    if idle_polls is not None and idle >= idle_polls:
                        break
                elif msg.error():
                    log.error("consumer error: %s", msg.error())
                else:
                    idle = 0
                    consumed += 1
                    self.handle(msg.value())
                if self._pending >= self.batch_size or time.monotonic() - last_flush >= self.flush_seconds:
                    self.flush()
                    last_flush = time.monotonic()
        finally:
            self.flush()
        return consumed


class FeastPushSink:
    """Writes rows to the online store through a Feast push source."""

    def __init__(self, repo_path: str, push_source: str) -> None:
        from feast import FeatureStore

        self.store = FeatureStore(repo_path=repo_path)
        self.push_source = push_source

    def push(self, rows: Sequence[dict[str, Any]]) -> None:
        import pandas as pd
        from feast.data_source import PushMode

        self.store.push(self.push_source, pd.DataFrame(list(rows)), to=PushMode.ONLINE)


@dataclass(frozen=True)
class Settings:
    bootstrap: str
    topic: str
    group: str
    region: str
    feast_repo: str
    push_source: str = "card_activity_push"
    metrics_port: int = 9100
    replay_hours: float = 24.0
    push_features: bool = True

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        required = ("KAFKA_BOOTSTRAP", "KAFKA_TOPIC", "AWS_REGION", "FEAST_REPO")
        missing = [k for k in required if not env.get(k)]
        if missing:
            raise ValueError(f"stream ingestor: missing environment variable(s): {', '.join(missing)}")
        return cls(bootstrap=env["KAFKA_BOOTSTRAP"], topic=env["KAFKA_TOPIC"],
                   group=env.get("KAFKA_GROUP", "feast-stream-ingestor"), region=env["AWS_REGION"],
                   feast_repo=env["FEAST_REPO"], push_source=env.get("PUSH_SOURCE", "card_activity_push"),
                   metrics_port=int(env.get("METRICS_PORT", "9100")),
                   replay_hours=float(env.get("REPLAY_HOURS", "24")),
                   push_features=_flag(env.get("PUSH_FEATURES", "true"), "PUSH_FEATURES"))


def _flag(raw: str, name: str) -> bool:
    if raw.lower() not in ("true", "false"):
        raise ValueError(f"stream ingestor: {name} must be true or false, got {raw!r}")
    return raw.lower() == "true"


def make_consumer(settings: Settings) -> Any:  # pragma: no cover - needs a broker (not available offline)
    """confluent-kafka consumer authenticating to MSK with IAM (the pod's IRSA role) over TLS.

    On partition assignment it seeks back `replay_hours`, so a restarted ingestor rebuilds the
    velocity window instead of undercounting (pushes during the replay converge to the same rows).
    """
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
    from confluent_kafka import Consumer as KafkaConsumer
    from confluent_kafka import TopicPartition

    def oauth_cb(_config: str) -> tuple[str, float]:
        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(settings.region)
        return token, expiry_ms / 1000

    consumer = KafkaConsumer({
        "bootstrap.servers": settings.bootstrap, "group.id": settings.group,
        "security.protocol": "SASL_SSL", "sasl.mechanisms": "OAUTHBEARER", "oauth_cb": oauth_cb,
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
    })
    replay_from = int((datetime.now(UTC) - timedelta(hours=settings.replay_hours)).timestamp() * 1000)

    def on_assign(c: Any, partitions: list[Any]) -> None:
        wanted = [TopicPartition(p.topic, p.partition, replay_from) for p in partitions]
        c.assign(c.offsets_for_times(wanted, timeout=10))

    consumer.subscribe([settings.topic], on_assign=on_assign)
    return consumer


def main() -> int:  # pragma: no cover - process entry point
    from prometheus_client import start_http_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    start_http_server(settings.metrics_port)
    sink = FeastPushSink(settings.feast_repo, settings.push_source) if settings.push_features else None
    ingestor = StreamIngestor(make_consumer(settings), sink)
    try:
        ingestor.run()
    finally:
        ingestor.consumer.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
