"""Sentiment algorithm: generate -> load -> fit -> evaluate, artifact round trip, input errors."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from ml.models.sentiment import algorithm, data, tokens


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    out = tmp_path_factory.mktemp("sentiment-data")
    data.generate_sample(out, rows=800, seed=0)
    return data.load(out)


@pytest.fixture(scope="module")
def trained(frame):
    train, test = algorithm.split(frame, seed=0)
    model = algorithm.fit(train["text"].tolist(), train["label"].to_numpy(), seed=0)
    return model, train, test


def test_split_is_stratified_by_label_and_source(frame):
    train, test = algorithm.split(frame, seed=0, test_size=0.25)
    assert len(train) + len(test) == len(frame)
    assert abs(len(test) / len(frame) - 0.25) < 0.01
    full = frame.groupby(["source", "label"]).size() / len(frame)
    held = test.groupby(["source", "label"]).size() / len(test)
    assert np.allclose(full.sort_index(), held.sort_index(), atol=0.01)
    with pytest.raises(ValueError, match="test_size must be between 0 and 1"):
        algorithm.split(frame, test_size=1.5)


def test_fit_on_sample_is_well_above_chance(trained):
    model, _, test = trained
    metrics = algorithm.evaluate(model, test)
    assert set(metrics) == {"macro_f1", "accuracy", "f1_negative", "f1_neutral", "f1_positive", "rows"}
    assert metrics["rows"] == len(test)
    assert metrics["macro_f1"] > 0.85  # chance is about 0.33
    assert min(metrics["f1_negative"], metrics["f1_neutral"], metrics["f1_positive"]) > 0.75


def test_predictions_follow_the_learned_signal(trained):
    model, _, _ = trained
    pred = model.predict(["people love the great rally", "worst tax policy sad news", "vote today city"])
    assert pred.tolist() == [1, -1, 0]
    # negation-aware tokens: "not good" must not read as "good"
    assert tokens.tokenize("Not good day", 100, frozenset({"not"})) == ["not", "not_good", "day"]


def test_predict_proba_shape_order_and_sum(trained):
    model, _, test = trained
    proba = model.predict_proba(test["text"].tolist()[:20])
    assert proba.shape == (20, 3)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert (np.asarray(algorithm.CLASSES)[proba.argmax(axis=1)] == model.predict(test["text"].tolist()[:20])).all()


def test_save_load_round_trip_gives_identical_predictions(trained, tmp_path):
    model, _, test = trained
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "weights.npz"]
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["format"] == algorithm.FORMAT and meta["classes"] == [-1, 0, 1]
    loaded = algorithm.SentimentModel.load(tmp_path)
    texts = test["text"].tolist()
    assert np.array_equal(loaded.predict_proba(texts), model.predict_proba(texts))
    assert np.array_equal(loaded.predict(texts), model.predict(texts))
    assert loaded.params == model.params


def test_load_refuses_missing_or_foreign_artifacts(trained, tmp_path):
    with pytest.raises(ValueError, match="not a sentiment model directory"):
        algorithm.SentimentModel.load(tmp_path)
    model, _, _ = trained
    model.save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps({**meta, "format": "other/9"}))
    with pytest.raises(ValueError, match="unsupported model format 'other/9'"):
        algorithm.SentimentModel.load(tmp_path)


def test_long_input_is_truncated_to_max_chars(trained):
    model, _, _ = trained
    head = "people love the great rally "
    long_text = head + "worst sad hate " * 2000
    assert len(long_text) > model.max_chars
    cut = tokens.tokenize(long_text, 10, frozenset())
    assert cut == ["people", "lov"]
    # the tail beyond max_chars is ignored: same scores as the truncated text
    assert np.array_equal(model.predict_proba([long_text]), model.predict_proba([long_text[: model.max_chars]]))


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
def test_empty_text_is_a_value_error(trained, bad):
    model, _, _ = trained
    with pytest.raises(ValueError, match="text 1 is empty or whitespace-only"):
        model.predict_proba(["fine text", bad])
    with pytest.raises(ValueError, match="text 0 is empty or whitespace-only"):
        model.predict([bad])


def test_non_string_inputs_are_value_errors(trained):
    model, _, _ = trained
    with pytest.raises(ValueError, match="text 0 is int, expected str"):
        model.predict([3])
    with pytest.raises(ValueError, match="not a single string"):
        model.predict("a bare string")


def test_fit_rejects_bad_training_input():
    with pytest.raises(ValueError, match="label 2 is not one of"):
        algorithm.fit(["a", "b", "c"], np.array([-1, 0, 2]))
    with pytest.raises(ValueError, match="3 texts but 2 labels"):
        algorithm.fit(["a", "b", "c"], np.array([-1, 0]))
    with pytest.raises(ValueError, match=r"lack class\(es\) \[1\]"):
        algorithm.fit(["a", "b"], np.array([-1, 0]))
    with pytest.raises(ValueError, match="text 1 is empty"):
        algorithm.fit(["a", " ", "c"], np.array([-1, 0, 1]))
    with pytest.raises(ValueError, match=r"unknown sentiment params \['depth'\]"):
        algorithm.fit(["a", "b", "c"], np.array([-1, 0, 1]), {"depth": 3})


def test_fit_is_deterministic_and_fast(frame):
    texts, labels = frame["text"].tolist(), frame["label"].to_numpy()
    start = time.perf_counter()
    a = algorithm.fit(texts, labels, seed=0)
    assert time.perf_counter() - start < 10
    b = algorithm.fit(texts, labels, seed=0)
    assert np.array_equal(a.weights, b.weights) and a.temperature == b.temperature


def test_evaluate_refuses_empty_frame(trained):
    model, _, test = trained
    with pytest.raises(ValueError, match="empty frame"):
        algorithm.evaluate(model, test.iloc[:0])


def test_measure_entry_point_prints_metrics_json(tmp_path, capsys):
    from ml.models.sentiment import measure

    data.generate_sample(tmp_path, rows=400, seed=2)
    assert measure.main(["--data", str(tmp_path), "--latency-calls", "50"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["data"]["dropped_defect_rows"] == 4
    assert len(report["validation_trials"]) == len(measure.GRID)
    assert report["test"]["macro_f1"] > 0.8
    assert 0.0 < report["baseline_tfidf_linearsvc_test"]["macro_f1"] <= 1.0
    lat = report["latency_single_text"]
    assert lat["calls"] == 250 and 0 < lat["best_of_repeats"]["p50_ms"] <= lat["p99_ms"]
