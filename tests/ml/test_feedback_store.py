"""The feedback store's one interface on both backends: SQLite (the local platform) and PostgreSQL (the cluster,
shared by the endpoint's replicas), and the cluster's way in: served records posted by the callers.

PostgreSQL is real: the runtime check's stand-in (infra/conformance/standins.py: Debian's PostgreSQL with TLS
and SCRAM logins like RDS's master user) on this machine's loopback, started once for the module. The
endpoint's login and database are made by the same `provision` the Deployment's init container runs.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import psycopg
import psycopg.sql
import pytest

from infra.conformance.sandbox import SandboxUnavailable
from infra.conformance.standins import Certificates, Postgres
from ml.delivery.feedback import FeedbackError, Outcome, OutcomeStore, Served, SqliteOutcomeStore, VariantOutcomes
from ml.delivery.feedback_pg import PostgresOutcomeStore, provision
from ml.delivery.feedback_server import Feedback, FeedbackClient, make_handler

pytestmark = pytest.mark.ml
ADMIN, ADMIN_PASSWORD = "mlflow", "standin-admin"
USER, PASSWORD, DATABASE = "feedback", "feedback-password-1", "feedback"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _conninfo(port: int, user: str, password: str, database: str) -> str:
    return f"host=127.0.0.1 port={port} user={user} password={password} dbname={database} sslmode=require"


@pytest.fixture(scope="module")
def postgres() -> Iterator[int]:
    """A PostgreSQL with TLS on 127.0.0.1 and an RDS-like admin login; its port."""
    directory = Path(tempfile.mkdtemp(prefix="mlplat-feedback-pg-"))
    directory.chmod(0o755)  # the server runs as the `postgres` user
    port = _free_port()
    server = Postgres(None, directory / "postgres", Certificates(directory / "certs", ["127.0.0.1"]), "127.0.0.1",
                      port, {ADMIN: ADMIN_PASSWORD}, ["mlflow"])
    try:
        server.start()
    except SandboxUnavailable as exc:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"PostgreSQL for the feedback store: {exc}", pytrace=False)
    try:
        provision(_conninfo(port, ADMIN, ADMIN_PASSWORD, "mlflow"), USER, PASSWORD, DATABASE)
        yield port
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pg_store(postgres: int) -> Iterator[Callable[[], PostgresOutcomeStore]]:
    """Stores on the endpoint's own database (one per replica), emptied for each test."""
    made: list[PostgresOutcomeStore] = []

    def make() -> PostgresOutcomeStore:
        made.append(PostgresOutcomeStore(_conninfo(postgres, USER, PASSWORD, DATABASE)))
        return made[-1]

    first = make()
    first._run(lambda c: c.execute("TRUNCATE outcomes, served, log_offset"))
    yield make
    for store in made:
        store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OutcomeStore]:
    if request.param == "sqlite":
        made: OutcomeStore = SqliteOutcomeStore(tmp_path / "outcomes.db")
        yield made
        made.close()
    else:
        yield request.getfixturevalue("pg_store")()


SERVED = [("a", "fraud", "champion", 200, 1000.0, 3.0), ("b", "fraud", "challenger", 200, 1500.0, 4.0),
          ("c", "fraud", "champion", 503, 2000.0, 9.0), ("r", "recommendation", "champion", 200, 1000.0, 2.0)]


# --------------------------------------------------------------------- one interface, two backends

def test_outcomes_per_variant_in_a_window_of_serving_time(store: OutcomeStore) -> None:
    store.record_served(SERVED)
    store.record_served(SERVED[:1])  # the same request again: ignored
    assert store.add(Outcome("fraud", "a", True, 2.5, "click")) == "champion"
    assert store.add(Outcome("fraud", "b", False)) == "challenger"
    assert store.outcomes("fraud") == {"champion": VariantOutcomes("champion", 2, 1, 1, 2.5),
                                       "challenger": VariantOutcomes("challenger", 1, 1, 0, 1.0)}
    assert store.outcomes("fraud", since=1200, until=2000) == {
        "challenger": VariantOutcomes("challenger", 1, 1, 0, 1.0)}  # [since, until): c at 2000 is left out
    assert store.outcomes("fraud", variant="champion", until=1500) == {
        "champion": VariantOutcomes("champion", 1, 1, 1, 2.5)}
    assert store.variant_of("r") == ("recommendation", "champion") and store.variant_of("zz") is None


