"""Sentiment end to end: generated Twitter/Reddit files and human-labelled raw tweets -> train -> real
MLflow server -> real MLServer loading `models:/sentiment@champion` -> HTTP request."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from contracts import model_registry
from ml.model_plugin import load_plugin
from ml.models.sentiment import data, train
from ml.serving.settings import ModelEntry
from ml.training.gates import check_gates, load_gates
from ml.training.outputs import read_metadata
from ml.training.registration import register

PLUGIN = load_plugin("sentiment")

pytestmark = [pytest.mark.ml, pytest.mark.integration]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("sentiment")
    data_dir = root / "data"
    PLUGIN.generate_sample(data_dir, seed=4)
    return data_dir, train.train(data_dir, root / "model", seed=0)


def test_training_reports_human_and_lexicon_figures(trained):
    _, out = trained
    for prefix in ("human", "lexicon"):
        for key in ("macro_f1", "accuracy", "f1_negative", "f1_neutral", "f1_positive"):
            assert 0.0 <= out.metrics[f"{prefix}_{key}"] <= 1.0, key
        assert out.metrics[f"{prefix}_macro_f1"] > 0.8  # far above chance (0.33) on the planted signal
    assert set(out.metrics) >= set(model_registry.get("sentiment").metrics)  # what a gate may name is produced
    assert next(iter(out.metrics)) == "human_macro_f1"  # what summaries show first
    assert out.metrics["human_rows"] == out.info["test_rows_human"] == 150
    assert out.info["rows_twitter"] > 0 and out.info["rows_reddit"] > 0 and out.info["train_rows_human"] == 599
    assert set(out.segments) == {"human", "twitter", "reddit"}
    assert read_metadata(out.model_dir)["metrics"] == out.metrics
    assert check_gates(out.metrics, load_gates("sentiment")).passed


@pytest.mark.parametrize("name", ["Twitter_Data.csv", "Reddit_Data.csv", data.HUMAN_FILE])
def test_evaluate_accepts_every_schema(trained, name):
    data_dir, out = trained
    metrics = PLUGIN.evaluate(out.model_dir, data_dir / name)
    assert {"macro_f1", "accuracy", "f1_negative", "f1_neutral", "f1_positive", "rows"} <= set(metrics)
    assert metrics["macro_f1"] > 0.8


def test_without_the_human_file_there_is_no_human_figure_and_the_gate_fails(tmp_path):
    data_dir = tmp_path / "data"
    data.generate_sample(data_dir, rows=400, seed=5, human_rows=0)
    out = train.train(data_dir, tmp_path / "model", seed=0)
    assert not any(k.startswith("human_") for k in out.metrics) and out.metrics["lexicon_macro_f1"] > 0.8
    gate = check_gates(out.metrics, load_gates("sentiment"))
    assert not gate.passed and "human_macro_f1=missing" in gate.summary()


def test_sample_requests_are_raw_tweets(trained):
    data_dir, out = trained
    bodies = PLUGIN.sample_requests(data_dir, out.model_dir, n=20)
    texts = {b["inputs"][0]["data"][0] for b in bodies}
    assert len(bodies) == 20 and texts <= set(data.load_human(data_dir)["text"])


def test_publish_and_serve_champion(trained, mlflow_server, shared_mlserver, infer):
    _, out = trained
    result = register(out, mlflow_server.url, gates={"human_macro_f1": 0.1})
    assert result.champion
    client = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    assert client.get_model_version_by_alias("sentiment", "champion").version == result.version
    name = shared_mlserver.add(ModelEntry("sentiment", "sentiment", "models:/sentiment@champion",
                                          {"tracking_uri": mlflow_server.url}))
    resp = infer(shared_mlserver.url, name, [{"name": "text", "datatype": "BYTES", "shape": [2],
                                            "data": ["what a wonderful happy day", "terrible awful service"]}])
    assert resp.status_code == 200, resp.text
    outputs = {o["name"]: o for o in resp.json()["outputs"]}
    assert set(outputs["label"]["data"]) <= {-1, 0, 1}
    assert outputs["probabilities"]["shape"] == [2, 3]
