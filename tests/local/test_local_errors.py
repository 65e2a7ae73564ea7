"""Early, clear errors of `mlplat local up` and the pieces of its configuration.

Nothing here starts MLflow or MLServer: every error must be raised before a service is launched.
"""

from __future__ import annotations

import argparse
import http.server
import json
import socket
import threading

import pytest
import yaml

from contracts import model_registry
from local import cli as local_cmd
from local import orchestration, prometheus
from local.config import LocalConfig, default_ports, otlp_endpoint_from_env
from local.report import key_metrics, summary_text
from local.services import decide
from local.serving import server_env, tracing_server
from local.supervisor import PortInUseError, Supervisor
from local.training import generate_sample_data, validate_data
from ml.data.contract import DataContractError
from ml.serving.processes import free_port
from mlplat.cli import main
from stacks.schema import PipelinesConfig, PredictionCacheConfig


def _ports() -> dict[str, int]:
    names = ("mlflow", "http", "grpc", "metrics", "redis", "prometheus")
    ports: set[int] = set()
    while len(ports) < len(names):
        ports.add(free_port())
    return dict(zip(names, sorted(ports), strict=True))


def _port_args(ports: dict[str, int]) -> list[str]:
    flags = {"mlflow": "--mlflow-port", "http": "--http-port", "grpc": "--grpc-port", "metrics": "--metrics-port",
             "redis": "--redis-port", "prometheus": "--prometheus-port"}
    return [a for name, port in ports.items() for a in (flags[name], str(port))]


@pytest.mark.integration
def test_port_in_use_names_the_port_its_purpose_and_the_way_out(tmp_path):
    cfg = LocalConfig(state_dir=tmp_path, ports=_ports())
    with socket.socket() as s:
        s.bind(("127.0.0.1", cfg.ports["mlflow"]))
        s.listen()
        with pytest.raises(PortInUseError) as err:
            decide(cfg, Supervisor(tmp_path), "mlflow")
    msg = str(err.value)
    assert f"port {cfg.ports['mlflow']} (MLflow tracking server and UI) is already in use" in msg
    assert "--mlflow-port" in msg and "MLPLAT_MLFLOW_PORT" in msg


@pytest.mark.integration
def test_cli_refuses_a_busy_port_before_starting_anything(tmp_path, capsys):
    ports = _ports()
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports["http"]))
        s.listen()
        code = main(["local", "up", "--state-dir", str(tmp_path), "--no-prometheus", *_port_args(ports)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"port {ports['http']} (MLServer HTTP (inference))" in err and "--http-port" in err
    assert Supervisor(tmp_path).records() == []


def test_missing_redis_server_says_which_package_and_how(tmp_path, monkeypatch):
    real_which = orchestration.shutil.which
    monkeypatch.setattr(orchestration.shutil, "which",
                        lambda name: None if name == "redis-server" else real_which(name))
    with pytest.raises(orchestration.SetupError, match=r"redis-server.*apt-get install -y redis-server"):
        orchestration.preflight(LocalConfig(state_dir=tmp_path, ports=_ports(), redis=True))


def test_missing_prometheus_is_only_a_note(tmp_path, monkeypatch):
    monkeypatch.setattr(prometheus, "binaries", lambda: (None, None))
    cfg = LocalConfig(state_dir=tmp_path, ports=_ports())
    notes = orchestration.preflight(cfg)
    assert cfg.prometheus is False
    assert any("apt-get install -y prometheus" in n for n in notes)


def test_data_with_a_wrong_column_names_file_and_column(tmp_path, capsys):
    data = generate_sample_data(tmp_path / "data", ("recommendation",))
    ratings = data / "goodbooks_ratings_sample.csv"
    lines = ratings.read_text().splitlines()
    ratings.write_text("\n".join(["user_id,book,rating", *lines[1:]]) + "\n")
    with pytest.raises(DataContractError) as err:
        validate_data(data, ("recommendation",))
    assert "goodbooks_ratings_sample.csv" in str(err.value) and "book_id" in str(err.value)

    state = tmp_path / "state"
    code = main(["local", "up", "--state-dir", str(state), "--data", str(data), "--models", "recommendation",
                 "--no-prometheus", *_port_args(_ports())])
    assert code == 2
    err_text = capsys.readouterr().err
    assert "does not match the expected schema" in err_text and "goodbooks_ratings_sample.csv" in err_text
    assert Supervisor(state).records() == []  # refused before MLflow was started


def test_missing_data_dir_is_refused(tmp_path):
    with pytest.raises(DataContractError, match="does not exist"):
        validate_data(tmp_path / "nope", ("recommendation",))


def test_config_validation(tmp_path):
    ports = _ports()
    with pytest.raises(ValueError, match=r"the mlflow and http ports are both"):
        LocalConfig(state_dir=tmp_path, ports={**ports, "http": ports["mlflow"]})
    with pytest.raises(ValueError, match="unknown model"):
        LocalConfig(state_dir=tmp_path, ports=ports, models=("fraud", "spam"))
    with pytest.raises(ValueError, match=r"outside 1024\.\.65535"):
        LocalConfig(state_dir=tmp_path, ports={**ports, "redis": 80})
    assert default_ports({"MLPLAT_MLFLOW_PORT": "15500"})["mlflow"] == 15500
    with pytest.raises(ValueError, match="MLPLAT_HTTP_PORT"):
        default_ports({"MLPLAT_HTTP_PORT": "eighty"})


def test_tracing_only_with_a_collector():
    assert otlp_endpoint_from_env({}) is None
    assert otlp_endpoint_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}) == "http://collector:4317"
    assert tracing_server("http://collector:4317") == "collector:4317"
    assert tracing_server("localhost:14317") == "localhost:14317"
    assert tracing_server(None) is None
    cfg = LocalConfig(ports=_ports())
    assert server_env(cfg)["OTEL_SDK_DISABLED"] == "true"
    cfg.otlp_endpoint = "http://127.0.0.1:4317"
    assert "OTEL_SDK_DISABLED" not in server_env(cfg)


