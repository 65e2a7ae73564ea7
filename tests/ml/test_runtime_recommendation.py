"""Recommendation runtime in a real MLServer: valid requests, every bad-input case (4xx + message),
`user_id` resolved through Feast's Redis keys, and the degraded fallback when Redis is stopped."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from ml.data.feast_repo import apply_and_materialize, write_repo
from ml.model_plugin import load_plugin
from ml.models.recommendation import features, train
from ml.models.recommendation.batch_scores import BatchScores
from ml.models.recommendation.plugin import REQUEST_FORM_ENV
from ml.serving.settings import ModelEntry

PLUGIN = load_plugin("recommendation")

pytestmark = [pytest.mark.ml, pytest.mark.integration]


@pytest.fixture(scope="module")
def served(tmp_path_factory, shared_mlserver, redis_factory):
    root = tmp_path_factory.mktemp("rec-runtime")
    data_dir = root / "data"
    PLUGIN.generate_sample(data_dir, seed=2)
    out = train.train(data_dir, root / "model", seed=0, baselines=False)
    redis = redis_factory()  # this module's own server
    features.write_parquet(data_dir, root / "parquet")
    apply_and_materialize(write_repo(root / "feast", redis.url), features.definitions(root / "parquet"))
    name = shared_mlserver.add(ModelEntry(
        "rec-rt", "recommendation", str(out.model_dir),
        {"redis_url": redis.url, "drift_min_samples": 20, "max_batch": 50},
    ))
    recent = pd.read_parquet(root / "parquet" / "reader_recent_books.parquet")
    return shared_mlserver, name, out, redis, recent, data_dir


def _books(data):
    return [{"name": "book_ids", "datatype": "INT64", "shape": [len(data)], "data": data}]


def test_valid_request_excludes_history(served, infer):
    server, name, out, *_ = served
    known = [int(b) for b in np.load(out.model_dir / "item_ids.npy")[:4]]
    resp = infer(server.url, name, _books(known), parameters={"k": 7})
    assert resp.status_code == 200, resp.text
    outputs = {o["name"]: o["data"] for o in resp.json()["outputs"]}
    assert len(outputs["book_id"]) == 7 and not set(outputs["book_id"]) & set(known)
    assert outputs["score"] == sorted(outputs["score"], reverse=True)
    assert outputs["degraded"] == [False]


@pytest.mark.parametrize(
    ("inputs", "parameters", "status", "needle"),
    [
        ([], None, 400, "book_ids"),
        ([{"name": "book_ids", "datatype": "BYTES", "shape": [1], "data": ["a"]}], None, 400, "integer datatype"),
        ([{"name": "book_ids", "datatype": "INT64", "shape": [1], "data": ["x"]}], None, 400, "non-numeric"),
        (_books([999999]), None, 422, "999999"),
        (_books(list(range(1, 60))), None, 422, "exceeds the limit"),
        (_books([1]), {"k": 0}, 422, "k must be between"),
        (_books([1]), {"k": "ten"}, 400, "parameter 'k'"),
        ([{"name": "user_id", "datatype": "INT64", "shape": [2], "data": [1, 2]}], None, 400, "exactly one"),
    ],
    ids=["missing", "wrong-datatype", "wrong-value-type", "unknown-book", "oversize", "k-range", "k-type",
         "two-users"],
)
def test_bad_requests_get_4xx_naming_the_problem(served, infer, inputs, parameters, status, needle):
    server, name, *_ = served
    resp = infer(server.url, name, inputs, parameters=parameters)
    assert resp.status_code == status, resp.text
    assert needle in resp.json()["error"]


def test_metadata_describes_the_inputs_and_outputs(served, infer, check_metadata):
    server, name, out, *_ = served
    inputs = _books([int(b) for b in np.load(out.model_dir / "item_ids.npy")[:2]])
    resp = infer(server.url, name, inputs, parameters={"k": 3})
    assert resp.status_code == 200, resp.text
    meta = check_metadata(server.url, name, {"inputs": inputs}, resp.json())
    assert {t["name"] for t in meta["inputs"]} == {"book_ids", "user_id", "k"}


def test_user_id_history_comes_from_feast_redis(served, infer):
    server, name, _out, _redis, recent, _data_dir = served
    row = recent.iloc[0]
    resp = infer(server.url, name, [{"name": "user_id", "datatype": "INT64", "shape": [1],
                                     "data": [int(row.user_id)]}], parameters={"k": 10})
    assert resp.status_code == 200, resp.text
    outputs = {o["name"]: o["data"] for o in resp.json()["outputs"]}
    assert outputs["degraded"] == [False]
    # The history read through the fast path is the one Feast materialized: none of it is recommended.
    assert not set(outputs["book_id"]) & {int(b) for b in row.recent_book_ids}


def test_a_stored_reader_is_answered_from_the_batch_scores_exactly_as_online(served, infer):
    """A user_id request for a reader of the reader view hits the version's batch scores; sending the same
    history as book_ids runs retrieval and ranking online: the two answers are the same."""
    server, name, out, _redis, recent, _data_dir = served
    assert (out.model_dir / "batch_scores.npz").is_file() and out.info["batch_scored_readers"] == len(recent)
    for row in recent.iloc[:3].itertuples():
        by_user = infer(server.url, name, [{"name": "user_id", "datatype": "INT64", "shape": [1],
                                            "data": [int(row.user_id)]}], parameters={"k": 8})
        history = [int(b) for b in row.recent_book_ids]
        by_history = infer(server.url, name, _books(history), parameters={"k": 8})
        assert by_user.status_code == by_history.status_code == 200, (by_user.text, by_history.text)
        assert by_user.json()["outputs"] == by_history.json()["outputs"]


def test_the_batch_scores_answer_only_while_the_stored_history_is_the_scored_one(served, infer, tmp_path):
    """A copy of the version whose table holds a marked answer for reader 0 and an outdated history for
    reader 1: reader 0 gets the table's answer (the lookup path is taken), reader 1 the online answer."""
    server, _name, out, redis, recent, _data_dir = served
    model_dir = tmp_path / "model"
    shutil.copytree(out.model_dir, model_dir)
    table = BatchScores.load(model_dir)
    first, second = (int(np.searchsorted(table.user_ids, int(u))) for u in recent.user_id.iloc[:2])
    table.book_ids[first, :3] = table.book_ids[first, :3][::-1]  # the marked answer
    assert table.key_indptr[second + 1] > table.key_indptr[second]
    table.key_rows[table.key_indptr[second]] += 1  # as if reader 1 had read another book since training
    table.save(model_dir)
    name = server.add(ModelEntry("rec-rt-batch-probe", "recommendation", str(model_dir), {"redis_url": redis.url}))
    answers = []
    for user in recent.user_id.iloc[:2]:
        resp = infer(server.url, name, [{"name": "user_id", "datatype": "INT64", "shape": [1], "data": [int(user)]}],
                     parameters={"k": 3})
        assert resp.status_code == 200, resp.text
        answers.append({o["name"]: o["data"] for o in resp.json()["outputs"]}["book_id"])
    assert answers[0] == table.book_ids[first, :3].tolist()
    online = infer(server.url, name, _books([int(b) for b in recent.recent_book_ids.iloc[1]]), parameters={"k": 3})
    assert answers[1] == {o["name"]: o["data"] for o in online.json()["outputs"]}["book_id"]


