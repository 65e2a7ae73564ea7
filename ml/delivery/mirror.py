"""Shadow traffic: the mirror in the path of the mirrored share.

    python -m ml.delivery.mirror --port P --champion URL --challenger URL --records FILE

HAProxy 2.6 has no request mirroring without SPOE (an agent protocol and a separate agent), so the
splitter routes the mirrored share (`mirror.map`, ml/delivery/haproxy.py) to this process instead: it
forwards each request to the champion and answers the caller with the champion's response (status, body,
content type), then hands a copy to a worker thread that sends it to the challenger and records both
answers. The caller never waits for the challenger, and a full queue drops the copy (counted), so a slow
or failing challenger cannot slow or fail a caller. Only the mirrored share takes the extra hop.

Records (SQLite): per mirrored request its id, model, both statuses and latencies, and whether the two
answers agree: the same outputs, numbers equal within `TOLERANCE` (absolute), everything else exactly.
`shadow_report` (and `GET /report?model=M[&since=T]`) aggregates them: agreement, p50/p99 latency and the
error share of each side.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import math
import queue
import sqlite3
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ml.delivery.splitter import REQUEST_ID_HEADER
from ml.serving.http_service import JsonHandler, serve

log = logging.getLogger("mlplat.mirror")
TOLERANCE = 1e-3
QUEUE_SIZE = 1000
SCHEMA = """
CREATE TABLE IF NOT EXISTS shadow (
  request_id TEXT, model TEXT NOT NULL, at REAL NOT NULL, champion_status INTEGER NOT NULL,
  challenger_status INTEGER NOT NULL, champion_ms REAL NOT NULL, challenger_ms REAL NOT NULL, agree INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dropped (model TEXT NOT NULL, at REAL NOT NULL);
"""


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, abs_tol=TOLERANCE)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def agree(champion: bytes, challenger: bytes) -> bool:
    """Two V2 inference responses give the same outputs (name -> data)."""
    try:
        a, b = json.loads(champion), json.loads(challenger)
        outs_a = {o["name"]: o.get("data") for o in a.get("outputs", [])}
        outs_b = {o["name"]: o.get("data") for o in b.get("outputs", [])}
    except (ValueError, AttributeError, KeyError, TypeError):
        return False
    return bool(outs_a) and outs_a.keys() == outs_b.keys() and all(_same(outs_a[k], outs_b[k]) for k in outs_a)


def model_of(path: str) -> str:
    parts = path.split("?")[0].split("/")  # /v2/models/<model>/...
    return parts[3] if len(parts) > 3 and parts[1:3] == ["v2", "models"] else ""


class Records:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def add(self, row: tuple[str, str, float, int, int, float, float, bool]) -> None:
        with self._lock:
            self._db.execute("INSERT INTO shadow VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)

    def dropped(self, model: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO dropped VALUES (?, ?)", (model, time.time()))

    def rows(self, model: str, since: float) -> list[tuple[Any, ...]]:
        return self._db.execute("SELECT champion_status, challenger_status, champion_ms, challenger_ms, agree FROM "
                                "shadow WHERE model = ? AND at >= ?", (model, since)).fetchall()

    def dropped_count(self, model: str, since: float) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM dropped WHERE model = ? AND at >= ?",
                                    (model, since)).fetchone()[0])


@dataclass(frozen=True)
class ShadowReport:
    model: str
    since: float
    mirrored: int  # requests compared
    dropped: int  # copies not sent (queue full)
    agreement: float | None  # share of compared requests where both answered 200 with the same outputs
    champion_p50_ms: float | None
    champion_p99_ms: float | None
    challenger_p50_ms: float | None
    challenger_p99_ms: float | None
    champion_error_rate: float | None
    challenger_error_rate: float | None


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def shadow_report(records: Records, model: str, since: float = 0.0) -> ShadowReport:
    rows = records.rows(model, since)
    n = len(rows)
    champ_ms = [r[2] for r in rows]
    chall_ms = [r[3] for r in rows]
    return ShadowReport(
        model=model, since=since, mirrored=n, dropped=records.dropped_count(model, since),
        agreement=sum(r[4] for r in rows) / n if n else None,
        champion_p50_ms=_quantile(champ_ms, 0.5), champion_p99_ms=_quantile(champ_ms, 0.99),
        challenger_p50_ms=_quantile(chall_ms, 0.5), challenger_p99_ms=_quantile(chall_ms, 0.99),
        champion_error_rate=sum(r[0] >= 500 or r[0] == 0 for r in rows) / n if n else None,
        challenger_error_rate=sum(r[1] >= 500 or r[1] == 0 for r in rows) / n if n else None,
    )


class Upstream:
    """One keep-alive connection per thread to a server."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.timeout_s = timeout_s
        self._local = threading.local()

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str, float]:
        """(status or 0 when unreachable, body, content type, milliseconds)."""
        started = time.perf_counter()
        for attempt in (0, 1):  # a kept-alive connection the server closed is retried once on a new one
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, data, resp.getheader("Content-Type", "application/json"), \
                    (time.perf_counter() - started) * 1000
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                if attempt:
                    return 0, str(exc).encode(), "text/plain", (time.perf_counter() - started) * 1000
        raise AssertionError("unreachable")