@pytest.mark.integration
def test_prometheus_config_carries_the_cluster_alert_rules(tmp_path):
    groups, source = prometheus.find_alert_rules()
    assert groups and source == "contracts/alerts.py"
    cfg_path, rules_path = prometheus.write_config(tmp_path, "127.0.0.1:18082", groups)
    assert rules_path == tmp_path / "rules" / "alerts.yml"
    assert yaml.safe_load(cfg_path.read_text())["rule_files"] == [str(rules_path)]
    assert yaml.safe_load(rules_path.read_text()) == {"groups": json.loads(json.dumps(groups))}
    names = {r["alert"] for g in json.loads(json.dumps(groups)) for r in g["rules"]}
    assert "MLPlatModelDriftHigh" in names
    assert "127.0.0.1:18082" in cfg_path.read_text()
    if prometheus.binaries()[1] is None:
        pytest.fail("promtool is not installed: run scripts/bootstrap.sh system (Debian package prometheus)")
    assert "SUCCESS" in prometheus.check_rules(rules_path)
    rules_path.write_text("groups: [{name: x, rules: [{alert: A, expr: 'sum(('}]}]\n")
    with pytest.raises(ValueError, match="promtool check rules"):
        prometheus.check_rules(rules_path)


def test_summary_text_lists_urls_versions_smoke_results_and_total_time():
    doc = {
        "ok": True, "total_s": 97.3,
        "urls": {"MLflow UI": "http://127.0.0.1:15000"},
        "models": [{"name": "fraud", "version": "3", "alias": "champion", "trained": True, "gates": "auc ok",
                    "metrics": {"auc": 0.99, "f1": 0.93, "baseline.x": 1.0}, "gate_metrics": ["f1"]}],
        "smoke": {"fraud": {"ok": True, "status": 200, "first_ms": 12.5, "p50_ms": 2.25, "answer": "probability=0.01"}},
        "feast": {"online_store": "sqlite", "views": ["card_features"], "check": "online read-back ok"},
        "tracing": "off", "prometheus": "off", "services": {"mlflow": "started"}, "data": "sample",
    }
    text = summary_text(doc)
    for needle in ("http://127.0.0.1:15000", "fraud", "v3", "champion", "OK", "12.5 / 2.2", "Total time: 97.3s",
                   "f1=0.930 auc=0.990"):
        assert needle in text
    assert "baseline" not in key_metrics(doc["models"][0]["metrics"])


def test_status_and_down_with_nothing_running(tmp_path, capsys):
    args = ["--state-dir", str(tmp_path)]
    assert main(["local", "status", *args]) == 1
    assert "nothing is running" in capsys.readouterr().out
    assert main(["local", "down", *args]) == 0
    assert "nothing was running" in capsys.readouterr().out


def test_command_is_registered():
    parser = argparse.ArgumentParser()
    local_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["local", "status", "--state-dir", "/tmp/x"])
    assert args.command == "local" and callable(args.func)
    assert ("local", "local.cli", "ml") in __import__("mlplat.cli").cli.COMMANDS


