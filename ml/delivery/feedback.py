"""Outcomes per served request (labels that arrive after the decision, clicks on what was shown), stored durably.

The splitter logs every request it routed (ml/delivery/haproxy.py: request id, model, the variant that
answered, status, latency). `RequestLog` reads that log incrementally into the store's `served` table, so
an outcome posted for a request id is filed under the variant that really answered it; the caller does
not have to say which. One outcome per request: posting it again with the same result is a no-op,
with a different result an error (a label does not change its mind).

On the cluster there is no splitter log: the caller that got the model's answer posts a `Served` record
(the request id and Seldon's `x-seldon-route` header), and the outcome follows the same way.

`OutcomeStore` is the one storage interface, with two backends: `SqliteOutcomeStore` (SQLite in WAL mode
under the platform's state directory, the way the local platform keeps MLflow's backend) and
ml/delivery/feedback_pg.py's `PostgresOutcomeStore` (the cluster: the RDS instance, shared by the
endpoint's replicas). Queries are the typed `OutcomeStore.outcomes` (per variant: served, outcomes,
successes, sum of values) the A/B tests and bandits read.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ml.delivery.haproxy import LOG_TAG, MIRROR_BACKEND, MODEL_BACKEND

SCHEMA = """
CREATE TABLE IF NOT EXISTS served (
  request_id TEXT PRIMARY KEY, model TEXT NOT NULL, variant TEXT NOT NULL, status INTEGER NOT NULL,
  at REAL NOT NULL, latency_ms REAL NOT NULL);