def test_an_outcome_is_filed_once_and_never_changes(store: OutcomeStore) -> None:
    store.record_served(SERVED)
    assert store.add(Outcome("fraud", "a", True)) == "champion"
    assert store.add(Outcome("fraud", "a", True)) == "champion"  # a retry: no-op
    with pytest.raises(FeedbackError, match="already has a different outcome") as err:
        store.add(Outcome("fraud", "a", False))
    assert err.value.status == 409
    with pytest.raises(FeedbackError, match="served by model fraud, not sentiment") as err:
        store.add(Outcome("sentiment", "b", True))
    assert err.value.status == 409
    with pytest.raises(FeedbackError, match="was not served") as err:
        store.add(Outcome("fraud", "nope", True))
    assert err.value.status == 404
    assert store.outcomes("fraud")["champion"] == VariantOutcomes("champion", 2, 1, 1, 1.0)


def test_the_request_log_offset_is_kept(store: OutcomeStore) -> None:
    assert store.offset("/x/haproxy.log") == (0, 0)
    store.set_offset("/x/haproxy.log", 42, 100)
    store.set_offset("/x/haproxy.log", 42, 250)
    assert store.offset("/x/haproxy.log") == (42, 250)


# ------------------------------------------------------------- served records posted by the callers

def test_served_records_name_the_variant_or_carry_seldons_route_header(store: OutcomeStore) -> None:
    fb = Feedback(store, clock=lambda: 5000.0)
    recorded = fb.post_served({"served": [
        {"model": "recommendation", "request_id": "r1", "route": ":recommendation-challenger_3:"},
        {"model": "recommendation", "request_id": "r2", "variant": "champion", "at": 4000, "latency_ms": 7.5}]})
    assert recorded == [{"request_id": "r1", "variant": "challenger"}, {"request_id": "r2", "variant": "champion"}]
    assert fb.post_served({"model": "recommendation", "request_id": "r1", "variant": "challenger"}) == [
        {"request_id": "r1", "variant": "challenger"}]  # a retry: no-op
    assert fb.post({"model": "recommendation", "request_id": "r1", "success": True, "kind": "click"}) == [
        {"request_id": "r1", "variant": "challenger"}]
    assert fb.query({"model": ["recommendation"], "until": ["4500"]})["variants"] == {
        "champion": {"variant": "champion", "served": 1, "outcomes": 0, "successes": 0, "value_sum": 0.0}}


def test_bad_served_records_are_refused_naming_the_problem_and_file_nothing(store: OutcomeStore) -> None:
    fb = Feedback(store, clock=lambda: 5000.0)
    with pytest.raises(FeedbackError, match=r"served 1: route ':fraud-champion_1:' names no variant of model "
                                            r"recommendation.*; at must be positive") as err:
        fb.post_served({"served": [{"model": "recommendation", "request_id": "ok", "variant": "champion"},
                                   {"model": "recommendation", "request_id": "x", "route": ":fraud-champion_1:",
                                    "at": -1}]})
    assert err.value.status == 400
    with pytest.raises(FeedbackError, match=r"variant must be one of champion, challenger.*unknown field\(s\) color"
                                            r"|unknown field\(s\) color.*variant must be one of"):
        fb.post_served({"model": "fraud", "request_id": "y", "variant": "blue", "color": 1})
    assert store.variant_of("ok") is None  # all or nothing
    fb.post_served({"model": "fraud", "request_id": "z", "variant": "champion"})
    with pytest.raises(FeedbackError,
                       match="already recorded as served by fraud champion, not fraud challenger") as err:
        fb.post_served({"model": "fraud", "request_id": "z", "variant": "challenger"})
    assert err.value.status == 409
    with pytest.raises(FeedbackError, match=r"until .* must not be before since"):
        fb.query({"model": ["fraud"], "since": ["10"], "until": ["5"]})
    with pytest.raises(FeedbackError, match=r"served 0: model .frud. is not served here \(one of fraud, sentiment\)"):
        Feedback(store, models=("fraud", "sentiment")).post_served({"model": "frud", "request_id": "q",
                                                                     "variant": "champion"})


def test_served_record_validation_names_every_problem() -> None:
    with pytest.raises(FeedbackError) as err:
        Served.parse({"model": "", "request_id": 7, "variant": "champion", "status": 99, "latency_ms": "fast"},
                     ("champion", "challenger"), 1.0)
    message = str(err.value)
    for part in ("model must be", "request_id must be", "status must be an HTTP status code", "latency_ms must be"):
        assert part in message, message


# ---------------------------------------------------------- PostgreSQL: what only it has to show

