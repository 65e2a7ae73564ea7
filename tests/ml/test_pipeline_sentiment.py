"""Sentiment end to end: generated Twitter/Reddit files -> train -> real MLflow server -> real
MLServer loading `models:/sentiment@champion` -> HTTP request."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from ml.common.pipeline import publish
from ml.models.sentiment import pipeline
from ml.serving.settings import ModelEntry

pytestmark = [pytest.mark.ml, pytest.mark.integration]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("sentiment")
    data_dir = pipeline.generate_sample(root / "data", seed=4)
    return data_dir, pipeline.train(data_dir, root / "model", seed=0)


def test_training_reports_macro_and_per_class_f1(trained):
    _, out = trained
    for key in ("macro_f1", "accuracy", "f1_negative", "f1_neutral", "f1_positive"):
        assert 0.0 <= out.metrics[key] <= 1.0, key
    assert out.metrics["macro_f1"] > 0.4  # far above chance (0.33) even on tiny synthetic data
    assert out.info["rows_twitter"] > 0 and out.info["rows_reddit"] > 0


@pytest.mark.parametrize("name", ["Twitter_Data.csv", "Reddit_Data.csv"])
def test_evaluate_accepts_either_schema(trained, name):
    data_dir, out = trained
    assert {"macro_f1", "accuracy"} <= set(pipeline.evaluate(out.model_dir, data_dir / name))


def test_publish_and_serve_champion(trained, mlflow_server, shared_mlserver, infer):
    _, out = trained
    result = publish(out, mlflow_server.url, gates={"macro_f1": 0.1})
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
