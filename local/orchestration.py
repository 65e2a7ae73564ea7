"""`local up`, `local status`, `local down`: the orchestration of the embedded platform.

`up` is idempotent: every service that a previous `up` started and that is still healthy is
reused, anything unhealthy or reconfigured is restarted, models are retrained only when the data
changed (or with `--retrain`). All checks that can fail early (system packages, ports, the data
schema) run before anything is started.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from contracts import local_platform, model_registry
from contracts.pipelines import GATES_SOURCE_TAG
from local import delivery, discovery, feast_local, pipeline_runs, prometheus, serving, smoke, traffic, training
from local.config import LocalConfig
from local.flink_local import FlinkEngineError, StreamCheck, demonstrate
from local.report import Progress, summary_text
from local.services import ORDER, Decision, decide, ensure, missing_entry_points
from local.spark_local import SparkJobError
from local.supervisor import Supervisor, port_listening
from ml.delivery.gitops import GitOpsError, local_repository
from ml.training.outputs import METADATA_FILE

SUMMARY_FILE = "summary.json"


class SetupError(RuntimeError):
    """A problem the user must fix before the platform can start (message says what to do)."""


class Interrupted(RuntimeError):
    """`up` was interrupted (Ctrl-C); what it had started is stopped again (named in the message)."""


def preflight(cfg: LocalConfig) -> list[str]:
    """System requirements; returns notes about optional parts that will be skipped."""
    notes = []
    missing = missing_entry_points()
    if missing:
        raise SetupError(f"{', '.join(missing)} missing from the ML environment; run: scripts/bootstrap.sh ml")
    if cfg.redis and shutil.which("redis-server") is None:
        raise SetupError("--redis needs the Debian package redis-server, which is not installed. Install it with "
                         "`sudo apt-get install -y redis-server` (or `scripts/bootstrap.sh system`), or drop "
                         "--redis to use the SQLite online store.")
    prom, promtool = prometheus.binaries()
    if cfg.prometheus and (prom is None or promtool is None):
        notes.append("local Prometheus skipped: the `prometheus` package is not installed "
                      "(`sudo apt-get install -y prometheus`)")
        cfg.prometheus = False
    if cfg.splitter and traffic.haproxy.binary() is None:
        notes.append("traffic splitter skipped: the `haproxy` package is not installed (`sudo apt-get install -y "
                     "haproxy`, or scripts/bootstrap.sh system); rollouts, shadow and experiments need it")
        cfg.splitter = False
    return notes


def stop_redis_left_behind(cfg: LocalConfig, sup: Any, say: Callable[[str], None]) -> bool:
    """Redis is not part of this run: stop one an earlier `up --redis` left behind, and say so (the models
    served so far read their features from it; from now on they read the SQLite online store)."""
    if cfg.redis or not sup.running("redis"):
        return False
    say(f"note: stopping the Redis online store an earlier `mlplat local up --redis` started on port "
        f"{cfg.ports['redis']}: this `up` has no --redis, so the models' online features move to the SQLite "
        "store (run `mlplat local up --redis ...` to keep Redis)")
    sup.stop("redis")
    return True


def _services(cfg: LocalConfig) -> list[str]:
    optional = {"redis": cfg.redis, "prometheus": cfg.prometheus, "autorollback": cfg.prometheus and cfg.auto_rollback,
                "retrain": cfg.prometheus and cfg.auto_retrain, "haproxy": cfg.splitter, "feedback": cfg.splitter,
                "flink": "flink" in cfg.engines}
    return [s for s in ORDER if optional.get(s, True)]


def up(cfg: LocalConfig, progress: Progress | None = None) -> int:
    """Start (or reuse) every service, train or reuse the models, serve them, smoke-test. Interrupted, it stops
    the services this run started (those an earlier `up` started and this one reused keep running) and
    records the platform as `interrupted`, so `status` exits 1 and the next `up` starts what is missing."""
    sup = Supervisor(cfg.state_dir)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    before = {(r.pid, r.start_ticks) for r in sup.records()}
    began = time.time()
    try:
        return _up(cfg, progress or Progress(), sup)
    except KeyboardInterrupt:
        stopped = []
        for rec in sup.records():
            if (rec.pid, rec.start_ticks) not in before:
                sup.stop(rec.name)
                stopped.append(rec.name)
        _mark(cfg, began, "interrupted")
        what = f"stopped what it had started ({', '.join(stopped)})" if stopped else "it had started nothing yet"
        raise Interrupted(f"interrupted; {what}. `mlplat local up` (same flags) starts the platform again") \
            from None
    except BaseException:
        _mark(cfg, began, "failed")
        raise


def _mark(cfg: LocalConfig, began: float, phase: str) -> None:
    # Only a record this run wrote: a refused `up` (a port taken, a bad flag) says nothing about a platform
    # an earlier `up` started.
    found = local_platform.read(cfg.state_dir)
    if found is not None and found.updated >= began:
        discovery.set_phase(cfg.state_dir, phase)


def _up(cfg: LocalConfig, p: Progress, sup: Supervisor) -> int:
    p.say(f"mlplat local up: state in {cfg.state_dir}")
    for note in preflight(cfg):
        p.detail(note)
    decisions: dict[str, Decision] = {name: decide(cfg, sup, name) for name in _services(cfg)}
    discovery.record(cfg, list(decisions), "starting")
    stop_redis_left_behind(cfg, sup, p.say)
    if cfg.data_dir is not None:  # before anything starts: a schema error must not leave services behind
        with p.step(f"checking the data contract of {cfg.data_dir}"):
            for name, what in training.validate_data(cfg.data_dir, cfg.models).items():
                p.detail(f"{name}: {what}")
    # Promotions write the deploy tree there (`mlplat model promote`, ml/delivery/gitops.py): no network needed.
    try:
        p.detail(f"deploy repository {local_repository(cfg.state_dir)}")
    except GitOpsError as exc:  # serving does not need it: say so and go on
        p.detail(f"no deploy repository: {exc}")
    # A registry that does not exist yet holds no model: training can then overlap MLflow's start.
    fresh_registry = not cfg.path("mlflow", "mlflow.db").exists()
    records: dict[str, str] = {}
    reports: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=1) as pool:
        # MLflow takes several seconds to start: meanwhile the sample data is generated, the
        # feature store built and (fresh registry) the models' pipelines started (their `register`
        # step waits for the tracking server).
        mlflow_future = pool.submit(ensure, cfg, sup, decisions["mlflow"], p.detail, url=cfg.mlflow_url)
        try:
            data_dir = cfg.data_dir or _sample_data(cfg, p)
            data_fp = training.fingerprint(data_dir)
            if cfg.redis:
                _, records["redis"] = ensure(cfg, sup, decisions["redis"], p.detail, url=cfg.redis_url or "")
                p.say(f"redis-server {records['redis']} on port {cfg.ports['redis']}")
            feast = _feast(cfg, sup, p, data_dir, data_fp)
            if fresh_registry or cfg.retrain:
                reports = _pipelines(cfg, p, cfg.models, data_dir, data_fp)
        except BaseException:
            _settle(mlflow_future)
            raise
        with p.step("MLflow tracking server"):
            _, records["mlflow"] = mlflow_future.result()
            p.detail(f"{records['mlflow']} at {cfg.mlflow_url}")

    reused: dict[str, training.ModelState] = {}
    for i, name in enumerate(cfg.models, 1):
        if name in reports:
            continue
        existing = None if cfg.retrain else training.registered(cfg.mlflow_url, name, data_fp)
        if existing is not None:
            p.say(f"[{i}/{len(cfg.models)}] {name}: reusing v{existing.version} ({existing.alias}), trained on the "
                  "same data")
            reused[name] = existing
    missing = tuple(n for n in cfg.models if n not in reports and n not in reused)
    if missing:
        reports.update(_pipelines(cfg, p, missing, data_dir, data_fp))
    _retrain_arguments(cfg, data_dir)
    states: list[training.ModelState] = []
    for name in cfg.models:
        if name in reused:
            states.append(reused[name])
            continue
        report = reports[name]
        state = training.serving_state(cfg.mlflow_url, name) if report.version else None
        if report.status != "SUCCEEDED" or state is None:
            failed = next((s for s in report.steps if s.status == "failed"), None)
            where = f"step {failed.step}: {failed.summary}" if failed else report.error
            raise SetupError(f"the {name} training pipeline failed ({where}); its log: {report.log}")
        state.trained, state.seconds = True, report.seconds
        if state.version == report.version:
            state.gates = next((s.summary for s in report.steps if s.step == "gate"), state.gates)
        states.append(state)

    identity_now = serving.served_identity(cfg, states)
    mls = decisions["mlserver"]
    stale = mls.record is not None and mls.record.info.get("identity") != identity_now
    with p.step("MLServer: loading the models from the registry"):
        serving.write_repo(cfg, states)
        _, records["mlserver"] = ensure(
            cfg, sup, mls, p.detail, force_restart=stale, extra_env=serving.server_env(cfg),
            info={"identity": identity_now}, url=cfg.url("http"),
        )
        p.detail(f"{records['mlserver']} at {cfg.url('http')}")

    split_note = "off (haproxy not installed)"
    if "haproxy" in decisions:
        with p.step("traffic splitter and feedback endpoint"):
            split_note = delivery.start(cfg, sup, decisions, p.say, p.detail, records)

    prom_note = "off (not installed, or --no-prometheus)" if "prometheus" not in decisions else ""
    if "prometheus" in decisions:
        prom_note = _prometheus(cfg, sup, decisions, p, records)

    with p.step("smoke test: one request per model"):
        results = {}
        for st in states:
            try:
                request = smoke.build_request(st.name, data_dir, cfg.redis, _artifact(cfg, st))
            except Exception as exc:  # report, do not abort: the other models still get their request
                res = smoke.SmokeResult(st.name, False, 0, 0.0, None, f"could not build a request: {exc}")
            else:
                res = smoke.smoke(cfg.url("http"), st.name, request)
            results[st.name] = res
            verdict = ("OK (degraded)" if res.degraded else "OK") if res.ok else "FAILED"
            p.detail(f"{st.name}: {verdict} {res.status} in {res.first_ms:.1f} ms: {res.answer}")
        online = feast_local.check_online(feast.repo) if feast.views else {}
        bad = {v: r for v, r in online.items() if r != "ok"}
        feast_check = f"online read-back ok for {len(online)} view(s)" if not bad else f"online read-back FAILED: {bad}"
    stream = _stream(cfg, sup, decisions, p, records, states, data_dir) if "flink" in cfg.engines else None
    ok = all(r.ok for r in results.values()) and not bad and (stream is None or stream.ok)
    doc = {
        "ok": ok,
        "total_s": p.elapsed(),
        "urls": {
            "MLflow UI": cfg.mlflow_url,
            "Inference (V2 REST)": f"{cfg.url('http')}/v2/models/<model>/infer",
            "Inference (gRPC)": f"{cfg.host}:{cfg.ports['grpc']}",
            "Metrics": f"{cfg.url('metrics')}/metrics",
            **({"Prometheus": cfg.url("prometheus")} if "prometheus" in records else {}),
            **({"Inference (splitter)": f"{cfg.url('splitter')}/v2/models/<model>/infer",
                "Feedback": f"{cfg.url('feedback')}/v1/outcomes"} if "haproxy" in records else {}),
        },
        "models": [{**st.__dict__, "uri": st.uri,
                    "gate_metrics": list(training.gates_for(st.name, cfg.data_dir is None, cfg.gates_stack)[0])}
                   for st in states],
        "gates": training.gates_for(cfg.models[0], cfg.data_dir is None, cfg.gates_stack)[1],
        "smoke": {k: v.__dict__ for k, v in results.items()},
        "feast": {"online_store": feast.online_store, "views": list(feast.views), "check": feast_check,
                  "repo": str(feast.repo), "batch_engine": feast.batch_engine},
        "tracing": f"OTLP to {serving.tracing_server(cfg.otlp_endpoint)}" if cfg.otlp_endpoint
        else "off (set OTEL_EXPORTER_OTLP_ENDPOINT to send traces to a collector)",
        "prometheus": prom_note,
        "splitter": split_note,
        **({"streaming": {"engine": "Flink (local mini-cluster, file source)", "ok": stream.ok,
                          "check": stream.line(), "inbox": str(cfg.path("transactions"))}} if stream else {}),
        "services": records,
        "data": str(cfg.data_dir) if cfg.data_dir else f"generated sample data ({data_dir})",
        "data_dir": str(data_dir),
        "pipelines": {n: {"status": r.status, "seconds": r.seconds, "version": r.version, "published": r.published,
                          "steps": [[s.step, s.status, s.seconds] for s in r.steps]} for n, r in reports.items()},
        "finished": time.time(),
    }
    (cfg.state_dir / SUMMARY_FILE).write_text(json.dumps(doc, indent=1, default=str))
    discovery.record(cfg, list(decisions), "up")
    print(summary_text(doc), file=p.stream, flush=True)
    return 0 if ok else 1


def _stream(cfg: LocalConfig, sup: Supervisor, decisions: dict[str, Decision], p: Progress,
            records: dict[str, str], states: list[training.ModelState], data_dir: Path) -> StreamCheck:
    """Start (or reuse) the streaming job and follow one new transaction file to a served request."""
    model = next((s.name for s in model_registry.specs() if s.stream is not None and s.stream.job), None)
    if model is None or model not in cfg.models:
        raise SetupError("--engines flink: no model being served declares a streaming job (ModelSpec.stream.job)")
    with p.step("Flink: the streaming-features job (local mini-cluster, file source)"):
        try:
            _, records["flink"] = ensure(cfg, sup, decisions["flink"], p.detail, timeout_s=240.0)
        except FlinkEngineError as exc:
            raise SetupError(str(exc)) from None
        state = next(st for st in states if st.name == model)
        request = smoke.build_request(model, data_dir, cfg.redis, _artifact(cfg, state))
        check = demonstrate(cfg.path("transactions"), cfg.redis_url or "", cfg.url("http"), model, request)
        p.detail(f"{records['flink']}; {check.line()}")
    return check


def _artifact(cfg: LocalConfig, st: training.ModelState) -> Path | None:
    """The served version's artifact: this run's training output, else a (cached) registry download."""
    local = cfg.path("train", st.name)
    if st.trained and (local / METADATA_FILE).is_file():
        return local
    cached = cfg.path("artifacts", f"{st.name}-v{st.version}")
    if (cached / METADATA_FILE).is_file():
        return cached
    try:
        import mlflow

        mlflow.set_tracking_uri(cfg.mlflow_url)
        cached.mkdir(parents=True, exist_ok=True)
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{st.name}/{st.version}", dst_path=str(cached))
    except Exception:  # the smoke request then falls back to one built without the artifact
        return None
    return cached if (cached / METADATA_FILE).is_file() else None


def _feast(cfg: LocalConfig, sup: Supervisor, p: Progress, data_dir: Path, data_fp: str) -> feast_local.FeastState:
    redis_rec = sup.get("redis") if cfg.redis else None
    identity = {"data": data_fp, "redis_pid": redis_rec.pid if redis_rec else None,
                "redis_start": redis_rec.start_ticks if redis_rec else None}
    store = "redis" if cfg.redis else "sqlite"
    with p.step(f"Feast: applying the feature definitions and materializing ({store} online store)"):
        with quiet(cfg.path("feast.log")):
            try:
                feast = feast_local.build(cfg.path("feast"), data_dir, cfg.models, cfg.redis_url, identity,
                                          spark="spark" in cfg.engines)
            except SparkJobError as exc:
                raise SetupError(str(exc)) from None
        p.detail(("reused the materialized store; " if feast.reused else "")
                 + ", ".join(f"{v}: {n} rows" for v, n in feast.views.items()))
        if "spark" in cfg.engines:
            p.detail(f"batch features: {feast.batch_engine}")
    return feast


def _pipelines(cfg: LocalConfig, p: Progress, models: tuple[str, ...], data_dir: Path,
               data_fp: str) -> dict[str, Any]:
    """Each model's compiled training pipeline under kfp.local (local/pipeline_runs.py): data from `data_dir`,
    features from the platform's Feast repository, registration in its MLflow, publication to its slots.
    The versions are tagged with the data fingerprint and the gate profile, so a later `up` reuses them."""
    runs = {}
    for name in models:
        gates, profile = training.gates_for(name, cfg.data_dir is None, cfg.gates_stack)
        runs[name] = pipeline_runs.arguments(cfg, data_uri=data_dir, gates=gates, trigger="manual",
                                         tags={training.DATA_TAG: data_fp, training.GATES_TAG: profile,
                                               GATES_SOURCE_TAG: profile})
    with p.step(f"training pipelines of {', '.join(models)} (compiled IR, kfp.local subprocess runner)"):
        return pipeline_runs.run_all(cfg, runs, p.detail)


def _retrain_arguments(cfg: LocalConfig, data_dir: Path) -> None:
    """What the drift-retrain receiver runs (ml/pipelines/retrain.py): the platform's data, gates and stores;
    serving follows a new champion (MLServer reload)."""
    docs = {}
    for name in cfg.models:
        gates, _ = training.gates_for(name, cfg.data_dir is None, cfg.gates_stack)
        docs[name] = pipeline_runs.arguments(cfg, data_uri=data_dir, gates=gates, trigger="drift", serving=True)
    path = cfg.path("pipelines", "retrain.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(docs, indent=1, sort_keys=True))


def _sample_data(cfg: LocalConfig, p: Progress) -> Path:
    with p.step("generating the sample data"):
        return training.generate_sample_data(cfg.path("data", "sample"), cfg.models)


def _settle(future: Future[Any]) -> None:
    # An early error must not leave MLflow half-started and unrecorded: wait for the launch.
    with contextlib.suppress(Exception):
        future.result()


@contextlib.contextmanager
def quiet(log_path: Path) -> Iterator[None]:
    """Send a library's own console output (Feast's materialization bars) to a log file."""
    with open(log_path, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield


def _prometheus(cfg: LocalConfig, sup: Supervisor, decisions: dict[str, Decision], p: Progress,
                records: dict[str, str]) -> str:
    decision = decisions["prometheus"]
    groups, source = prometheus.find_alert_rules()
    rollback = prometheus.rollback_rules(cfg.models, cfg.prometheus_interval_s) if cfg.auto_rollback else []
    retrain = prometheus.retrain_rules(cfg.models, cfg.prometheus_interval_s) if cfg.auto_retrain else []
    groups = [*groups, *rollback, *retrain]
    workdir = cfg.path("prometheus")
    receivers = [f"{cfg.host}:{cfg.ports[name]}" for name, on in
                 (("autorollback", cfg.auto_rollback), ("retrain", cfg.auto_retrain)) if on]
    _, rules_path = prometheus.write_config(workdir, f"{cfg.host}:{cfg.ports['metrics']}", groups,
                                            interval_s=cfg.prometheus_interval_s, alerts_target=receivers,
                                            extra_targets=traffic.scrape_targets(cfg) if cfg.splitter else None)
    if rules_path is not None:
        prometheus.check_rules(rules_path)
    texts = [path.read_text() for path in (workdir / "prometheus.yml", rules_path) if path is not None]
    identity = {"config": hashlib.sha256("".join(texts).encode()).hexdigest()[:16]}
    stale = decision.record is not None and decision.record.info.get("identity") != identity
    _, records["prometheus"] = ensure(cfg, sup, decision, p.detail, force_restart=stale,
                                      info={"identity": identity}, url=cfg.url("prometheus"))
    rules = (f"{sum(len(g['rules']) for g in groups)} alert rule(s) from {source}, promtool check passed"
             if groups else "no alert rules")
    p.say(f"Prometheus {records['prometheus']} at {cfg.url('prometheus')}: {rules}; alerts page "
          f"{prometheus.alerts_page(cfg.url('prometheus'))}")
    if cfg.auto_rollback and "autorollback" in decisions:
        _, records["autorollback"] = ensure(cfg, sup, decisions["autorollback"], p.detail,
                                            url=cfg.url("autorollback"))
        p.say(f"automatic rollback {records['autorollback']} at {cfg.url('autorollback')}: "
              f"{len(rollback)} model(s), runbooks/model-rollback.md")
        rules += f"; automatic rollback on ({len(rollback)} model(s))"
    if cfg.auto_retrain and "retrain" in decisions:
        _, records["retrain"] = ensure(cfg, sup, decisions["retrain"], p.detail, url=cfg.url("retrain"))
        p.say(f"drift retraining {records['retrain']} at {cfg.url('retrain')}: {len(retrain)} model(s) run their "
              "pipeline when their drift alert fires")
        rules += f"; retraining on drift on ({len(retrain)} model(s))"
    return f"{cfg.url('prometheus')} scraping MLServer; {rules}"


def down(cfg: LocalConfig) -> int:
    sup = Supervisor(cfg.state_dir)
    names = [*reversed(ORDER), *(r.name for r in sup.records() if r.name not in ORDER)]
    stopped, problems = [], []
    for name in names:
        rec = sup.get(name)
        if rec is None:
            continue
        was_running, busy = sup.stop(name)
        if was_running:
            stopped.append(f"{name} (pid {rec.pid})")
        if busy:
            problems.append(f"{name}: port(s) {busy} still in use")
    discovery.set_phase(cfg.state_dir, "down")
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    still = [p for p in _all_ports(cfg) if port_listening(p, cfg.host)]
    for msg in problems:
        print(f"WARNING {msg}")
    if still:
        print(f"note: port(s) {still} are in use by programs the platform did not start")
    return 1 if problems else 0


def _all_ports(cfg: LocalConfig) -> list[int]:
    return sorted(cfg.ports.values())
