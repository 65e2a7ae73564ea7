"""Recommendation algorithm: protocol, metrics, fit/evaluate on generated data, serving behaviour."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from ml.models.recommendation import algorithm as alg
from ml.models.recommendation import data, synthetic
from ml.models.recommendation.ease import _inverse_cholesky, _inverse_woodbury, ease_weights
from ml.models.recommendation.protocol import ndcg_at_k, recall_at_k
from ml.models.recommendation.tuning import tune

SMALL_EASE = {"l2": 20.0}  # a second, differently regularised model for pruning and persistence tests


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> data.RecData:
    out = tmp_path_factory.mktemp("goodbooks")
    synthetic.generate_sample(out, users=300, books=400, seed=0)
    return data.load(out)


@pytest.fixture(scope="module")
def split(sample):
    return alg.split_users(sample.ratings, test_fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def model(sample, split) -> alg.Recommender:
    return alg.fit(split[0], sample.books)  # the tuned defaults, as the training pipeline calls it


def _ratings(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "book_id", "rating"])


# -- protocol -------------------------------------------------------------------------------------
def test_split_users_holds_out_whole_users(sample):
    train, test = alg.split_users(sample.ratings, test_fraction=0.2, seed=5)
    assert set(train["user_id"]).isdisjoint(test["user_id"])
    assert len(train) + len(test) == len(sample.ratings)
    assert test["user_id"].nunique() == 60
    again = alg.split_users(sample.ratings, test_fraction=0.2, seed=5)[1]
    assert test.equals(again)
    other = alg.split_users(sample.ratings, test_fraction=0.2, seed=6)[1]
    assert set(other["user_id"]) != set(test["user_id"])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 0.0001])
def test_split_users_rejects_impossible_fractions(sample, fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        alg.split_users(sample.ratings, test_fraction=fraction)


def test_history_split_follows_the_protocol_exactly():
    rows = [(1, b, 5 if b <= 7 else 3) for b in range(1, 11)]  # 10 ratings, books 1..7 liked
    rows += [(2, b, 2) for b in range(1, 11)]  # nothing >= 4: must be skipped
    rows += [(3, b, 4) for b in range(20, 25)]  # 5 ratings -> 4 history, 1 held out
    for seed in range(5):
        cases = alg.history_split(_ratings(rows), seed=seed)
        by_user = {c.user_id: c for c in cases}
        assert 2 not in by_user
        c3 = by_user[3]
        assert len(c3.history) == 4 and len(c3.relevant) == 1
        assert set(c3.history) | set(c3.relevant) == set(range(20, 25))
        if 1 in by_user:
            c1 = by_user[1]
            assert len(c1.history) == 8 and len(set(c1.history)) == 8
            rest = set(range(1, 11)) - set(c1.history)
            assert c1.relevant == sorted(b for b in rest if b <= 7) and c1.relevant
        assert cases.skipped_users == 3 - len(cases)
    # Deterministic per seed, different across seeds.
    assert alg.history_split(_ratings(rows), seed=7) == alg.history_split(_ratings(rows), seed=7)
    histories = {tuple(alg.history_split(_ratings(rows), seed=s)[-1].history) for s in range(6)}
    assert len(histories) > 1


def test_history_split_skips_users_whose_rest_has_no_liked_book():
    # Only one liked book; whenever it lands in the history the user is skipped and counted.
    rows = [(9, b, 5 if b == 1 else 1) for b in range(1, 6)]
    outcomes = [alg.history_split(_ratings(rows), seed=s) for s in range(20)]
    assert {len(o) + o.skipped_users for o in outcomes} == {1}
    assert any(o.skipped_users for o in outcomes) and any(len(o) for o in outcomes)


def test_metrics_by_hand():
    relevant = {1, 2, 3}
    assert ndcg_at_k([1, 2, 3], relevant, 10) == pytest.approx(1.0)
    assert ndcg_at_k([9, 1], relevant, 10) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3) + 0.5))
    assert ndcg_at_k([9, 8], relevant, 10) == 0.0
    assert recall_at_k([1, 9, 2], relevant, 10) == pytest.approx(2 / 3)
    assert recall_at_k(list(range(1, 11)), set(range(1, 21)), 10) == 1.0  # capped at k


# -- learning -------------------------------------------------------------------------------------
def test_fit_evaluate_on_sample_beats_popularity_by_far(model, split):
    train, test = split
    metrics = alg.evaluate(model, test, seed=0)
    assert {"ndcg@10", "recall@10", "users", "skipped_users"} <= set(metrics)
    assert metrics["users"] + metrics["skipped_users"] == test["user_id"].nunique()
    base = alg.evaluate_baselines(train, test, seed=0)
    assert set(base) == {"popularity", "item_knn", "ease_untuned"}
    chance = 10 / 400  # a random list over 400 books finds ~10/400 of the relevant ones
    assert base["popularity"]["ndcg@10"] > chance
    assert metrics["ndcg@10"] > 3 * base["popularity"]["ndcg@10"]
    assert metrics["ndcg@10"] > 6 * chance and metrics["recall@10"] > 6 * chance
    assert all(b["users"] == metrics["users"] for b in base.values())


def test_woodbury_and_cholesky_inverses_agree():
    rng = np.random.default_rng(1)
    x = sp.csr_matrix((rng.random((50, 120)) < 0.1).astype(np.float32))
    lam = 3.0 + rng.random(120)
    assert np.allclose(_inverse_woodbury(x, lam), _inverse_cholesky(x, lam), atol=1e-6)
    # And both equal the textbook definition.
    dense = x.toarray().astype(np.float64)
    ref = np.linalg.inv(dense.T @ dense + np.diag(lam))
    assert np.allclose(_inverse_cholesky(x, lam), ref, atol=1e-5)
    b = ease_weights(x, l2=3.0)
    assert b.dtype == np.float32 and b.flags["C_CONTIGUOUS"] and np.all(np.diag(b) == 0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"model": "mf"}, r"params\['model'\] must be one of"),
        ({"lambda": 3}, r"unknown parameter\(s\) \['lambda'\]"),
        ({"min_item_ratings": 0}, "min_item_ratings"),
        ({"l2": 0.0}, "l2 must be > 0"),
        ({"min_item_ratings": 10_000}, "no book has >= 10000 ratings"),
    ],
)
def test_fit_rejects_bad_params(split, sample, params, message):
    with pytest.raises(ValueError, match=message):
        alg.fit(split[0], sample.books, params)


def test_fit_requires_books_for_every_rated_book(split, sample):
    books = sample.books[sample.books["book_id"] != split[0]["book_id"].iloc[0]]
    with pytest.raises(ValueError, match=r"rated book id\(s\) not in books"):
        alg.fit(split[0], books, SMALL_EASE)


# -- serving behaviour ----------------------------------------------------------------------------
def test_recommend_excludes_history_and_returns_sorted_scores(model, split):
    history = split[1].groupby("user_id")["book_id"].apply(list).iloc[0][:15]
    recs = model.recommend(history, k=10)
    assert len(recs) == 10
    ids = [b for b, _ in recs]
    assert not set(ids) & set(history) and len(set(ids)) == 10
    scores = [s for _, s in recs]
    assert scores == sorted(scores, reverse=True)
    assert all(b in model.known_items for b in ids)
    assert model.title(ids[0]) == model.catalog[ids[0]][0] != ""


def test_unknown_history_items_raise_a_client_error_listing_them(model):
    with pytest.raises(alg.UnknownItemError, match=r"unknown book id\(s\) in history: \[5000, 70000\]") as err:
        model.recommend([1, 70000, 5000, 70000], k=5)
    assert isinstance(err.value, ValueError) and err.value.unknown == [5000, 70000]
    with pytest.raises(alg.UnknownItemError):
        model.title(99999)


@pytest.mark.parametrize(("history", "k"), [([1, "2"], 5), ("12", 5), ([1.5], 5), ([1], 0), ([1], True)])
def test_bad_request_shapes_are_value_errors(model, history, k):
    with pytest.raises(ValueError):
        model.recommend(history, k=k)


def test_empty_history_returns_most_popular_books(model, split):
    recs = model.recommend([], k=5)
    counts = split[0]["book_id"].value_counts()
    assert [b for b, _ in recs] == counts.index[:5].tolist() or [s for _, s in recs] == counts.iloc[:5].tolist()


def test_batch_matches_single_requests(model, split):
    histories = [*split[1].groupby("user_id")["book_id"].apply(list).iloc[:8].tolist(), []]
    batch = model.recommend_batch(histories, k=7)
    for h, got in zip(histories, batch, strict=True):
        single = model.recommend(h, k=7)
        assert [b for b, _ in got] == [b for b, _ in single]
        assert np.allclose([s for _, s in got], [s for _, s in single], rtol=1e-4, atol=1e-6)


def test_k_larger_than_catalogue_returns_every_unseen_item(model):
    recs = model.recommend([int(model.item_ids[0])], k=10_000)
    assert len(recs) == len(model.item_ids) - 1


@pytest.mark.parametrize("params", [{**SMALL_EASE, "neighbors": None}, {**SMALL_EASE, "neighbors": 30}])
def test_save_load_round_trip_is_identical_and_pickle_free(sample, split, tmp_path, params):
    model = alg.fit(split[0], sample.books, params)
    model.save(tmp_path / "m")
    assert {p.suffix for p in (tmp_path / "m").iterdir()} <= {".npy", ".npz", ".json"}
    loaded = alg.Recommender.load(tmp_path / "m")
    histories = split[1].groupby("user_id")["book_id"].apply(list).tolist()
    assert loaded.recommend_batch(histories, 10) == model.recommend_batch(histories, 10)
    assert loaded.known_items == model.known_items == set(sample.books["book_id"])
    assert loaded.title(1) == sample.books.loc[sample.books["book_id"] == 1, "title"].item()
    assert json.loads((tmp_path / "m" / "meta.json").read_text())["params"]["l2"] == 20.0
    for f in (tmp_path / "m").glob("*.np*"):  # numeric arrays only: loading never needs pickle
        if f.suffix == ".npy":
            np.load(f, allow_pickle=False)


def test_load_refuses_a_directory_without_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"meta\.json missing"):
        alg.Recommender.load(tmp_path)


def test_pruned_model_stays_close_to_dense(sample, split):
    dense = alg.fit(split[0], sample.books, {**SMALL_EASE, "neighbors": None})
    pruned = alg.fit(split[0], sample.books, {**SMALL_EASE, "neighbors": 100})
    dense_m = alg.evaluate(dense, split[1])["ndcg@10"]
    pruned_m = alg.evaluate(pruned, split[1])["ndcg@10"]
    assert sp.issparse(pruned.weights) and pruned.weights.nnz <= 100 * len(pruned.item_ids)
    assert pruned_m > 0.9 * dense_m


def test_tuning_uses_only_training_users(split):
    train, _test = split
    result = tune(train, grid={"l2": [5.0, 50.0]}, post_grid={"pop_exponent": [0.0, 0.3]}, seed=0)
    assert len(result["table"]) == 4
    assert result["best_params"]["l2"] in (5.0, 50.0)
    assert result["fit_users"] + result["validation_users"] <= train["user_id"].nunique()
    assert result["best"]["ndcg@10"] == max(r["ndcg@10"] for r in result["table"])


def test_entry_point_prints_metrics_json(tmp_path, capsys):
    synthetic.generate_sample(tmp_path, users=120, books=150, seed=2)
    assert alg.main(["--data", str(tmp_path), "--params", json.dumps(SMALL_EASE)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"]["ndcg@10"] > report["baselines"]["popularity"]["ndcg@10"]
    assert report["latency_k10"]["p50_ms"] <= report["latency_k10"]["p99_ms"]


def test_baselines_do_not_inherit_the_tuned_defaults(split, monkeypatch):
    train, test = split
    before = alg.evaluate_baselines(train, test, seed=0)
    monkeypatch.setitem(alg.DEFAULT_PARAMS, "pop_exponent", 0.9)
    monkeypatch.setitem(alg.DEFAULT_PARAMS, "low_weight", 0.1)
    after = alg.evaluate_baselines(train, test, seed=0)
    for name in before:
        assert before[name]["ndcg@10"] == after[name]["ndcg@10"], name