def test_bench_requests_by_user_id_are_answered_with_the_readers_stored_history(served, infer, monkeypatch):
    server, name, out, _redis, _recent, data_dir = served
    monkeypatch.setenv(REQUEST_FORM_ENV, "user_id")
    bodies = PLUGIN.sample_requests(data_dir, out.model_dir, n=5)
    assert [b["inputs"][0]["name"] for b in bodies] == ["user_id"] * 5
    for body in bodies:
        resp = infer(server.url, name, body["inputs"], parameters=body["parameters"])
        assert resp.status_code == 200, resp.text
        assert {o["name"]: o["data"] for o in resp.json()["outputs"]}["degraded"] == [False]


def test_an_unknown_reader_gets_popular_books_marked_degraded_like_an_unknown_card(served, infer, scrape):
    """`degraded` means the same for every model: the answer did not use the entity's stored features."""
    server, name, *_ = served
    resp = infer(server.url, name, [{"name": "user_id", "datatype": "INT64", "shape": [1], "data": [987654321]}],
                 parameters={"k": 5})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    outputs = {o["name"]: o["data"] for o in body["outputs"]}
    assert outputs["degraded"] == [True] and body["parameters"]["degraded"] is True
    assert len(outputs["book_id"]) == 5  # still an answer: the popular books
    assert f'mlplat_model_degraded_responses_total{{model="{name}",reason="unknown_entity"}}' in scrape(
        server.process)


