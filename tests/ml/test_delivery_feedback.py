"""The feedback endpoint's store and HTTP API: outcomes filed under the variant the splitter logged for the
request id, validation with every problem named. In-process only (a thread serves HTTP)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from ml.delivery.feedback import FeedbackError, Outcome, RequestLog, SqliteOutcomeStore, VariantOutcomes, parse_line
from ml.delivery.feedback_server import Feedback, FeedbackClient, make_handler

pytestmark = pytest.mark.ml


def _line(rid: str, backend: str, server: str, status: int = 200, at: float = 1000.0) -> str:
    return f"mlplat-request {rid} {backend} {server} {status} 3 4 {at:.3f}\n"


@pytest.fixture
def feedback(tmp_path: Path) -> Iterator[tuple[Feedback, Path]]:
    log = tmp_path / "haproxy.log"
    log.write_text("[NOTICE] haproxy started\n" + _line("a", "model.fraud", "champion")
                   + _line("b", "model.fraud", "challenger") + _line("c", "mirror.fraud", "champion", at=2000)
                   + _line("d", "mlserver", "champion"))
    store = SqliteOutcomeStore(tmp_path / "outcomes.db")
    yield Feedback(store, RequestLog(log, store)), log
    store.close()


def test_log_lines_name_request_model_and_variant():
    assert parse_line(_line("r1", "model.fraud", "challenger", 503, 12.5)) == ("r1", "fraud", "challenger", 503,
                                                                                12.5, 3.0)
    assert parse_line(_line("r2", "mlserver", "champion")) is None  # not a model request
    assert parse_line("mlplat-request - model.fraud champion 200 1 1 1.0") is None
    assert parse_line("[WARNING] something") is None


def test_outcomes_are_filed_under_the_variant_that_answered(feedback):
    fb, log = feedback
    accepted = fb.post({"outcomes": [{"model": "fraud", "request_id": "a", "success": True},
                                     {"model": "fraud", "request_id": "b", "success": False, "kind": "click"}]})
    assert accepted == [{"request_id": "a", "variant": "champion"}, {"request_id": "b", "variant": "challenger"}]
    assert fb.store.outcomes("fraud") == {"champion": VariantOutcomes("champion", 2, 1, 1, 1.0),
                                          "challenger": VariantOutcomes("challenger", 1, 1, 0, 1.0)}
    assert fb.store.outcomes("fraud", since=1500) == {"champion": VariantOutcomes("champion", 1, 0, 0, 0.0)}
    # A request served after the last read of the log is found by reading on.
    with open(log, "a") as fh:
        fh.write(_line("e", "model.fraud", "challenger", at=3000))
    assert fb.post({"model": "fraud", "request_id": "e", "success": True, "value": 2.5}) == [
        {"request_id": "e", "variant": "challenger"}]
    assert fb.store.outcomes("fraud", variant="challenger")["challenger"].value_sum == 3.5


def test_bad_outcomes_are_refused_with_the_reason(feedback):
    fb, _ = feedback
    with pytest.raises(FeedbackError, match=r"success must be true or false.*kind must be one of") as err:
        fb.post({"model": "fraud", "request_id": "a", "success": "yes", "kind": "like"})
    assert err.value.status == 400
    with pytest.raises(FeedbackError, match=r"unknown field.*variant"):
        fb.post({"model": "fraud", "request_id": "a", "success": True, "variant": "challenger"})
    with pytest.raises(FeedbackError, match="finite number"):
        Outcome.parse({"model": "fraud", "request_id": "a", "success": True, "value": float("nan")})
    with pytest.raises(FeedbackError, match="was not recorded as served") as err:
        fb.post({"outcomes": [{"model": "fraud", "request_id": "a", "success": True},
                              {"model": "fraud", "request_id": "zzz", "success": True}]})
    assert err.value.status == 404
    assert fb.store.outcomes("fraud")["champion"].outcomes == 0  # all or nothing
    with pytest.raises(FeedbackError, match="served by model fraud, not sentiment") as err:
        fb.post({"model": "sentiment", "request_id": "a", "success": True})
    assert err.value.status == 409
    with pytest.raises(FeedbackError, match="non-empty list"):
        fb.post({"outcomes": []})


def test_an_outcome_is_final(feedback):
    fb, _ = feedback
    fb.post({"model": "fraud", "request_id": "a", "success": True})
    fb.post({"model": "fraud", "request_id": "a", "success": True})  # a retry: no-op
    assert fb.store.outcomes("fraud")["champion"].outcomes == 1
    with pytest.raises(FeedbackError, match="already has a different outcome") as err:
        fb.post({"model": "fraud", "request_id": "a", "success": False})
    assert err.value.status == 409


def test_a_replaced_log_is_read_from_its_start(feedback, tmp_path):
    fb, log = feedback
    assert fb.requests.refresh() == 3
    assert fb.requests.refresh() == 0  # nothing new
    log.unlink()
    log.write_text(_line("x", "model.fraud", "champion", at=5000))
    assert fb.requests.refresh() == 1
    assert fb.store.variant_of("x") == ("fraud", "champion")
    # Durable: another store on the same file sees everything.
    again = SqliteOutcomeStore(tmp_path / "outcomes.db")
    assert again.variant_of("x") == ("fraud", "champion") and again.variant_of("a") == ("fraud", "champion")
    again.close()


def test_the_http_api_and_its_client(feedback):
    fb, _ = feedback
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fb, ["fraud"]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        client = FeedbackClient(url)
        assert client.post([Outcome("fraud", "b", True, kind="click")]) == {"b": "challenger"}
        got = client.outcomes("fraud")
        assert got["challenger"] == VariantOutcomes("challenger", 1, 1, 1, 1.0) and got["champion"].served == 2
        with pytest.raises(FeedbackError, match="was not recorded as served") as err:
            client.post([Outcome("fraud", "nope", True)])
        assert err.value.status == 404
        req = urllib.request.Request(f"{url}/v1/outcomes", data=b"{not json", method="POST")
        with pytest.raises(urllib.error.HTTPError) as http_err:
            urllib.request.urlopen(req, timeout=5)
        assert http_err.value.code == 400 and "not JSON" in json.loads(http_err.value.read())["error"]
        with pytest.raises(urllib.error.HTTPError) as http_err:
            urllib.request.urlopen(f"{url}/v1/outcomes?since=1", timeout=5)
        assert http_err.value.code == 400 and "`model` is required" in http_err.value.read().decode()
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert 'mlplat_feedback_outcomes_total{model="fraud",variant="challenger",success="true"} 1' in text
    finally:
        server.shutdown()
        server.server_close()
