"""The two-stage recommender on the small generated data: FAISS retrieval (exact, history removed, one
OpenMP thread), ranking features, the LightGBM ranker, save/load of one model version (index included),
and the serving interface the runtime relies on."""

from __future__ import annotations

import faiss
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from ml.model_plugin import load_plugin
from ml.models.recommendation import data, synthetic
from ml.models.recommendation.batch_scores import DEPTH, BatchScores
from ml.models.recommendation.features import recent_histories
from ml.models.recommendation.plugin import REQUEST_FORM_ENV
from ml.models.recommendation.protocol import history_split, score_cases, split_users
from ml.models.recommendation.rank_features import FEATURE_NAMES, ItemTable, build_item_table, request_features
from ml.models.recommendation.recommender import Recommender, UnknownItemError
from ml.models.recommendation.retrieval import INDEX_FILE, Retriever, _contains, factorise
from ml.models.recommendation.two_stage import (
    TwoStageRecommender,
    fit_two_stage,
    load_model,
    retrieval_recall,
)

pytestmark = [pytest.mark.ml]

SMALL = {"dim": 32, "n_estimators": 40, "candidates": 50, "rank_folds": 2}  # fast; quality is asserted loosely


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("two-stage")
    synthetic.generate_sample(root, seed=0)
    rec = data.load(root)
    train, test = split_users(rec.ratings, 0.2, 0)
    model = fit_two_stage(train, rec.books, rec.genres, SMALL, seed=0)
    return rec, train, test, model, root


def test_retrieval_is_exact_inner_product_without_the_history():
    rng = np.random.default_rng(0)
    history_emb = rng.normal(size=(300, 16)).astype(np.float32)
    item_emb = rng.normal(size=(300, 16)).astype(np.float32)
    retriever = Retriever.build(history_emb, item_emb)
    histories = [np.array([3, 7, 11]), np.array([0])]
    rows, scores = retriever.search(histories, 20)
    for history, got, got_scores in zip(histories, rows, scores, strict=True):
        query = history_emb[history].sum(axis=0)
        brute = item_emb @ query
        brute[history] = -np.inf
        expected = np.argsort(-brute, kind="stable")[:20]
        assert set(got) == set(expected) and not set(got) & set(history)
        np.testing.assert_allclose(got_scores, np.sort(brute[expected])[::-1], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="candidates must be >= 1"):
        retriever.search(histories, 0)


def test_factorise_reproduces_a_low_rank_weight_matrix_and_checks_shapes():
    rng = np.random.default_rng(1)
    readers = (rng.random((20, 60)) < 0.2).astype(np.float32)
    x = sp.csr_matrix(np.vstack([readers, readers]))  # 40 users, rank <= 20
    weights = np.asarray((x.T @ x).todense(), dtype=np.float32)  # row space = X's right singular vectors
    history, item = factorise(weights, x, dim=25, seed=0)
    assert history.shape == item.shape == (60, 25)
    np.testing.assert_allclose(history @ item.T, weights, atol=1e-3)
    with pytest.raises(ValueError, match="embedding dim"):
        factorise(weights, x, dim=40)
    with pytest.raises(ValueError, match="share the items"):
        factorise(weights[:50, :50], x, dim=8)


def test_match_features_count_shared_authors_and_series():
    books = pd.DataFrame({
        "book_id": [1, 2, 3, 4],
        "title": ["A (Saga, #1)", "B (Saga, #2)", "C", "D (Other, #1)"],
        "authors": ["Ann Lee, Bob", "Ann Lee", "Cy", "Dee"],
        "average_rating": [4.0, 4.1, 3.0, 3.5], "ratings_count": [10, 20, 30, 40],
        "original_publication_year": [2000.0, 2001.0, np.nan, 1999.0],
    })
    ratings = pd.DataFrame({"user_id": [1, 1, 2, 2], "book_id": [1, 2, 3, 4], "rating": [5, 4, 2, 5]})
    items = build_item_table(np.array([1, 2, 3, 4]), ratings, books, None)
    eye = sp.csr_matrix(np.eye(4, dtype=np.float32))
    x = request_features(np.array([0]), np.array([1, 2, 3]), np.zeros(3, np.float32), eye, eye, items)
    column = {name: x[:, i] for i, name in enumerate(FEATURE_NAMES)}
    assert x.shape == (3, len(FEATURE_NAMES))
    assert list(column["author_count"]) == [1, 0, 0]  # "Ann Lee" is the first author of books 1 and 2
    assert list(column["series_count"]) == [1, 0, 0]  # "Saga"
    assert list(column["series_number"]) == [2, 0, 1]
    assert column["train_mean_rating"][0] == 4.0 and column["average_rating"][2] == pytest.approx(3.5)


