"""The fraud model's streaming features as one Flink job (PyFlink DataStream API, event time).

    transactions (MSK topic, IAM auth | a continuously monitored directory of JSON-lines files)
      -> parse (invalid lines to the `invalid` side output, counted)
      -> event time from `event_time`, bounded-out-of-orderness watermarks
      -> keyBy(card_id) -> VelocityFunction (keyed state: the card's counted transactions and newest time)
      -> Feast Redis online store (card_features: cardholder_age, velocity_last_24h)

Semantics are the batch definition's (ml/models/fraud/velocity_batch.py): the count of the card's
transactions in the window ending at its newest event, duplicates once. Late events:

- out of order but not behind the watermark: counted as if on time;
- behind the watermark by at most `allowed_lateness`: still counted (the row is rewritten at the same
  window end; ml/data/online_writer.py writes equal event times for this reason);
- further behind: not counted; emitted to the `late` side output (logged and counted in the
  `lateTransactions` metric) so the loss is visible. The batch recompute over the offline data includes them.

Keyed state is bounded: an event-time timer clears a card's state once the watermark passes its newest
event + window + allowed lateness (no later event could still be counted against it).

Run as `python -m ml.models.fraud.streaming.flink_job` (configuration from the environment: `Settings`);
in the cluster the Flink Kubernetes Operator starts it from the FlinkDeployment of
infra/workloads/flink.py, locally `mlplat local up --engines flink` starts it on a local mini-cluster.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pyflink.common import Configuration, Duration, Types, WatermarkStrategy
from pyflink.common.serialization import SimpleStringSchema
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import (
    DataStream,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
    RuntimeContext,
    StreamExecutionEnvironment,
)
from pyflink.datastream.connectors.file_system import FileSource, StreamFormat
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from contracts.flink import RUNNING_MARKER
from ml.data.online_writer import RedisOnlineWriter, Row
from ml.models.fraud.features import CARD_VIEW
from ml.models.fraud.streaming.events import InvalidEvent, parse
from ml.models.fraud.streaming.velocity import DEFAULT_WINDOW

log = logging.getLogger("mlplat.flink")

# Parsed transaction: (card_id, transaction_id, event time in epoch ms, cardholder_age)
TX_TYPE = Types.TUPLE([Types.LONG(), Types.STRING(), Types.LONG(), Types.INT()])
# Feature row: (card_id, cardholder_age, velocity_last_24h, window end in epoch ms)
ROW_TYPE = Types.TUPLE([Types.LONG(), Types.INT(), Types.LONG(), Types.LONG()])
LATE = OutputTag("late", Types.STRING())
INVALID = OutputTag("invalid", Types.STRING())
# Job metrics (Flink's metric system; the Prometheus reporter exports them as flink_taskmanager_job_task_operator_*)
LATE_METRIC, INVALID_METRIC, WRITES_METRIC, NEWEST_METRIC = (
    "lateTransactions", "invalidTransactions", "featureRowsWritten", "newestEventTimeMs")


def _ms(when: datetime) -> int:
    return round(when.timestamp() * 1000)


class Parse(ProcessFunction):
    """JSON line -> TX_TYPE; an invalid line goes to the INVALID side output with its reason."""

    def open(self, runtime_context: RuntimeContext) -> None:
        self.invalid = runtime_context.get_metrics_group().counter(INVALID_METRIC)

    def process_element(self, value: str, ctx: ProcessFunction.Context) -> Iterator[Any]:
        if not value.strip():
            return
        try:
            tx = parse(value)
        except InvalidEvent as exc:
            self.invalid.inc()
            yield INVALID, f"{exc}: {value[:200]}"
            return
        yield tx.card_id, tx.transaction_id, _ms(tx.event_time), tx.cardholder_age


class EventTime(TimestampAssigner):
    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return int(value[2])


class VelocityFunction(KeyedProcessFunction):
    """Per card: the transactions counted in the window ending at the newest event; emits ROW_TYPE rows."""

    def __init__(self, window_ms: int, allowed_lateness_ms: int) -> None:
        if window_ms <= 0 or allowed_lateness_ms < 0:
            raise ValueError(f"window must be > 0 and lateness >= 0, got {window_ms} ms, {allowed_lateness_ms} ms")
        self.window_ms, self.lateness_ms = window_ms, allowed_lateness_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        self.events = runtime_context.get_map_state(MapStateDescriptor("events", Types.STRING(), Types.LONG()))
        self.newest = runtime_context.get_state(ValueStateDescriptor("newest", Types.LONG()))
        self.age = runtime_context.get_state(ValueStateDescriptor("age", Types.INT()))
        self.late = runtime_context.get_metrics_group().counter(LATE_METRIC)

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        card_id, tx_id, ts, age = value
        if self.events.contains(tx_id):
            return  # redelivered (at-least-once source): already counted, so neither counted again nor late
        watermark = ctx.timer_service().current_watermark()
        if ts + self.lateness_ms < watermark:
            self.late.inc()
            yield LATE, json.dumps({"card_id": card_id, "transaction_id": tx_id, "event_time_ms": ts,
                                    "watermark_ms": watermark})
            return
        newest = self.newest.value()
        if newest is None or ts >= newest:
            newest = ts
            self.newest.update(ts)
            self.age.update(age)
            ctx.timer_service().register_event_time_timer(ts + self.window_ms + self.lateness_ms)
        start = newest - self.window_ms
        if ts > start:
            self.events.put(tx_id, ts)
        counted = list(self.events.items())
        expired = [k for k, t in counted if t <= start]
        for k in expired:
            self.events.remove(k)
        count = len(counted) - len(expired)
        yield card_id, self.age.value(), count, newest

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        newest = self.newest.value()
        if newest is not None and timestamp >= newest + self.window_ms + self.lateness_ms:
            self.events.clear()
            self.newest.clear()
            self.age.clear()
        return iter(())


class WriteOnline(ProcessFunction):
    """Writes each feature row to the Feast Redis online store (Feast's write rule; see online_writer)."""

    def __init__(self, redis_url: str, project: str) -> None:
        self.redis_url, self.project = redis_url, project

    def open(self, runtime_context: RuntimeContext) -> None:
        self.writer = RedisOnlineWriter(self.redis_url, self.project, CARD_VIEW, "card_id")
        group = runtime_context.get_metrics_group()
        self.writes = group.counter(WRITES_METRIC)
        self._newest = 0
        group.gauge(NEWEST_METRIC, lambda: self._newest)

    def process_element(self, value: Any, ctx: ProcessFunction.Context) -> Iterator[Any]:
        card_id, age, count, newest = value
        when = datetime.fromtimestamp(newest / 1000, tz=UTC)
        self.writes.inc(self.writer.write([Row(card_id, {"cardholder_age": age, "velocity_last_24h": count}, when)]))
        self._newest = max(self._newest, newest)
        yield f"{card_id} {count} {newest}"

    def close(self) -> None:
        self.writer.close()


@dataclass(frozen=True)
class Settings:
    """The job's configuration (environment variables of the same names, upper-case)."""

    redis_url: str
    project: str
    source: str  # "kafka" (the cluster) or "files" (local)
    input_dir: str = ""
    kafka_bootstrap: str = ""
    kafka_topic: str = ""
    kafka_group: str = "mlplat-flink-velocity"
    window: timedelta = DEFAULT_WINDOW
    out_of_orderness: timedelta = timedelta(seconds=5)
    allowed_lateness: timedelta = timedelta(minutes=5)
    idleness: timedelta = timedelta(seconds=30)
    monitor_interval: timedelta = timedelta(seconds=1)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        source = env.get("VELOCITY_SOURCE", "kafka")
        required = {"kafka": ("REDIS_URL", "FEAST_PROJECT", "KAFKA_BOOTSTRAP", "KAFKA_TOPIC"),
                    "files": ("REDIS_URL", "FEAST_PROJECT", "INPUT_DIR")}.get(source)
        if required is None:
            raise ValueError(f"VELOCITY_SOURCE must be kafka or files, got {source!r}")
        missing = [k for k in required if not env.get(k)]
        if missing:
            raise ValueError(f"streaming job: missing environment variable(s): {', '.join(missing)}")

        def seconds(name: str, default: timedelta) -> timedelta:
            raw = env.get(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
            if value < 0:
                raise ValueError(f"{name} must be >= 0 seconds, got {raw!r}")
            return timedelta(seconds=value)

        return cls(redis_url=env["REDIS_URL"], project=env["FEAST_PROJECT"], source=source,
                   input_dir=env.get("INPUT_DIR", ""), kafka_bootstrap=env.get("KAFKA_BOOTSTRAP", ""),
                   kafka_topic=env.get("KAFKA_TOPIC", ""),
                   kafka_group=env.get("KAFKA_GROUP", "mlplat-flink-velocity"),
                   window=seconds("WINDOW_SECONDS", DEFAULT_WINDOW),
                   out_of_orderness=seconds("OUT_OF_ORDERNESS_SECONDS", timedelta(seconds=5)),
                   allowed_lateness=seconds("ALLOWED_LATENESS_SECONDS", timedelta(minutes=5)),
                   idleness=seconds("IDLENESS_SECONDS", timedelta(seconds=30)),
                   monitor_interval=seconds("MONITOR_INTERVAL_SECONDS", timedelta(seconds=1)))


# MSK IAM authentication through the aws-msk-iam-auth library in the job image: the client signs with the
# pod's credentials (IRSA web identity), port 9098 (AWS MSK developer guide, "IAM access control").
MSK_IAM_PROPERTIES = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "AWS_MSK_IAM",
    "sasl.jaas.config": "software.amazon.msk.auth.iam.IAMLoginModule required;",
    "sasl.client.callback.handler.class": "software.amazon.msk.auth.iam.IAMClientCallbackHandler",
}


def source_stream(env: StreamExecutionEnvironment, settings: Settings) -> DataStream:
    """The raw transactions (one JSON document per element)."""
    if settings.source == "files":
        source = FileSource.for_record_stream_format(StreamFormat.text_line_format(), settings.input_dir) \
            .monitor_continuously(Duration.of_millis(int(settings.monitor_interval.total_seconds() * 1000))) \
            .build()
        return env.from_source(source, WatermarkStrategy.no_watermarks(), "transaction-files")
    # The Kafka connector jar is in the job image only (docker/flink-job/Dockerfile): import here.
    from pyflink.datastream.connectors.kafka import KafkaOffsetResetStrategy, KafkaOffsetsInitializer, KafkaSource

    source = KafkaSource.builder() \
        .set_bootstrap_servers(settings.kafka_bootstrap).set_topics(settings.kafka_topic) \
        .set_group_id(settings.kafka_group) \
        .set_starting_offsets(KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST)) \
        .set_value_only_deserializer(SimpleStringSchema()) \
        .set_properties({**MSK_IAM_PROPERTIES, "commit.offsets.on.checkpoint": "true"}).build()
    return env.from_source(source, WatermarkStrategy.no_watermarks(), "transactions-topic")


