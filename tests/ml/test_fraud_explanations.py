"""Fraud explanations without a server: the booster ships beside the ONNX graph, LightGBM's `pred_contrib`
is the exact Shapley decomposition SHAP's TreeExplainer computes (checked against a brute-force Shapley
computation over every feature subset), contributions + base value add up to the raw score the ONNX graph
serves, the explainer runtime says which features were defaults, and the model card carries global
importances."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlserver.settings import ModelParameters, ModelSettings
from mlserver.types import InferenceRequest

from ml.model_plugin import load_plugin
from ml.models.fraud import algorithm, data, train
from ml.models.fraud.explain import NotExplainable, TreeExplainer
from ml.models.fraud.explainer import FraudExplainerRuntime
from ml.models.fraud.features import ONLINE_FEATURES
from ml.models.fraud.plugin import request_body
from ml.models.fraud.runtime import FraudRuntime
from ml.training.card import render_markdown
from ml.training.outputs import IMPORTANCES_FILE

pytestmark = [pytest.mark.ml]
SMALL = {"n_estimators": 40, "threshold_folds": 2}  # a small model: the properties do not depend on its size


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("fraud-explain")
    load_plugin("fraud").generate_sample(root / "data", seed=7)
    return root / "data", train.train(root / "data", root / "model", params=SMALL, seed=0)


def test_the_version_ships_its_booster_beside_the_onnx_graph(trained):
    _data_dir, out = trained
    assert (out.model_dir / algorithm.BOOSTER_FILE).is_file() and (out.model_dir / "model.onnx").is_file()
    model = algorithm.FraudModel.load(out.model_dir)
    assert model.booster_text == (out.model_dir / algorithm.BOOSTER_FILE).read_text()
    assert TreeExplainer(model.booster_text).booster.num_trees() == SMALL["n_estimators"]


def test_contributions_add_up_to_the_score_the_onnx_graph_serves(trained):
    data_dir, out = trained
    model = algorithm.FraudModel.load(out.model_dir)
    explainer = TreeExplainer.load(out.model_dir)
    x = data.encode(data.load(data_dir))
    contrib = explainer.contributions(x)
    raw = contrib.sum(axis=1)
    assert contrib.shape == (len(x), len(data.FEATURES) + 1)
    assert np.ptp(contrib[:, -1]) == 0  # one base value: the expected raw score
    # The booster's own raw score, and the probability the ONNX graph serves, from the contributions.
    assert np.allclose(raw, explainer.booster.predict(x.astype(np.float64), raw_score=True), atol=1e-9)
    assert np.allclose(explainer.probability(raw), model.predict_proba(x), atol=2e-6)
    assert np.abs(contrib[:, :-1]).sum() > 0


def _expected_value(tree: dict[str, Any], x: np.ndarray, known: set[int]) -> float:
    """E[tree(x) | features in `known`], the other features integrated out by the training cover of each
    branch: the value function path-dependent TreeSHAP decomposes."""
    if "leaf_value" in tree:
        return float(tree["leaf_value"])
    left, right = tree["left_child"], tree["right_child"]
    feature = int(tree["split_feature"])
    if feature in known:
        return _expected_value(left if x[feature] <= tree["threshold"] else right, x, known)
    count = lambda t: t.get("internal_count", t.get("leaf_count"))  # noqa: E731
    total = count(left) + count(right)
    return (count(left) * _expected_value(left, x, known) + count(right) * _expected_value(right, x, known)) / total


def _brute_force_shapley(trees: list[dict[str, Any]], x: np.ndarray, n: int) -> np.ndarray:
    value = {s: sum(_expected_value(t, x, set(s)) for t in trees)
             for k in range(n + 1) for s in itertools.combinations(range(n), k)}
    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for k in range(n):
            weight = math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n)
            for s in itertools.combinations(others, k):
                phi[i] += weight * (value[tuple(sorted((*s, i)))] - value[s])
    return np.append(phi, value[()])


def test_pred_contrib_is_the_exact_shapley_decomposition_tree_shap_computes(trained):
    """SHAP's TreeExplainer (path-dependent) returns the Shapley values of E[f(x) | x_S] over the trees'
    cover; computed here by brute force over all 2^8 subsets for a few rows, they equal `pred_contrib`."""
    data_dir, out = trained
    explainer = TreeExplainer.load(out.model_dir)
    trees = [t["tree_structure"] for t in explainer.booster.dump_model()["tree_info"]]
    x = data.encode(data.load(data_dir)).astype(np.float64)
    fraud = np.flatnonzero(data.load(data_dir)[data.LABEL].to_numpy() == 1)
    for row in [x[0], x[1], x[fraud[0]]]:
        assert np.allclose(explainer.contributions(row[None, :])[0],
                           _brute_force_shapley(trees, row, len(data.FEATURES)), atol=1e-9)


def test_a_version_without_a_booster_is_refused_with_the_fix(tmp_path, trained):
    _data_dir, out = trained
    for name in ("model.onnx", "model.json"):
        (tmp_path / name).write_bytes((out.model_dir / name).read_bytes())
    with pytest.raises(NotExplainable, match=r"predates explanations .*mlplat model train fraud"):
        TreeExplainer.load(tmp_path)


def _runtime(cls: type, model_dir: Path, name: str) -> Any:
    runtime = cls(ModelSettings(name=name, implementation=cls, parameters=ModelParameters(uri=str(model_dir))))
    asyncio.run(runtime.load())
    return runtime


def _outputs(response: Any) -> dict[str, Any]:
    out = {}
    for o in response.outputs:
        values = o.data.root if hasattr(o.data, "root") else o.data
        out[o.name] = np.asarray(values).reshape(o.shape) if o.datatype != "BYTES" else \
            [v.decode() if isinstance(v, bytes) else v for v in values]
    return out


def test_the_explainer_runtime_without_a_store_names_every_online_feature_a_default(trained):
    """No online store configured: the row is scored on the training medians, as the fraud runtime does, and
    the explanation says which features those were; its probability is the fraud runtime's."""
    data_dir, out = trained
    row = data.load(data_dir).iloc[3]
    request = InferenceRequest.model_validate(request_body(row))
    explainer = _runtime(FraudExplainerRuntime, out.model_dir, "fraud-explainer-unit")
    scorer = _runtime(FraudRuntime, out.model_dir, "fraud-unit")
    got = _outputs(asyncio.run(explainer.predict(request)))
    served = _outputs(asyncio.run(scorer.predict(request)))
    assert got["feature"] == data.FEATURES
    assert np.isclose(got["base_value"][0] + got["contribution"][0].sum(), got["raw_score"][0], atol=1e-9)
    assert np.isclose(1 / (1 + math.exp(-got["raw_score"][0])), served["fraud_probability"][0], atol=2e-6)
    assert got["fraud_probability"][0] == served["fraud_probability"][0]
    assert got["degraded"].tolist() == [True] == served["degraded"].tolist()
    defaulted = dict(zip(got["feature"], got["defaulted"][0].tolist(), strict=True))
    assert {f for f, d in defaulted.items() if d} == set(ONLINE_FEATURES)
    # The explainer counts under its own name and feeds no drift window (explaining is not scoring).
    assert explainer.drift is None and explainer.samples is None


def test_the_card_carries_global_importances(trained):
    _data_dir, out = trained
    importances = json.loads((out.model_dir / IMPORTANCES_FILE).read_text())
    assert list(importances) == sorted(importances, key=lambda f: -importances[f]["mean_abs_contribution"])
    assert set(importances) == set(data.FEATURES)
    assert math.isclose(sum(v["gain_share"] for v in importances.values()), 1.0, rel_tol=1e-9)
    card = {"model": {"name": "fraud", "version": "1", "run_id": "r", "created": "now", "description": "d"},
            "intended_use": "u", "limitations": [], "data": {"directory": None, "sources": [], "rows": {}},
            "features": data.FEATURES, "importances": importances, "training": {"params": {}},
            "evaluation": {"protocol": "p", "metrics": {}, "segments": {}},
            "gates": {"passed": True, "summary": "s"}, "promotion": {"policy": "gates",
            "champion_at_registration": True, "pending_approval": False}}
    text = render_markdown(card)
    top = next(iter(importances))
    assert "## Global feature importances" in text and f"| `{top}` | " in text
