"""Recommendation end to end: generated data -> train -> real MLflow server (registry, aliases) ->
real MLServer loading `models:/recommendation@champion` -> HTTP request."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient

from contracts import model_registry
from ml.model_plugin import load_plugin
from ml.models.recommendation import train
from ml.serving.settings import ModelEntry
from ml.training.outputs import read_metadata
from ml.training.registration import register

PLUGIN = load_plugin("recommendation")

pytestmark = [pytest.mark.ml, pytest.mark.integration]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    data_dir = root / "data"
    PLUGIN.generate_sample(data_dir, seed=1)
    out = train.train(data_dir, root / "model", seed=0)
    return data_dir, out


def test_training_reports_protocol_metrics_and_baselines(trained):
    _, out = trained
    for key in ("ndcg@10", "recall@10", "baseline.popularity.ndcg@10", "baseline.item_knn.ndcg@10",
                "baseline.ease_untuned.ndcg@10"):
        assert 0.0 <= out.metrics[key] <= 1.0, key
    assert set(out.metrics) >= set(model_registry.get("recommendation").metrics)  # what a gate may name
    # On synthetic taste clusters the learned model must beat popularity by a clear margin.
    assert out.metrics["ndcg@10"] > out.metrics["baseline.popularity.ndcg@10"] + 0.05
    assert read_metadata(out.model_dir)["name"] == "recommendation"
    assert (out.model_dir / "reference.json").is_file()


def test_evaluate_on_held_out_file_prints_protocol_keys(trained):
    data_dir, out = trained
    metrics = PLUGIN.evaluate(out.model_dir, data_dir / "goodbooks_ratings_sample.csv")
    assert {"ndcg@10", "recall@10"} <= set(metrics)


def test_publish_gates_aliases_and_serving(trained, mlflow_server, shared_mlserver, infer):
    _, out = trained
    client = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    # Gate passes: challenger and champion point at the new version.
    first = register(out, mlflow_server.url, gates={"ndcg@10": 0.01})
    assert first.champion
    mv = client.get_model_version_by_alias("recommendation", "champion")
    assert mv.version == first.version and mv.tags["gate.passed"] == "true"
    run = client.get_run(first.run_id)
    assert run.data.tags["gate.ndcg_at_10"] == "pass"
    assert run.data.metrics["gate.ndcg_at_10.threshold"] == pytest.approx(0.01)
    assert run.data.metrics["ndcg_at_10"] == pytest.approx(out.metrics["ndcg@10"])
    # Gate fails: the new version becomes challenger only; champion stays on the first one.
    second = register(out, mlflow_server.url, gates={"ndcg@10": 0.99})
    assert not second.champion
    assert client.get_model_version_by_alias("recommendation", "challenger").version == second.version
    assert client.get_model_version_by_alias("recommendation", "champion").version == first.version
    assert client.get_run(second.run_id).data.tags["gate.passed"] == "false"

    name = shared_mlserver.add(
        ModelEntry("recommendation", "recommendation", "models:/recommendation@champion",
                   {"tracking_uri": mlflow_server.url}),
    )
    history = [int(b) for b in np.load(out.model_dir / "item_ids.npy")[:3]]
    resp = infer(shared_mlserver.url, name,
                 [{"name": "book_ids", "datatype": "INT64", "shape": [3], "data": history}],
                 parameters={"k": 5})
    assert resp.status_code == 200, resp.text
    outputs = {o["name"]: o for o in resp.json()["outputs"]}
    assert len(outputs["book_id"]["data"]) == 5
    assert not set(outputs["book_id"]["data"]) & set(history)
    assert all(isinstance(t, str) and t for t in outputs["title"]["data"])
