"""`mlplat local up --engines flink` end to end: the streaming-features job runs on a local mini-cluster (one JVM
for the module) reading a continuously monitored directory, and a new transaction file reaches a served request.

`local up` itself checks the path once (its summary line); this module then drops another file for the same card
and watches the next fraud request use the new velocity, read through the model server's own fast path. Kafka
and MSK IAM are not exercised here (no broker or connector jar can be installed): tests/flink covers the job's
semantics, tests/infra the cluster side.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from contracts import model_registry
from local.flink_local import DEMO_CARD, DEMO_TRANSACTIONS, infer_for_card, online_velocity
from local.smoke import build_request

pytestmark = [pytest.mark.integration, pytest.mark.ml]

REPO = Path(__file__).resolve().parents[2]
MODEL = next(s.name for s in model_registry.specs() if s.stream is not None and s.stream.job)


@pytest.fixture(scope="module")
def platform(platform_starter, tmp_path_factory):
    argv = [str(REPO / ".venv" / "bin" / "mlplat"), "local", "up", "--models", MODEL, "--redis", "--no-prometheus",
            "--engines", "flink"]
    with platform_starter(tmp_path_factory.mktemp("flink-state"), argv) as platform:
        up = platform["up"]
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        yield platform


def test_local_up_follows_a_new_transaction_file_to_a_served_request(platform):
    summary = platform["summary"]
    assert summary["streaming"]["ok"] is True, summary["streaming"]
    assert f"velocity_last_24h={DEMO_TRANSACTIONS}" in summary["streaming"]["check"]
    assert "Streaming features: Flink" in platform["up"].stdout  # the summary the user reads
    assert "flink" in platform["pids"]


def test_the_next_file_moves_the_served_velocity(platform):
    redis_url = f"redis://127.0.0.1:{platform['ports']['redis']}/0"
    inbox = platform["state"] / "transactions"
    now = time.time()
    event = {"transaction_id": "e2e-extra", "card_id": DEMO_CARD, "amount": 99.0, "cardholder_age": 41,
             "event_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}
    (inbox / ".extra.jsonl").write_text(json.dumps(event) + "\n")
    (inbox / ".extra.jsonl").rename(inbox / "extra.jsonl")
    deadline = time.monotonic() + 60
    while online_velocity(redis_url, DEMO_CARD) != DEMO_TRANSACTIONS + 1:
        assert time.monotonic() < deadline, f"velocity is {online_velocity(redis_url, DEMO_CARD)}"
        time.sleep(0.2)
    # The model server reads the same key: the next request for the card is served with it, not with defaults.
    request = build_request(MODEL, Path(platform["summary"]["data_dir"]), True, platform["state"] / "train" / MODEL)
    degraded, probability = infer_for_card(platform["http"], MODEL, request, DEMO_CARD)
    assert degraded is False and 0.0 <= probability <= 1.0
