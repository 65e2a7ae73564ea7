"""The cluster rollout's wiring without a cluster: the official Kubernetes client against the fake API server
(tests/kube_fake.py: merge patches, the Seldon Experiment CRD schema, RBAC rules), the state ConfigMap, the
controller on the Experiment, the `--cluster` commands (start, status, abort) and the errors that name what is
wrong. No process is started here (the end-to-end run is in tests/local/test_delivery_e2e.py)."""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from contracts import deploy_tree, rollback
from contracts import rollout_job as rj
from contracts.deploy_tree import ModelRelease
from local import rollout_cli
from ml.delivery import cluster_rollout, rollout_cluster_cli
from ml.delivery.kube_api import KubeError, KubernetesApi
from ml.delivery.rollout import Check, Controller, Rollout, RolloutError
from ml.delivery.seldon import SeldonSplitter
from ml.delivery.splitter import CHALLENGER, CHAMPION

pytestmark = pytest.mark.ml

NS = "seldon"
MODELS = ("fraud", "recommendation")
DEPLOY = json.dumps({"repoUrl": "https://git.example.com/deploy.git", "branch": "main", "path": "deploy",
                     "promotion": "commit", "environment": "dev", "bucket": "models-bucket",
                     "credentialsSecret": None,
                     "models": [{"name": m, "replicas": 1, "championWeight": 100, "challengerWeight": 0}
                                for m in MODELS]})


def _fake(kube_fake: Any) -> Any:
    fake = kube_fake.FakeKubernetes(tokens={"admin": None, "rollout": rj.role_rules(["fraud"])})
    objects = deploy_tree.objects("dev", "models-bucket", [ModelRelease(m, 1, versions={"champion": "1"})
                                                          for m in MODELS])
    for obj in objects.values():
        if obj["kind"] == "Experiment":
            fake.add(obj)
    for m in MODELS:
        fake.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{m}-rollout", "namespace": NS},
                  "data": {}})
    fake.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": rj.SETTINGS, "namespace": rj.NAMESPACE},
              "data": rj.settings_data("registry.example.com/model-server:1-ops", DEPLOY, "http://prometheus:9090",
                                       "http://mlflow:5000", "gates", 3600, "", "eu-west-1")})
    return fake


@pytest.fixture
def served(kube_fake: Any, tmp_path: Path) -> Any:
    fake = _fake(kube_fake)
    url = fake.serve()
    yield fake, url, tmp_path
    fake.close()


def _client(fake: Any, url: str, tmp: Path, token: str) -> KubernetesApi:
    from kubernetes import config

    cfg = fake.kubeconfig(url, token, tmp / f"kubeconfig-{token}")
    return KubernetesApi(config.new_client_from_config(config_file=str(cfg)), url)


def test_the_official_client_sends_merge_patches_the_crd_accepts(served):
    fake, url, tmp = served
    api = _client(fake, url, tmp, "rollout")
    splitter = SeldonSplitter(api, NS)
    assert splitter.weights("fraud") == {CHAMPION: 100, CHALLENGER: 0}
    splitter.set_weights("fraud", {CHAMPION: 90, CHALLENGER: 10})
    assert fake.weights(NS, "fraud-experiment") == {"fraud-champion": 90, "fraud-challenger": 10}
    store = cluster_rollout.ConfigMapStore(api, NS, runner="rollout-fraud-x1")
    record = Rollout("fraud", "3", "1", [10, 100], 60.0)
    store.save(record)
    assert store.load("fraud") == record
    assert fake.objects[("configmaps", NS, "fraud-rollout")]["data"]["runner"] == "rollout-fraud-x1"
    patches = [(verb, ctype) for token, verb, _, ctype in fake.log if verb == "patch"]
    assert patches == [("patch", "application/merge-patch+json")] * 2


def test_the_role_is_enough_for_the_rollout_and_no_more(served):
    fake, url, tmp = served
    api = _client(fake, url, tmp, "rollout")
    with pytest.raises(KubeError, match=r"recommendation-experiment.*refused.*403"):
        SeldonSplitter(api, NS).set_weights("recommendation", {CHAMPION: 50, CHALLENGER: 50})
    with pytest.raises(KubeError, match=r"ConfigMap ml-training/rollout-settings.*refused"):
        api.get_config_map(rj.NAMESPACE, rj.SETTINGS)
    assert fake.weights(NS, "recommendation-experiment")["recommendation-challenger"] == 0


def test_a_patch_the_crd_refuses_changes_nothing(served):
    fake, url, tmp = served
    api = _client(fake, url, tmp, "admin")
    with pytest.raises(KubeError, match="422"):
        api.patch(NS, "fraud-experiment", {"spec": {"mirror": {"name": "fraud-challenger", "percent": "half"}}})
    assert "mirror" not in fake.experiment(NS, "fraud-experiment")["spec"]