def velocity_streams(raw: DataStream, settings: Settings) -> tuple[DataStream, DataStream, DataStream]:
    """(feature rows, late transactions, invalid lines) from the raw transactions."""
    parsed = raw.process(Parse(), output_type=TX_TYPE)
    # Idleness before the assigner: PyFlink's `with_idleness` returns a strategy without the Python timestamp
    # assigner (every element then carries no event time); in this order both apply (tests/flink show it).
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(
        Duration.of_millis(int(settings.out_of_orderness.total_seconds() * 1000))) \
        .with_idleness(Duration.of_millis(int(settings.idleness.total_seconds() * 1000))) \
        .with_timestamp_assigner(EventTime())
    rows = parsed.assign_timestamps_and_watermarks(strategy) \
        .key_by(lambda tx: tx[0], key_type=Types.LONG()) \
        .process(VelocityFunction(int(settings.window.total_seconds() * 1000),
                                  int(settings.allowed_lateness.total_seconds() * 1000)), output_type=ROW_TYPE)
    return rows, rows.get_side_output(LATE), parsed.get_side_output(INVALID)


def environment(config: dict[str, str] | None = None) -> StreamExecutionEnvironment:
    """An execution environment tuned for latency: a Python bundle is flushed after 10 ms at the latest (Flink's
    default is 1 s) and watermarks are emitted every 50 ms. Bundles keep Flink's default size (1,000 elements):
    a bundle of one element cut the throughput to a third here (docs/BENCHMARKS.md)."""
    conf = Configuration()
    # The Python workers run in this interpreter's environment (the one with pyflink), not `python` on PATH.
    for key, value in {"python.executable": sys.executable, "python.client.executable": sys.executable,
 "python.fn-execution.bundle.time": "10",
                       "pipeline.auto-watermark-interval": "50ms", **(config or {})}.items():
        conf.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(1)
    return env


def build(env: StreamExecutionEnvironment, settings: Settings) -> tuple[DataStream, DataStream]:
    """The whole job on `env`: (written rows as "card count window_end_ms", late transactions as JSON).

    Invalid lines are logged by the job itself; the caller decides where the two returned streams go.
    """
    rows, late, invalid = velocity_streams(source_stream(env, settings), settings)
    invalid.map(lambda s: f"invalid transaction skipped: {s}", output_type=Types.STRING()).print()
    return rows.process(WriteOnline(settings.redis_url, settings.project), output_type=Types.STRING()), late


def main() -> int:  # pragma: no cover - process entry point (exercised by tests/flink and the local platform)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    env = environment()
    if settings.source == "kafka":
        env.enable_checkpointing(60_000)  # offsets are committed on checkpoints; state survives restarts
    written, late = build(env, settings)
    written.print()
    late.map(lambda s: f"late transaction not counted: {s}", output_type=Types.STRING()).print()
    client = env.execute_async("fraud-velocity")
    # The local platform waits for this line (local/flink_local.py): the job graph runs from here on.
    print(f"{RUNNING_MARKER} {client.get_job_id()}", flush=True)
    client.get_job_execution_result().result()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