def test_two_stage_beats_popularity_and_reports_retrieval_recall(fitted):
    _, train, test, model, _ = fitted
    cases = history_split(test, seed=0)
    popular = Recommender(model.item_ids, None, model.stage.base.popularity, model.stage.base.catalog)
    ndcg = score_cases(model, cases)["ndcg@10"]
    assert ndcg > score_cases(popular, cases)["ndcg@10"] + 0.05
    assert retrieval_recall(model, cases) > 0.6  # 50 of 400 books hold most of what a reader will like
    assert model.info["ranking_users"] == train["user_id"].nunique()  # every training user, cross-fitted
    assert 1 <= model.info["ranker_trees"] <= SMALL["n_estimators"]  # early stopping on held-out queries
    assert faiss.omp_get_max_threads() == 1  # pinned as measured


def test_save_load_round_trip_ships_the_index(fitted, tmp_path):
    _, _, test, model, _ = fitted
    model.save(tmp_path)
    assert (tmp_path / INDEX_FILE).is_file()
    loaded = load_model(tmp_path)
    assert isinstance(loaded, TwoStageRecommender)
    histories = [c.history for c in history_split(test, seed=0)[:20]]
    assert loaded.recommend_batch(histories, 10) == model.recommend_batch(histories, 10)
    assert loaded.recommend(histories[0], 5) == model.recommend_batch(histories[:1], 5)[0]


def test_serving_interface_edges(fitted):
    _, _, test, model, _ = fitted
    history = history_split(test, seed=0)[0].history
    top = model.recommend(history, 10)
    assert len(top) == 10 and not {b for b, _ in top} & set(history)
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    popular = model.recommend([], 3)
    assert [b for b, _ in popular] == [b for b, _ in model.stage.base.recommend([], 3)]
    with pytest.raises(UnknownItemError, match="999999"):
        model.recommend([999999], 5)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        model.recommend(history, 0)


def test_bad_parameters_are_refused_by_name(fitted):
    rec, train, *_ = fitted
    with pytest.raises(ValueError, match="unknown parameter"):
        fit_two_stage(train, rec.books, params={"depth": 3})
    with pytest.raises(ValueError, match="rank_folds"):
        fit_two_stage(train, rec.books, params={"rank_folds": 1})
    with pytest.raises(ValueError, match="early_stopping_share"):
        fit_two_stage(train, rec.books, params={"early_stopping_share": 0.9})
    with pytest.raises(ValueError, match="must be 'ease'"):
        fit_two_stage(train, rec.books, params={"model": "knn"})


def test_item_table_round_trip(fitted, tmp_path):
    *_, model, _ = fitted
    model.stage.items.save(tmp_path)
    loaded = ItemTable.load(tmp_path)
    np.testing.assert_array_equal(loaded.series, model.stage.items.series)
    np.testing.assert_array_equal(loaded.genres, model.stage.items.genres)