class Mirror:
    def __init__(self, champion: str, challenger: str, records: Records, queue_size: int = QUEUE_SIZE) -> None:
        self.champion = Upstream(champion)
        self.challenger = Upstream(challenger)
        self.records = records
        self.queue: queue.Queue[tuple[str, str, bytes, dict[str, str], int, bytes, float]] = queue.Queue(queue_size)
        threading.Thread(target=self._work, daemon=True, name="shadow").start()

    def handle(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        status, data, ctype, ms = self.champion.post(path, body, headers)
        item = (headers.get(REQUEST_ID_HEADER, ""), path, body, headers, status, data, ms)
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.records.dropped(model_of(path))
        return (status or 502), data, ctype

    def _work(self) -> None:
        while True:
            rid, path, body, headers, status, data, ms = self.queue.get()
            c_status, c_data, _, c_ms = self.challenger.post(path, body, headers)
            same = status == 200 and c_status == 200 and agree(data, c_data)
            self.records.add((rid, model_of(path), time.time(), status, c_status, ms, c_ms, same))


def make_handler(mirror: Mirror) -> type[JsonHandler]:
    class Handler(JsonHandler):
        protocol_version = "HTTP/1.1"  # keep-alive with HAProxy
        logger = log

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/healthz":
                self.reply(200, {"ok": True})
            elif url.path == "/report":
                q = urllib.parse.parse_qs(url.query)
                model = (q.get("model") or [""])[0]
                try:
                    since = float((q.get("since") or ["0"])[0])
                except ValueError:
                    self.reply(400, {"error": "since must be seconds since the epoch"})
                    return
                if not model:
                    self.reply(400, {"error": "query parameter `model` is required"})
                    return
                self.reply(200, asdict(shadow_report(mirror.records, model, since)))
            else:
                self.reply(404, {"error": "the mirror answers POST /v2/models/<model>/..."})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() in ("content-type", REQUEST_ID_HEADER.lower())}
            self.send(*mirror.handle(self.path, body, headers))

    return Handler


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.delivery.mirror", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--champion", required=True, help="base URL of the champion's model server")
    ap.add_argument("--challenger", required=True, help="base URL of the challenger's model server")
    ap.add_argument("--records", type=Path, required=True, help="SQLite file of the comparisons")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    mirror = Mirror(args.champion, args.challenger, Records(args.records))
    server = ThreadingHTTPServer((args.host, args.port), make_handler(mirror))
    return serve(server, log, f"shadow mirror on http://{args.host}:{args.port}: champion {args.champion}, "
                 f"copies to {args.challenger}")


if __name__ == "__main__":
    raise SystemExit(main())
