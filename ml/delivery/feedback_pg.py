"""The feedback store in PostgreSQL: the cluster's backend (the platform's RDS instance), shared by the
endpoint's replicas, and the one-off provisioning of its database and login.

    python -m ml.delivery.feedback_pg provision   # the Deployment's init container

Connection settings are libpq's environment (`PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`, `PGPASSWORD`,
`PGSSLMODE=verify-full`, `PGSSLROOTCERT`: the RDS CA bundle in the image), which the pod sets, the login from its
Secret; nothing is passed on a command line. Writes are single
statements that are idempotent across replicas: `ON CONFLICT (request_id) DO NOTHING`, so two replicas
filing the same outcome at once store it once, and the one that lost the race compares its outcome with
the stored one (the same: a no-op; a different one: 409).

One connection per process, used under a lock and opened again once when the server closed it (an RDS
fail-over or restart): the endpoint's load is a few requests per second per replica, and the replicas
scale it out.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from ml.delivery.feedback import OutcomeStore, ServedRow, VariantOutcomes, outcomes_query

log = logging.getLogger("mlplat.feedback")
T = TypeVar("T")

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS served (request_id TEXT PRIMARY KEY, model TEXT NOT NULL, variant TEXT NOT NULL, "
    "status INTEGER NOT NULL, at DOUBLE PRECISION NOT NULL, latency_ms DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS served_model_at ON served (model, at)",
    "CREATE TABLE IF NOT EXISTS outcomes (request_id TEXT PRIMARY KEY REFERENCES served (request_id), "
    "model TEXT NOT NULL, variant TEXT NOT NULL, success INTEGER NOT NULL, value DOUBLE PRECISION NOT NULL, "
    "kind TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS log_offset (path TEXT PRIMARY KEY, inode BIGINT NOT NULL, position BIGINT NOT NULL)",
)
# Serializes the schema statements of replicas that start together (CREATE ... IF NOT EXISTS is not safe
# against a concurrent create of the same name).
SCHEMA_LOCK = 0x6D6C706C6174  # any constant shared by the replicas
ENV_USER, ENV_PASSWORD, ENV_DATABASE = "FEEDBACK_DB_USER", "FEEDBACK_DB_PASSWORD", "FEEDBACK_DB_NAME"


class PostgresOutcomeStore(OutcomeStore):
    def __init__(self, conninfo: str = "", connect_timeout_s: int = 10) -> None:
        self.conninfo = conninfo
        self.connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._run(self._create_schema)

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=self.connect_timeout_s,
                                         application_name="mlplat-feedback")
        return self._conn

    def _run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """`work` on the connection, once more on a new connection when the old one was lost."""
        with self._lock:
            for attempt in (0, 1):
                conn = self._connect()
                try:
                    return work(conn)
                except psycopg.OperationalError:
                    lost = conn.closed or conn.broken
                    conn.close()
                    self._conn = None
                    if attempt or not lost:  # writes are idempotent, so repeating one is safe
                        raise
                    log.warning("feedback store: the database connection was lost; connecting again")
        raise AssertionError("unreachable")

    @staticmethod
    def _create_schema(conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            for statement in SCHEMA:
                conn.execute(statement)  # type: ignore[arg-type]  # constant SQL

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def record_served(self, rows: Sequence[ServedRow]) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany("INSERT INTO served VALUES (%s, %s, %s, %s, %s, %s) "
                                "ON CONFLICT (request_id) DO NOTHING", list(rows))
        if rows:
            self._run(work)

    def variant_of(self, request_id: str) -> tuple[str, str] | None:
        row = self._run(lambda c: c.execute("SELECT model, variant FROM served WHERE request_id = %s",
                                            (request_id,)).fetchone())
        return (str(row[0]), str(row[1])) if row else None

    def _insert_outcome(self, row: tuple[str, str, str, int, float, str, float]) -> tuple[int, float, str] | None:
        def work(conn: psycopg.Connection[Any]) -> tuple[int, float, str] | None:
            inserted = conn.execute("INSERT INTO outcomes VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT "
                                    "(request_id) DO NOTHING RETURNING request_id", row).fetchone()
            if inserted is not None:
                return None
            old = conn.execute("SELECT success, value, kind FROM outcomes WHERE request_id = %s",
                               (row[0],)).fetchone()
            assert old is not None  # outcomes are never deleted
            return int(old[0]), float(old[1]), str(old[2])
        return self._run(work)

    def outcomes(self, model: str, since: float = 0.0, variant: str | None = None,
                 until: float | None = None) -> dict[str, VariantOutcomes]:
        query, args = outcomes_query("%s", model, since, variant, until)
        rows = self._run(lambda c: c.execute(query, args).fetchall())  # type: ignore[call-overload]
        return {r[0]: VariantOutcomes(r[0], int(r[1]), int(r[2]), int(r[3]), float(r[4])) for r in rows}

    def offset(self, path: str) -> tuple[int, int]:
        row = self._run(lambda c: c.execute("SELECT inode, position FROM log_offset WHERE path = %s",
                                            (path,)).fetchone())
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def set_offset(self, path: str, inode: int, offset: int) -> None:
        self._run(lambda c: c.execute("INSERT INTO log_offset VALUES (%s, %s, %s) ON CONFLICT (path) DO UPDATE "
                                      "SET inode = EXCLUDED.inode, position = EXCLUDED.position",
                                      (path, inode, offset)))


def provision(admin_conninfo: str, user: str, password: str, database: str) -> list[str]:
    """Create (or bring up to date) the endpoint's login and its own database, as the instance's admin; returns
    what it did. Idempotent: a second run only sets the password again (a rotated Secret takes effect)."""
    if not (user and password and database):
        raise ValueError(f"{ENV_USER}, {ENV_PASSWORD} and {ENV_DATABASE} must all be set and non-empty")
    done = []
    with psycopg.connect(admin_conninfo, autocommit=True, application_name="mlplat-feedback-provision") as conn:
        # Replicas' init containers start together: one provisions at a time.
        conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        role = sql.Identifier(user)
        # The statement carries libpq's SCRAM verifier, never the password: statement text can end up in the
        # instance's log (a failing or slow statement; RDS exports that log to CloudWatch) and in pg_stat_activity.
        verifier = sql.Literal(conn.pgconn.encrypt_password(password.encode(), user.encode(),
                                                            b"scram-sha-256").decode())
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, verifier))
            done.append(f"created login {user}")
        else:
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(role, verifier))
            done.append(f"login {user} exists (password set)")
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
            # RDS's admin is no superuser: it must be a member of the owner role to create a database for it.
            conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(role))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), role))
            done.append(f"created database {database} owned by {user}")
        else:
            done.append(f"database {database} exists")
        # Only its owner (and the admin) may connect: not the other logins of the instance.
        conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)))
        conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.delivery.feedback_pg", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("provision", help=f"create the login and database named by {ENV_USER}, {ENV_DATABASE} (password "
                   f"{ENV_PASSWORD}) as the admin of the libpq environment (PGHOST, PGUSER, PGPASSWORD, ...)")
    ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    try:
        done = provision("", os.environ.get(ENV_USER, ""), os.environ.get(ENV_PASSWORD, ""),
                         os.environ.get(ENV_DATABASE, ""))
    except (ValueError, psycopg.Error) as exc:
        print(f"feedback store provisioning failed: {exc}", file=sys.stderr)
        return 1
    for line in done:
        log.info("%s", line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
