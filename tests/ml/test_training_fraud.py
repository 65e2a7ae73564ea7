"""Fraud end to end: generated transactions -> train -> real MLflow server (registry, aliases, gate
tags) -> real MLServer loading `models:/fraud@champion` with features from a real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from contracts import model_registry
from ml.data.feast_repo import apply_and_materialize, write_repo
from ml.model_plugin import load_plugin
from ml.models.fraud import data, features, train
from ml.serving.settings import ModelEntry
from ml.training.outputs import read_metadata
from ml.training.registration import register

PLUGIN = load_plugin("fraud")

pytestmark = [pytest.mark.ml, pytest.mark.integration]
ISSUE_KEYS = {"auc", "pr_auc", "precision", "recall", "f1"}
STACKS = Path(__file__).resolve().parents[2] / "stacks"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("fraud")
    data_dir = root / "data"
    PLUGIN.generate_sample(data_dir, seed=3)
    return data_dir, train.train(data_dir, root / "model", seed=0)


def test_training_reports_issue_metrics_on_held_out_rows(trained):
    _, out = trained
    assert set(out.metrics) >= ISSUE_KEYS
    assert set(out.metrics) >= set(model_registry.get("fraud").metrics)  # what a gate may name is produced
    assert out.info["test_rows"] > 0 and out.info["train_rows"] > out.info["test_rows"]
    assert 0.5 < out.metrics["auc"] <= 1.0
    meta = read_metadata(out.model_dir)
    assert set(meta["params"]["online_defaults"]) == set(features.ONLINE_FEATURES)
    for name in ("model.onnx", "reference.json"):
        assert (out.model_dir / name).is_file()
    ref = json.loads((out.model_dir / "reference.json").read_text())
    assert {"score", "amount", "device_trust_score"} <= set(ref["features"])


def test_evaluate_file_returns_issue_keys(trained):
    data_dir, out = trained
    assert set(PLUGIN.evaluate(out.model_dir, next(data_dir.glob("*.csv")))) >= ISSUE_KEYS


def test_publish_and_serve_champion_with_online_features(trained, tmp_path, mlflow_server, redis_server,
                                                         shared_mlserver, infer):
    data_dir, out = trained
    client = MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    result = register(out, mlflow_server.url, gates={"auc": 0.5, "f1": 0.0})
    assert result.champion
    assert client.get_model_version_by_alias("fraud", "champion").version == result.version
    assert client.get_run(result.run_id).data.tags["gate.auc"] == "pass"
    failed = register(out, mlflow_server.url, gates={"auc": 1.01})
    assert not failed.champion
    assert client.get_model_version_by_alias("fraud", "champion").version == result.version
    assert client.get_model_version_by_alias("fraud", "challenger").version == failed.version

    features.write_parquet(data_dir, tmp_path / "parquet")
    apply_and_materialize(write_repo(tmp_path / "feast", redis_server.url), features.definitions(tmp_path / "parquet"))
    name = shared_mlserver.add(ModelEntry("fraud", "fraud", "models:/fraud@champion",
                                          {"tracking_uri": mlflow_server.url, "redis_url": redis_server.url}))
    body = PLUGIN.sample_requests(data_dir, out.model_dir, n=1)[0]
    resp = infer(shared_mlserver.url, name, body["inputs"])
    assert resp.status_code == 200, resp.text
    outputs = {o["name"]: o["data"] for o in resp.json()["outputs"]}
    assert 0.0 <= outputs["fraud_probability"][0] <= 1.0
    assert outputs["degraded"] == [False]


def test_point_in_time_join_rebuilds_the_training_columns(trained, tmp_path):
    data_dir, _ = trained
    features.write_parquet(data_dir, tmp_path / "parquet")
    store = apply_and_materialize(write_repo(tmp_path / "feast"), features.definitions(tmp_path / "parquet"))
    transactions = data.load(data_dir).iloc[:50]
    joined = features.training_frame(store, transactions.drop(columns=list(features.ONLINE_FEATURES)))
    for column in features.ONLINE_FEATURES:
        assert joined[column].tolist() == transactions.sort_values("transaction_id")[column].tolist()


def test_cli_train_then_evaluate_prints_json(tmp_path):
    import subprocess
    import sys

    def mlplat(*args):
        proc = subprocess.run([sys.executable, "-m", "mlplat", *args], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Gates whose outcome is known whatever the model scores: auc >= 0 passes, f1 >= 1.01 cannot.
    text = (STACKS / "Pulumi.dev.yaml").read_text().replace("{auc: 0.95, f1: 0.90}", "{auc: 0.0, f1: 1.01}")
    assert "{auc: 0.0, f1: 1.01}" in text
    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text(text)
    trained = mlplat("model", "train", "fraud", "--data", str(tmp_path / "data"), "--sample", "--stack-file",
                     str(stack), "--out", str(tmp_path / "model"), "--tracking-uri", uri)
    assert set(trained["metrics"]) >= ISSUE_KEYS
    assert trained["registry"]["version"] == "1" and "challenger" in trained["registry"]["aliases"]
    assert trained["registry"]["gates_passed"] is False  # one failing gate is enough
    assert "champion" not in trained["registry"]["aliases"]
    assert list((tmp_path / "artifacts").glob("*/artifacts/model/model.onnx"))  # beside the SQLite DB
    metrics = mlplat("model", "evaluate", "fraud", "--model", "models:/fraud@challenger", "--tracking-uri", uri,
                     "--data", str(tmp_path / "data" / "credit_card_fraud_10k.csv"))
    assert set(metrics) >= ISSUE_KEYS
