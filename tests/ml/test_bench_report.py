"""`mlplat bench models` report: medians over repeated runs, the median ratio to bare, the table."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys

import pytest

from ml.cli.bench import BARE, _add_ratios, _InProcess, _online_table, _summarize, _table, _variants, register
from ml.serving.loadgen import CpuLayout, on_cpus


def _run(fraud_rps: float, bare_rps: float, p99: float, inproc_p99: float = 0.5) -> dict:
    return {
        "fraud": {"in_process": {"p50_ms": 0.3, "p99_ms": inproc_p99},
                  "http": {"tool": "wrk", "p50_ms": 2.0, "p99_ms": p99, "rps": fraud_rps, "non_2xx": 0,
                           "server_cpu_us": 1e6 / fraud_rps, "rps_vs_bare": round(fraud_rps / bare_rps, 3)}},
        BARE: {"in_process": {"p50_ms": 0.1, "p99_ms": 0.2},
               "http": {"tool": "wrk", "p50_ms": 1.5, "p99_ms": 3.0, "rps": bare_rps, "non_2xx": 0,
                        "rps_vs_bare": 1.0}},
    }


def test_repeated_runs_report_medians_and_the_median_ratio():
    report = {
        "machine": {"cores": 2, "load_before": [0.2, 0.3, 0.4], "load_after": [0.9, 0.5, 0.4]},
        "settings": {"concurrency": 4, "duration_s": 10, "repeat": 3, "data": "sample"},
        "models": {"fraud": {}, BARE: {}},
        # A noisy machine: both slow down together in run 2; the ratio stays put.
        "runs": [_run(1600, 2000, 3.5, 0.5), _run(800, 1000, 9.0, 1.4), _run(1700, 2000, 3.6, 0.6)],
    }
    _summarize(report)
    fraud = report["models"]["fraud"]["http"]
    assert fraud["rps"] == 1600 and fraud["p99_ms"] == 3.6 and fraud["runs"] == 3
    assert fraud["rps_vs_bare"] == 0.8  # median of 0.8, 0.8, 0.85
    assert fraud["server_cpu_us"] == 625.0
    # In-process timing is repeated in every run too, and reported as the median over the runs.
    assert report["models"]["fraud"]["in_process"] == {"p50_ms": 0.3, "p99_ms": 0.6, "runs": 3}
    table = _table(report)
    assert "load average before 0.20 after 0.90" in table and "runs: 3" in table
    assert "fraud" in table.splitlines()[2] and "0.80" in table.splitlines()[2]


def test_each_run_gives_ratios_to_bare_and_the_report_their_medians():
    runs = [_run(1600, 2000, 3.5), _run(800, 1000, 9.0), _run(1700, 2000, 4.5)]
    for run, bare_p99 in zip(runs, (3.0, 6.0, 3.0), strict=True):
        run[BARE]["http"]["p99_ms"] = bare_p99
        _add_ratios(run)
    assert [r["fraud"]["http"]["p99_vs_bare"] for r in runs] == [1.167, 1.5, 1.5]
    report = {"models": {"fraud": {}, BARE: {}}, "runs": runs}
    _summarize(report)
    fraud = report["models"]["fraud"]["http"]
    assert fraud["p99_vs_bare"] == 1.5 and fraud["rps_vs_bare"] == 0.8  # medians of the per-run ratios
    assert report["models"][BARE]["http"]["p99_vs_bare"] == 1.0


def test_cpu_per_request_gives_a_ratio_to_bare_with_the_stores_cpu_counted():
    run = _run(1600, 2000, 3.5)
    run[BARE]["http"]["server_cpu_us"] = 400.0
    run["fraud"]["http"].update(server_cpu_us=450.0, redis_cpu_us=50.0)
    _add_ratios(run)
    assert run["fraud"]["http"]["cpu_vs_bare"] == 0.8 and run[BARE]["http"]["cpu_vs_bare"] == 1.0
    report = {"models": {"fraud": {}, BARE: {}}, "runs": [run]}
    _summarize(report)
    assert report["models"]["fraud"]["http"]["cpu_vs_bare"] == 0.8


def test_models_that_read_the_store_are_served_once_per_client_and_round_trip():
    one = {None: "redis://store"}
    assert _variants("fraud", ["resp"], one) == [("fraud", "resp", None)]
    assert _variants("fraud", ["resp"], {0.5: "redis://proxy"}) == [("fraud", "resp", 0.5)]  # nothing differs
    assert _variants("fraud", ["resp", "redis-asyncio"], {0.2: "a", 1.0: "b"}) == [
        ("fraud-resp-0.2ms", "resp", 0.2), ("fraud-redis-asyncio-0.2ms", "redis-asyncio", 0.2),
        ("fraud-resp-1ms", "resp", 1.0), ("fraud-redis-asyncio-1ms", "redis-asyncio", 1.0)]


def test_the_online_read_table_gives_cpu_per_request_and_requests_per_core():
    report = {
        "store_paths": [{"rtt_ms": 0.5, "floor_ms": 0.08, "added_ms": 0.42, "method": "delay proxy"}],
        "models": {
            "fraud-resp": {"online_client": "resp", "store_rtt_ms": 0.5,
                           "http": {"rps": 600, "p99_ms": 9.0, "server_cpu_us": 800.0, "fetches_per_request": 1.0,
                                    "fetch_ms": 0.55, "proxy_cpu_us": 60.0}},
            "fraud-redis-asyncio": {"online_client": "redis-asyncio", "store_rtt_ms": 0.5,
                                    "http": {"rps": 1000, "p99_ms": 6.0, "server_cpu_us": 1000.0,
                                             "fetches_per_request": 1.0, "fetch_ms": 1.2}},
            "sentiment": {"online_client": "resp", "store_rtt_ms": None, "http": {"rps": 900, "p99_ms": 5.0}},
        },
    }
    lines = _online_table(report)
    assert "floor 0.080 ms" in lines[0] and "0.420 ms added" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"fraud-resp", "fraud-redis-asyncio"}  # sentiment reads no store
    assert rows["fraud-resp"][5:7] == ["800", "1250"] and rows["fraud-redis-asyncio"][5:7] == ["1000", "1000"]


@pytest.mark.parametrize(("argv", "error"), [
    (["--online-clients", "memcached"], "unknown online client"),
    (["--rtt-ms", "0"], "round trips must be in"),
    (["--rtt-ms", "half"], "expected milliseconds"),
    (["--store-cpus", "elsewhere"], "invalid choice: 'elsewhere'"),
])
def test_bad_client_or_round_trip_is_named(argv, error, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="cmd"))
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "models", *argv])
    assert error in capsys.readouterr().err


def test_cli_takes_a_json_file_and_repeat():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["bench", "models", "--json", "out.json", "--repeat", "3", "--grpc"])
    assert str(args.json) == "out.json" and args.repeat == 3 and args.grpc and not args.no_pin
    assert parser.parse_args(["bench", "models", "--no-pin"]).no_pin
    args = parser.parse_args(["bench", "models", "--online-clients", "resp,redis-asyncio", "--rtt-ms", "1.0,0.2,0.5"])
    assert args.online_clients == ["resp", "redis-asyncio"] and args.rtt_ms == [0.2, 0.5, 1.0]
    # The store beside the server (one machine) unless asked to run it with the load generators.
    assert args.store_cpus == "server"
    assert parser.parse_args(["bench", "models", "--store-cpus", "load"]).store_cpus == "load"


class _Runtime:
    """Stands in for an MLServer runtime: `predict` returns the request doubled, after `wait`."""

    def __init__(self, wait) -> None:
        self.wait, self.calls = wait, 0

    async def predict(self, request: int) -> int:
        self.calls += 1
        if self.wait is not None:
            await self.wait()
        return request * 2


class _CountingLoop(asyncio.SelectorEventLoop):
    """An event loop that counts how often a call was run on it."""

    entered = 0

    def run_until_complete(self, future):
        self.entered += 1
        return super().run_until_complete(future)


def _in_process(runtime: _Runtime) -> _InProcess:
    timed = object.__new__(_InProcess)  # __init__ loads a real model; only predict's driving is tested
    timed.runtime, timed.loop, timed.direct, timed.requests = runtime, _CountingLoop(), True, [1, 2]
    return timed


def test_in_process_timing_runs_a_predict_that_never_suspends_without_the_event_loop():
    timed = _in_process(_Runtime(None))
    assert [timed.predict(r) for r in (1, 2, 3)] == [2, 4, 6]
    assert timed.direct and timed.runtime.calls == 3
    figures = timed.time(50)
    # Behaviour, not speed: every timed call (20 warm-up, 50 timed) ran, none of them on the event loop.
    assert set(figures) == {"p50_ms", "p99_ms"} and figures["p50_ms"] <= figures["p99_ms"]
    assert timed.runtime.calls == 3 + 20 + 50 and timed.direct and timed.loop.entered == 0
    timed.close()


@pytest.mark.parametrize("wait", [lambda: asyncio.sleep(0), lambda: asyncio.sleep(0.001)],
                         ids=["suspends", "needs-the-running-loop"])
def test_in_process_timing_moves_a_predict_that_awaits_onto_the_event_loop(wait):
    timed = _in_process(_Runtime(wait))
    assert timed.predict(5) == 10 and not timed.direct
    assert timed.predict(6) == 12 and timed.runtime.calls == 3  # the interrupted call, rerun, then one more
    assert timed.loop.entered == 2
    timed.close()


@pytest.mark.parametrize(("cpus", "server", "load"), [
    ({0, 1}, {0}, {1}), ({0, 1, 2}, {0, 1}, {2}), ({4, 5, 6, 7}, {4, 5}, {6, 7}),
])
def test_cpu_layout_gives_the_server_side_half_of_the_cpus_and_the_load_the_rest(monkeypatch, cpus, server, load):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cpus)
    layout = CpuLayout.split()
    assert layout.server == server and layout.load == load
    assert layout.describe() == {"server": sorted(server), "load": sorted(load)}


def test_cpu_layout_is_none_on_one_cpu(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert CpuLayout.split() is None


@pytest.mark.integration
def test_on_cpus_pins_this_process_and_what_it_starts_then_restores():
    before = os.sched_getaffinity(0)
    one = frozenset({min(before)})
    with on_cpus(one):
        assert os.sched_getaffinity(0) == one
        child = subprocess.run([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
                               capture_output=True, text=True, check=True).stdout.strip()
        assert child == str(sorted(one))
    assert os.sched_getaffinity(0) == before
    with on_cpus(None):  # no layout: nothing changes
        assert os.sched_getaffinity(0) == before


def test_requests_served_is_the_servers_count_once_it_stops_moving():
    """CPU and store reads per request divide by what the server answered in the window (MLServer's counter,
    every version of the model), read when the requests still in flight after a load have been counted."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from ml.serving.loadgen import requests_served

    counts = iter([10, 13, 14, 14, 99])

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            body = (f'model_infer_request_success_total{{model="fraud",version="None"}} {next(counts)}.0\n'
                    'model_infer_request_success_total{model="fraud",version="2"} 1.0\n'
                    'model_infer_request_success_total{model="fraud-explainer",version="None"} 500.0\n').encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert requests_served(f"http://127.0.0.1:{server.server_address[1]}/metrics", "fraud", settle_s=0.001) == 15.0
    finally:
        server.shutdown()
        server.server_close()
