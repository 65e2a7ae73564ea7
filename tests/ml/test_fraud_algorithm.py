"""Fraud algorithm on generated data: stratified split, fit with the validation-chosen threshold,
metrics well above chance on the hold-out, ONNX export equal to LightGBM, save/load round trip."""

from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from ml.models.fraud import algorithm, data, onnx_export

pytestmark = pytest.mark.ml
SMALL = {"n_estimators": 60, "threshold_folds": 3}  # for tests about mechanics, not quality


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fraud-sample")
    data.generate_sample(directory, rows=2000, seed=0)
    return data.load(directory)


@pytest.fixture(scope="module")
def trained(frame):
    train, test = algorithm.split(frame, seed=0)
    return train, test, algorithm.fit(train, seed=0)


def test_split_is_stratified_disjoint_and_reproducible(frame):
    train, test = algorithm.split(frame, seed=0, test_size=0.25)
    assert len(test) == pytest.approx(0.25 * len(frame), abs=1)
    assert set(train["transaction_id"]).isdisjoint(test["transaction_id"])
    assert len(train) + len(test) == len(frame)
    assert test["is_fraud"].mean() == pytest.approx(frame["is_fraud"].mean(), abs=0.005)
    again, _ = algorithm.split(frame, seed=0, test_size=0.25)
    assert again["transaction_id"].tolist() == train["transaction_id"].tolist()


@pytest.mark.parametrize(
    ("kwargs", "mutate", "message"),
    [
        ({"test_size": 1.5}, None, r"test_size must be in \(0, 1\), got 1.5"),
        ({}, lambda f: f.drop(columns="is_fraud"), "column 'is_fraud' .* is missing"),
        ({}, lambda f: f.assign(is_fraud=0), "needs >= 2 rows of each class, got .* and 0 fraud"),
        ({}, lambda f: f.assign(is_fraud="TRUE"), "'is_fraud' must be 0/1"),
    ],
)
def test_split_refuses_bad_input(frame, kwargs, mutate, message):
    with pytest.raises(ValueError, match=message):
        algorithm.split(mutate(frame) if mutate else frame, **kwargs)


def test_held_out_metrics_are_well_above_chance(trained):
    _, test, model = trained
    metrics = algorithm.evaluate(model, test)
    assert set(metrics) == {"auc", "pr_auc", "precision", "recall", "f1", "threshold", "rows", "positives"}
    assert metrics["rows"] == len(test) and metrics["positives"] == int(test["is_fraud"].sum())
    base_rate = metrics["positives"] / metrics["rows"]
    assert metrics["auc"] > 0.9
    assert metrics["pr_auc"] > 5 * base_rate
    assert metrics["f1"] > 0.6  # a random classifier scores about 2 x base rate (~0.07)
    decided = model.predict(data.encode(test))
    assert metrics["precision"] == pytest.approx(
        (decided & test["is_fraud"].to_numpy()).sum() / decided.sum())


def test_threshold_comes_from_training_validation_for_the_stated_goal(trained):
    train, _, model = trained
    v = model.validation
    assert 0.0 < model.threshold < 1.0
    assert v["goal"] == "max F1 s.t. precision >= 0.9" and v["goal_met"] is True
    assert v["precision"] >= 0.9 and v["rows"] == len(train) and "out-of-fold" in v["method"]
    assert model.params["min_precision"] == 0.9 and model.params["seed"] == 0


def test_predict_proba_is_1d_probability_from_onnx(trained):
    _, test, model = trained
    p = model.predict_proba(data.encode(test.iloc[:7]))
    assert p.shape == (7,) and p.dtype == np.float32 and ((p >= 0) & (p <= 1)).all()
    assert model.predict_proba(data.encode(test.iloc[:1])).shape == (1,)
    opts = model._session.get_session_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)
    with pytest.raises(ValueError, match=r"shape \[n, 8\] .* got shape \[3, 7\]"):
        model.predict_proba(np.zeros((3, 7), dtype=np.float32))


def test_save_load_round_trip_gives_identical_predictions(trained, tmp_path):
    _, test, model = trained
    model.save(tmp_path / "m")
    # The booster ships beside the graph (explanations read it); it round-trips unchanged.
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"model.onnx", "model.json", algorithm.BOOSTER_FILE}
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["threshold"] == model.threshold and meta["features"] == data.FEATURES
    assert meta["categories"] == list(data.MERCHANT_CATEGORIES) and meta["params"] == model.params
    loaded = algorithm.FraudModel.load(tmp_path / "m")
    x = data.encode(test)
    assert np.array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert loaded.threshold == model.threshold and loaded.features == model.features
    assert loaded.booster_text == model.booster_text is not None
    assert algorithm.evaluate(loaded, test) == algorithm.evaluate(model, test)


