"""`mlplat loadtest` without a server: the request mix from generated data of the shared schemas, the objective
from the stack's serviceLevels, the verdict, durations and user split, and every bad input refused with a
message (Locust itself runs in tests/local/test_explain_loadtest_e2e.py against the demo platform)."""

from __future__ import annotations

import argparse
import json

import pytest

from contracts.models import ModelSpec, SpecError
from ml.cli import loadtest as cli
from ml.loadtest import mix
from ml.loadtest.results import LoadReport, ModelLoad, Objective, parse_duration, split_users
from ml.models.fraud import data
from stacks.config import load_stack_file, stack_file

pytestmark = [pytest.mark.ml]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    return parser.parse_args(["loadtest", *argv])


@pytest.mark.parametrize(("text", "seconds"),
                         [("30", 30.0), ("30s", 30.0), ("2m", 120.0), ("1.5s", 1.5), ("1h", 3600.0)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "0", "-3s", "25h", ""])
def test_bad_durations_are_named(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_users_are_split_evenly_and_every_model_gets_one():
    assert split_users(5, ["a", "b", "c"]) == {"a": 2, "b": 2, "c": 1}
    with pytest.raises(ValueError, match="fewer than the 3 models"):
        split_users(2, ["a", "b", "c"])


def _report(**loads: tuple[list[float], int]) -> LoadReport:
    models = {}
    for name, (latencies, failures) in loads.items():
        load = ModelLoad(name)
        for i, ms in enumerate(latencies):
            load.record(ms, "HTTPError: 500" if i < failures else None)
        models[name] = load
    return LoadReport("http://x", 2, 10.0, models)


def test_the_verdict_per_model_p99_errors_and_silence():
    objective = Objective(10.0, 0.01, "test")
    fast = ([1.0] * 99 + [2.0], 0)
    assert _report(a=fast).misses(objective) == []
    slow = ([1.0] * 98 + [50.0, 60.0], 0)
    assert _report(a=fast, b=slow).misses(objective) == ["b: p99 50.10 ms > 10 ms"]  # linear interpolation, as numpy
    failing = ([1.0] * 100, 2)
    assert _report(a=failing).misses(objective) == ["a: 2 of 100 requests failed (2.00% > 1.00%)"]
    assert _report(a=([], 0)).misses(objective) == ["a: no request completed"]
    rows = _report(a=fast).as_dict(objective)
    assert rows["models"][0]["rps"] == 10.0 and rows["models"][0]["p50_ms"] == 1.0
    assert "HTTPError: 500" in _report(a=failing).table()


def test_the_objective_is_the_stacks_service_levels_unless_overridden():
    prod = load_stack_file(stack_file("prod")).service_levels
    got = cli.objective_of(_args("--stack", "prod"))
    assert (got.latency_p99_ms, got.max_error_ratio) == (prod.latency_p99_ms, prod.max_error_ratio)
    assert "Pulumi.prod.yaml" in got.source
    got = cli.objective_of(_args("--stack", "prod", "--p99-ms", "3"))
    assert (got.latency_p99_ms, got.max_error_ratio) == (3.0, prod.max_error_ratio)


def test_a_models_explainer_takes_its_requests():
    assert mix.served_names(["fraud", "sentiment"]) == ["fraud", "fraud-explainer", "sentiment"]
    assert mix.base_model("fraud-explainer") == "fraud"
    with pytest.raises(mix.MixError, match="unknown model 'nope'; served names: fraud, fraud-explainer"):
        mix.base_model("nope")


def test_the_mix_is_generated_data_of_the_shared_schema_and_round_trips(tmp_path):
    built = mix.build(["fraud", "fraud-explainer"], {}, n=25, seed=3)
    assert built["fraud"] == built["fraud-explainer"] and len(built["fraud"]) == 25
    names = [i["name"] for i in built["fraud"][0]["inputs"]]
    assert set(names) == {"card_id", "device_id", *data.FEATURES} - {"device_trust_score", "velocity_last_24h",
                                                                     "cardholder_age"}
    path = mix.save(built, tmp_path / "requests.json")
    assert mix.load(path) == built
    (tmp_path / "bad.json").write_text(json.dumps({"models": {}}))
    with pytest.raises(mix.MixError, match="is not a request mix"):
        mix.load(tmp_path / "bad.json")


def test_the_cli_saves_a_mix_and_refuses_bad_input(tmp_path, capsys):
    saved = tmp_path / "mix.json"
    assert cli.run(_args("--target", "http://x", "--model", "fraud", "--save-requests", str(saved))) == 0
    assert list(mix.load(saved)) == ["fraud"]
    cases = [
        (("--target", "http://x", "--requests", str(saved), "--model", "sentiment", "--save-requests", str(saved)),
         "has no requests for sentiment"),
        (("--target", "http://127.0.0.1:1", "--requests", str(saved)), "the model server (MLServer) at"),
        (("--target", "http://x", "--requests", str(saved), "--users", "0"), "--users must be at least 1"),
        (("--target", "http://x", "--requests", str(saved), "--duration", "later"), "duration 'later'"),
        (("--target", "http://x", "--requests", str(saved), "--stack", "nosuch"), "Pulumi.nosuch.yaml"),
        (("--target", "http://x", "--model", "nope", "--save-requests", str(saved)), "unknown model 'nope'"),
        (("--target", "http://x", "--model-dir", "fraud", "--model", "fraud", "--save-requests", str(saved)),
         "must be NAME=DIR"),
    ]
    for argv, message in cases:
        assert cli.run(_args(*argv)) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_an_explainer_must_be_a_class_path():
    with pytest.raises(SpecError, match="explainer must be a dotted class path"):
        ModelSpec(name="m", description="d", intended_use="u", runtime="a.B", plugin="a.C", quality_gates={},
                  sample_gates={}, explainer="not a path")
    assert ModelSpec(name="m", description="d", intended_use="u", runtime="a.B", plugin="a.C", quality_gates={},
                     sample_gates={}).explainer_name is None
