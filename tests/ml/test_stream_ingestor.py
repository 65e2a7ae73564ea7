"""The streaming ingestor's loop with a fake Kafka consumer and a recording sink."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from ml.models.fraud.streaming.events import InvalidEvent, parse
from ml.models.fraud.streaming.ingestor import EVENTS, PUSH_FAILURES, Settings, StreamIngestor
from ml.models.fraud.streaming.velocity import VelocityWindow

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def event(tx: str, card: int, minutes: float, age: int = 40, amount: float = 10.0) -> bytes:
    when = (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    return json.dumps({"transaction_id": tx, "card_id": card, "amount": amount, "event_time": when,
                       "cardholder_age": age}).encode()


class FakeMessage:
    def __init__(self, value: bytes | None, error: str | None = None) -> None:
        self._value, self._error = value, error

    def value(self) -> bytes | None:
        return self._value

    def error(self) -> str | None:
        return self._error


class FakeConsumer:
    """Hands out queued messages, then None; records commits and the messages they cover."""

    def __init__(self, values: list[bytes | FakeMessage]) -> None:
        self.queue = [v if isinstance(v, FakeMessage) else FakeMessage(v) for v in values]
        self.delivered = 0
        self.commits: list[int] = []
        self.closed = False

    def poll(self, timeout: float) -> FakeMessage | None:
        if not self.queue:
            return None
        self.delivered += 1
        return self.queue.pop(0)

    def commit(self, asynchronous: bool = True) -> None:
        self.commits.append(self.delivered)

    def close(self) -> None:
        self.closed = True


class RecordingSink:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[dict]] = []
        self.fail = fail

    def push(self, rows):
        if self.fail:
            raise ConnectionError("redis down")
        self.batches.append([dict(r) for r in rows])


def ingestor(values, sink=None, batch_size=100):
    registry = CollectorRegistry()
    ing = StreamIngestor(FakeConsumer(values), sink or RecordingSink(), batch_size=batch_size,
                         flush_seconds=60, registry=registry, clock=lambda: T0 + timedelta(hours=1))
    return ing, registry


def pushed(sink: RecordingSink) -> dict[int, dict]:
    latest: dict[int, dict] = {}
    for batch in sink.batches:
        for row in batch:
            latest[row["card_id"]] = row
    return latest


def test_velocity_counts_per_card_in_a_24h_window():
    sink = RecordingSink()
    ing, _ = ingestor([event("a", 1, 0), event("b", 1, 60), event("c", 2, 90), event("d", 1, 60 * 23)], sink)
    assert ing.run(idle_polls=1) == 4
    rows = pushed(sink)
    assert rows[1]["velocity_last_24h"] == 3
    assert rows[2]["velocity_last_24h"] == 1
    assert rows[1]["cardholder_age"] == 40
    assert set(rows[1]) == {"card_id", "cardholder_age", "velocity_last_24h", "event_timestamp"}


def test_old_transactions_leave_the_window():
    sink = RecordingSink()
    ing, _ = ingestor([event("a", 7, 0), event("b", 7, 30), event("c", 7, 60 * 24 + 31)], sink)
    ing.run(idle_polls=1)
    assert pushed(sink)[7]["velocity_last_24h"] == 1  # a and b are more than 24 h older than c


def test_redelivered_messages_do_not_count_twice():
    sink = RecordingSink()
    ing, registry = ingestor([event("a", 1, 0), event("b", 1, 5), event("a", 1, 0), event("b", 1, 5)], sink)
    ing.run(idle_polls=1)
    assert pushed(sink)[1]["velocity_last_24h"] == 2
    assert registry.get_sample_value(EVENTS, {"outcome": "duplicate"}) == 2
    assert registry.get_sample_value(EVENTS, {"outcome": "pushed"}) == 2


def test_late_event_is_counted_but_row_keeps_the_window_end_time():
    sink = RecordingSink()
    ing, _ = ingestor([event("a", 3, 120), event("late", 3, 10)], sink)
    ing.run(idle_polls=1)
    row = pushed(sink)[3]
    assert row["velocity_last_24h"] == 2
    assert row["event_timestamp"] == T0 + timedelta(minutes=120)


def test_invalid_messages_are_skipped_counted_and_committed():
    sink = RecordingSink()
    bad = [b"not json", json.dumps({"card_id": 1}).encode(), None]
    ing, registry = ingestor([*bad, event("a", 1, 0)], sink)
    ing.run(idle_polls=1)
    assert registry.get_sample_value(EVENTS, {"outcome": "invalid"}) == 3
    assert pushed(sink)[1]["velocity_last_24h"] == 1
    assert ing.consumer.commits[-1] == 4  # poison messages do not stall the partition


def test_batches_are_pushed_before_offsets_are_committed():
    sink = RecordingSink()
    ing, _ = ingestor([event(str(i), i % 3, i) for i in range(10)], sink, batch_size=4)
    ing.run(idle_polls=1)
    # Commits after 4 and 8 messages, then the final flush at 10.
    assert ing.consumer.commits == [4, 8, 10]
    assert [len(b) for b in sink.batches] == [3, 3, 2]  # one row per card per batch


def test_failed_push_leaves_offsets_uncommitted():
    ing, registry = ingestor([event("a", 1, 0)], RecordingSink(fail=True))
    with pytest.raises(ConnectionError):
        ing.run(idle_polls=1)
    assert ing.consumer.commits == []
    assert registry.get_sample_value(f"{PUSH_FAILURES}") == 1


def test_consumer_errors_are_logged_not_fatal():
    sink = RecordingSink()
    ing, _ = ingestor([FakeMessage(None, error="broker transport failure"), event("a", 1, 0)], sink)
    assert ing.run(idle_polls=1) == 1
    assert pushed(sink)[1]["velocity_last_24h"] == 1


@pytest.mark.parametrize(("doc", "field"), [
    ({"card_id": "x"}, "card_id"),
    ({"amount": -1}, "amount"),
    ({"event_time": "yesterday"}, "event_time"),
    ({"cardholder_age": 400}, "cardholder_age"),
])
def test_parse_names_the_bad_field(doc, field):
    base = json.loads(event("a", 1, 0))
    with pytest.raises(InvalidEvent, match=field):
        parse(json.dumps({**base, **doc}))


def test_settings_name_missing_environment():
    with pytest.raises(ValueError, match=r"KAFKA_BOOTSTRAP.*FEAST_REPO"):
        Settings.from_env({"KAFKA_TOPIC": "t", "AWS_REGION": "eu-west-1"})
    s = Settings.from_env({"KAFKA_BOOTSTRAP": "b:9098", "KAFKA_TOPIC": "t", "AWS_REGION": "eu-west-1",
                           "FEAST_REPO": "/feast"})
    assert s.group == "feast-stream-ingestor" and s.push_source == "card_activity_push"


def test_metrics_only_mode_counts_outcomes_and_commits_without_pushing():
    # With the Flink job writing the online features, the ingestor runs with PUSH_FEATURES=false.
    s = Settings.from_env({"KAFKA_BOOTSTRAP": "b:9098", "KAFKA_TOPIC": "t", "AWS_REGION": "eu-west-1",
                           "FEAST_REPO": "/feast", "PUSH_FEATURES": "false"})
    assert s.push_features is False
    with pytest.raises(ValueError, match="PUSH_FEATURES"):
        Settings.from_env({"KAFKA_BOOTSTRAP": "b", "KAFKA_TOPIC": "t", "AWS_REGION": "r", "FEAST_REPO": "/f",
                           "PUSH_FEATURES": "sometimes"})
    labelled = json.dumps({**json.loads(event("a", 1, 0)), "flagged": True, "fraud_label": False}).encode()
    registry = CollectorRegistry()
    consumer = FakeConsumer([labelled, event("b", 2, 1)])
    ing = StreamIngestor(consumer, None, flush_seconds=60, registry=registry, clock=lambda: T0)
    ing.run(idle_polls=1)
    assert registry.get_sample_value("mlplat_ingestor_labelled_transactions_total",
                                     {"flagged": "true", "fraud": "false"}) == 1
    assert consumer.commits == [2]


def test_window_rejects_non_positive_length():
    with pytest.raises(ValueError, match="window must be positive"):
        VelocityWindow(timedelta(0))


def test_labelled_transactions_feed_the_false_positive_rate():
    def labelled(tx, flagged, fraud):
        return json.dumps({**json.loads(event(tx, 1, 0)), "flagged": flagged, "fraud_label": fraud}).encode()

    ing, registry = ingestor([labelled("a", True, False), labelled("b", True, True), labelled("c", False, False),
                              event("d", 1, 1)])
    ing.run(idle_polls=1)
    assert registry.get_sample_value("mlplat_ingestor_labelled_transactions_total",
                                     {"flagged": "true", "fraud": "false"}) == 1
    assert registry.get_sample_value("mlplat_ingestor_labelled_transactions_total",
                                     {"flagged": "false", "fraud": "false"}) == 1
    with pytest.raises(InvalidEvent, match="flagged"):
        parse(json.dumps({**json.loads(event("x", 1, 0)), "flagged": "yes"}))


def test_metrics_catalog_lists_the_names_the_runtimes_and_ingestor_export():
    # The dashboards/alerts catalog (IaC side) must name exactly what the ML-side code exports.
    from contracts.metrics_catalog import METRICS as CATALOG
    from ml.models.fraud.streaming.ingestor import METRIC_NAMES
    from ml.serving.metrics import METRICS as MODEL_METRICS

    kinds = {"histogram": "histogram", "counter": "counter", "gauge": "gauge"}
    for name, (kind, _labels, _help) in MODEL_METRICS.items():
        assert CATALOG[name][0] == kinds[kind], name
    for name in METRIC_NAMES:
        assert name in CATALOG, name
    ours = {n for n in CATALOG if n.startswith("mlplat_")}
    assert ours == set(MODEL_METRICS) | set(METRIC_NAMES)
