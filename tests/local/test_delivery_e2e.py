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
