"""Quality gates: read from the typed stack config, checked against evaluation metrics."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ml.training.gates import check_gates, load_gates
from ml.training.tracking import mlflow_key, resolve_model_dir

STACKS = Path(__file__).resolve().parents[2] / "stacks"


def test_default_gates_are_the_issue_targets():
    assert load_gates("fraud") == {"auc": 0.95, "f1": 0.90}
    assert load_gates("sentiment") == {"human_macro_f1": 0.72, "lexicon_macro_f1": 0.85}
    assert load_gates("recommendation") == {"ndcg@10": 0.32}


def test_gates_come_from_a_stack_file(tmp_path):
    text = (STACKS / "Pulumi.dev.yaml").read_text().replace("{human_macro_f1: 0.72,", "{human_macro_f1: 0.5,")
    assert "{human_macro_f1: 0.5," in text
    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text(text)
    assert load_gates("sentiment", stack) == {"human_macro_f1": 0.5, "lexicon_macro_f1": 0.85}


def test_unknown_model_is_named():
    with pytest.raises(ValueError, match="'churn'"):
        load_gates("churn")


def test_every_gate_must_pass_and_missing_or_nan_metrics_fail():
    gates = {"auc": 0.95, "f1": 0.9}
    assert check_gates({"auc": 0.96, "f1": 0.91}, gates).passed
    result = check_gates({"auc": 0.96, "f1": 0.89}, gates)
    assert not result.passed and "f1=0.8900 < 0.9 (FAIL)" in result.summary()
    assert not check_gates({"auc": 0.99}, gates).passed
    assert not check_gates({"auc": math.nan, "f1": 0.99}, gates).passed


def test_mlflow_metric_names_are_sanitised():
    assert mlflow_key("ndcg@10") == "ndcg_at_10"
    assert mlflow_key("baseline.item_knn.recall@10") == "baseline.item_knn.recall_at_10"


def test_missing_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model_dir(tmp_path / "nope")
