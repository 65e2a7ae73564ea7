"""Sentiment runtime in a real MLServer: batch scoring and every bad-input case (4xx + message)."""

from __future__ import annotations

import json
import re
import socket

import pytest

from ml.model_plugin import load_plugin
from ml.models.sentiment import train
from ml.serving.settings import ModelEntry

PLUGIN = load_plugin("sentiment")

pytestmark = [pytest.mark.ml, pytest.mark.integration]


@pytest.fixture(scope="module")
def served(tmp_path_factory, shared_mlserver):
    root = tmp_path_factory.mktemp("sentiment-runtime")
    data_dir = root / "data"
    PLUGIN.generate_sample(data_dir, seed=6)
    out = train.train(data_dir, root / "model", seed=0)
    name = shared_mlserver.add(ModelEntry("sentiment-rt", "sentiment", str(out.model_dir),
                                          {"max_batch": 4, "drift_min_samples": 20}))
    return shared_mlserver, name


def _predictions(metrics: str, name: str) -> float:
    """The model's prediction count in the server's exposition (0 before its first request)."""
    line = re.escape(f'mlplat_model_prediction_count{{model="{name}"}} ')
    found = re.search(f"^{line}([0-9.e+]+)$", metrics, re.M)
    return float(found.group(1)) if found else 0.0


def _text(data, datatype="BYTES"):
    return [{"name": "text", "datatype": datatype, "shape": [len(data)], "data": data}]


def test_metadata_describes_the_inputs_and_outputs(served, infer, check_metadata):
    server, name = served
    inputs = _text(["good great happy", "bad sad awful"])
    resp = infer(server.url, name, inputs)
    assert resp.status_code == 200, resp.text
    meta = check_metadata(server.url, name, {"inputs": inputs}, resp.json())
    assert {t["name"]: t["shape"] for t in meta["outputs"]}["probabilities"] == [-1, 3]


def test_an_oversized_request_is_refused_before_it_is_read(served):
    """413 from the declared length alone: the body is never sent, let alone parsed."""
    server, name = served
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"POST /v2/models/{name}/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer
    assert "request body of 100000000 bytes exceeds the limit of 8388608 bytes" in json.loads(body)["error"]


def test_batch_is_scored(served, infer):
    server, name = served
    resp = infer(server.url, name, _text(["good great happy", "bad sad awful", "the train leaves at noon"]))
    assert resp.status_code == 200, resp.text
    outputs = {o["name"]: o for o in resp.json()["outputs"]}
    assert len(outputs["label"]["data"]) == 3 and set(outputs["label"]["data"]) <= {-1, 0, 1}
    rows = outputs["probabilities"]["data"]
    assert outputs["probabilities"]["shape"] == [3, 3]
    for i in range(3):
        assert sum(rows[3 * i: 3 * i + 3]) == pytest.approx(1.0, abs=1e-4)


def test_raw_tweets_are_normalised_as_in_training(served, infer):
    """Mention, URL, html entity and elongation are handled inside the model: same scores either way."""
    server, name = served
    resp = infer(server.url, name, _text(["@anna I love the rally sooooo much &amp; more http://t.co/x1",
                                          "@bob I love the rally soo much & more"]))
    assert resp.status_code == 200, resp.text
    rows = {o["name"]: o for o in resp.json()["outputs"]}["probabilities"]["data"]
    assert rows[:3] == rows[3:]


@pytest.mark.parametrize(
    ("inputs", "status", "needle"),
    [
        ([], 400, "missing input(s) text"),
        (_text([1, 2], datatype="INT64"), 400, "must have datatype BYTES"),
        (_text(["fine", "   "]), 422, "row 1 is empty"),
        (_text(["a", "b", "c", "d", "e"]), 422, "exceeds the limit of 4"),
        (_text([]), 422, "empty batch"),
    ],
    ids=["missing", "wrong-datatype", "empty-text", "oversize", "empty-batch"],
)
def test_bad_requests_get_4xx_naming_the_problem(served, infer, inputs, status, needle):
    server, name = served
    resp = infer(server.url, name, inputs)
    assert resp.status_code == status, resp.text
    assert needle in resp.json()["error"]