def test_metrics_and_drift_gauge_are_exported(served, infer, scrape):
    server, name, out, *_ = served
    known = [int(b) for b in np.load(out.model_dir / "item_ids.npy")[:2]]
    for _ in range(60):
        assert infer(server.url, name, _books(known)).status_code == 200
    assert infer(server.url, name, _books([999999])).status_code == 422  # its own invalid request
    text = scrape(server.process)
    assert f'mlplat_model_prediction_count{{model="{name}"}}' in text
    assert f'mlplat_model_drift_psi{{feature="history_length",model="{name}"}}' in text
    assert f'mlplat_model_invalid_requests_total{{model="{name}",reason="unprocessable"}}' in text


def test_store_down_degrades_instead_of_failing(served, infer, scrape, redis_factory, tmp_path):
    """Stops a Redis of its own (and a model entry reading it): the module's store stays up for the others."""
    server, _name, out, _redis, recent, data_dir = served
    redis = redis_factory()
    features.write_parquet(data_dir, tmp_path / "parquet")
    apply_and_materialize(write_repo(tmp_path / "feast", redis.url), features.definitions(tmp_path / "parquet"))
    name = server.add(ModelEntry("rec-rt-stopped-store", "recommendation", str(out.model_dir),
                                 {"redis_url": redis.url, "drift_min_samples": 20, "max_batch": 50}))
    redis.stop()
    resp = infer(server.url, name, [{"name": "user_id", "datatype": "INT64", "shape": [1],
                                     "data": [int(recent.iloc[0].user_id)]}])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["parameters"]["degraded"] is True
    assert {o["name"]: o["data"] for o in body["outputs"]}["degraded"] == [True]
    assert f'mlplat_model_degraded_responses_total{{model="{name}",reason="feature_store_error"}} 1.0' in scrape(
        server.process
    )


def test_prediction_cache_answers_a_repeated_history_from_redis(served, infer, scrape):
    """The same history (in any order) and k twice: one miss, then a hit with the same answer."""
    server, _name, out, redis, *_ = served
    name = server.add(ModelEntry("rec-rt-cached", "recommendation", str(out.model_dir),
                                 {"redis_url": redis.url, "prediction_cache_ttl_s": 60}))
    known = [int(b) for b in np.load(out.model_dir / "item_ids.npy")[:5]]
    first = infer(server.url, name, _books(known), parameters={"k": 6})
    second = infer(server.url, name, _books(known[::-1]), parameters={"k": 6})
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json()["outputs"] == second.json()["outputs"]
    text = scrape(server.process)
    assert f'mlplat_model_cache_requests_total{{model="{name}",result="miss"}} 1.0' in text
    assert f'mlplat_model_cache_requests_total{{model="{name}",result="hit"}} 1.0' in text
