"""Sentiment algorithm: generate -> load -> fit -> evaluate, the folded serving weights against the
explicit two-level stack, normalisation shared by training and serving, routing, artifact round trip,
input errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from ml.models.sentiment import algorithm, data, lexicons
from ml.models.sentiment import text as tx


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    out = tmp_path_factory.mktemp("sentiment-data")
    data.generate_sample(out, rows=800, seed=0)
    return data.load_human(out), data.load(out)


@pytest.fixture(scope="module")
def trained(frames, monkeypatch_module):
    """The model, its splits and the unfolded level-1/level-2 models `fit` built (captured at `_fold`)."""
    human, weak = frames
    h_train, h_test = algorithm.split(human, seed=0)
    w_train, w_test = algorithm.split(weak, seed=0)
    parts = {}
    fold = algorithm._fold

    def capture(spaces, heads, top, dom_w, dom_b, p, m):
        parts.update(spaces=spaces, heads=heads, top=top, dom_w=dom_w, dom_b=dom_b)
        return fold(spaces, heads, top, dom_w, dom_b, p, m)

    monkeypatch_module.setattr(algorithm, "_fold", capture)
    model = algorithm.fit(h_train["text"].tolist(), h_train["label"].to_numpy(),
                          w_train["text"].tolist(), w_train["label"].to_numpy(), seed=0)
    monkeypatch_module.undo()
    return model, h_test, w_test, parts


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_split_is_stratified_by_label_and_source(frames):
    _, frame = frames
    train, test = algorithm.split(frame, seed=0, test_size=0.25)
    assert len(train) + len(test) == len(frame)
    assert abs(len(test) / len(frame) - 0.25) < 0.01
    full = frame.groupby(["source", "label"]).size() / len(frame)
    held = test.groupby(["source", "label"]).size() / len(test)
    assert np.allclose(full.sort_index(), held.sort_index(), atol=0.01)
    with pytest.raises(ValueError, match="test_size must be between 0 and 1"):
        algorithm.split(frame, test_size=1.5)


def test_fit_on_sample_is_well_above_chance_on_both_label_sources(trained):
    model, h_test, w_test, _ = trained
    for rows in (h_test, w_test):
        metrics = algorithm.evaluate(model, rows)
        assert set(metrics) == {"macro_f1", "accuracy", "f1_negative", "f1_neutral", "f1_positive", "rows"}
        assert metrics["rows"] == len(rows)
        assert metrics["macro_f1"] > 0.8  # chance is about 0.33
        assert min(metrics["f1_negative"], metrics["f1_neutral"], metrics["f1_positive"]) > 0.6


def test_raw_tweets_and_precleaned_text_take_different_heads(trained):
    model, h_test, w_test, _ = trained
    assert model.routes(h_test["text"].tolist()).mean() < 0.2  # raw tweets: the human head
    assert model.routes(w_test["text"].tolist()).mean() > 0.9  # the lexicon-labelled style: head 1
    assert model.routes(["I LOVE the rally!!", "people vote today city"]).tolist() == [0, 1]


def test_predictions_follow_the_learned_signal(trained):
    model, _, _, _ = trained
    texts = ["I love the great rally!!! :)", "@bob worst tax policy, so sad :(", "Vote today in the city."]
    pred = model.predict(texts)
    assert pred.tolist() == [1, -1, 0]


def _explicit(parts: dict, raw: str) -> np.ndarray:
    """Level-1 heads + lexicon scores -> routing -> level-2 model, computed the long way (scikit-learn)."""
    q = algorithm.prepare(raw, algorithm.DEFAULT_PARAMS["max_chars"])
    xs = {n: parts["spaces"][n].matrix([algorithm._tokens(n, q)]) for n in algorithm.SPACES}
    z = [parts["heads"][h].decision_function(sp.hstack([xs[n] for n in names]).tocsr())[0]
         for h, names in algorithm.HEADS.items()]
    vader, (polarity, subjectivity) = lexicons._by_packages(q.light, q.tokens)  # the packages themselves
    z = np.r_[np.concatenate(z), [vader[k] for k in ("neg", "neu", "pos", "compound")], polarity, subjectivity]
    domain = (sp.hstack([xs["char"], xs["word"]]).tocsr() @ parts["dom_w"])[0] + parts["dom_b"]
    d = float(q.precleaned and domain > 0)
    return parts["top"].decision_function(np.r_[z * (1 - d), z * d, d][None])[0]


def test_folded_serving_weights_equal_the_explicit_stack(trained):
    model, h_test, w_test, parts = trained
    texts = [*h_test["text"].tolist()[:40], *w_test["text"].tolist()[:40],
             "NOT good at all!!! http://t.co/x @bob", "soooo happy &amp; proud", "zzz qqq"]
    explicit = np.array([_explicit(parts, t) for t in texts])
    assert np.allclose(model.decision_function(texts), explicit, atol=1e-9)


def test_tfidf_space_matches_scikit_learn(frames):
    from sklearn.feature_extraction.text import TfidfVectorizer

    human, _ = frames
    for space in algorithm.SPACES:
        toks = [algorithm._tokens(space, algorithm.prepare(t, 10**6)) for t in human["text"]]
        ours = algorithm.Space.fit(toks, 2)
        ref = TfidfVectorizer(analyzer=lambda d: d, min_df=2, sublinear_tf=True).fit(toks)
        assert ours.vocabulary == ref.vocabulary_
        assert abs(ours.matrix(toks) - ref.transform(toks)).max() < 1e-12


def test_normalisation_of_raw_tweets():
    assert tx.normalize(" @anna Sooooo GOOD &amp; fun http://t.co/xY z`s!!!!") == "soo good & fun z's!!"
    assert tx.light("Didn`t LOVE it www.x.org") == "Didn't LOVE it"
    assert tx.looks_precleaned("modi wins vote today") and not tx.looks_precleaned("Modi wins")
    assert not tx.looks_precleaned("vote for a change") and not tx.looks_precleaned("great win!")
    toks = tx.lexicon_tokens(tx.tokens("not good. good"), {"V": {"good": "P1"}})
    assert toks[:5] == ["not", "neg_good", "neg__VP1", ".", "good"] and "_VP1" in toks
    assert tx.char_grams("ab", 1, 3) == [" ", "a", "b", " ", " a", "ab", "b ", " ab", "ab "]


def test_serving_normalises_raw_text_as_training_did(trained):
    model, _, _, _ = trained
    # mentions, URLs and entities are dropped, elongations cut to two letters, before any feature
    same = [["@anna I love the rally sooo much", "@bob I love the rally soooooo much http://t.co/1"],
            ["Great news &amp; proud", "Great news & proud"]]
    for a, b in same:
        assert np.array_equal(model.predict_proba([a]), model.predict_proba([b]))


def test_predict_proba_shape_order_and_sum(trained):
    model, h_test, _, _ = trained
    texts = h_test["text"].tolist()[:20]
    proba = model.predict_proba(texts)
    assert proba.shape == (20, 3)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert (np.asarray(algorithm.CLASSES)[proba.argmax(axis=1)] == model.predict(texts)).all()


def test_save_load_round_trip_gives_the_same_predictions(trained, tmp_path):
    model, h_test, w_test, _ = trained
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "weights.npz"]
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["format"] == algorithm.FORMAT and meta["classes"] == [-1, 0, 1]
    assert set(meta["lexicon_versions"]) == {"vaderSentiment", "textblob"}
    loaded = algorithm.SentimentModel.load(tmp_path)
    texts = [*h_test["text"].tolist(), *w_test["text"].tolist()[:100]]
    assert np.allclose(loaded.predict_proba(texts), model.predict_proba(texts), rtol=0, atol=1e-12)
    assert np.array_equal(loaded.predict(texts), model.predict(texts))
    assert loaded.params == model.params


def test_load_refuses_missing_or_foreign_artifacts(trained, tmp_path):
    with pytest.raises(ValueError, match="not a sentiment model directory"):
        algorithm.SentimentModel.load(tmp_path)
    model, _, _, _ = trained
    model.save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps({**meta, "format": "other/9"}))
    with pytest.raises(ValueError, match="unsupported model format 'other/9'"):
        algorithm.SentimentModel.load(tmp_path)


def test_long_input_is_truncated_to_max_chars(trained):
    model, _, _, _ = trained
    long_text = "people love the great rally " + "worst sad hate " * 2000
    assert len(long_text) > model.max_chars
    assert np.array_equal(model.predict_proba([long_text]), model.predict_proba([long_text[: model.max_chars]]))


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
def test_empty_text_is_a_value_error(trained, bad):
    model, _, _, _ = trained
    with pytest.raises(ValueError, match="text 1 is empty or whitespace-only"):
        model.predict_proba(["fine text", bad])
    with pytest.raises(ValueError, match="text 0 is empty or whitespace-only"):
        model.predict([bad])


def test_text_without_any_known_feature_still_scores(trained):
    model, _, _, _ = trained
    proba = model.predict_proba(["http://t.co/only-a-link", "@someone", "\u2603\u2603"])
    assert np.allclose(proba.sum(axis=1), 1.0) and np.isfinite(proba).all()


def test_non_string_inputs_are_value_errors(trained):
    model, _, _, _ = trained
    with pytest.raises(ValueError, match="text 0 is int, expected str"):
        model.predict([3])
    with pytest.raises(ValueError, match="not a single string"):
        model.predict("a bare string")


def test_fit_rejects_bad_training_input():
    with pytest.raises(ValueError, match="label 2 is not one of"):
        algorithm.fit(["a", "b", "c"], np.array([-1, 0, 2]))
    with pytest.raises(ValueError, match="3 training texts but 2 labels"):
        algorithm.fit(["a", "b", "c"], np.array([-1, 0]))
    with pytest.raises(ValueError, match=r"lack class\(es\) \[1\]"):
        algorithm.fit(["a", "b"], np.array([-1, 0]))
    with pytest.raises(ValueError, match="at least 5 rows per class"):
        algorithm.fit(["a", "b", "c"], np.array([-1, 0, 1]))
    with pytest.raises(ValueError, match="text 1 is empty"):
        algorithm.fit(["a", " ", "c"], np.array([-1, 0, 1]))
    with pytest.raises(ValueError, match=r"unknown sentiment params \['depth'\]"):
        algorithm.fit(["a", "b", "c"], np.array([-1, 0, 1]), params={"depth": 3})
    with pytest.raises(ValueError, match="2 lexicon-labelled texts but 1 labels"):
        algorithm.fit(["a"] * 15, np.array([-1, 0, 1] * 5), ["x", "y"], np.array([1]))


def test_fit_is_deterministic_and_works_without_weak_rows(frames):
    human, _ = frames
    texts, labels = human["text"].tolist(), human["label"].to_numpy()
    a = algorithm.fit(texts, labels, seed=0)
    b = algorithm.fit(texts, labels, seed=0)
    for space in algorithm.SPACES:
        assert np.array_equal(a.weights[space], b.weights[space])
    assert not a.routes(["people vote today city", *texts[:20]]).any()  # one head only
    assert algorithm.evaluate(a, human)["macro_f1"] > 0.8


def test_evaluate_refuses_empty_frame(trained):
    model, h_test, _, _ = trained
    with pytest.raises(ValueError, match="empty frame"):
        algorithm.evaluate(model, h_test.iloc[:0])


def test_lexicon_scores_come_from_the_installed_packages():
    assert lexicons.word_classes()["V"]["good"].startswith("P")
    assert lexicons.word_classes()["T"]["bad"].startswith("N")
    s = lexicons.scores("This is GREAT!", tx.tokens("this is great!"))
    assert s.shape == (len(lexicons.NAMES),) and s[3] > 0.5 and s[4] > 0.5


def test_measure_entry_point_prints_the_cross_validation_json(tmp_path, capsys):
    from ml.models.sentiment import measure

    data.generate_sample(tmp_path, rows=300, seed=2)
    assert measure.main(["--data", str(tmp_path), "--folds", "2", "--latency-calls", "30"]) == 0
    report = json.loads(capsys.readouterr().out)
    cv = report["cross_validation"]
    assert len(cv["folds"]) == 2 and cv["human_macro_f1_mean"] > 0.7 and cv["lexicon_macro_f1_mean"] > 0.7
    assert report["data"]["human_rows"] == 149 and report["data"]["dropped_defect_rows"] == 5
    assert 0.0 < report["baseline_vader_human"]["macro_f1"] <= 1.0
    lat = report["latency_single_text"]
    assert lat["calls"] == 150 and lat["best_of_repeats"]["p50_ms"] <= lat["p99_ms"]


def test_load_prepares_the_serving_lexicon_scorers(trained, tmp_path):
    # Compiled and checked against the packages at load, not on the first request.
    model, *_ = trained
    model.save(tmp_path / "m")
    lexicons.scorers.cache_clear()
    algorithm.SentimentModel.load(tmp_path / "m")
    assert lexicons.scorers.cache_info().currsize == 1
