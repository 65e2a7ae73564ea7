"""The feedback endpoint: HTTP in front of ml/delivery/feedback.py's store.

    python -m ml.delivery.feedback_server --db FILE --request-log HAPROXY_LOG [--host H] --port P   # local
    python -m ml.delivery.feedback_server --store postgres --host 0.0.0.0 --port P                   # cluster

Locally the store is SQLite and the served requests come from the splitter's (HAProxy's) log; on the
cluster the store is PostgreSQL (libpq's `PG*` environment, from the pod's Secret) and the callers post
what was served (`POST /v1/served`), there being no splitter log.

- `POST /v1/outcomes`: one outcome object or `{"outcomes": [...]}`, each
  `{"model", "request_id", "success": bool, "value"?: number, "kind"?: "label"|"click"|"reward"}`;
  the request id is the `X-Request-ID` the splitter returned. Answers 200 with the variant each outcome
  was filed under; 400 (invalid, every problem named), 404 (an id the splitter never served), 409 (a
  different outcome for the same id, or another model); a batch is all or nothing.
- `POST /v1/served`: one record or `{"served": [...]}`, each `{"model", "request_id", "variant" | "route",
  "at"?, "status"?, "latency_ms"?}` (`route`: the `x-seldon-route` header Seldon answered with); the same
  id again with the same variant is a no-op, with another one 409; all or nothing.
- `GET /v1/outcomes?model=M[&since=EPOCH][&until=EPOCH][&variant=V]`: per variant served / outcomes /
  successes / value_sum, of requests served in [since, until).
- `GET /metrics`: the same counts as Prometheus counters; `GET /healthz` (the store answers).

`FeedbackClient` is the typed client the experiment controllers use.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ml.delivery.feedback import (
    FeedbackError,
    Outcome,
    OutcomeStore,
    RequestLog,
    Served,
    SqliteOutcomeStore,
    VariantOutcomes,
)
from ml.delivery.splitter import VARIANTS
from ml.serving.http_service import MAX_BODY, BodyError, JsonHandler, serve
from ml.serving.processes import Service, http_ok

log = logging.getLogger("mlplat.feedback")
MAX_BATCH = 10_000


NOT_SERVED = ("was not recorded as served (an unknown id; locally, a request sent to the model server directly; on "
              "the cluster, one whose served record was not posted to /v1/served)")


def _items(doc: object, key: str) -> list[object]:
    items = doc.get(key) if isinstance(doc, dict) and key in doc else [doc]
    if not isinstance(items, list) or not items:
        raise FeedbackError(f"`{key}` must be a non-empty list")
    if len(items) > MAX_BATCH:
        raise FeedbackError(f"at most {MAX_BATCH} {key} per request, got {len(items)}")
    return items


def _number_param(params: dict[str, list[str]], name: str, default: str | None) -> float | None:
    given = params.get(name)
    raw = given[0] if given else default
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise FeedbackError(f"{name} must be seconds since the epoch, got {raw!r}") from None
    if not math.isfinite(value):
        raise FeedbackError(f"{name} must be finite, got {raw!r}")
    return value


class Feedback:
    """The endpoint's logic, independent of HTTP (tested directly). `requests`: the splitter's log (local);
    None where callers post served records (the cluster)."""

    def __init__(self, store: OutcomeStore, requests: RequestLog | None = None,
                 variants: tuple[str, ...] = VARIANTS, clock: Callable[[], float] = time.time,
                 models: tuple[str, ...] = ()) -> None:
        self.store, self.requests, self.variants, self.clock = store, requests, variants, clock
        self.models = models  # the models it takes served records of (empty: any)

    def _refresh(self) -> None:
        if self.requests is not None:
            self.requests.refresh()

    def post(self, doc: object) -> list[dict[str, str]]:
        parsed = []
        for i, item in enumerate(_items(doc, "outcomes")):
            try:
                parsed.append(Outcome.parse(item))
            except FeedbackError as exc:
                raise FeedbackError(f"outcome {i}: {exc}") from None
        if any(self.store.variant_of(o.request_id) is None for o in parsed):
            self._refresh()  # ids served since the last read of the splitter's log
        for i, o in enumerate(parsed):  # all or nothing: check every id before filing any
            served = self.store.variant_of(o.request_id)
            if served is None:
                raise FeedbackError(f"outcome {i}: request id {o.request_id!r} {NOT_SERVED}", status=404)
            if served[0] != o.model:
                raise FeedbackError(f"outcome {i}: request id {o.request_id!r} was served by model {served[0]}, "
                                    f"not {o.model}", status=409)
        return [{"request_id": o.request_id, "variant": self.store.add(o)} for o in parsed]

    def post_served(self, doc: object) -> list[dict[str, str]]:
        now = self.clock()
        parsed: list[Served] = []
        for i, item in enumerate(_items(doc, "served")):
            try:
                parsed.append(Served.parse(item, self.variants, now))
            except FeedbackError as exc:
                raise FeedbackError(f"served {i}: {exc}") from None
            if self.models and parsed[-1].model not in self.models:
                raise FeedbackError(f"served {i}: model {parsed[-1].model!r} is not served here (one of "
                                    f"{', '.join(self.models)})")
        seen: dict[str, Served] = {}
        for i, s in enumerate(parsed):  # all or nothing: a conflict anywhere files none
            first = seen.setdefault(s.request_id, s)
            was = self.store.variant_of(s.request_id) or (first.model, first.variant)
            if was != (s.model, s.variant):
                raise FeedbackError(f"served {i}: request id {s.request_id!r} was already recorded as served by "
                                    f"{was[0]} {was[1]}, not {s.model} {s.variant}", status=409)
        self.store.record_served([s.row() for s in parsed])
        return [{"request_id": s.request_id, "variant": s.variant} for s in parsed]

    def query(self, params: dict[str, list[str]]) -> dict[str, Any]:
        model = (params.get("model") or [""])[0]
        if not model:
            raise FeedbackError("query parameter `model` is required")
        since = _number_param(params, "since", "0")
        until = _number_param(params, "until", None)
        assert since is not None
        if until is not None and until < since:
            raise FeedbackError(f"until ({until}) must not be before since ({since})")
        variant = (params.get("variant") or [""])[0] or None
        self._refresh()
        found = self.store.outcomes(model, since, variant, until)
        return {"model": model, "since": since, "until": until,
                "variants": {v: asdict(o) for v, o in found.items()}}

    def ready(self) -> None:
        """Raises when the store does not answer."""
        self.store.variant_of("")

    def metrics(self, models: list[str]) -> str:
        self._refresh()
        lines = ["# HELP mlplat_feedback_outcomes_total Outcomes received per model, variant and result.",
                 "# TYPE mlplat_feedback_outcomes_total counter"]
        served = ["# HELP mlplat_feedback_served_total Requests recorded as served per model and variant.",
                  "# TYPE mlplat_feedback_served_total counter"]
        for model in models:
            for v, o in self.store.outcomes(model).items():
                lines.append(f'mlplat_feedback_outcomes_total{{model="{model}",variant="{v}",success="true"}} '
                             f"{o.successes}")
                lines.append(f'mlplat_feedback_outcomes_total{{model="{model}",variant="{v}",success="false"}} '
                             f"{o.outcomes - o.successes}")
                served.append(f'mlplat_feedback_served_total{{model="{model}",variant="{v}"}} {o.served}')
        return "\n".join(lines + served) + "\n"


def make_handler(feedback: Feedback, models: list[str]) -> type[JsonHandler]:
    class Handler(JsonHandler):
        logger = log

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            try:
                if url.path == "/healthz":
                    self.reply(200, {"ok": True})
                elif url.path == "/readyz":
                    feedback.ready()
                    self.reply(200, {"ok": True})
                elif url.path == "/metrics":
                    self.reply(200, feedback.metrics(models), "text/plain; version=0.0.4")
                elif url.path == "/v1/outcomes":
                    self.reply(200, feedback.query(urllib.parse.parse_qs(url.query)))
                else:
                    self.reply(404, {"error": f"no such path {url.path}; see GET /v1/outcomes, POST /v1/outcomes, "
                                              "POST /v1/served"})
            except FeedbackError as exc:
                self.reply(exc.status, {"error": str(exc)})
            except Exception as exc:  # the store is down: say so rather than drop the connection
                log.warning("GET %s failed: %s", url.path, exc)
                self.reply(503, {"error": f"the outcome store is unavailable: {type(exc).__name__}"})

        def do_POST(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            routes = {"/v1/outcomes": ("accepted", feedback.post), "/v1/served": ("recorded", feedback.post_served)}
            if path not in routes:
                self.reply(404, {"error": f"no such path {path}; POST outcomes to /v1/outcomes, served requests "
                                          "to /v1/served"})
                return
            key, handle = routes[path]
            try:
                self.reply(200, {key: handle(self.json_body(MAX_BODY))})
            except (FeedbackError, BodyError) as exc:
                self.reply(exc.status, {"error": str(exc)})
            except Exception as exc:  # nothing was filed (each request is one transaction or none): retry is safe
                log.warning("POST %s failed: %s", path, exc)
                self.reply(503, {"error": f"the outcome store is unavailable ({type(exc).__name__}); nothing was "
                                          "filed, send the same request again"})

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

    def post_served(self, served: list[Served]) -> dict[str, str]:
        """Record served requests (where no splitter log is read); returns request id -> variant."""
        body = json.dumps({"served": [asdict(s) for s in served]}).encode()
        req = urllib.request.Request(f"{self.url}/v1/served", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        return {a["request_id"]: a["variant"] for a in self._call(req)["recorded"]}

    def outcomes(self, model: str, since: float = 0.0, variant: str | None = None,
                 until: float | None = None) -> dict[str, VariantOutcomes]:
        query = {"model": model, "since": repr(since), **({"variant": variant} if variant else {}),
                 **({"until": repr(until)} if until is not None else {})}
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


def open_store(kind: str, db: Path | None) -> OutcomeStore:
    """`sqlite` (the file `db`) or `postgres` (libpq's environment: PGHOST, PGUSER, PGPASSWORD, ...)."""
    if kind == "postgres":
        from ml.delivery.feedback_pg import PostgresOutcomeStore  # psycopg: only where the store is PostgreSQL

        return PostgresOutcomeStore()
    if db is None:
        raise FeedbackError("--db FILE is required with --store sqlite")
    return SqliteOutcomeStore(db)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.delivery.feedback_server", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite",
                    help="sqlite: the file --db; postgres: libpq's PG* environment")
    ap.add_argument("--db", type=Path, help="SQLite file of the outcomes (--store sqlite)")
    ap.add_argument("--request-log", type=Path, help="the splitter's (HAProxy's) log; without it callers post "
                    "served requests to /v1/served")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--models", default="", help="comma-separated models whose counts /metrics exports")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        store = open_store(args.store, args.db)
    except FeedbackError as exc:
        ap.error(str(exc))
    requests = RequestLog(args.request_log, store) if args.request_log else None
    models = [m for m in args.models.split(",") if m]
    feedback = Feedback(store, requests, models=tuple(models))
    server = ThreadingHTTPServer((args.host, args.port), make_handler(feedback, models))
    where = args.db if args.store == "sqlite" else "PostgreSQL (PG* environment)"
    return serve(server, log, f"feedback endpoint on http://{args.host}:{args.port} (store {where}, served requests "
                 f"from {args.request_log or 'POST /v1/served'})", store.close)


if __name__ == "__main__":
    raise SystemExit(main())
