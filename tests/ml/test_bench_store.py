"""`mlplat bench store`: the online feature read's round trip against a real redis-server."""

from __future__ import annotations

import os
import re

import pytest
import redis
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from ml.serving.online import entity_key_bytes, field_key
from ml.serving.processes import RedisServer
from ml.serving.store_rtt import MISSING_ID, probe_views, round_trips
from mlplat.cli import main


def test_round_trips_time_reads_of_absent_entities(redis_server: RedisServer):
    figures = round_trips(redis_server.url, 100, warmup=5)
    assert figures["reads"] == 100 and figures["views"] == len(probe_views())
    assert figures["p50_ms"] <= figures["p99_ms"] and isinstance(figures["mean_us"], float)


def test_round_trips_refuse_a_store_that_answers_for_absent_entities(redis_server: RedisServer):
    # A store holding the bench's probe keys would time a different reply: the figures would mislead.
    db = redis_server.url.rsplit("/", 1)[0] + "/5"
    client = redis.Redis.from_url(db)
    view = probe_views()[0]
    key = entity_key_bytes("mlplat-bench", view.join_key, MISSING_ID)
    client.hset(key, field_key(view.feature_view, view.features[0]), ValueProto(double_val=0.5).SerializeToString())
    try:
        with pytest.raises(RuntimeError, match="should not exist"):
            round_trips(db, 10, warmup=0)
    finally:
        client.flushdb()
        client.close()


@pytest.mark.integration
def test_cli_times_a_local_store_per_placement(capsys):
    assert main(["bench", "store", "--requests", "50"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.search(r"\d+\.\dus", line)]
    assert len(rows) == (2 if len(os.sched_getaffinity(0)) > 1 else 1)
    assert f"{len(probe_views())} pipelined HMGET(s)" in out and "50 timed reads" in out


def test_cli_times_a_given_store_url(redis_server: RedisServer, capsys):
    assert main(["bench", "store", "--url", redis_server.url, "--requests", "20"]) == 0
    out = capsys.readouterr().out
    assert redis_server.url.split("@")[-1] in out and "20 timed reads" in out


def test_cli_refuses_zero_requests(capsys):
    assert main(["bench", "store", "--requests", "0"]) == 2
    assert "--requests must be >= 1" in capsys.readouterr().err


def test_probe_views_match_the_registered_model_that_reads_the_most_views_per_request():
    from contracts import model_registry

    specs = [model_registry.get(n) for n in model_registry.names()]
    most = max((len(s.features.feature_views) for s in specs if s.features and s.features.every_request), default=1)
    views = probe_views()
    assert len(views) == most and len({v.join_key for v in views}) == most


@pytest.mark.integration
def test_cli_times_the_read_through_a_calibrated_round_trip(capsys):
    assert main(["bench", "store", "--requests", "100", "--rtt-ms", "3"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("through a 3 ms round trip"))
    shape = re.fullmatch(r"through a 3 ms round trip \(proxy floor ([\d.]+) ms, added ([\d.]+)\)\s+([\d.]+)us"
                         r"\s+([\d.]+)us\s+[\d.]+us\s+[\d.]+us", row)
    assert shape, row  # p50, p99, mean and the proxy's own CPU per read
    floor_ms, added_ms, p50_us, p99_us = map(float, shape.groups())
    # Only lower bounds: on a shared machine a read may take any longer, never less than the proxy holds it
    # (the calibration's arithmetic is checked on given measurements in tests/ml/test_delay_proxy.py).
    assert floor_ms > 0 and p99_us >= p50_us >= added_ms * 1000, row
    assert "delay_proxy.py" in out


def test_cli_refuses_a_round_trip_on_a_remote_store(redis_server: RedisServer, capsys):
    assert main(["bench", "store", "--url", redis_server.url, "--rtt-ms", "0.5"]) == 2
    assert "--rtt-ms delays the local store" in capsys.readouterr().err
