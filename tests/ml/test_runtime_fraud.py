"""Fraud runtime in a real MLServer: valid requests with features read from Feast's Redis keys,
every bad-input case (4xx + message), and the fallback when Redis hangs (timeout) and when it is
stopped mid-test (degraded flag + counter, never a failure). A test that stops a Redis starts it
itself, so the tests pass in any order."""

from __future__ import annotations

import os
import re
import signal

import pytest

from contracts.feast import DEFAULT_ONLINE_CLIENT
from ml.data.feast_repo import apply_and_materialize, write_repo
from ml.model_plugin import load_plugin
from ml.models.fraud import data, features, train
from ml.models.fraud.plugin import request_body
from ml.serving.online import CLIENTS, OnlineFeatureReader, ViewSpec
from ml.serving.settings import ModelEntry

PLUGIN = load_plugin("fraud")

pytestmark = [pytest.mark.ml, pytest.mark.integration]


@pytest.fixture(scope="module")
def served(tmp_path_factory, shared_mlserver, redis_factory):
    root = tmp_path_factory.mktemp("fraud-runtime")
    data_dir = root / "data"
    PLUGIN.generate_sample(data_dir, seed=5)
    out = train.train(data_dir, root / "model", seed=0)
    redis = redis_factory()  # this module's own server: a test pauses it (and resumes it)
    features.write_parquet(data_dir, root / "parquet")
    store = apply_and_materialize(write_repo(root / "feast", redis.url), features.definitions(root / "parquet"))
    name = shared_mlserver.add(ModelEntry(
        "fraud-rt", "fraud", str(out.model_dir),
        {"redis_url": redis.url, "feature_timeout_ms": 50, "max_batch": 8, "drift_min_samples": 20},
    ))
    transactions = data.load(data_dir)
    return shared_mlserver, name, redis, store, transactions, data_dir, out


def _body(served, **override):
    *_, transactions, _data_dir, _out = served
    body = request_body(transactions.iloc[0])
    for inp in body["inputs"]:
        if inp["name"] in override:
            value = override[inp["name"]]
            if value is None:
                body["inputs"].remove(inp)
            else:
                inp.update(value)
    return body["inputs"]


def _degraded_count(text: str, name: str, reason: str) -> float:
    m = re.search(rf'mlplat_model_degraded_responses_total{{model="{name}",reason="{reason}"}} ([\d.]+)', text)
    return float(m.group(1)) if m else 0.0


def test_fast_path_reads_what_feast_materialized(served, loop):
    """Keeps the hand-written key layout in sync with Feast: Feast writes, the fast path reads (every client)."""
    _server, _name, redis, store, transactions, *_ = served
    ids = [int(t) for t in transactions["transaction_id"].iloc[:5]]
    refs = [f"{features.CARD_VIEW}:{f}" for f in features.CARD_FEATURES] + [
        f"{features.DEVICE_VIEW}:{f}" for f in features.DEVICE_FEATURES]
    sdk = store.get_online_features(refs, [{"card_id": i, "device_id": i} for i in ids]).to_dict()
    for client in CLIENTS:
        reader = OnlineFeatureReader(redis.url, "mlplat", [
            ViewSpec(features.DEVICE_VIEW, "device_id", features.DEVICE_FEATURES),
            ViewSpec(features.CARD_VIEW, "card_id", features.CARD_FEATURES),
        ], client=client, timeout_s=2.0)  # the layout is under test, not the 20 ms read bound on a busy runner
        rows = loop.run_until_complete(reader.fetch_many([{"card_id": i, "device_id": i} for i in ids]))
        for row, (i, fast) in enumerate(zip(ids, rows, strict=True)):
            for f in features.ONLINE_FEATURES:
                assert fast[f] == sdk[f][row], (client, f)
                assert fast[f] == transactions.loc[transactions.transaction_id == i, f].item()


def test_valid_request_is_scored_with_store_features(served, infer):
    server, name, *_ = served
    resp = infer(server.url, name, _body(served))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    outputs = {o["name"]: o["data"] for o in body["outputs"]}
    assert 0.0 <= outputs["fraud_probability"][0] <= 1.0
    assert outputs["degraded"] == [False] and body["parameters"]["degraded"] is False


def test_metadata_describes_the_inputs_and_outputs(served, infer, check_metadata):
    server, name, *_ = served
    inputs = _body(served)
    resp = infer(server.url, name, inputs)
    assert resp.status_code == 200, resp.text
    meta = check_metadata(server.url, name, {"inputs": inputs}, resp.json())
    assert len(meta["inputs"]) == len(inputs)  # every input is required