CREATE INDEX IF NOT EXISTS served_model_at ON served (model, at);
CREATE TABLE IF NOT EXISTS outcomes (
  request_id TEXT PRIMARY KEY REFERENCES served (request_id), model TEXT NOT NULL, variant TEXT NOT NULL,
  success INTEGER NOT NULL, value REAL NOT NULL, kind TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS log_offset (path TEXT PRIMARY KEY, inode INTEGER NOT NULL, offset INTEGER NOT NULL);
"""
KINDS = ("label", "click", "reward")
MAX_ID = 128


class FeedbackError(ValueError):
    """An outcome the store refuses; `status` is the HTTP status the endpoint answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Outcome:
    model: str
    request_id: str
    success: bool
    value: float = 1.0  # e.g. revenue of a click; defaults to 1 so sums count successes' weight
    kind: str = "label"

    @classmethod
    def parse(cls, doc: object) -> Outcome:
        """Validate one posted outcome; every problem is named in the error."""
        if not isinstance(doc, dict):
            raise FeedbackError(f"an outcome must be a JSON object, got {type(doc).__name__}")
        problems = []
        unknown = sorted(set(doc) - {"model", "request_id", "success", "value", "kind"})
        if unknown:
            problems.append(f"unknown field(s) {', '.join(unknown)}")
        for key in ("model", "request_id"):
            if not isinstance(doc.get(key), str) or not doc[key] or len(doc[key]) > MAX_ID:
                problems.append(f"{key} must be a non-empty string of at most {MAX_ID} characters")
        if not isinstance(doc.get("success"), bool):
            problems.append("success must be true or false")
        value = doc.get("value", 1.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            problems.append(f"value must be a finite number, got {value!r}")
        kind = doc.get("kind", "label")
        if kind not in KINDS:
            problems.append(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if problems:
            raise FeedbackError("; ".join(problems))
        return cls(doc["model"], doc["request_id"], doc["success"], float(value), kind)


@dataclass(frozen=True)
class VariantOutcomes:
    variant: str
    served: int  # requests this variant answered (since the query's `since`)
    outcomes: int  # outcomes received for those requests
    successes: int
    value_sum: float

    @property
    def rate(self) -> float | None:
        return self.successes / self.outcomes if self.outcomes else None


ServedRow = tuple[str, str, str, int, float, float]  # request_id, model, variant, status, at, latency_ms


@dataclass(frozen=True)
class Served:
    """One request a variant answered, posted by its caller where no splitter log is read (the cluster: the
    caller copies Seldon's `x-seldon-route` answer header as `route`, or names the `variant`)."""

    model: str
    request_id: str
    variant: str
    at: float
    status: int = 200
    latency_ms: float = 0.0

    def row(self) -> ServedRow:
        return (self.request_id, self.model, self.variant, self.status, self.at, self.latency_ms)

    @classmethod
    def parse(cls, doc: object, variants: tuple[str, ...], now: float) -> Served:
        """Validate one posted served record; every problem is named in the error."""
        if not isinstance(doc, dict):
            raise FeedbackError(f"a served record must be a JSON object, got {type(doc).__name__}")
        problems = []
        unknown = sorted(set(doc) - {"model", "request_id", "variant", "route", "at", "status", "latency_ms"})
        if unknown:
            problems.append(f"unknown field(s) {', '.join(unknown)}")
        for key in ("model", "request_id"):
            if not _short_string(doc.get(key)):
                problems.append(f"{key} must be a non-empty string of at most {MAX_ID} characters")
        variant = doc.get("variant")
        if "route" in doc and variant is None and _short_string(doc.get("model")):
            variant = variant_of_route(doc["route"], doc["model"], variants)
            if variant is None:
                problems.append(f"route {doc['route']!r} names no variant of model {doc['model']} (expected the "
                                f"x-seldon-route header of a candidate {doc['model']}-<{'|'.join(variants)}>)")
        elif variant not in variants:
            problems.append(f"variant must be one of {', '.join(variants)} (or give `route`), got {variant!r}")
        at = doc.get("at", now)
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at) or at <= 0:
            problems.append(f"at must be positive epoch seconds, got {at!r}")
        status = doc.get("status", 200)
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            problems.append(f"status must be an HTTP status code, got {status!r}")
        latency = doc.get("latency_ms", 0.0)
        if isinstance(latency, bool) or not isinstance(latency, int | float) or not math.isfinite(latency) \
                or latency < 0:
            problems.append(f"latency_ms must be a finite number >= 0, got {latency!r}")
        if problems:
            raise FeedbackError("; ".join(problems))
        return cls(doc["model"], doc["request_id"], str(variant), float(at), status, float(latency))


def _short_string(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID


def variant_of_route(route: object, model: str, variants: tuple[str, ...]) -> str | None:
    """The variant in a Seldon `x-seldon-route` value (`:<model>-<variant>_<n>:`, the candidate's Seldon Model
    name and its version suffix), or None."""
    if not isinstance(route, str):
        return None
    for part in route.strip(":").split(":"):
        name = part.rsplit("_", 1)[0] if part.rsplit("_", 1)[-1].isdigit() else part
        for variant in variants:
            if name == f"{model}-{variant}":
                return variant
    return None


class OutcomeStore(ABC):
    """Served requests and their outcomes: the interface both backends implement (SQLite on one machine,
    PostgreSQL shared by the replicas on the cluster). Every write is idempotent per request id."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def record_served(self, rows: Sequence[ServedRow]) -> None:
        """(request_id, model, variant, status, at, latency_ms) rows, ignoring ids already stored."""

    @abstractmethod
    def variant_of(self, request_id: str) -> tuple[str, str] | None:
        """(model, variant) of a served request, or None."""

    @abstractmethod
    def _insert_outcome(self, row: tuple[str, str, str, int, float, str, float]) -> tuple[int, float, str] | None:
        """Insert the outcome unless its request id has one; then the stored (success, value, kind)."""

    @abstractmethod
    def outcomes(self, model: str, since: float = 0.0, variant: str | None = None,
                 until: float | None = None) -> dict[str, VariantOutcomes]:
        """Per variant of `model`: requests served at or after `since` (and before `until`) and the outcomes
        filed for them."""

    @abstractmethod
    def offset(self, path: str) -> tuple[int, int]:
        """(inode, byte offset) up to which the request log at `path` was read."""

    @abstractmethod
    def set_offset(self, path: str, inode: int, offset: int) -> None: ...

    def add(self, outcome: Outcome, at: float | None = None) -> str:
        """File `outcome` under the variant that answered its request; returns that variant. The same outcome
        again is a no-op; a different one for the same request is refused (409)."""
        served = self.variant_of(outcome.request_id)
        if served is None:
            raise FeedbackError(f"request id {outcome.request_id!r} was not served through the splitter (unknown "
                                "id, or its request went to the model server directly)", status=404)
        model, variant = served
        if model != outcome.model:
            raise FeedbackError(f"request id {outcome.request_id!r} was served by model {model}, not "
                                f"{outcome.model}", status=409)
        row = (outcome.request_id, model, variant, int(outcome.success), outcome.value, outcome.kind,
               time.time() if at is None else at)
        old = self._insert_outcome(row)
        if old is not None and (int(old[0]), float(old[1]), old[2]) != (int(outcome.success), outcome.value,
                                                                          outcome.kind):
            raise FeedbackError(f"request id {outcome.request_id!r} already has a different outcome "
                                f"(success={bool(old[0])}, value={old[1]}, kind={old[2]})", status=409)
        return variant


def outcomes_query(placeholder: str, model: str, since: float, variant: str | None,
                   until: float | None) -> tuple[str, tuple[object, ...]]:
    """The per-variant aggregate and its arguments in either backend's parameter style (`?`, `%s`); only values
    are parameters, the SQL itself is constant but for which conditions apply."""
    p = placeholder
    where, args = [f"s.model = {p}", f"s.at >= {p}"], [model, since]
    if until is not None:
        where.append(f"s.at < {p}")
        args.append(until)
    if variant:
        where.append(f"s.variant = {p}")
        args.append(variant)
    sql = ("SELECT s.variant, COUNT(*), COUNT(o.request_id), COALESCE(SUM(o.success), 0), "
           "COALESCE(SUM(o.value), 0.0) FROM served s LEFT JOIN outcomes o ON o.request_id = s.request_id "
           f"WHERE {' AND '.join(where)} GROUP BY s.variant")
    return sql, tuple(args)


class SqliteOutcomeStore(OutcomeStore):
    """The store in one SQLite file in WAL mode (the local platform: one process writes it)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def record_served(self, rows: Sequence[ServedRow]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO served VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")

    def variant_of(self, request_id: str) -> tuple[str, str] | None:
        with self._lock:
            row = self._db.execute("SELECT model, variant FROM served WHERE request_id = ?", (request_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def _insert_outcome(self, row: tuple[str, str, str, int, float, str, float]) -> tuple[int, float, str] | None:
        with self._lock:
            old = self._db.execute("SELECT success, value, kind FROM outcomes WHERE request_id = ?",
                                   (row[0],)).fetchone()
            if old is None:
                self._db.execute("INSERT INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?)", row)
        return None if old is None else (int(old[0]), float(old[1]), str(old[2]))

    def outcomes(self, model: str, since: float = 0.0, variant: str | None = None,
                 until: float | None = None) -> dict[str, VariantOutcomes]:
        sql, args = outcomes_query("?", model, since, variant, until)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return {r[0]: VariantOutcomes(r[0], int(r[1]), int(r[2]), int(r[3]), float(r[4])) for r in rows}

    def offset(self, path: str) -> tuple[int, int]:
        with self._lock:
            row = self._db.execute("SELECT inode, offset FROM log_offset WHERE path = ?", (path,)).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def set_offset(self, path: str, inode: int, offset: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO log_offset VALUES (?, ?, ?)", (path, inode, offset))


def parse_line(line: str) -> ServedRow | None:
    """One splitter log line -> (request_id, model, variant, status, at, latency_ms); None for other lines
    (HAProxy's own messages, requests that were not for a model)."""
    parts = line.split()
    if len(parts) != 8 or parts[0] != LOG_TAG:
        return None
    _, rid, backend, server, status, tr, _ta, at = parts
    for prefix in (MODEL_BACKEND, MIRROR_BACKEND):
        if backend.startswith(prefix) and rid != "-":
            try:
                return rid, backend[len(prefix):], server, int(status), float(at), float(tr)
            except ValueError:
                return None
    return None


class RequestLog:
    """Reads new lines of the splitter's log into the store (from the saved offset; a replaced or
    truncated log file is read from its start)."""

    def __init__(self, path: Path, store: OutcomeStore) -> None:
        self.path = path
        self.store = store
        self._lock = threading.Lock()

    def refresh(self) -> int:
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                return 0
            inode, offset = self.store.offset(str(self.path))
            if inode != st.st_ino or offset > st.st_size:
                offset = 0
            with open(self.path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
            end = data.rfind(b"\n") + 1  # a half-written last line waits for the next refresh
            rows = [r for r in map(parse_line, data[:end].decode(errors="replace").splitlines()) if r]
            if rows:
                self.store.record_served(rows)
            self.store.set_offset(str(self.path), st.st_ino, offset + end)
            return len(rows)
