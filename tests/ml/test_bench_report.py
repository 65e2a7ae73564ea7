"""`mlplat bench models` report: medians over repeated runs, the median ratio to bare, the table."""

from __future__ import annotations

import argparse

from ml.cli.bench import BARE, _summarize, _table, register


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


def test_cli_takes_a_json_file_and_repeat():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["bench", "models", "--json", "out.json", "--repeat", "3", "--grpc"])
    assert str(args.json) == "out.json" and args.repeat == 3 and args.grpc