def test_unknown_entity_uses_defaults_and_is_degraded(served, infer, scrape):
    server, name, *_ = served
    resp = infer(server.url, name, _body(served, card_id={"data": [987654321]}))
    assert resp.status_code == 200, resp.text
    assert {o["name"]: o["data"] for o in resp.json()["outputs"]}["degraded"] == [True]
    assert _degraded_count(scrape(server.process), name, "unknown_entity") >= 1


@pytest.mark.parametrize(
    ("override", "status", "needle"),
    [
        ({"amount": None}, 400, "missing input(s) amount"),
        ({"card_id": None}, 400, "card_id"),
        ({"amount": {"datatype": "BYTES", "data": ["12.5"]}}, 400, "'amount' must have a numeric datatype"),
        ({"amount": {"data": ["lots"]}}, 400, "non-numeric value 'lots'"),
        ({"transaction_hour": {"datatype": "FP32", "data": [3.5]}}, 400, "integer datatype"),
        ({"merchant_category": {"datatype": "INT64", "data": [3]}}, 400, "datatype BYTES"),
        ({"transaction_hour": {"data": [25]}}, 422, "0-23, got 25"),
        ({"merchant_category": {"data": ["Casino"]}}, 422, "unknown value(s) ['Casino']"),
        ({"foreign_transaction": {"data": [2]}}, 422, "'foreign_transaction' must be 0 or 1"),
        ({"amount": {"data": [-5.0]}}, 422, "'amount' must be >= 0"),
        ({"amount": {"shape": [2], "data": [1.0, 2.0]}}, 400, "different lengths"),
    ],
    ids=["missing-amount", "missing-entity", "wrong-datatype", "wrong-value", "float-hour", "category-type",
         "hour-range", "unknown-category", "flag-range", "negative-amount", "ragged"],
)
def test_bad_requests_get_4xx_naming_the_problem(served, infer, override, status, needle):
    server, name, *_ = served
    resp = infer(server.url, name, _body(served, **override))
    assert resp.status_code == status, resp.text
    assert needle in resp.json()["error"]


def test_oversize_batch_is_refused(served, infer):
    server, name, *_ = served
    inputs = _body(served)
    for inp in inputs:
        inp["shape"], inp["data"] = [9], inp["data"] * 9
    resp = infer(server.url, name, inputs)
    assert resp.status_code == 422 and "exceeds the limit of 8" in resp.json()["error"]


def test_metrics_include_prediction_histogram_and_drift(served, infer, scrape):
    server, name, *_ = served
    for _ in range(60):
        assert infer(server.url, name, _body(served)).status_code == 200
    text = scrape(server.process)
    assert f'mlplat_model_prediction_count{{model="{name}"}}' in text
    assert f'mlplat_model_drift_psi{{feature="score",model="{name}"}}' in text
    assert f'mlplat_model_online_feature_fetch_seconds_count{{model="{name}"}}' in text


def test_hung_store_times_out_into_defaults(served, infer, scrape):
    server, name, redis, *_ = served
    before = _degraded_count(scrape(server.process), name, "feature_store_error")
    os.kill(redis.proc.pid, signal.SIGSTOP)  # accepts TCP, never answers: the timeout path
    try:  # without the feature timeout the request would hang until `infer`'s client gives up and fails
        resp = infer(server.url, name, _body(served))
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    assert resp.status_code == 200, resp.text
    assert resp.json()["parameters"]["degraded"] is True
    assert _degraded_count(scrape(server.process), name, "feature_store_error") == before + 1


def test_store_stopped_mid_test_degrades_instead_of_failing(served, infer, scrape, redis_factory, tmp_path):
    """Stops a Redis of its own (and a model entry reading it): the module's store stays up for the others."""
    server, _name, _redis, _store, _transactions, data_dir, out = served
    redis = redis_factory()
    features.write_parquet(data_dir, tmp_path / "parquet")
    apply_and_materialize(write_repo(tmp_path / "feast", redis.url), features.definitions(tmp_path / "parquet"))
    name = server.add(ModelEntry("fraud-rt-stopped-store", "fraud", str(out.model_dir),
                                 {"redis_url": redis.url, "feature_timeout_ms": 50, "max_batch": 8}))
    assert infer(server.url, name, _body(served)).json()["parameters"]["degraded"] is False
    before = _degraded_count(scrape(server.process), name, "feature_store_error")
    redis.stop()
    for _ in range(3):
        resp = infer(server.url, name, _body(served))
        assert resp.status_code == 200, resp.text
        assert {o["name"]: o["data"] for o in resp.json()["outputs"]}["degraded"] == [True]
    assert _degraded_count(scrape(server.process), name, "feature_store_error") == before + 3