def _features_over_all_items(history, candidates, retrieval_scores, ease, knn, items):
    """The request features as first written (sums over every item, then the candidates picked out):
    the oracle that the candidates-only computation must reproduce bit for bit."""
    n = ease.shape[0]

    def row_sums(w):
        if len(history) == 0:
            return np.zeros(n, np.float32), np.zeros(n, np.float32)
        columns = np.concatenate([w.indices[w.indptr[r]:w.indptr[r + 1]] for r in history])
        values = np.concatenate([w.data[w.indptr[r]:w.indptr[r + 1]] for r in history])
        peak = np.zeros(n, np.float32)
        np.maximum.at(peak, columns, values)
        return np.bincount(columns, weights=values, minlength=n).astype(np.float32), peak

    def shared(group):
        ids = group[history]
        ids = ids[ids >= 0]
        cand = group[candidates]
        if not len(ids):
            return np.zeros(len(candidates), np.float32)
        counts = np.bincount(ids, minlength=int(group.max()) + 1)
        return np.where(cand >= 0, counts[np.clip(cand, 0, None)], 0).astype(np.float32)

    ease_c = row_sums(ease)[0][candidates]
    knn_all, knn_peak = row_sums(knn)
    rank = np.empty(len(ease_c), np.float32)
    rank[np.argsort(-ease_c, kind="stable")] = np.arange(len(ease_c), dtype=np.float32)
    hist_len = float(len(history))
    numeric = items.numeric[candidates]
    m = len(candidates)
    if len(history):
        genre = items.genres[candidates] @ items.genres[history].mean(axis=0)
        author, series = shared(items.author), shared(items.series)
        hist_count = float(items.numeric[history][:, 0].mean())
        hist_avg = float(items.numeric[history][:, 3].mean())
    else:
        genre = author = series = np.zeros(m, np.float32)
        hist_count = hist_avg = 0.0
    columns = [retrieval_scores, np.arange(m, dtype=np.float32), ease_c, rank,
               ease_c / (float(np.abs(ease_c).sum()) or 1.0), knn_all[candidates], knn_peak[candidates], genre, author,
               author / max(hist_len, 1.0), series, items.series_number[candidates], *numeric.T,
               np.full(m, hist_len), np.full(m, hist_count), np.full(m, hist_avg), numeric[:, 0] - hist_count]
    return np.column_stack(columns).astype(np.float32)


def test_candidate_features_equal_the_all_items_computation_bit_for_bit(fitted):
    _, _, test, model, _ = fitted
    stage = model.stage
    histories = [np.array(stage.base._indices(c.history), dtype=np.int64) for c in history_split(test, seed=0)]
    histories += [np.array([], dtype=np.int64), histories[0][:1], np.arange(len(model.item_ids), dtype=np.int64)[::3]]
    rows, scores = stage.candidates(histories, model.n_candidates)
    for history, r, s in zip(histories, rows, scores, strict=True):
        cand, x = stage.features(history, r, s)
        expected = _features_over_all_items(history, cand, s[r >= 0], stage.base.weights, stage.knn, stage.items)
        assert x.dtype == np.float32 and np.array_equal(x, expected)


def test_history_filter_of_retrieval_matches_isin():
    rng = np.random.default_rng(3)
    for size in (0, 1, 5, 40):
        history = np.sort(rng.choice(500, size=size, replace=False)).astype(np.int64)
        rows = rng.integers(-1, 500, size=120)
        assert np.array_equal(_contains(history, rows), np.isin(rows, history))


def test_batch_scores_answer_exactly_what_the_online_path_answers(fitted, tmp_path):
    rec, _, _, model, _ = fitted
    readers = recent_histories(rec.ratings)
    table = BatchScores.build(model, readers.to_dict(), DEPTH)
    table.save(tmp_path)
    loaded = BatchScores.load(tmp_path)
    assert loaded is not None and len(loaded.user_ids) == rec.ratings["user_id"].nunique()
    for i, (user, history) in enumerate(readers.items()):  # every reader of the sample at the deepest k
        rows = model.history_rows(history)
        for k in (DEPTH, 10, 1) if i % 10 == 0 else (DEPTH,):
            ids, scores = loaded.lookup(user, rows, k)
            online = model.recommend(history, k)
            assert ids.tolist() == [b for b, _ in online]
            assert np.array_equal(scores, np.array([s for _, s in online], dtype=np.float32))
    user, history = next(iter(readers.items()))
    rows = model.history_rows(history)
    assert loaded.lookup(user, rows[:-1], 10) is None  # the stored history changed: the online path answers
    assert loaded.lookup(-5, rows, 10) is None  # a reader the table does not know
    assert loaded.lookup(user, rows, DEPTH + 1) is None
    assert model.history_rows(list(history)[::-1] + list(history)).tolist() == rows.tolist()  # order, repeats
    assert BatchScores.load(tmp_path / "absent") is None
    # A reader with no modelled book gets the popular books online (their top k is not a prefix of a top 100).
    assert BatchScores.build(model, {1: [], 2: history}, DEPTH).user_ids.tolist() == [2]


def test_an_unknown_request_form_for_the_bench_is_refused_by_name(monkeypatch, tmp_path):
    monkeypatch.setenv(REQUEST_FORM_ENV, "both")
    with pytest.raises(ValueError, match=f"{REQUEST_FORM_ENV}='both': expected one of book_ids, user_id"):
        load_plugin("recommendation").sample_requests(tmp_path, tmp_path)
