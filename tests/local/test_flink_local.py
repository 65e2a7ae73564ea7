"""`mlplat local up --engines`: the option's parsing, the refusal without Redis, and what the summary says
(no process: unit tests; tests/local/test_flink_stream_e2e.py runs the engine)."""

from __future__ import annotations

import pytest

from local import flink_local
from local.config import parse_engines
from local.flink_local import FlinkEngineError, FlinkJob, StreamCheck
from mlplat.cli import main as cli_main


def test_engines_parse_and_unknown_ones_are_named():
    assert parse_engines("") == ()
    assert parse_engines(" flink, flink ") == ("flink",)
    with pytest.raises(ValueError, match=r"unknown engine.*storm.*allowed: spark, flink"):
        parse_engines("flink,storm")


def test_flink_without_redis_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLAT_LOCAL_DIR", str(tmp_path))
    assert cli_main(["local", "up", "--engines", "flink"]) != 0
    assert "--engines flink needs --redis" in capsys.readouterr().err


def test_a_missing_streaming_environment_names_the_bootstrap_step(tmp_path, monkeypatch):
    monkeypatch.setattr(flink_local, "FLINK_PYTHON", tmp_path / "nope" / "bin" / "python")
    with pytest.raises(FlinkEngineError, match=r"scripts/bootstrap\.sh flink"):
        FlinkJob(tmp_path, tmp_path / "in", "redis://127.0.0.1:1/0").command()


def test_the_summary_line_says_what_happened():
    good = StreamCheck("m", 7, 3, 3, 1.5, True, False, 0.25)
    assert good.ok and "velocity_last_24h=3" in good.line() and "p=0.250" in good.line()
    stuck = StreamCheck("m", 7, 3, None, 90.0, True, True, 0.5)
    assert not stuck.ok and stuck.line().startswith("FAILED")