def test_store_url_from_environment_and_no_store_mode(served, monkeypatch, redis_factory):
    """In-process: published slots carry no extras, so the pod environment names the store."""
    import asyncio

    from mlserver.settings import ModelParameters, ModelSettings
    from mlserver.types import InferenceRequest

    from ml.models.fraud.runtime import FraudRuntime

    *_, transactions, data_dir, out = served
    redis = redis_factory()
    features.write_parquet(data_dir, out.model_dir.parent / "parquet-env")
    apply_and_materialize(write_repo(out.model_dir.parent / "feast-env", redis.url),
                          features.definitions(out.model_dir.parent / "parquet-env"))
    request = InferenceRequest.model_validate(request_body(transactions.iloc[0]))

    def degraded(env_url, client=None):
        if env_url:
            monkeypatch.setenv("MLPLAT_ONLINE_STORE_URL", env_url)
        else:
            monkeypatch.delenv("MLPLAT_ONLINE_STORE_URL", raising=False)
        if client:
            monkeypatch.setenv("MLPLAT_ONLINE_CLIENT", client)
        else:
            monkeypatch.delenv("MLPLAT_ONLINE_CLIENT", raising=False)
        runtime = FraudRuntime(ModelSettings(name="fraud-env", implementation=FraudRuntime,
                                             parameters=ModelParameters(uri=str(out.model_dir))))
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(runtime.load())
            assert runtime.reader is None or runtime.reader.client == (client or DEFAULT_ONLINE_CLIENT)
            # The first request: it also opens the connection, which has its own bound (ml/serving/online.py).
            return loop.run_until_complete(runtime.predict(request)).parameters.degraded
        finally:
            loop.close()

    assert degraded(redis.url) is False
    # The cluster's pod environment also names the client (stack config `workloads.seldon.onlineClient`).
    assert degraded(redis.url, "redis-asyncio") is False
    assert degraded(None) is True  # no store configured: defaults, never a failure


def _variants(body: dict) -> list[dict]:
    """The request itself plus one variant per way a request can leave the single-row fast path."""
    def changed(name: str, **update: object) -> dict:
        inputs = [dict(i, **update) if i["name"] == name else dict(i) for i in body["inputs"]]
        return {"inputs": inputs}
    return [
        body,
        changed("foreign_transaction", datatype="BOOL", data=[True]),  # BOOL flags: checked path
        changed("amount", datatype="FP32"), changed("amount", data=[12]), changed("amount", data=[-1.0]),
        changed("amount", data=[float("inf")]), changed("card_id", datatype="INT32"),
        changed("card_id", data=[2**63]), changed("card_id", data=[1.0]), changed("card_id", data=[True]),
        changed("transaction_hour", data=[24]), changed("location_mismatch", data=[2]),
        changed("merchant_category", data=["Casino"]), changed("merchant_category", data=[b"Grocery"]),
        changed("amount", shape=[1, 1], data=[[5.0]]), changed("amount", shape=[2], data=[1.0, 2.0]),
        {"inputs": body["inputs"][:-1]}, {"inputs": body["inputs"] + body["inputs"][:1]},
        {"inputs": [*body["inputs"][:-1], dict(body["inputs"][0])]},  # a name twice, one missing
    ]


def test_single_row_fast_path_equals_the_checked_path(served, loop):
    """`_one_row` (what most online requests take) gives exactly the checked path's columns, or steps aside for
    it, which then answers bad input with its 4xx: over 200 real transactions and every variant of one."""
    from mlserver.errors import MLServerError
    from mlserver.settings import ModelParameters, ModelSettings
    from mlserver.types import InferenceRequest

    from ml.models.fraud.runtime import FraudRuntime

    *_, transactions, _data_dir, out = served
    runtime = FraudRuntime(ModelSettings(name="fraud-one-row", implementation=FraudRuntime,
                                         parameters=ModelParameters(uri=str(out.model_dir))))
    loop.run_until_complete(runtime.load())
    taken = 0
    bodies = [request_body(t) for _, t in transactions.iloc[:200].iterrows()]
    for body in bodies + _variants(bodies[0]):
        request = InferenceRequest.model_validate(body)
        fast = runtime._one_row(request)
        try:
            checked = runtime._checked_columns(request)
        except MLServerError:
            assert fast is None, body
            continue
        if fast is not None:
            taken += 1
            assert fast == checked
            assert all(type(a) is type(b) for k in fast for a, b in zip(fast[k], checked[k], strict=True))
    assert taken >= 200  # every real transaction took the fast path
