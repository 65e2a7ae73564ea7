"""`mlplat experiment` without a platform: argument checks, the plan's sample size, the status report from a
persisted state, the simulator's rate parsing and the request body it finds (no process is started)."""

from __future__ import annotations

import argparse
import json

import pytest

from local import experiment_cli
from local.experiment_report import format_status
from local.experiments import platform, smoke_body
from ml.delivery.experiments.controller import ExperimentError, parse_duration
from ml.delivery.experiments.simulate import SimulationError, parse_rates, simulate
from ml.delivery.experiments.state import ExperimentState, load, save
from ml.delivery.experiments.stats import required_samples


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    experiment_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["experiment", *argv])


def test_durations_and_defaults():
    assert [parse_duration(t) for t in ("90", "90s", "15m", "2h", "1d")] == [90, 90, 900, 7200, 86400]
    args = parse("ab", "fraud", "--challenger", "3", "--min-samples", "500")
    assert (args.split, args.min_duration, args.metric, args.alpha, args.margin) == (50, 3600, "success-rate",
                                                                                       0.05, 0.02)
    assert parse("bandit", "fraud", "--challenger", "3").metric == "ctr"
    with pytest.raises(SystemExit):
        parse("ab", "fraud", "--challenger", "3", "--min-duration", "soon")
    with pytest.raises(ValueError, match="not a duration: 'soon'"):
        parse_duration("soon")


def test_the_plan_computes_the_sample_size_or_says_what_is_missing():
    plan = experiment_cli.plan_of(parse("ab", "fraud", "--challenger", "3", "--baseline-rate", "0.1"))
    assert plan.min_samples == required_samples(0.1, 0.10) and plan.min_duration_s == 3600
    with pytest.raises(SystemExit, match="give --min-samples N"):
        experiment_cli.plan_of(parse("ab", "fraud", "--challenger", "3"))
    with pytest.raises(SystemExit, match="must exceed the margin"):
        experiment_cli.plan_of(parse("ab", "fraud", "--challenger", "3", "--baseline-rate", "0.1",
                                     "--expected-uplift", "0.01"))


def test_status_reports_a_bandit_and_an_ab_test_from_their_state(tmp_path):
    bandit = ExperimentState(model="fraud", kind="bandit", variants={"champion": "1", "challenger": "2"},
                             metric="ctr", started_at=1000.0, status="stopped", rounds=7,
                             weights={"champion": 6, "challenger": 94},
                             counts={"champion": {"trials": 300, "successes": 15, "rate": 0.05},
                                     "challenger": {"trials": 1100, "successes": 160, "rate": 0.1455}},
                             posteriors={"champion": {"alpha": 16, "beta": 286, "mean": 0.05, "p_best": 0.0},
                                         "challenger": {"alpha": 161, "beta": 941, "mean": 0.146, "p_best": 1.0}},
                             controller={"pid": 1, "host": "elsewhere", "splitter": "HAProxy"},
                             message="round 7: challenger leads (P(best) = 1.00)")
    save(bandit, tmp_path)
    text = format_status(load(tmp_path, "fraud"), now=1010.0)
    assert "bandit (Thompson sampling), metric ctr, stopped, round 7" in text
    assert "challenger        2     94    1100       160  0.1455  Beta(161, 941)          1.00" in text
    rows = [line.split()[0] for line in text.splitlines() if line.startswith(("champion ", "challenger "))]
    assert rows == ["champion", "challenger"]  # the champion first, whatever order the file has
    ab = ExperimentState(model="fraud", kind="ab", variants={"champion": "1", "challenger": "2"},
                         metric="success-rate", started_at=1000.0, status="decided",
                         settings={"split": 50, "min_samples": 1000, "min_duration_s": 60.0, "alpha": 0.05,
                                   "margin": 0.02, "power": 0.8},
                         decision={"verdict": "promote", "reason": "uplift +25.00% ...", "test": {
                             "test": "Wald", "hypothesis": "H0: ...", "uplift": 0.25, "ci_low": 0.15,
                             "ci_high": 0.36, "p_value": 1e-5, "p_value_better": 1e-7}},
                         mlflow_run_id="abc")
    text = format_status(ab, now=1010.0)
    assert "decision: promote" in text and "p = 1e-05" in text and "MLflow run abc" in text
    assert "fixed horizon" in text


def test_rates_parse_or_name_the_bad_pair():
    assert parse_rates("champion=0.3, challenger=0.33") == {"champion": 0.3, "challenger": 0.33}
    for bad in ("champion=1.5", "champion", "=0.2", ""):
        with pytest.raises(SimulationError, match="--rates"):
            parse_rates(bad)
    with pytest.raises(SimulationError, match="report must be one of"):
        simulate("http://127.0.0.1:9", "http://127.0.0.1:9", "fraud", {}, {"champion": 0.1}, 10, report="some")


def test_the_simulator_uses_the_smoke_request_of_up(tmp_path):
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]}
    (tmp_path / "summary.json").write_text(json.dumps({"smoke": {"fraud": {"request": body}}}))
    assert smoke_body(tmp_path, "fraud") == body
    with pytest.raises(ExperimentError, match="pass --body FILE"):
        smoke_body(tmp_path, "sentiment")


def test_without_a_running_platform_the_commands_say_how_to_start_one(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLAT_LOCAL_DIR", str(tmp_path))
    with pytest.raises(ExperimentError, match=r"no local platform in .*\(start one with `mlplat local up`") as info:
        platform()
    assert info.value.user_error is True  # one line from `mlplat`, not a traceback
