"""`mlplat bench models` end to end on fraud, with the store behind a round trip and both event-loop
clients in one run: the real bench (sample data, Feast, redis-server, delay proxies, one MLServer, the
load generator), kept short. What the figures are is for docs/BENCHMARKS.md; this checks that each is
measured and lands where the capacity plan reads it."""

from __future__ import annotations

import json

import pytest

from mlplat.cli import main

pytestmark = [pytest.mark.ml, pytest.mark.integration]


def test_fraud_is_served_per_client_behind_the_round_trip_and_the_plan_reads_it(tmp_path, capsys):
    report_path = tmp_path / "bench.json"
    assert main(["bench", "models", "--models", "fraud", "--duration", "1", "--requests", "50",
                 "--rtt-ms", "2", "--online-clients", "resp,redis-asyncio", "--json", str(report_path)]) == 0
    out = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["settings"]["store_rtt_ms"] == [2.0]
    (path,) = report["store_paths"]
    assert path["rtt_ms"] == 2.0 and 0 < path["floor_ms"] < 2.0 and 0 < path["added_ms"] <= 2.0 - path["floor_ms"]
    for client in ("resp", "redis-asyncio"):
        entry = report["models"][f"fraud-{client}"]
        assert entry["model"] == "fraud" and entry["online_client"] == client and entry["store_rtt_ms"] == 2.0
        http = entry["http"]
        assert http["rps"] > 0 and http["non_2xx"] == 0
        # One read per request the server answered (its own count over the same window, not wrk's rate x 1 s).
        assert http["fetches_per_request"] == pytest.approx(1, abs=0.002) and http["served"] > 0
        # The wait the runtime saw includes the round trip; the proxy's own CPU is reported apart.
        assert http["fetch_ms"] >= 1.8 and http["proxy_cpu_us"] > 0
        assert http["rps_vs_bare"] > 0 and http["p99_vs_bare"] > 0
    # A blocking loop is held for every round trip: at 2 ms it cannot pass 500 requests/s; the
    # asynchronous client overlaps the four requests in flight.
    assert report["models"]["fraud-resp"]["http"]["rps"] < 500
    assert "store round trip 2 ms: delay proxy" in out and "req/s/core" in out

    assert main(["capacity", "--tps", "100000", "--p99-ms", "20", "--bench", str(report_path), "--json"]) in (0, 1)
    plan = json.loads(capsys.readouterr().out)
    assert plan["assumptions"]["store_rtt_ms"] == 2.0  # the round trip the bench ran behind
    by_model = {p["model"]: p for p in plan["plans"]}
    assert by_model["fraud-resp"]["store_wait_ms"] == 2.0 and by_model["fraud-redis-asyncio"]["store_wait_ms"] == 0
