"""Opening a connection to the online store has its own bound, apart from a read's: a store that takes
longer than a read's bound to accept a connection (TLS handshake, AUTH across zones, a loaded machine) still
answers the first read, while a slow read is still cut at the read bound; a failed set-up of the blocking
client is not retried on every request. The store is a RESP server in a thread of this process whose AUTH
answer and reads are delayed on purpose (no process is started: unit tests)."""

from __future__ import annotations

import socket
import threading
import time

import hiredis
import pytest

from ml.serving import online
from ml.serving.online import CLIENTS, OnlineFeatureReader, StoreError, ViewSpec

VIEWS = [ViewSpec("card_features", "card_id", ("cardholder_age",))]
READ_BOUND_S = 0.02
SLOW_AUTH_S = 0.15  # well over the read bound, well under the set-up bound below
SET_UP_BOUND_S = 2.0


class SlowStore:
    """Answers AUTH after `auth_delay_s`, every HMGET with nils after `read_delay_s`, anything else +OK."""

    def __init__(self, auth_delay_s: float, read_delay_s: float = 0.0) -> None:
        self.auth_delay_s, self.read_delay_s = auth_delay_s, read_delay_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.auths = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = hiredis.Reader()
        with conn:
            while chunk := conn.recv(65536):
                reader.feed(chunk)
                while (command := reader.gets()) is not False:
                    name = command[0].upper()
                    if name == b"AUTH":
                        self.auths += 1
                        time.sleep(self.auth_delay_s)
                    elif name == b"HMGET":
                        time.sleep(self.read_delay_s)
                        conn.sendall(b"*%d\r\n" % (len(command) - 2) + b"$-1\r\n" * (len(command) - 2))
                        continue
                    conn.sendall(b"+OK\r\n")

    def url(self) -> str:
        return f"redis://:secret@127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_the_first_read_opens_the_connection_within_its_own_bound(client, loop):
    store = SlowStore(auth_delay_s=SLOW_AUTH_S)
    try:
        reader = OnlineFeatureReader(store.url(), "mlplat", VIEWS, timeout_s=READ_BOUND_S, client=client,
                                     connect_timeout_s=SET_UP_BOUND_S)
        assert loop.run_until_complete(reader.fetch({"card_id": 1})) == {"cardholder_age": None}
        assert store.auths == 1
        # The set-up bound is the set-up's alone: a read slower than the read bound still fails.
        store.read_delay_s = 10 * READ_BOUND_S
        with pytest.raises(StoreError):
            loop.run_until_complete(reader.fetch({"card_id": 1}))
    finally:
        store.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_a_set_up_slower_than_its_bound_fails(client, loop):
    store = SlowStore(auth_delay_s=SLOW_AUTH_S)
    try:
        reader = OnlineFeatureReader(store.url(), "mlplat", VIEWS, timeout_s=1.0, client=client,
                                     connect_timeout_s=SLOW_AUTH_S / 3)
        with pytest.raises(StoreError):
            loop.run_until_complete(reader.fetch({"card_id": 1}))
    finally:
        store.close()


def test_the_blocking_client_backs_off_after_a_failed_set_up():
    store = SlowStore(auth_delay_s=SLOW_AUTH_S)
    try:
        reader = OnlineFeatureReader(store.url(), "mlplat", VIEWS, client="resp", connect_timeout_s=SLOW_AUTH_S / 3)
        with pytest.raises(StoreError, match="timed out"):
            reader.get({"card_id": 1})
        started = time.perf_counter()
        with pytest.raises(StoreError, match="set-up failed recently"):
            reader.get({"card_id": 1})
        assert time.perf_counter() - started < SLOW_AUTH_S / 3  # at once: the event loop is not held
        assert store.auths == 1
        # After the back-off it connects again (its end brought forward; this time the store answers in time).
        reader._client._retry_at = time.monotonic() - online.RECONNECT_BACKOFF_S
        store.auth_delay_s = 0.0
        assert reader.get({"card_id": 1}) == {"cardholder_age": None}
    finally:
        store.close()



def test_the_non_blocking_client_backs_off_after_a_failed_set_up(loop):
    """resp-async, like the blocking client: a failed set-up is not tried again before `RECONNECT_BACKOFF_S`
    (reads fail at once, the store sees no second AUTH), and after it a read connects again."""
    store = SlowStore(auth_delay_s=SLOW_AUTH_S)
    try:
        reader = OnlineFeatureReader(store.url(), "mlplat", VIEWS, client="resp-async",
                                     connect_timeout_s=SLOW_AUTH_S / 3)
        with pytest.raises(StoreError, match="connection set-up failed"):
            loop.run_until_complete(reader.fetch({"card_id": 1}))
        with pytest.raises(StoreError, match="set-up failed recently"):
            loop.run_until_complete(reader.fetch({"card_id": 1}))
        assert store.auths == 1
        reader._client._retry_at = time.monotonic() - online.RECONNECT_BACKOFF_S
        store.auth_delay_s = 0.0
        assert loop.run_until_complete(reader.fetch({"card_id": 1})) == {"cardholder_age": None}
        assert store.auths == 2
    finally:
        store.close()

@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "soon"])
def test_bounds_are_checked(bad):
    with pytest.raises(ValueError, match="connect_timeout_s"):
        OnlineFeatureReader("redis://127.0.0.1:1/0", "p", VIEWS, connect_timeout_s=bad)
    with pytest.raises(ValueError, match="timeout_s"):
        OnlineFeatureReader("redis://127.0.0.1:1/0", "p", VIEWS, timeout_s=bad)


@pytest.mark.parametrize("key", ["feature_timeout_ms", "feature_connect_timeout_ms"])
def test_the_fraud_runtime_names_a_bad_bound(key):
    from ml.models.fraud.runtime import _seconds

    assert _seconds({key: "250"}, key, 0.02) == 0.25 and _seconds({}, key, 0.02) == 0.02
    for bad in ("soon", 0, -5, None):
        with pytest.raises(ValueError, match=f"parameters.extra.{key} must be a number of milliseconds"):
            _seconds({key: bad}, key, 0.02)