def test_sample_data_has_its_own_gate_floors_and_real_data_the_configured_ones(tmp_path):
    from local.training import gates_for
    from ml.training.gates import load_gates

    for name in model_registry.names():
        sample, profile = gates_for(name, sample=True)
        assert sample == dict(model_registry.get(name).sample_gates) and profile == "sample-data floors"
        configured, profile = gates_for(name, sample=False)
        assert configured == load_gates(name) and profile == "stack default gates"
        # Sample floors are looser than production floors, never a different metric.
        assert set(sample) <= set(configured)
        assert all(sample[m] <= configured[m] for m in sample)
    with pytest.raises(ValueError, match="--gates-stack"):
        LocalConfig(state_dir=tmp_path, ports=_ports(), gates_stack=tmp_path / "missing.yaml")


def test_mlserver_repository_points_at_the_registry_and_traces_only_with_a_collector(tmp_path):
    from local.serving import write_repo
    from local.training import ModelState

    cfg = LocalConfig(state_dir=tmp_path, ports=_ports(), redis=True)
    stale = cfg.path("mlserver", "old-model")
    stale.mkdir(parents=True)
    (stale / "model-settings.json").write_text("{}")
    models = [ModelState("fraud", "2", True, "champion", ""), ModelState("sentiment", "1", False, "challenger", "")]

    root = write_repo(cfg, models)
    settings = json.loads((root / "settings.json").read_text())
    assert "tracing_server" not in settings
    assert (settings["http_port"], settings["metrics_port"]) == (cfg.ports["http"], cfg.ports["metrics"])
    assert not stale.exists()  # a model of an earlier run is not served again
    fraud = json.loads((root / "fraud" / "model-settings.json").read_text())
    assert fraud["parameters"]["uri"] == "models:/fraud@champion"
    # No drift (so no drift retrain) before the stack's minimum sample size (workloads.pipelines).
    # With the local Redis, deterministic models cache their answers there for the stack's default TTL.
    assert fraud["parameters"]["extra"] == {"tracking_uri": cfg.mlflow_url, "redis_url": cfg.redis_url,
                                            "drift_min_samples": PipelinesConfig().retrain_min_samples,
                                            "prediction_cache_ttl_s": PredictionCacheConfig().ttl_seconds}
    sentiment = json.loads((root / "sentiment" / "model-settings.json").read_text())
    assert sentiment["parameters"]["uri"] == "models:/sentiment@challenger"

    cfg.otlp_endpoint = "http://127.0.0.1:4317"
    cfg.redis = False  # no Redis: no prediction cache either
    settings = json.loads((write_repo(cfg, models) / "settings.json").read_text())
    assert "prediction_cache_ttl_s" not in json.loads((root / "fraud" / "model-settings.json").read_text())[
        "parameters"]["extra"]
    assert settings["tracing_server"] == "127.0.0.1:4317"


class _Sup:
    def __init__(self, running: set[str]) -> None:
        self.up, self.stopped = set(running), []

    def running(self, name: str) -> bool:
        return name in self.up

    def stop(self, name: str) -> None:
        self.up.discard(name)
        self.stopped.append(name)


def test_up_without_redis_over_a_redis_platform_says_it_stops_that_redis(tmp_path):
    said: list[str] = []
    sup = _Sup({"redis", "mlflow"})
    assert orchestration.stop_redis_left_behind(LocalConfig(state_dir=tmp_path, redis=False), sup, said.append)
    assert sup.stopped == ["redis"] and len(said) == 1
    assert said[0].startswith("note: stopping the Redis online store an earlier `mlplat local up --redis` started")
    assert said[0].endswith("(run `mlplat local up --redis ...` to keep Redis)")
    sup, said = _Sup({"redis"}), []
    assert not orchestration.stop_redis_left_behind(LocalConfig(state_dir=tmp_path, redis=True), sup, said.append)
    assert sup.stopped == [] and said == []  # the same store: kept, nothing to say


@pytest.mark.parametrize(("served", "page"), [({"/classic/alerts"}, "/classic/alerts"),
                                              ({"/alerts", "/classic/alerts"}, "/alerts")])
def test_the_alerts_page_is_the_one_the_running_prometheus_serves(served, page):
    """Debian's prometheus 2.42 serves only the classic UI (`/alerts` is 404 there); an upstream build `/alerts`."""
    class Pages(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path in served else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert prometheus.alerts_page(base + "/") == base + page
    finally:
        server.shutdown()