def test_metrics_are_exported(served, infer, scrape):
    server, name = served
    for _ in range(30):
        assert infer(server.url, name, _text(["nice film", "dull plot"])).status_code == 200
    text = scrape(server.process)
    assert f'mlplat_model_prediction_count{{model="{name}"}}' in text
    assert f'mlplat_model_drift_psi{{feature="text_length",model="{name}"}}' in text
    assert 'mlplat_model_predicted_class_total{cls="' in text


@pytest.mark.parametrize("tool", ["wrk", "python"])
def test_bench_load_generators_measure_a_real_server(served, scrape, tool):
    import shutil

    from ml.serving.loadgen import python_load, wrk_load

    if tool == "wrk" and shutil.which("wrk") is None:
        pytest.fail("wrk is not installed: run scripts/bootstrap.sh system")
    server, name = served
    bodies = [{"inputs": _text([t])} for t in ("good", "bad", "fine day")]
    load = wrk_load if tool == "wrk" else python_load
    before = _predictions(scrape(server.process), name)
    result = load(f"{server.url}/v2/models/{name}/infer", bodies, concurrency=2, duration_s=1)
    assert result["tool"] == tool and result["non_2xx"] == 0
    assert set(result) == {"tool", "p50_ms", "p99_ms", "rps", "non_2xx"} and result["p50_ms"] <= result["p99_ms"]
    assert _predictions(scrape(server.process), name) > before  # the load reached the model


def test_no_drift_is_reported_before_the_minimum_sample_size(served, shared_mlserver, infer, scrape):
    """The minimum sample size (`workloads.pipelines.retrainMinSamples`, here the runtime's drift_min_samples):
    a few hundred unusual requests report no drift, so no drift alert fires and nothing is retrained."""
    _server, trained = served
    settings = json.loads((shared_mlserver.repo / trained / "model-settings.json").read_text())
    name = shared_mlserver.add(ModelEntry("sentiment-min-samples", "sentiment", settings["parameters"]["uri"],
                                          {"drift_min_samples": 300}))
    gauge = f'mlplat_model_drift_psi{{feature="text_length",model="{name}"}}'
    unusual = " ".join(["word"] * 60)  # far longer than the training texts
    for _ in range(250):
        assert infer(shared_mlserver.url, name, _text([unusual])).status_code == 200
    assert gauge not in scrape(shared_mlserver.process)
    for _ in range(100):
        assert infer(shared_mlserver.url, name, _text([unusual])).status_code == 200
    assert gauge in scrape(shared_mlserver.process)  # enough observations: now it is measured


def test_one_text_gets_the_tensors_of_the_general_path(served, shared_mlserver, loop):
    """The single-text path (Python numbers instead of numpy reductions) gives the general path's tensors, ties
    included (the first largest probability, as argmax)."""
    import numpy as np
    from mlserver.settings import ModelParameters, ModelSettings

    from ml.models.sentiment.runtime import SentimentRuntime

    _server, trained = served
    settings = json.loads((shared_mlserver.repo / trained / "model-settings.json").read_text())
    runtime = SentimentRuntime(ModelSettings(name="sentiment-one-text", implementation=SentimentRuntime,
                                             parameters=ModelParameters(uri=settings["parameters"]["uri"])))
    loop.run_until_complete(runtime.load())
    texts = ["good great happy", "bad sad awful", "the train leaves at noon", "ok", "I loved it but it broke"]
    probas = [np.asarray(runtime.model.predict_proba([t]), dtype=np.float32) for t in texts]
    probas += [np.array([row], dtype=np.float32) for row in ([0.4, 0.4, 0.2], [0.2, 0.4, 0.4], [1 / 3] * 3)]
    for proba in probas:
        assert runtime._one_output(proba) == runtime._outputs(proba)