@pytest.mark.integration
def test_provisioning_is_repeatable_and_the_database_is_the_endpoints_own(postgres: int) -> None:
    admin = _conninfo(postgres, ADMIN, ADMIN_PASSWORD, "mlflow")
    assert provision(admin, USER, PASSWORD, DATABASE) == [f"login {USER} exists (password set)",
                                                          f"database {DATABASE} exists"]
    with pytest.raises(ValueError, match="FEEDBACK_DB_PASSWORD"):
        provision(admin, USER, "", DATABASE)
    # Another login of the instance cannot connect to the endpoint's database.
    provision(admin, "intruder", "intruder-pass", "intruder")
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(_conninfo(postgres, "intruder", "intruder-pass", DATABASE)).close()
    with psycopg.connect(_conninfo(postgres, USER, PASSWORD, DATABASE)) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (USER, DATABASE)


@pytest.mark.integration
def test_the_password_reaches_the_server_only_as_a_scram_verifier(postgres: int,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    execute = psycopg.Connection.execute

    def recording(self: psycopg.Connection, query: object, *args: object, **kwargs: object) -> object:
        sent.append(query.as_string(self) if isinstance(query, psycopg.sql.Composable) else str(query))
        return execute(self, query, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(psycopg.Connection, "execute", recording)
    provision(_conninfo(postgres, ADMIN, ADMIN_PASSWORD, "mlflow"), USER, "rotated-password-2", DATABASE)
    assert any("PASSWORD 'SCRAM-SHA-256$" in s for s in sent), sent
    assert not any("rotated-password-2" in s for s in sent)
    monkeypatch.undo()
    try:
        with psycopg.connect(_conninfo(postgres, USER, "rotated-password-2", DATABASE)) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (USER,)
    finally:  # the module's other tests log in with the first password
        provision(_conninfo(postgres, ADMIN, ADMIN_PASSWORD, "mlflow"), USER, PASSWORD, DATABASE)


@pytest.mark.integration
def test_replicas_share_the_store_and_race_on_one_outcome_without_losing_it(
        pg_store: Callable[[], PostgresOutcomeStore]) -> None:
    one, two = pg_store(), pg_store()
    one.record_served(SERVED)
    results: list[object] = []
    barrier = threading.Barrier(8)

    def post(store: PostgresOutcomeStore) -> None:
        barrier.wait()
        try:
            results.append(store.add(Outcome("fraud", "b", True, kind="click")))
        except FeedbackError as exc:
            results.append(exc)

    threads = [threading.Thread(target=post, args=(s,)) for s in (one, two) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == ["challenger"] * 8  # every retry of the same outcome succeeds
    assert two.outcomes("fraud")["challenger"] == VariantOutcomes("challenger", 1, 1, 1, 1.0)


@pytest.mark.integration
def test_a_lost_connection_is_opened_again(pg_store: Callable[[], PostgresOutcomeStore], postgres: int) -> None:
    store = pg_store()
    store.record_served(SERVED[:1])
    pid = store._run(lambda c: c.execute("SELECT pg_backend_pid()").fetchone())[0]  # type: ignore[index]
    with psycopg.connect(_conninfo(postgres, ADMIN, ADMIN_PASSWORD, "mlflow"), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.2)
    assert store.variant_of("a") == ("fraud", "champion")  # the RDS fail-over case: one reconnect, no error


@pytest.mark.integration
def test_the_http_endpoint_on_postgres_as_the_cluster_runs_it(pg_store: Callable[[], PostgresOutcomeStore]) -> None:
    fb = Feedback(pg_store())  # no request log: callers post what was served
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fb, ["recommendation"]))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        client = FeedbackClient(url)
        now = time.time()
        assert client.post_served([Served("recommendation", "q1", "champion", now - 3600),
                                   Served("recommendation", "q2", "challenger", now)]) == {
            "q1": "champion", "q2": "challenger"}
        assert client.post([Outcome("recommendation", "q1", True, kind="click")]) == {"q1": "champion"}
        assert client.outcomes("recommendation", until=now - 1800) == {
            "champion": VariantOutcomes("champion", 1, 1, 1, 1.0)}
        with pytest.raises(FeedbackError, match="was not recorded as served") as err:
            client.post([Outcome("recommendation", "never", True)])
        assert err.value.status == 404
        req = urllib.request.Request(f"{url}/v1/served", data=b'{"model": "recommendation"}', method="POST")
        with pytest.raises(urllib.error.HTTPError) as http_err:
            urllib.request.urlopen(req, timeout=5)
        assert http_err.value.code == 400
        assert "request_id must be" in json.loads(http_err.value.read())["error"]
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert 'mlplat_feedback_served_total{model="recommendation",variant="challenger"} 1' in text
        assert 'mlplat_feedback_outcomes_total{model="recommendation",variant="champion",success="true"} 1' in text
    finally:
        server.shutdown()
        server.server_close()
