"""The shadow mirror in process (threads, no subprocess): callers get the champion's answer, the challenger a
copy, the records compare them; a challenger that hangs or fails never reaches the caller."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ml.delivery import mirror

pytestmark = pytest.mark.ml


def _v2(prob: float) -> dict[str, Any]:
    return {"model_name": "fraud", "outputs": [{"name": "fraud_probability", "datatype": "FP32", "shape": [1, 1],
                                                 "data": [prob]}, {"name": "is_fraud", "data": [prob > 0.5]}]}


def _server(answer: Any) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, doc = answer(body)
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def running(tmp_path) -> Iterator[tuple[str, mirror.Records]]:
    champion = _server(lambda body: (200, _v2(0.1)))
    # The challenger agrees on x < 5, answers differently on 5..7, fails from 8 on.
    challenger = _server(lambda body: (500, {"error": "boom"}) if body["x"] >= 8
                         else (200, _v2(0.1 if body["x"] < 5 else 0.9)))
    records = mirror.Records(tmp_path / "shadow.db")
    m = mirror.Mirror(f"http://127.0.0.1:{champion.server_address[1]}",
                      f"http://127.0.0.1:{challenger.server_address[1]}", records)
    front = ThreadingHTTPServer(("127.0.0.1", 0), mirror.make_handler(m))
    threading.Thread(target=front.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{front.server_address[1]}", records
    finally:
        for s in (front, champion, challenger):
            s.shutdown()
            s.server_close()


def test_callers_get_the_champion_and_the_report_compares_the_copies(running):
    url, records = running
    for x in range(10):
        req = urllib.request.Request(f"{url}/v2/models/fraud/infer", data=json.dumps({"x": x}).encode(),
                                     headers={"Content-Type": "application/json", "X-Request-ID": f"r{x}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200 and json.loads(resp.read()) == _v2(0.1)
    deadline = time.monotonic() + 10
    while len(records.rows("fraud", 0)) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    report = mirror.shadow_report(records, "fraud")
    assert report.mirrored == 10 and report.dropped == 0
    assert report.agreement == pytest.approx(0.5)  # x 0..4 agree; 5..7 differ; 8, 9 failed
    assert report.challenger_error_rate == pytest.approx(0.2) and report.champion_error_rate == 0.0
    assert report.champion_p50_ms is not None and report.challenger_p99_ms is not None
    with urllib.request.urlopen(f"{url}/report?model=fraud", timeout=10) as resp:
        assert json.loads(resp.read())["mirrored"] == 10
    assert mirror.shadow_report(records, "fraud", since=time.time() + 60).agreement is None


def test_agreement_compares_outputs_by_name_within_tolerance():
    same = json.dumps(_v2(0.1)).encode()
    assert mirror.agree(same, json.dumps(_v2(0.1 + 1e-4)).encode())
    assert not mirror.agree(same, json.dumps(_v2(0.2)).encode())
    assert not mirror.agree(same, b'{"outputs": []}')
    assert not mirror.agree(same, b"not json")
    assert mirror.model_of("/v2/models/fraud/infer") == "fraud" and mirror.model_of("/healthz") == ""


def test_a_full_queue_drops_the_copy_not_the_request(tmp_path):
    champion = _server(lambda body: (200, _v2(0.1)))
    records = mirror.Records(tmp_path / "shadow.db")
    # No worker can keep up with a queue of one whose challenger never answers in time.
    stuck = threading.Event()
    m = mirror.Mirror(f"http://127.0.0.1:{champion.server_address[1]}", "http://127.0.0.1:9", records, queue_size=1)
    m.challenger.post = lambda *a: (stuck.wait(5), (0, b"", "", 0.0))[1]  # type: ignore[method-assign]
    try:
        answers = [m.handle("/v2/models/fraud/infer", b'{"x": 1}', {"Content-Type": "application/json"})
                   for _ in range(5)]
        assert all(status == 200 for status, _, _ in answers)
        assert records.dropped_count("fraud", 0) >= 3
    finally:
        stuck.set()
        champion.shutdown()
        champion.server_close()
