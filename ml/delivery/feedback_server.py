"""The feedback endpoint: HTTP on 127.0.0.1 (locally), in front of ml/delivery/feedback.py's store.

    python -m ml.delivery.feedback_server --db FILE --request-log HAPROXY_LOG [--host H] [--port P]

- `POST /v1/outcomes`: one outcome object or `{"outcomes": [...]}`, each
  `{"model", "request_id", "success": bool, "value"?: number, "kind"?: "label"|"click"|"reward"}`;
  the request id is the `X-Request-ID` the splitter returned. Answers 200 with the variant each outcome
  was filed under; 400 (invalid, every problem named), 404 (an id the splitter never served), 409 (a
  different outcome for the same id, or another model); a batch is all or nothing.
- `GET /v1/outcomes?model=M[&since=EPOCH][&variant=V]`: per variant served / outcomes / successes / value_sum.
- `GET /metrics`: the same counts as Prometheus counters; `GET /healthz`.

`FeedbackClient` is the typed client the experiment controllers use.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ml.delivery.feedback import FeedbackError, Outcome, OutcomeStore, RequestLog, VariantOutcomes
from ml.serving.processes import Service, http_ok

log = logging.getLogger("mlplat.feedback")
MAX_BODY = 1 << 20
MAX_BATCH = 10_000


class Feedback:
    """The endpoint's logic, independent of HTTP (tested directly)."""

    def __init__(self, store: OutcomeStore, requests: RequestLog) -> None:
        self.store = store
        self.requests = requests

    def post(self, doc: object) -> list[dict[str, str]]:
        items = doc.get("outcomes") if isinstance(doc, dict) and "outcomes" in doc else [doc]
        if not isinstance(items, list) or not items:
            raise FeedbackError("`outcomes` must be a non-empty list")
        if len(items) > MAX_BATCH:
            raise FeedbackError(f"at most {MAX_BATCH} outcomes per request, got {len(items)}")
        parsed = []
        for i, item in enumerate(items):
            try:
                parsed.append(Outcome.parse(item))
            except FeedbackError as exc:
                raise FeedbackError(f"outcome {i}: {exc}") from None
        if any(self.store.variant_of(o.request_id) is None for o in parsed):
            self.requests.refresh()  # ids served since the last read of the splitter's log
        for i, o in enumerate(parsed):  # all or nothing: check every id before filing any
            served = self.store.variant_of(o.request_id)
            if served is None:
                raise FeedbackError(f"outcome {i}: request id {o.request_id!r} was not served through the "
                                    "splitter (unknown id, or sent to the model server directly)", status=404)
        return [{"request_id": o.request_id, "variant": self.store.add(o)} for o in parsed]

    def query(self, params: dict[str, list[str]]) -> dict[str, Any]:
        model = (params.get("model") or [""])[0]
        if not model:
            raise FeedbackError("query parameter `model` is required")
        raw = (params.get("since") or ["0"])[0]
        try:
            since = float(raw)
        except ValueError:
            raise FeedbackError(f"since must be seconds since the epoch, got {raw!r}") from None
        if not math.isfinite(since):
            raise FeedbackError(f"since must be finite, got {raw!r}")
        variant = (params.get("variant") or [None])[0]
        self.requests.refresh()
        found = self.store.outcomes(model, since, variant)
        return {"model": model, "since": since, "variants": {v: asdict(o) for v, o in found.items()}}

    def metrics(self, models: list[str]) -> str:
        self.requests.refresh()
        lines = ["# HELP mlplat_feedback_outcomes_total Outcomes received per model, variant and result.",
                 "# TYPE mlplat_feedback_outcomes_total counter"]
        for model in models:
            for v, o in self.store.outcomes(model).items():
                lines.append(f'mlplat_feedback_outcomes_total{{model="{model}",variant="{v}",success="true"}} '
                             f"{o.successes}")
                lines.append(f'mlplat_feedback_outcomes_total{{model="{model}",variant="{v}",success="false"}} '
                             f"{o.outcomes - o.successes}")
        return "\n".join(lines) + "\n"


