"""What serves, without a running platform: `up`'s reuse rule reads the served version's own data tag, and a
promotion the model server cannot follow leaves the alias and the slot as they were.

A SQLite registry in a temporary directory and a small HTTP server answering the two MLServer calls the
promotion reads (readiness, model metadata) stand in for the platform; nothing else is started.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from contracts import local_platform
from local import consistency, discovery
from local.config import LocalConfig
from local.training import DATA_TAG, registered
from ml.training.directory_bucket import LOCAL_BUCKET
from ml.training.follow import FollowError, Serving, promote, slot_version

pytestmark = [pytest.mark.ml]


@pytest.fixture
def registry(tmp_path: Path) -> tuple[str, MlflowClient]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("fraud")
    client.create_experiment("truth", artifact_location=(tmp_path / "artifacts").as_uri())
    return uri, client


def _version(client: MlflowClient, tags: dict[str, str]) -> str:
    run = client.create_run(client.get_experiment_by_name("truth").experiment_id)
    client.set_terminated(run.info.run_id)
    return str(client.create_model_version("fraud", f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                                       tags=tags).version)


def test_up_reuses_a_champion_only_for_its_own_data(registry):
    uri, client = registry
    champion = _version(client, {DATA_TAG: "data-a", "gate.passed": "true"})
    challenger = _version(client, {DATA_TAG: "data-b", "gate.passed": "false"})  # a later attempt, gates failed
    client.set_registered_model_alias("fraud", "champion", champion)
    client.set_registered_model_alias("fraud", "challenger", challenger)
    # The champion was trained on data-a: it is not "trained on the same data" as data-b, whatever the
    # challenger's tag says.
    assert registered(uri, "fraud", "data-b") is None
    reused = registered(uri, "fraud", "data-a")
    assert reused is not None and reused.version == champion and reused.alias == "champion"


class _Server(BaseHTTPRequestHandler):
    served = "1"

    def do_GET(self) -> None:
        body = {"name": "fraud", "versions": [self.served]} if self.path == "/v2/models/fraud" else {}
        self._answer(200, body)

    def do_POST(self) -> None:
        if self.path == "/v2/repository/index":
            self._answer(200, [{"name": "fraud", "version": self.served, "state": "READY"}])
        else:
            self._answer(500, {"error": "load refused"})

    def _answer(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _seed_slot(slot_dir: Path, version: str) -> Path:
    marker = slot_dir / LOCAL_BUCKET / "fraud" / "champion" / "PUBLISHED.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"model": "fraud", "version": version}))
    return marker


def test_a_promotion_serving_cannot_follow_changes_nothing(registry, server, tmp_path):
    _, client = registry
    v1 = _version(client, {"gate.passed": "true"})
    v2 = _version(client, {"gate.passed": "true"})  # no artifact files: its publication to the slot fails
    client.set_registered_model_alias("fraud", "champion", v1)
    marker = _seed_slot(tmp_path / "slots", v1)
    before = marker.read_text()
    with pytest.raises(FollowError, match=r"nothing changed: the champion alias is back at v1"):
        promote(client, "fraud", v2, Serving(tmp_path / "slots", server))
    assert str(client.get_model_version_by_alias("fraud", "champion").version) == v1
    assert marker.read_text() == before and slot_version(tmp_path / "slots", "fraud") == v1


def test_a_promotion_refused_up_front_when_the_model_server_is_down(registry, tmp_path):
    _, client = registry
    v1 = _version(client, {"gate.passed": "true"})
    with pytest.raises(FollowError, match=r"does not answer.*nothing was changed"):
        promote(client, "fraud", v1, Serving(tmp_path / "slots", "http://127.0.0.1:9"))
    assert "champion" not in client.get_registered_model("fraud").aliases


def test_the_consistency_check_names_model_alias_slot_and_served_version(registry, server, tmp_path):
    uri, client = registry
    v1 = _version(client, {"gate.passed": "true"})
    v2 = _version(client, {"gate.passed": "true"})
    client.set_registered_model_alias("fraud", "champion", v2)  # moved; slot and server still at v1
    _seed_slot(tmp_path / "slots", v1)
    (row,) = consistency.check(uri, server, tmp_path / "slots", ("fraud",))
    assert not row.ok and row.server_state == "READY"
    assert row.line() == f"fraud: champion alias v{v2}, slot v{v1}, served v{v1}"
    client.set_registered_model_alias("fraud", "champion", v1)
    (row,) = consistency.check(uri, server, tmp_path / "slots", ("fraud",))
    assert row.ok, row.line()


def test_commands_find_the_ports_up_recorded(tmp_path, monkeypatch):
    """A platform started on other ports is found from its record; a flag given still wins."""
    state = tmp_path / "state"
    ports = {"mlflow": 25000, "http": 28080, "grpc": 28081, "metrics": 28082, "redis": 26379, "prometheus": 29090,
             "autorollback": 29095, "retrain": 29096}
    discovery.record(LocalConfig(state_dir=state, ports=ports, models=("fraud",)), ["mlflow", "mlserver"], "up")
    assert discovery.resolve_ports(state, {"http": None})["http"] == 28080
    assert discovery.resolve_ports(state, {"http": 30000})["http"] == 30000
    monkeypatch.setenv(local_platform.STATE_ENV, str(state))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    found = local_platform.read()
    assert found is not None and found.serving_url == "http://127.0.0.1:28080" and found.models == ("fraud",)
    with pytest.raises(local_platform.PlatformNotFound, match=r"MLflow at http://127.0.0.1:25000 does not answer"):
        local_platform.registry_for(None)
    mine = local_platform.registry_for("http://127.0.0.1:25000")  # the platform's own URI: still that platform
    assert mine.platform is not None and mine.platform.slot_dir == state / "model-slots"