def test_no_kube_config_and_an_unreachable_api_server_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(KubeError, match="no usable kube config"):
        KubernetesApi.connect(in_cluster=False)
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "c",
                               "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
                               "users": [{"name": "u", "user": {"token": "t"}}],
                               "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(cfg))
    api = KubernetesApi.connect(in_cluster=False)
    api._client.configuration.retries = 0
    with pytest.raises(KubeError, match=r"Experiment seldon/fraud-experiment.*unreachable"):
        api.get(NS, "fraud-experiment")


class _Prometheus(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"}).encode()
        self.send_response(400)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_prometheus_unreachable_or_refusing_is_named():
    with pytest.raises(RolloutError, match=r"Prometheus at http://127.0.0.1:9 is unreachable"):
        cluster_rollout.check_prometheus(cluster_rollout.prometheus_query("http://127.0.0.1:9", timeout_s=2))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(RolloutError, match=r"refused .up\{.: 400 parse error"):
            cluster_rollout.prometheus_query(url)("up{")
    finally:
        server.shutdown()
        server.server_close()


def test_rule_timing_is_the_clusters_or_named_fields():
    assert cluster_rollout.parse_timing("cluster") == rollback.Timing()
    assert cluster_rollout.parse_timing('{"error_for": "2s"}').error_for == "2s"
    with pytest.raises(ValueError, match=r"unknown field.*windows"):
        cluster_rollout.parse_timing('{"windows": "2s"}')
    with pytest.raises(ValueError, match="duration"):
        cluster_rollout.parse_timing('{"error_for": "soon"}')


class Scripted:
    """An Analyzer whose challenger breaks the error-rate rule from the second poll on."""

    def __init__(self) -> None:
        self.polls = 0

    def requests(self, model: str, version: str) -> float:
        return 100.0 * self.polls

    def checks(self, model: str, champion: str, challenger: str) -> list[Check]:
        self.polls += 1
        bad = self.polls >= 2
        return [Check("error_rate", "MLPlatRollbackErrorRate", "error rate > 5%", 0.0, 0.2 if bad else 0.0,
                      bad, False, 0.0)]


def test_the_controller_on_the_experiment_stops_a_breach_and_records_it_in_the_config_map(kube_fake):
    fake = _fake(kube_fake)
    api = kube_fake.InMemoryApi(fake, "rollout")
    clock = iter(range(1000))
    controller = Controller(SeldonSplitter(api, NS), Scripted(), cluster_rollout.ConfigMapStore(api, NS),
                            promote=lambda m, v: pytest.fail("a breached rollout must not promote"),
                            say=lambda line: None, poll_s=0, clock=lambda: float(next(clock)), sleep=lambda s: None)
    result = controller.run(Rollout("fraud", "3", "1", [10, 50, 100], 5.0, 1))
    assert result.phase == "stopped" and "error rate" in result.reason
    assert [e["spec"]["candidates"][1]["weight"] for e in fake.experiment_history] == [10, 0]
    stored = cluster_rollout.ConfigMapStore(api, NS).load("fraud")
    assert stored is not None and stored.phase == "stopped" and stored.shares == {CHAMPION: 100, CHALLENGER: 0}


def test_the_job_stops_before_any_traffic_moves_without_its_settings(kube_fake, capsys):
    fake = _fake(kube_fake)
    code = cluster_rollout.main(["fraud", "3"], api=kube_fake.InMemoryApi(fake, "rollout"),
                                env={"MLPLAT_PROMETHEUS_URL": "http://prometheus:9090"})
    assert code == 1
    err = capsys.readouterr().err
    assert "MLPLAT_DEPLOY (the deploy tree)" in err and "MLFLOW_TRACKING_URI (MLflow)" in err
    assert fake.experiment_history == []


def test_start_creates_the_rendered_job_once_and_names_bad_input(kube_fake):
    fake = _fake(kube_fake)
    api = kube_fake.InMemoryApi(fake)
    job = rollout_cluster_cli.start(api, "fraud", "3", (10, 50, 100), 60.0, 20, started_by="alice")
    settings = rj.Settings.from_config_map(fake.objects[("configmaps", rj.NAMESPACE, rj.SETTINGS)]["data"])
    assert job["spec"] == rj.job(settings, "fraud", "3", (10, 50, 100), 60.0, 20, started_by="alice")["spec"]
    with pytest.raises(RolloutError, match="a rollout of fraud runs already"):
        rollout_cluster_cli.start(api, "fraud", "4", (10, 100), 60.0, 20)
    with pytest.raises(RolloutError, match="model 'nosuch' is not enabled"):
        rollout_cluster_cli.start(api, "nosuch", "3", (10, 100), 60.0, 20)
    fake.objects.pop(("configmaps", rj.NAMESPACE, rj.SETTINGS))
    with pytest.raises(RolloutError, match=r"no ConfigMap ml-training/rollout-settings.*workloads.rollouts"):
        rollout_cluster_cli.start(api, "recommendation", "3", (10, 100), 60.0, 20)


def test_a_finished_rollouts_job_is_replaced(kube_fake):
    fake = _fake(kube_fake)
    api = kube_fake.InMemoryApi(fake)
    fake.job_status = lambda name: {"failed": 1}
    rollout_cluster_cli.start(api, "fraud", "3", (10, 100), 60.0, 20)
    deleted: list[str] = []
    fake.on_job_delete = deleted.append
    rollout_cluster_cli.start(api, "fraud", "4", (10, 100), 60.0, 20)
    assert deleted == ["rollout-fraud"]
    assert fake.objects[("jobs", rj.NAMESPACE, "rollout-fraud")]["metadata"]["annotations"]["mlplatform.io/version"] \
        == "4"


def test_status_and_abort_from_another_machine(kube_fake):
    fake = _fake(kube_fake)
    api = kube_fake.InMemoryApi(fake)
    rollout_cluster_cli.start(api, "fraud", "3", (10, 100), 60.0, 20)
    running = Rollout("fraud", "3", "1", [10, 100], 60.0, step=0, shares={CHAMPION: 90, CHALLENGER: 10})
    cluster_rollout.ConfigMapStore(api, NS).save(running)
    SeldonSplitter(api, NS).set_weights("fraud", {CHAMPION: 90, CHALLENGER: 10})
    st = rollout_cluster_cli.status(api, "fraud")
    assert st.rollout == running and st.live == {CHAMPION: 90, CHALLENGER: 10} and st.job == "running" and not st.note
    record = rollout_cluster_cli.abort(api, "fraud", by="bob")
    assert record is not None and record.phase == "aborted" and "bob" in record.reason
    assert ("jobs", rj.NAMESPACE, "rollout-fraud") not in fake.objects
    assert fake.weights(NS, "fraud-experiment") == {"fraud-champion": 100, "fraud-challenger": 0}
    after = rollout_cluster_cli.status(api, "fraud")
    assert after.rollout is not None and after.rollout.phase == "aborted" and after.job == "none"
    with pytest.raises(RolloutError, match="model 'nosuch' is not enabled"):
        rollout_cluster_cli.status(api, "nosuch")


def test_status_notes_a_rollout_whose_job_ended_without_recording_it(kube_fake):
    fake = _fake(kube_fake)
    api = kube_fake.InMemoryApi(fake)
    cluster_rollout.ConfigMapStore(api, NS).save(Rollout("fraud", "3", "1", [10, 100], 60.0, step=0))
    assert "its state says running" in rollout_cluster_cli.status(api, "fraud").note


def test_follow_prints_progress_until_the_end(kube_fake):
    fake = _fake(kube_fake)
    api = kube_fake.InMemoryApi(fake)
    store = cluster_rollout.ConfigMapStore(api, NS)
    store.save(Rollout("fraud", "2", "1", [10, 100], 60.0, phase="stopped", started=900.0))  # an older rollout
    previous = rollout_cluster_cli.last_started(api, "fraud")
    assert previous == 900.0
    rollout_cluster_cli.start(api, "fraud", "3", (10, 100), 60.0, 20)  # the Job runs until it records its end
    r = Rollout("fraud", "3", "1", [10, 100], 60.0, step=0, started=1000.0)
    phases = iter([("running", 0), ("running", 1), ("promoted", 1)])

    def tick(_: float) -> None:
        phase, step = next(phases)
        r.phase, r.step = phase, step
        store.save(r)

    lines: list[str] = []
    result = rollout_cluster_cli.follow(api, "fraud", previous, lines.append, sleep=tick)
    assert result.phase == "promoted"
    assert [line.split(",")[0] for line in lines] == ["fraud: running", "fraud: running", "fraud: promoted"]
    fake.on_job_delete = None
    api.delete_job(rj.NAMESPACE, "rollout-fraud")
    with pytest.raises(RolloutError, match="was deleted before it recorded anything"):
        rollout_cluster_cli.follow(api, "fraud", 1000.0, lines.append, sleep=lambda s: None)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    rollout_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["rollout", *argv])


def test_the_cluster_commands_name_a_missing_kube_config(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    for argv in (["start", "fraud", "3", "--cluster"], ["status", "fraud", "--cluster"],
                 ["abort", "fraud", "--cluster"]):
        args = _parse(*argv)
        with pytest.raises(SystemExit) as exit_info:
            args.func(args)
        assert exit_info.value.code == 2
        assert "--cluster: no usable kube config" in capsys.readouterr().err