def make_handler(feedback: Feedback, models: list[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # headers and body are two writes: no wait for the delayed ACK

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug(fmt, *args)

        def _reply(self, code: int, doc: Any, content_type: str = "application/json") -> None:
            body = doc.encode() if isinstance(doc, str) else json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            try:
                if url.path == "/healthz":
                    self._reply(200, {"ok": True})
                elif url.path == "/metrics":
                    self._reply(200, feedback.metrics(models), "text/plain; version=0.0.4")
                elif url.path == "/v1/outcomes":
                    self._reply(200, feedback.query(urllib.parse.parse_qs(url.query)))
                else:
                    self._reply(404, {"error": f"no such path {url.path}; see GET /v1/outcomes, POST /v1/outcomes"})
            except FeedbackError as exc:
                self._reply(exc.status, {"error": str(exc)})

        def do_POST(self) -> None:
            if urllib.parse.urlsplit(self.path).path != "/v1/outcomes":
                self._reply(404, {"error": f"no such path {self.path}; POST outcomes to /v1/outcomes"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 < length <= MAX_BODY:
                self._reply(400 if length <= 0 else 413, {"error": f"a JSON body of 1..{MAX_BODY} bytes is required"})
                return
            try:
                doc = json.loads(self.rfile.read(length))
            except json.JSONDecodeError as exc:
                self._reply(400, {"error": f"the body is not JSON: {exc}"})
                return
            try:
                self._reply(200, {"accepted": feedback.post(doc)})
            except FeedbackError as exc:
                self._reply(exc.status, {"error": str(exc)})

    return Handler


class FeedbackClient:
    """Typed client of the endpoint."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, req: urllib.request.Request) -> Any:
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            with contextlib.suppress(json.JSONDecodeError, AttributeError):
                detail = json.loads(detail).get("error", detail)
            raise FeedbackError(f"feedback endpoint {self.url}: {detail}", status=exc.code) from None

    def post(self, outcomes: list[Outcome]) -> dict[str, str]:
        """File outcomes; returns request id -> the variant each was filed under."""
        body = json.dumps({"outcomes": [asdict(o) for o in outcomes]}).encode()
        req = urllib.request.Request(f"{self.url}/v1/outcomes", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        return {a["request_id"]: a["variant"] for a in self._call(req)["accepted"]}

    def outcomes(self, model: str, since: float = 0.0, variant: str | None = None) -> dict[str, VariantOutcomes]:
        query = {"model": model, "since": repr(since), **({"variant": variant} if variant else {})}
        doc = self._call(urllib.request.Request(f"{self.url}/v1/outcomes?{urllib.parse.urlencode(query)}"))
        return {v: VariantOutcomes(**o) for v, o in doc["variants"].items()}


class FeedbackService(Service):
    """The endpoint as a platform service (`python -m ml.delivery.feedback_server ...`)."""

    name = "feedback"

    def __init__(self, workdir: Path, port: int, request_log: Path, models: list[str],
                 host: str = "127.0.0.1") -> None:
        super().__init__(workdir)
        self.port, self.host, self.request_log, self.models = port, host, request_log, models
        self.url = f"http://{host}:{port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "ml.delivery.feedback_server", "--db", str(self.workdir / "outcomes.db"),
                "--request-log", str(self.request_log), "--host", self.host, "--port", str(self.port),
                "--models", ",".join(self.models)]

    def ready(self) -> bool:
        return http_ok(f"{self.url}/healthz")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.delivery.feedback_server", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", type=Path, required=True, help="SQLite file of the outcomes")
    ap.add_argument("--request-log", type=Path, required=True, help="the splitter's (HAProxy's) log")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--models", default="", help="comma-separated models whose counts /metrics exports")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    store = OutcomeStore(args.db)
    feedback = Feedback(store, RequestLog(args.request_log, store))
    models = [m for m in args.models.split(",") if m]
    server = ThreadingHTTPServer((args.host, args.port), make_handler(feedback, models))
    log.info("feedback endpoint on http://%s:%d (store %s, request log %s)", args.host, args.port, args.db,
             args.request_log)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
