"""The fraud velocity job on a real Flink mini-cluster (one JVM for the module): the streaming definition
equals the batch one on the same events, late events behind the watermark go to the side output, and the
rows land in Feast's Redis layout.

The job reads a continuously monitored directory (Flink's bundled file source), the local stand-in for the
MSK topic: no Kafka connector jar and no broker can be obtained here, so the Kafka source and MSK IAM
authentication are not exercised (docs/DATA-PLATFORM.md says what is and is not).
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis

from contracts import feast_redis
from ml.models.fraud import velocity_batch
from ml.models.fraud.features import CARD_VIEW
from ml.models.fraud.streaming import flink_job
from ml.models.fraud.streaming.events import parse
from ml.models.fraud.streaming.velocity import VelocityWindow
from ml.serving.processes import RedisServer

pytestmark = [pytest.mark.flink, pytest.mark.integration]

T0 = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
PROJECT = "mlplat"


def tx(tx_id: str, card: int, at: timedelta, age: int = 30) -> str:
    return json.dumps({"transaction_id": tx_id, "card_id": card, "amount": 10.0,
                       "event_time": (T0 + at).isoformat().replace("+00:00", "Z"), "cardholder_age": age})


H = timedelta(hours=1)
# Out of order within the bound (c2-b), a duplicate (c1-c again), an invalid line, a window eviction (card 1).
FIRST = [tx("c1-a", 1, 0 * H, 40), tx("c1-b", 1, 1 * H, 40), tx("c1-c", 1, 2 * H, 41),
         tx("c2-a", 2, 10 * H, 25), tx("c2-b", 2, 10 * H - timedelta(seconds=2), 25), tx("c1-c", 1, 2 * H, 41),
         "{not json", tx("c1-d", 1, 25 * H, 42), tx("c3-a", 3, 26 * H, 60)]
# After the watermark passed ~26 h: one event 30 s behind it (inside the allowed lateness: counted) and one
# six hours behind it (beyond the lateness: the late side output, never counted).
LATE_OK = tx("c2-c", 2, 26 * H - timedelta(seconds=35), 25)
TOO_LATE = tx("c1-late", 1, 20 * H, 42)
SETTINGS = dict(source="files", project=PROJECT, out_of_orderness=timedelta(seconds=5),
                allowed_lateness=timedelta(seconds=60), monitor_interval=timedelta(milliseconds=200))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One job run (one JVM): FIRST, then the two late events in a second file; returns what it produced."""
    root = tmp_path_factory.mktemp("flink")
    server = RedisServer(root / "redis")
    server.start()
    inbox = root / "inbox"
    inbox.mkdir()
    settings = flink_job.Settings(redis_url=server.url, input_dir=str(inbox), **SETTINGS)
    env = flink_job.environment()
    written, late = flink_job.build(env, settings)
    collected = written.union(late.map(lambda s: "LATE " + s, output_type=flink_job.Types.STRING()))
    started = time.monotonic()
    (inbox / "001.jsonl").write_text("\n".join(FIRST) + "\n")
    out: list[str] = []
    with collected.execute_and_collect("velocity-test") as results:
        out += [next(results) for _ in range(7)]  # one row per valid, distinct transaction in FIRST
        time.sleep(1.0)  # periodic watermarks (50 ms) reach the keyed operator
        (inbox / "002.jsonl").write_text(LATE_OK + "\n" + TOO_LATE + "\n")
        out += [next(results) for _ in range(2)]  # the allowed-late event's row, the too-late event
    elapsed = time.monotonic() - started
    client = redis.Redis.from_url(server.url)
    yield out, client, elapsed
    client.close()
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def accepted_events() -> list:
    return [parse(line) for line in [*FIRST, LATE_OK] if not line.startswith("{not")]


def online_row(client: redis.Redis, card: int) -> dict:
    key = feast_redis.entity_key(PROJECT, "card_id", card)
    stored = client.hgetall(key)
    return {"cardholder_age": feast_redis.parse_int64_value(stored[feast_redis.field_key(CARD_VIEW, "cardholder_age")]),
            "velocity_last_24h": feast_redis.parse_int64_value(
                stored[feast_redis.field_key(CARD_VIEW, "velocity_last_24h")]),
            "event_timestamp": feast_redis.parse_timestamp(stored[feast_redis.ts_field(CARD_VIEW)])}


def test_online_store_holds_the_batch_definitions_values(run):
    _out, client, _elapsed = run
    batch = velocity_batch.card_velocity(velocity_batch.frame(accepted_events()))
    assert list(batch["card_id"]) == [1, 2, 3]
    for row in batch.itertuples():
        assert online_row(client, row.card_id) == {
            "cardholder_age": row.cardholder_age, "velocity_last_24h": row.velocity_last_24h,
            "event_timestamp": int(row.event_timestamp.timestamp()) * 10**9}, f"card {row.card_id}"
    # The figures themselves: card 1 evicted its first two (25 h), card 2 counted the out-of-order and the
    # allowed-late event, the duplicate counted once.
    assert dict(zip(batch["card_id"], batch["velocity_last_24h"], strict=True)) == {1: 2, 2: 3, 3: 1}


def test_hand_written_window_agrees_with_both(run):
    window = VelocityWindow()
    for event in accepted_events():
        window.add(event.card_id, event.transaction_id, event.event_time)
    batch = velocity_batch.card_velocity(velocity_batch.frame(accepted_events()))
    assert {c: window.count(c) for c in batch["card_id"]} == dict(
        zip(batch["card_id"], batch["velocity_last_24h"], strict=True))


def test_event_behind_the_watermark_goes_to_the_side_output_and_is_not_counted(run):
    out, client, _elapsed = run
    late = [json.loads(line[5:]) for line in out if line.startswith("LATE ")]
    assert [e["transaction_id"] for e in late] == ["c1-late"]
    assert late[0]["event_time_ms"] < late[0]["watermark_ms"] - 60_000  # behind by more than the lateness
    assert online_row(client, 1)["velocity_last_24h"] == 2  # not 3: the late event was not counted
    # The batch recompute over all events (the offline view) does count it: the documented difference.
    everything = velocity_batch.card_velocity(velocity_batch.frame([*accepted_events(), parse(TOO_LATE)]))
    assert int(everything.loc[everything.card_id == 1, "velocity_last_24h"].iloc[0]) == 3


def test_every_emitted_row_is_a_batch_value_of_the_events_seen_so_far(run):
    out, _client, _elapsed = run
    emitted = [tuple(int(x) for x in line.split()) for line in out if not line.startswith("LATE ")]
    distinct = list({e.transaction_id: e for e in accepted_events()}.values())
    assert len(emitted) == len(distinct) == 8
    for i, (card, count, newest) in enumerate(emitted):
        seen = distinct[:i + 1]
        assert seen[-1].card_id == card
        batch = velocity_batch.card_velocity(velocity_batch.frame(seen))
        got = batch.loc[batch.card_id == card].iloc[0]
        assert (int(got.velocity_last_24h), int(got.event_timestamp.timestamp() * 1000)) == (count, newest)
