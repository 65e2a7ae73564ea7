"""The real HAProxy (Debian's package) as the local splitter, in front of two small HTTP servers standing in for
the champion and challenger model servers: `haproxy -c` on the rendered configuration, weights changed through
the runtime API without a reload, the variant and request id on every answer, the request log the feedback
endpoint reads, the Prometheus exporter, the mirror map."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ml.delivery import haproxy
from ml.delivery.feedback import RequestLog, SqliteOutcomeStore
from ml.delivery.splitter import CHALLENGER, CHAMPION, REQUEST_ID_HEADER, VARIANT_HEADER, split
from ml.serving.processes import free_port

pytestmark = [pytest.mark.ml, pytest.mark.integration]


def _server(name: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({"who": name, "request_id": self.headers.get(REQUEST_ID_HEADER)}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[haproxy.Layout, dict[str, str]]]:
    servers = {n: _server(n) for n in ("champ", "chall", "mirror")}
    addr = {n: f"127.0.0.1:{s.server_address[1]}" for n, s in servers.items()}
    lay = haproxy.Layout(tmp_path_factory.mktemp("haproxy"), "127.0.0.1", free_port(), free_port(), addr["champ"],
                         addr["chall"], addr["mirror"])
    haproxy.write(lay, ["fraud", "sentiment"])
    service = haproxy.HAProxyService(lay)
    service.start(30)
    try:
        yield lay, addr
    finally:
        service.stop()
        for s in servers.values():
            s.shutdown()
            s.server_close()


def _infer(lay: haproxy.Layout, model: str) -> tuple[str, str, dict[str, str]]:
    req = urllib.request.Request(f"http://127.0.0.1:{lay.port}/v2/models/{model}/infer", data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers[VARIANT_HEADER], resp.headers[REQUEST_ID_HEADER], json.loads(resp.read())


def test_a_broken_configuration_is_refused_with_haproxys_message(tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text("frontend x\n    bind 127.0.0.1:1\n    use_backend nowhere\n")
    with pytest.raises(haproxy.SplitterError, match="nowhere"):
        haproxy.check(bad)


def test_weights_change_at_run_time_and_every_answer_names_its_variant(running):
    lay, _ = running
    sp = haproxy.HAProxySplitter(lay)
    assert sp.weights("fraud") == {CHAMPION: 100, CHALLENGER: 0}
    socket_before = lay.socket_path.stat().st_ino
    sp.set_weights("fraud", split("fraud", 20))
    assert sp.weights("fraud") == {CHAMPION: 80, CHALLENGER: 20}
    assert sp.weights("sentiment") == {CHAMPION: 100, CHALLENGER: 0}
    answers = [_infer(lay, "fraud") for _ in range(100)]
    by_variant = {v: sum(a[0] == v for a in answers) for v in (CHAMPION, CHALLENGER)}
    assert 17 <= by_variant[CHALLENGER] <= 23, by_variant  # weighted round robin: ~20 in every 100
    for variant, rid, body in answers:
        assert body["who"] == {CHAMPION: "champ", CHALLENGER: "chall"}[variant]
        assert body["request_id"] == rid and len(rid) == 36  # the server saw the id the caller got
    assert lay.socket_path.stat().st_ino == socket_before  # no reload re-created the socket
    assert json.loads(lay.weights_path.read_text())["weights"]["fraud"] == {CHAMPION: 80, CHALLENGER: 20}
    assert haproxy.render(lay, ["fraud"]).count("weight 80") == 1  # a restart keeps the split
    sp.set_weights("fraud", split("fraud", 0))
    assert {_infer(lay, "fraud")[0] for _ in range(20)} == {CHAMPION}
    with pytest.raises(ValueError, match="sum to"):
        sp.set_weights("fraud", {CHAMPION: 10, CHALLENGER: 10})


def test_the_request_log_tells_the_feedback_store_who_answered(running, tmp_path):
    lay, _ = running
    sp = haproxy.HAProxySplitter(lay)
    sp.set_weights("sentiment", split("sentiment", 50))
    answers = [_infer(lay, "sentiment") for _ in range(10)]
    sp.set_weights("sentiment", split("sentiment", 0))
    store = SqliteOutcomeStore(tmp_path / "outcomes.db")
    log = RequestLog(lay.workdir / "haproxy.log", store)
    deadline = time.monotonic() + 5
    while any(store.variant_of(rid) is None for _, rid, _ in answers) and time.monotonic() < deadline:
        log.refresh()
        time.sleep(0.05)
    assert [store.variant_of(rid) for _, rid, _ in answers] == [("sentiment", v) for v, _, _ in answers]
    store.close()


def test_the_mirror_map_sends_a_share_through_the_mirror_backend(running):
    lay, _ = running
    sp = haproxy.HAProxySplitter(lay)
    sp.set_mirror("fraud", CHALLENGER, 100)
    assert sp.mirror("fraud") == (CHALLENGER, 100)
    assert {(v, b["who"]) for v, _, b in (_infer(lay, "fraud") for _ in range(5))} == {(CHAMPION, "mirror")}
    sp.set_mirror("fraud", None, 0)
    assert sp.mirror("fraud") == (None, 0)
    assert {b["who"] for _, _, b in (_infer(lay, "fraud") for _ in range(5))} == {"champ"}


def test_prometheus_exporter_counts_responses_per_variant(running):
    lay, _ = running
    _infer(lay, "fraud")
    with urllib.request.urlopen(f"http://127.0.0.1:{lay.metrics_port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert 'haproxy_server_http_responses_total{proxy="model.fraud",server="champion",code="2xx"}' in text
    assert 'proxy="model.fraud",server="challenger"' in text