def test_load_refuses_incomplete_dir_or_other_encoding(trained, tmp_path):
    _, _, model = trained
    with pytest.raises(FileNotFoundError, match=r"model\.onnx is missing"):
        algorithm.FraudModel.load(tmp_path)
    model.save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    meta["categories"] = ["Food", "Travel"]
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="differ from this code's encoding"):
        algorithm.FraudModel.load(tmp_path)


def test_fit_is_deterministic_for_a_seed(frame):
    train, test = algorithm.split(frame, seed=1)
    a, b = algorithm.fit(train, SMALL, seed=3), algorithm.fit(train, SMALL, seed=3)
    assert a.threshold == b.threshold
    assert np.array_equal(a.predict_proba(data.encode(test)), b.predict_proba(data.encode(test)))


def test_fit_refuses_too_few_positives_and_bad_protocol_params(frame):
    few = pd.concat([frame[frame.is_fraud == 0].iloc[:200], frame[frame.is_fraud == 1].iloc[:2]])
    with pytest.raises(ValueError, match=r"needs >= 3 rows of each class .* got 200 legit and 2 fraud"):
        algorithm.fit(few, SMALL)
    with pytest.raises(ValueError, match="min_precision must be in"):
        algorithm.fit(frame, {"min_precision": 1.5})
    with pytest.raises(ValueError, match="threshold_folds must be >= 2"):
        algorithm.fit(frame, {"threshold_folds": 1})


def test_choose_threshold_respects_the_precision_goal():
    # scores: 4 positives at the top, then a negative, then 2 positives mixed with negatives
    y = np.array([1, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 0])
    s = np.array([.99, .98, .97, .96, .90, .80, .70, .60, .30, .20, .10, .05])
    cut, info = algorithm.choose_threshold(y, s, min_precision=0.9)
    assert (info["precision"], info["recall"], info["goal_met"]) == (1.0, 4 / 6, True)
    assert 0.90 < cut < 0.96  # between the kept score and the next lower one
    cut, info = algorithm.choose_threshold(y, s, min_precision=0.0)  # unconstrained F1 keeps 7 rows
    assert info["recall"] == 1.0 and info["precision"] == pytest.approx(6 / 8) and 0.30 < cut < 0.60
    _, info = algorithm.choose_threshold(np.array([0, 1, 0, 1]), np.array([.9, .8, .7, .6]), 0.99)
    assert info["goal_met"] is False


def test_onnx_export_matches_lightgbm_and_refuses_other_models():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 100, (600, 4)).astype(np.float32)
    x[:, 1] = np.round(x[:, 1])  # integer-valued column: thresholds fall between integers
    y = ((x[:, 0] > 60) ^ (x[:, 1] < 20)).astype(int)
    clf = lgb.LGBMClassifier(n_estimators=40, num_leaves=7, verbose=-1, n_jobs=1).fit(x, y)
    session = ort.InferenceSession(onnx_export.to_onnx(clf.booster_, 4).SerializeToString())
    probe = np.vstack([x, rng.uniform(-50, 150, (2000, 4)).astype(np.float32)])
    got = session.run(None, {onnx_export.INPUT: probe})[0][:, 0]
    assert np.abs(got - clf.predict_proba(probe)[:, 1]).max() < 1e-5
    reg = lgb.LGBMRegressor(n_estimators=3, verbose=-1).fit(x, x[:, 0])
    with pytest.raises(ValueError, match="only binary LightGBM models"):
        onnx_export.to_onnx(reg.booster_, 4)
    with pytest.raises(ValueError, match="booster has 4 features, expected 8"):
        onnx_export.to_onnx(clf.booster_, 8)


def test_module_entry_point_prints_metrics_json(frame, tmp_path, capsys):
    src = tmp_path / "data"
    src.mkdir()
    frame.assign(is_fraud=frame["is_fraud"].map({1: "TRUE", 0: "FALSE"})).to_csv(src / data.FILE, index=False)
    assert algorithm.main(["--data", str(src), "--calls", "50", "--out", str(tmp_path / "model")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["test"]) >= {"auc", "pr_auc", "precision", "recall", "f1"}
    assert report["test_rows"] == 500 and report["latency"]["predict_p99_us"] > 0
    assert (tmp_path / "model" / "model.onnx").is_file()
