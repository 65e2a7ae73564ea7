"""Progressive delivery and shadow traffic end to end on a local platform, through the CLI a user runs.

The platform is the automatic-rollback one (fraud only, Prometheus evaluating every second, so the
rollback rules' windows are seconds), shared with tests/local/test_autorollback_e2e.py. Requests go
through the traffic splitter (HAProxy); every answer names the variant that gave it.

- shadow: a challenger that fails late-hour transactions receives half the traffic as a copy; callers
  only ever get the champion's answers, and the shadow report shows the challenger's errors, latency and
  its agreement with the champion;
- canary, bad challenger: the same version (it fails 10 % of the requests of this load: every tenth is
  a transaction at 23:00) is stopped at the first step (10 %) by the error-rate rule, all traffic back
  on the champion, and no request fails except ones the challenger answered before the stop;
- canary, good challenger (the champion's artifact registered again): 10 → 50 → 100 %, then champion
  through the promotion path: a commit of the deploy tree in the platform's deploy repository, applied to
  the platform (registry alias, slot and served version agree); the test then releases and applies the
  original champion again, as the platform's other users expect it.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from mlflow.tracking import MlflowClient
from onnx import TensorProto, helper, numpy_helper

from contracts.governance import CARD_DIR
from local.deploy_apply import apply, release, stack_config
from local.rollout_runner import platform_config
from ml.model_plugin import load_plugin
from ml.models.fraud.data import FEATURES

pytestmark = [pytest.mark.integration, pytest.mark.ml]

MODEL = "fraud"
LATE = 22  # the bad challenger fails every transaction at this hour or later


def _late_hour_failure(model_bytes: bytes) -> bytes:
    """The model with a lookup of the transaction hour in a table of LATE entries added to its output (times
    zero): the same answers for earlier hours, an ONNX Runtime error (a 5xx) for hours >= LATE."""
    m = onnx.load_from_string(model_bytes)
    out = m.graph.output[0].name
    for node in m.graph.node:
        node.output[:] = [f"{o}_inner" if o == out else o for o in node.output]
    m.graph.initializer.extend([
        numpy_helper.from_array(np.array([FEATURES.index("transaction_hour")], dtype=np.int64), "hour_column"),
        numpy_helper.from_array(np.zeros(LATE, dtype=np.float32), "hour_table")])
    m.graph.node.extend([
        helper.make_node("Gather", [m.graph.input[0].name, "hour_column"], ["hour"], axis=1),
        helper.make_node("Cast", ["hour"], ["hour_index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["hour_table", "hour_index"], ["hour_zero"], axis=0),
        helper.make_node("ReduceSum", ["hour_zero"], ["hour_sum"], keepdims=0),
        helper.make_node("Add", [f"{out}_inner", "hour_sum"], [out])])
    onnx.checker.check_model(m)
    return m.SerializeToString()


def _register(client: MlflowClient, source: str, tmp: Path, *, broken: bool) -> str:
    """Version `source`'s artifact registered again (broken: with the late-hour failure) as a new version
    that passed its gates."""
    import mlflow

    mlflow.set_tracking_uri(client.tracking_uri)
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{MODEL}/{source}",
                                                      dst_path=str(tmp / f"{source}-{broken}")))
    if broken:
        (folder / "model.onnx").write_bytes(_late_hour_failure((folder / "model.onnx").read_bytes()))
    run = client.create_run(client.get_experiment_by_name(f"mlplat-{MODEL}").experiment_id,
                            run_name="late-hour-export" if broken else "re-registered")
    client.log_artifacts(run.info.run_id, str(folder), artifact_path="model")
    # Its model card too (a promotion commits it to the deploy tree): the source's, as the artifact is.
    card = Path(mlflow.artifacts.download_artifacts(run_id=client.get_model_version(MODEL, source).run_id,
                                                    artifact_path=CARD_DIR, dst_path=str(tmp / f"card-{broken}")))
    client.log_artifacts(run.info.run_id, str(card), artifact_path=CARD_DIR)
    client.set_terminated(run.info.run_id)
    version = client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                                          tags={"gate.passed": "true", "gate.summary": f"copied from v{source}"})
    return str(version.version)


class Load:
    """Requests through the splitter from a thread, ~40 per second; one in ten at 23:00 when `late`."""

    def __init__(self, url: str, bodies: list[dict[str, Any]], late: bool) -> None:
        self.url, self.bodies, self.late = f"{url}/v2/models/{MODEL}/infer", bodies, late
        self.results: list[tuple[float, int, str, str]] = []  # (time, status or 0, variant, request id)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _body(self, i: int) -> bytes:
        body = json.loads(json.dumps(self.bodies[i % len(self.bodies)]))
        hour = next(x for x in body["inputs"] if x["name"] == "transaction_hour")
        # One late transaction in every ten, at a position that moves from one block of ten to the next: the
        # splitter's weighted round robin (one request in ten, or every other one, to the challenger) then
        # gives the challenger one late transaction in ten too, instead of always or never.
        hour["data"] = [23 if self.late and i % 10 == (i // 10) % 10 else i % LATE]
        return json.dumps(body).encode()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            req = urllib.request.Request(self.url, data=self._body(i), headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    resp.read()
                    self.results.append((time.time(), resp.status, resp.headers["X-Mlplat-Variant"],
                                         resp.headers["X-Request-ID"]))
            except urllib.error.HTTPError as exc:
                self.results.append((time.time(), exc.code, exc.headers.get("X-Mlplat-Variant", ""),
                                     exc.headers.get("X-Request-ID", "")))
            except OSError:
                self.results.append((time.time(), 0, "", ""))
            i += 1
            time.sleep(0.02)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


@pytest.fixture(scope="module")
def platform(autorollback_platform: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    up = autorollback_platform["up"]
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    assert "traffic splitter (HAProxy)" in up.stdout, up.stdout[-3000:]
    client = MlflowClient(tracking_uri=autorollback_platform["mlflow"])
    champion = client.get_model_version_by_alias(MODEL, "champion").version
    tmp = tmp_path_factory.mktemp("delivery")
    bodies = load_plugin(MODEL).sample_requests(autorollback_platform["state"] / "data" / "sample", Path("."), n=20)
    return {**autorollback_platform, "client": client, "champion": champion, "bodies": bodies,
            "splitter": f"http://127.0.0.1:{autorollback_platform['ports']['splitter']}",
            "bad": _register(client, champion, tmp, broken=True),
            "good": _register(client, champion, tmp, broken=False)}


def _status(platform: dict[str, Any], run_mlplat: Any) -> dict[str, Any]:
    out = run_mlplat(platform["env"], "rollout", "status", MODEL, "--json", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def test_shadow_sends_copies_to_the_challenger_and_reports_it(platform, run_mlplat):
    out = run_mlplat(platform["env"], "rollout", "shadow", MODEL, platform["bad"], "--percent", "50", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    with Load(platform["splitter"], platform["bodies"], late=True) as load:
        deadline = time.monotonic() + 60
        while len(load.results) < 120 and time.monotonic() < deadline:
            time.sleep(0.2)
    time.sleep(1)  # the last copies reach the challenger
    report = run_mlplat(platform["env"], "rollout", "shadow-report", MODEL, "--json", timeout=120)
    stop = run_mlplat(platform["env"], "rollout", "shadow-stop", MODEL, timeout=120)
    text = run_mlplat(platform["env"], "rollout", "shadow-report", MODEL, timeout=120)
    assert report.returncode == 0 and stop.returncode == 0, report.stderr + stop.stderr
    doc = json.loads(report.stdout)["report"]
    # Callers only ever got the champion's answers, none failed.
    assert {(s, v) for _, s, v, _ in load.results} == {(200, "champion")}
    assert 0.3 * len(load.results) <= doc["mirrored"] <= 0.7 * len(load.results) + 5, doc
    assert doc["dropped"] == 0 and doc["champion_error_rate"] == 0.0
    # The late-hour tenth of the load, as far as the random half that was mirrored holds it.
    assert 0 < doc["challenger_error_rate"] <= 0.3, doc
    assert doc["agreement"] == pytest.approx(1 - doc["challenger_error_rate"])  # same outputs otherwise
    assert doc["challenger_p99_ms"] is not None and doc["champion_p50_ms"] is not None
    assert "agreement with the champion" in text.stdout and "(stopped)" in text.stdout
    print(f"\n$ mlplat rollout shadow-report {MODEL}\n{text.stdout}")


def test_a_challenger_failing_10_percent_is_stopped_at_the_first_step(platform, run_mlplat):
    client = platform["client"]
    with Load(platform["splitter"], platform["bodies"], late=True) as load:
        started = time.time()
        out = run_mlplat(platform["env"], "rollout", "start", MODEL, platform["bad"], "--steps", "10,50,100",
                         "--interval", "10s", timeout=300)
        ended = time.time()
        time.sleep(2)  # traffic after the stop: all of it on the champion
    assert out.returncode == 3, out.stdout[-3000:] + out.stderr[-3000:]
    doc = _status(platform, run_mlplat)
    assert doc["phase"] == "stopped" and doc["step"] == 0 and len(doc["history"]) == 1, doc
    assert doc["history"][0]["verdict"] == "breached" and "error rate" in doc["reason"]
    assert doc["shares"] == doc["live_shares"] == {"champion": 100, "challenger": 0}
    assert client.get_model_version_by_alias(MODEL, "champion").version == platform["champion"]
    during = [r for r in load.results if started <= r[0] <= ended]
    failed = [r for r in load.results if r[1] != 200]
    assert failed, "the challenger never failed a request"
    assert all(s >= 500 and v == "challenger" for _, s, v, _ in failed), failed[:5]  # none beyond its share
    assert len(failed) <= 0.1 * 0.1 * len(during) * 2 + 2  # ~10 % of the challenger's ~10 %
    assert all(v == "champion" and s == 200 for t, s, v, _ in load.results if t > ended)
    assert all(v == "champion" for t, _, v, _ in load.results if t > ended)
    print(f"\n$ mlplat rollout start {MODEL} {platform['bad']} --steps 10,50,100 --interval 10s   "
          f"(exit 3, {ended - started:.1f}s)\n{out.stdout}\n{len(during)} requests, {len(failed)} failed, "
          f"all answered by the challenger")


def test_a_good_challenger_reaches_100_percent_and_becomes_champion(platform, run_mlplat, consistent):
    client, good = platform["client"], platform["good"]
    with Load(platform["splitter"], platform["bodies"], late=False) as load:
        started = time.time()
        out = run_mlplat(platform["env"], "rollout", "start", MODEL, good, "--steps", "10,50,100",
                         "--interval", "3s", "--min-requests", "10", timeout=300)
        ended = time.time()
    try:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        doc = _status(platform, run_mlplat)
        assert doc["phase"] == "promoted" and [h["verdict"] for h in doc["history"]] == ["passed"] * 3
        assert [h["share"] for h in doc["history"]] == [10, 50, 100]
        assert client.get_model_version_by_alias(MODEL, "champion").version == good
        consistent(platform["env"], **{MODEL: good})
        assert doc["live_shares"] == {"champion": 100, "challenger": 0}
        assert {s for _, s, _, _ in load.results} == {200}, "a request failed during the rollout"
        assert {v for _, _, v, _ in load.results} == {"champion", "challenger"}
        print(f"\n$ mlplat rollout start {MODEL} {good} --steps 10,50,100 --interval 3s --min-requests 10   "
              f"(exit 0, {ended - started:.1f}s)\n{out.stdout}")
        # The promotion was a commit of the deploy tree (the local platform's deploy repository), then applied.
        log = subprocess.run(["git", "--git-dir", str(platform["state"] / "deploy.git"), "log", "-1", "--format=%B",
                              "main"], capture_output=True, text=True, check=True).stdout
        assert log.startswith(f"deploy(dev): {MODEL} v{good} -> champion") and "Published by mlplat rollout" in log
    finally:
        # The platform's other users expect the first champion: released and applied the same way.
        cfg = platform_config(platform["state"])
        stack = stack_config(None)
        release(cfg, stack, MODEL, platform["champion"], actor="tests")
        apply(cfg, stack)
    consistent(platform["env"], **{MODEL: platform["champion"]})


def test_abort_hands_a_running_rollouts_traffic_back_to_the_champion(platform, run_mlplat):
    repo = Path(__file__).resolve().parents[2]
    good = platform["good"]
    with Load(platform["splitter"], platform["bodies"], late=False):
        rollout = subprocess.Popen([str(repo / ".venv" / "bin" / "mlplat"), "rollout", "start", MODEL, good,
                                    "--steps", "10,50,100", "--interval", "5m"], cwd=repo, env=platform["env"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                doc = _status(platform, run_mlplat) if (platform["state"] / "rollouts" / f"{MODEL}.json").is_file() \
                    else {}
                if doc.get("phase") == "running" and doc.get("shares", {}).get("challenger") == 10 \
                        and doc.get("version") == good:
                    break
                time.sleep(0.5)
            else:
                pytest.fail("the rollout never reached its first step")
            out = run_mlplat(platform["env"], "rollout", "abort", MODEL, timeout=120)
            rollout.wait(timeout=60)
        finally:
            if rollout.poll() is None:
                rollout.kill()
    assert out.returncode == 0, out.stdout + out.stderr
    doc = _status(platform, run_mlplat)
    assert doc["phase"] == "aborted" and "aborted by mlplat rollout abort" in doc["reason"], doc
    assert doc["shares"] == doc["live_shares"] == {"champion": 100, "challenger": 0}
    assert platform["client"].get_model_version_by_alias(MODEL, "champion").version == platform["champion"]


# The cluster rollout (ml/delivery/cluster_rollout.py), run as its Job would run on the cluster, against this
# platform's Prometheus and a fake Kubernetes API (tests/kube_fake.py): the Experiment's patches are merge
# patches validated against the Seldon CRD schema, the Job's service account has exactly the stack's Role, and
# the local splitter (HAProxy) stands in for Seldon's router: every Experiment patch sets the same weights on it,
# so the challenger's share of real requests follows the Experiment.


class Cluster:
    """The fake API server with the stack's objects, a kubelet that runs a created Job's container as a process
    (the Job's command and environment: the settings ConfigMap, the service account's token), and the router."""

    def __init__(self, kube_fake: Any, platform: dict[str, Any], tmp: Path, challenger: str) -> None:
        from contracts import deploy_tree
        from contracts import rollout_job as rj
        from local import traffic
        from local.prometheus import local_timing
        from ml.delivery import gitops
        from stacks.delivery import deploy_parameter, model_releases

        self.platform, self.tmp, self.rj = platform, tmp, rj
        self.cfg = platform_config(platform["state"])
        stack = stack_config(None)
        self.bucket = "cluster-models"
        self.repo = gitops.local_repository(tmp / "deploy.git")
        target = gitops.DeployTarget(str(self.repo), "main", "deploy", "commit", "dev", self.bucket)
        for slot, version in (("champion", platform["champion"]), ("challenger", challenger)):
            gitops.publish_release(stack, target, gitops.Release(MODEL, version, slot, actor="tests"))
        self.deploy = deploy_parameter(stack, self.bucket, location=str(self.repo))
        self.fake = kube_fake.FakeKubernetes(tokens={"admin": None, "rollout": rj.role_rules([MODEL])})
        releases = [r for r in model_releases(stack, {MODEL: {"champion": platform["champion"],
                                                              "challenger": challenger}}) if r.name == MODEL]
        self.fake.add(deploy_tree.objects("dev", self.bucket, releases)[f"dev/{MODEL}/experiment.yaml"])
        self.fake.add({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": rj.state_name(MODEL), "namespace": "seldon"}, "data": {}})
        self.settings = rj.settings_data("model-server:tests-ops", self.deploy, self.cfg.url("prometheus"),
                                         platform["mlflow"], "gates", 600, "", "eu-west-1",
                                         timing=local_timing(self.cfg.prometheus_interval_s))
        self.fake.add({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": rj.SETTINGS, "namespace": rj.NAMESPACE}, "data": self.settings})
        splitter = traffic.splitter(self.cfg)
        self.fake.on_experiment = lambda exp: splitter.set_weights(MODEL, {
            c["name"].removeprefix(f"{MODEL}-"): c["weight"] for c in exp["spec"]["candidates"]})
        self.fake.on_job, self.fake.job_status, self.fake.on_job_delete = self._run, self._status, self._delete
        self.url = self.fake.serve()
        self.admin = self.fake.kubeconfig(self.url, "admin", tmp / "kubeconfig-admin")
        self.pod_config = self.fake.kubeconfig(self.url, "rollout", tmp / "kubeconfig-rollout")
        self.pods: dict[str, subprocess.Popen[str]] = {}

    def _run(self, job: dict[str, Any]) -> None:
        import os
        import sys

        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["envFrom"] == [{"configMapRef": {"name": self.rj.SETTINGS}}]
        command = [sys.executable if c == "python" else c for c in container["command"]]
        env = {"PATH": os.environ["PATH"], **self.settings, **{e["name"]: e["value"] for e in container["env"]},
               "HOME": str(self.tmp), "KUBECONFIG": str(self.pod_config), "HOSTNAME": f"{job['metadata']['name']}-x1",
               "MLPLAT_SLOT_DIR": str(self.tmp / "slots")}
        log = (self.tmp / f"{job['metadata']['name']}.log").open("w")
        self.pods[job["metadata"]["name"]] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                              text=True, cwd=Path(__file__).resolve().parents[2])

    def _status(self, name: str) -> dict[str, Any]:
        code = self.pods[name].poll()
        return {"active": 1} if code is None else ({"succeeded": 1} if code == 0 else {"failed": 1})

    def _delete(self, name: str) -> None:
        self.pods[name].terminate()
        self.pods[name].wait(timeout=60)

    def pod_log(self) -> str:
        return "".join(p.read_text() for p in self.tmp.glob("rollout-*.log"))

    def env(self) -> dict[str, str]:
        return {**self.platform["env"], "KUBECONFIG": str(self.admin)}

    def challenger_weights(self) -> list[int]:
        return [next(c["weight"] for c in e["spec"]["candidates"] if c["name"].endswith("-challenger"))
                for e in self.fake.experiment_history]

    def tree_champion(self) -> str:
        from ml.delivery import gitops

        return gitops.branch_versions(gitops.DeployTarget(str(self.repo), "main", "deploy", "commit", "dev"))[
            MODEL]["champion"]

    def close(self) -> None:
        for pod in self.pods.values():
            if pod.poll() is None:
                pod.kill()
        self.fake.close()


@pytest.fixture
def cluster(platform, kube_fake, tmp_path):
    made: list[Cluster] = []

    def make(challenger: str) -> Cluster:
        from local.rollout_runner import ensure_challenger

        ensure_challenger(platform_config(platform["state"]), MODEL, challenger, print)  # Seldon loading the slot
        made.append(Cluster(kube_fake, platform, tmp_path, challenger))
        return made[-1]

    yield make
    for c in made:
        c.close()


def test_cluster_rollout_stops_a_bad_challenger_with_the_experiment_back_on_the_champion(platform, cluster,
                                                                                         run_mlplat):
    c = cluster(platform["bad"])
    with Load(platform["splitter"], platform["bodies"], late=True) as load:
        out = run_mlplat(c.env(), "rollout", "start", MODEL, platform["bad"], "--cluster", "--steps", "10,50,100",
                         "--interval", "10s", "--poll", "1s", timeout=300)
        ended = time.time()
        time.sleep(2)
    assert out.returncode == 3, out.stdout[-3000:] + out.stderr[-3000:] + c.pod_log()[-3000:]
    assert c.challenger_weights() == [10, 0]  # step 1, then the champion back at 100 %
    assert c.fake.weights("seldon", f"{MODEL}-experiment") == {f"{MODEL}-champion": 100, f"{MODEL}-challenger": 0}
    status = run_mlplat(c.env(), "rollout", "status", MODEL, "--cluster", "--json", timeout=120)
    doc = json.loads(status.stdout)
    assert doc["phase"] == "stopped" and "error rate" in doc["reason"] and doc["job"] == "failed", doc
    assert doc["live_shares"] == {"champion": 100, "challenger": 0}
    assert c.tree_champion() == platform["champion"]  # no promotion
    assert platform["client"].get_model_version_by_alias(MODEL, "champion").version == platform["champion"]
    assert {v for t, _, v, _ in load.results if t > ended} == {"champion"}
    text = run_mlplat(c.env(), "rollout", "status", MODEL, "--cluster", timeout=120)
    print(f"\n$ mlplat rollout start {MODEL} {platform['bad']} --cluster --steps 10,50,100 --interval 10s\n"
          f"{out.stdout}\n$ mlplat rollout status {MODEL} --cluster\n{text.stdout}")


def test_cluster_rollout_promotes_a_good_challenger_through_the_deploy_tree(platform, cluster, run_mlplat):
    client, good = platform["client"], platform["good"]
    c = cluster(good)
    try:
        with Load(platform["splitter"], platform["bodies"], late=False) as load:
            out = run_mlplat(c.env(), "rollout", "start", MODEL, good, "--cluster", "--steps", "50,100",
                             "--interval", "3s", "--min-requests", "5", "--poll", "1s", timeout=300)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:] + c.pod_log()[-3000:]
        assert c.challenger_weights() == [50, 100, 0]
        status = run_mlplat(c.env(), "rollout", "status", MODEL, "--cluster", "--json", timeout=120)
        doc = json.loads(status.stdout)
        assert doc["phase"] == "promoted" and doc["job"] == "succeeded", doc
        assert [h["verdict"] for h in doc["history"]] == ["passed", "passed"]
        # The promotion: the version staged, the deploy tree's commit with the card, then champion slot and alias.
        assert c.tree_champion() == good
        log = subprocess.run(["git", "--git-dir", str(c.repo), "log", "-1", "--format=%B", "main"],
                             capture_output=True, text=True, check=True).stdout
        assert log.startswith(f"deploy(dev): {MODEL} v{good} -> champion") and "mlplat rollout (cluster)" in log
        marker = json.loads((c.tmp / "slots" / c.bucket / MODEL / "champion" / "PUBLISHED.json").read_text())
        assert str(marker["version"]) == good
        # Staged before the commit: the tree's Model reads the version's immutable prefix.
        assert (c.tmp / "slots" / c.bucket / MODEL / "versions" / good / "PUBLISHED.json").is_file()
        assert f"staged s3://{c.bucket}/{MODEL}/versions/{good}/" in out.stdout
        assert client.get_model_version_by_alias(MODEL, "champion").version == good
        assert {s for _, s, _, _ in load.results} == {200}
        assert {v for _, _, v, _ in load.results} == {"champion", "challenger"}
        print(f"\n$ mlplat rollout start {MODEL} {good} --cluster --steps 50,100 --interval 3s --min-requests 5\n"
              f"{out.stdout}")
    finally:
        # Only the registry is shared with the local platform (slot and tree were the fake cluster's).
        client.set_registered_model_alias(MODEL, "champion", platform["champion"])
