"""The local platform's commands: `mlplat local up|status|down|chaos` (the whole platform on this machine,
the embedded default) and `mlplat pipeline list|compile|run` (the models' training pipelines: compiled
IR, runs with kfp.local on the local platform or on a cluster's Kubeflow Pipelines)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from contracts import local_platform, model_registry
from contracts.pipelines import GATES_SOURCE_TAG, SAMPLE_DATA, STEPS, pipeline_name
from local.config import PORT_HELP, LocalConfig, default_ports, otlp_endpoint_from_env, parse_engines
from local.discovery import recorded_models, resolve_ports
from local.pipeline_runs import SUMMARY_FILE, arguments, short_path, slots_dir
from local.services import PORT_FLAGS
from local.supervisor import PortInUseError
from local.training import DATA_TAG, GATES_TAG, fingerprint, gates_for
from ml.data.contract import DataContractError
from ml.service_checks import bound_mlflow_client, check_mlflow, check_model_server

# The commands' own modules (the platform's orchestration, chaos, the pipeline definition and runner) are
# imported when the command runs: they pull in Feast, MLflow or the KFP SDK, which `mlplat --help` and the
# other subcommands need not load (start-up time).


def _add_common(p: argparse.ArgumentParser, starts: bool = False) -> None:
    p.add_argument("--state-dir", type=Path, default=local_platform.state_dir(),
                   help="where pids, logs, stores and artifacts live (default: .local/ in the repo; "
                        "env MLPLAT_LOCAL_DIR)")
    ports = default_ports()
    for name, flag in PORT_FLAGS.items():
        where = f"default {ports[name]}" if starts else f"default: the port `up` recorded, else {ports[name]}"
        p.add_argument(flag, dest=f"port_{name}", type=int, default=None, metavar="PORT",
                       help=f"{PORT_HELP[name]} ({where})")


def register(sub: argparse._SubParsersAction) -> None:
    register_local(sub)
    register_pipeline(sub)


def register_local(sub: argparse._SubParsersAction) -> None:
    local = sub.add_parser("local", help="run the platform on this machine: up | status | down | chaos")
    actions = local.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start MLflow, Feast, train + register the models, serve them, smoke-test")
    _add_common(up, starts=True)
    up.add_argument("--data", type=Path, default=None, metavar="DIR",
                    help="train on the files in DIR (shared datasets' names and schemas, e.g. ../shared/datasets); "
                         "default: generated sample data")
    up.add_argument("--redis", action="store_true", help="Feast online store in a local redis-server (default SQLite)")
    up.add_argument("--engines", default="", metavar="LIST",
                    help="optional Java engines, comma-separated: `spark` computes the batch features with the Spark "
                         "job on local[2]; `flink` runs the streaming-features job (needs --redis and the streaming "
                         "environment) and checks a new transaction end to end; both need Java 17; default: none "
                         "(no JVM: the models' pandas feature code)")
    up.add_argument("--models", default=",".join(model_registry.names()),
                    help=f"comma-separated subset of {','.join(model_registry.names())} (default: all registered)")
    up.add_argument("--gates-stack", type=Path, default=None, metavar="FILE",
                    help="with --data: take the quality gates from this stack file (e.g. stacks/Pulumi.prod.yaml) "
                         "instead of the schema defaults")
    up.add_argument("--retrain", action="store_true", help="train again even if the data did not change")
    up.add_argument("--no-prometheus", action="store_true", help="do not start a local Prometheus")
    up.add_argument("--no-auto-rollback", action="store_true",
                    help="do not start the automatic-rollback receiver (runbooks/model-rollback.md)")
    up.add_argument("--no-auto-retrain", action="store_true",
                    help="do not start the drift-retrain receiver (a model's pipeline runs when its drift alert fires)")
    up.add_argument("--no-splitter", action="store_true",
                    help="no traffic splitter (HAProxy) and feedback endpoint in front of the model server")
    up.add_argument("-v", "--verbose", action="store_true", help="show the libraries' log messages")
    up.set_defaults(func=_up)
    st = actions.add_parser("status", help="what runs, on which ports, healthy or not")
    _add_common(st)
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=_status)
    dn = actions.add_parser("down", help="stop everything `local up` started (by pid) and free the ports")
    _add_common(dn)
    dn.set_defaults(func=_down)
    ap = actions.add_parser("apply", help="serve what the local deploy repository's tree says (champion and "
                                          "challenger per model): Argo CD's part, on the local platform")
    ap.add_argument("--stack-file", type=Path, default=None,
                    help="the stack whose environment's tree applies (default stacks/Pulumi.dev.yaml)")
    ap.set_defaults(func=_apply)
    ch = actions.add_parser("chaos", help="inject faults (Redis, MLflow, model server, corrupt slot) under steady "
                                          "load; print what was done and seen; exit 1 if an expectation fails")
    _add_common(ch)
    ch.add_argument("--faults", default="redis,mlflow,mlserver,slot",
                    help="comma-separated subset, run in this order (default: redis,mlflow,mlserver,slot)")
    ch.add_argument("--rate", type=float, default=20.0, help="requests per second per model (default 20)")
    ch.add_argument("--slot-model", default=None,
                    help="model whose slot gets the corrupt artifact (default: the first of the models served)")
    ch.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the report as JSON")
    ch.set_defaults(func=_chaos)


def _config(args: argparse.Namespace, **extra: object) -> LocalConfig:
    """`up`: the flags, else MLPLAT_<NAME>_PORT, else the defaults. Every other command works on the platform
    `up` recorded in the state directory: its ports and models unless a flag says otherwise."""
    given = {name: getattr(args, f"port_{name}") for name in PORT_FLAGS}
    state = Path(args.state_dir).resolve()
    if args.action == "up":
        ports = {**default_ports(), **{k: v for k, v in given.items() if v is not None}}
    else:
        ports = resolve_ports(state, given)
        models = recorded_models(state)
        if models and "models" not in extra:
            extra["models"] = tuple(m for m in models if m in model_registry.names())
    return LocalConfig(state_dir=state, ports=ports, **extra)  # type: ignore[arg-type]


def _fail(exc: BaseException) -> int:
    print(f"mlplat local: error: {exc}", file=sys.stderr)
    return 2


def _up(args: argparse.Namespace) -> int:
    try:
        return _start(args)
    except KeyboardInterrupt:  # before `up` itself ran (importing the platform's modules takes seconds)
        print("mlplat local up: interrupted before anything was started", file=sys.stderr)
        return 130


def _start(args: argparse.Namespace) -> int:
    from local.orchestration import Interrupted, SetupError, up

    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    bound_mlflow_client()  # here and in every process `up` starts (pipeline runs, alert receivers)
    if not args.verbose:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # mlflow resets its logger on import
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        os.environ.setdefault("PYTHONWARNINGS", "ignore")  # library deprecation noise in the child processes
        import warnings

        warnings.simplefilter("ignore")
    try:
        cfg = _config(
            args, data_dir=args.data, redis=args.redis, retrain=args.retrain, prometheus=not args.no_prometheus,
            auto_rollback=not args.no_auto_rollback, auto_retrain=not args.no_auto_retrain,
            splitter=not args.no_splitter, gates_stack=args.gates_stack,
            models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
            otlp_endpoint=otlp_endpoint_from_env(), engines=parse_engines(args.engines),
        )
        if "flink" in cfg.engines and not cfg.redis:
            raise ValueError("--engines flink needs --redis: the streaming job writes Feast's Redis online store")
        return up(cfg)
    except DataContractError as exc:
        print(f"mlplat local: the data in {args.data} does not match the expected schema: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"mlplat local up: {exc}", file=sys.stderr)
        return 130
    except (SetupError, PortInUseError, ValueError) as exc:
        return _fail(exc)


def _status(args: argparse.Namespace) -> int:
    from local.platform_status import status

    try:
        return status(_config(args), as_json=args.json)
    except ValueError as exc:
        return _fail(exc)


def _chaos(args: argparse.Namespace) -> int:
    from local.chaos import Chaos, ChaosError, summary

    logging.basicConfig(level=logging.ERROR)
    bound_mlflow_client()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    faults = tuple(f.strip() for f in args.faults.split(",") if f.strip())
    try:
        chaos = Chaos(_config(args, otlp_endpoint=otlp_endpoint_from_env()), rate=args.rate,
                      slot_model=args.slot_model, say=lambda line: print(line, flush=True))
        report = chaos.run(faults)
    except (ChaosError, ValueError) as exc:
        return _fail(exc)
    print("\n" + summary(report))
    if args.json:
        args.json.write_text(json.dumps(dataclasses.asdict(report), indent=1, default=str))
    return 0 if report.ok else 1


def _apply(args: argparse.Namespace) -> int:
    # Imported here: MLflow and the serving stack load only for the commands that need them.
    from local import deploy_apply, rollout_runner
    from local.challenger import ChallengerError
    from ml.delivery.gitops import GitOpsError
    from ml.delivery.rollout import RolloutError
    from ml.training.follow import FollowError

    try:
        cfg = rollout_runner.platform_config()
        applied = deploy_apply.apply(cfg, deploy_apply.stack_config(args.stack_file))
    except (local_platform.PlatformNotFound, RolloutError, GitOpsError, FollowError, ChallengerError,
            ValueError) as exc:
        print(f"mlplat local apply: {exc}", file=sys.stderr)
        return 1
    if not applied:
        print("mlplat local apply: the platform already serves what the deploy tree says")
    return 0


def _down(args: argparse.Namespace) -> int:
    from local.orchestration import down

    try:
        return down(_config(args))
    except ValueError as exc:
        return _fail(exc)


# ---- mlplat pipeline ------------------------------------------------------------------------------------

def register_pipeline(sub: argparse._SubParsersAction) -> None:
    pipe = sub.add_parser("pipeline", help="training pipelines (Kubeflow Pipelines): list | compile | run")
    actions = pipe.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="one pipeline per registered model, its steps and committed IR")
    ls.set_defaults(func=_pipeline_list)
    co = actions.add_parser("compile", help="compile every model's pipeline to IR YAML")
    co.add_argument("--out", type=Path, default=None, metavar="DIR", help="write <model>.yaml files into DIR")
    co.add_argument("--in-place", action="store_true",
                    help="write the committed IR beside each model's spec.py (training_pipeline.yaml)")
    co.add_argument("--check", action="store_true", help="exit 1 when a committed IR differs from a fresh compile")
    co.set_defaults(func=_pipeline_compile)
    rn = actions.add_parser("run", help="run one model's pipeline: --local on this machine's platform, else on KFP")
    rn.add_argument("name", choices=model_registry.names())
    rn.add_argument("--local", action="store_true", help="kfp.local on the running local platform (mlplat local up)")
    rn.add_argument("--state-dir", type=Path, default=local_platform.state_dir(),
                    help="the local platform's state directory (default: .local/ in the repo; env MLPLAT_LOCAL_DIR)")
    rn.add_argument("--data", default=None, metavar="DIR|sample",
                    help="data to train on (default: the local platform's data; `sample`: the pipeline generates it)")
    rn.add_argument("--gates", default=None, type=gates_json, metavar="JSON",
                    help='floors, e.g. \'{"auc": 0.9}\' (default: the rule of the platform: sample floors on sample '
                         "data, else the schema's gates)")
    rn.add_argument("--trigger", default="manual", choices=["manual", "drift", "schedule", "bootstrap"])
    rn.add_argument("--host", default=os.environ.get("KFP_HOST"), help="KFP API endpoint (cluster runs; env KFP_HOST)")
    rn.add_argument("--params", default={}, type=json_object, metavar="JSON", help="cluster runs: pipeline arguments")
    rn.add_argument("--json", action="store_true", help="print the run report as JSON")
    rn.set_defaults(func=_pipeline_run)


def json_object(text: str) -> dict[str, object]:
    """An argparse type: a JSON object (a bad value is a usage error naming the problem, not a traceback)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at character {exc.pos}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}: {text!r}")
    return value


def gates_json(text: str) -> dict[str, float]:
    """An argparse type: quality-gate floors as a JSON object of metric name -> number."""
    value = json_object(text)
    bad = [k for k, v in value.items() if isinstance(v, bool) or not isinstance(v, int | float)]
    if bad:
        raise argparse.ArgumentTypeError(f"floors must be numbers, e.g. '{{\"auc\": 0.9}}'; not a number: "
                                         f"{', '.join(bad)}")
    return {k: float(v) for k, v in value.items()}  # type: ignore[arg-type]


def _pipeline_list(args: argparse.Namespace) -> int:
    from ml.pipelines.definition import committed_ir

    print(f"{'model':<16}{'pipeline':<26}committed IR")
    for name in model_registry.names():
        path = committed_ir(name)
        state = "" if path.is_file() else "  (missing: mlplat pipeline compile --in-place)"
        print(f"{name:<16}{pipeline_name(name):<26}{short_path(str(path))}{state}")
    print(f"\nsteps: {' -> '.join(STEPS[:-1])} -> {STEPS[-1]} (only when the gates pass)")
    return 0


def _pipeline_compile(args: argparse.Namespace) -> int:
    from ml.pipelines.definition import committed_ir, compile_ir

    if not (args.out or args.in_place or args.check):
        print("mlplat pipeline compile: give --out DIR, --in-place or --check", file=sys.stderr)
        return 2
    stale = []
    for name in model_registry.names():
        if args.out:
            print(compile_ir(name, args.out / f"{name}.yaml"))
        if args.in_place:
            print(compile_ir(name, committed_ir(name)))
        if args.check:
            with tempfile.TemporaryDirectory() as tmp:
                fresh = compile_ir(name, Path(tmp) / "ir.yaml").read_text()
            committed = committed_ir(name)
            if not committed.is_file() or committed.read_text() != fresh:
                stale.append(str(committed))
    if stale:
        print(f"stale or missing IR: {', '.join(stale)}; run `mlplat pipeline compile --in-place`", file=sys.stderr)
        return 1
    return 0


def _platform(state_dir: Path) -> LocalConfig:
    """The running platform of `state_dir` on the ports its `up` recorded; PlatformNotFound when none runs."""
    record = local_platform.find_running(state_dir)
    print(f"using the {record.describe()}", file=sys.stderr, flush=True)
    return LocalConfig(state_dir=record.state_dir, ports=resolve_ports(record.state_dir, {}),
                       models=tuple(m for m in record.models if m in model_registry.names()) or model_registry.names())


def _pipeline_run(args: argparse.Namespace) -> int:
    if args.gates is not None:
        unknown = model_registry.get(args.name).unknown_metrics(args.gates)
        if unknown:
            print(f"mlplat pipeline run: --gates names metrics {args.name}'s evaluation does not produce: "
                  f"{', '.join(unknown)}; allowed: {', '.join(model_registry.get(args.name).metrics)}",
                  file=sys.stderr)
            return 2
    if not args.local:
        from ml.pipelines.kfp_api import run_on_cluster

        if not args.host:
            print("mlplat pipeline run: give --host (the KFP API, e.g. http://localhost:8888 through "
                  "`kubectl -n kubeflow port-forward svc/ml-pipeline 8888`) or --local", file=sys.stderr)
            return 2
        print(json.dumps(run_on_cluster(args.host, args.name, args.params, trigger=args.trigger),
                         indent=1))
        return 0
    from local.pipeline_runner import format_report, run, run_exit_status
    from ml.pipelines.steps import TRACKING_WAIT_ENV

    try:
        cfg = _platform(args.state_dir)
    except local_platform.PlatformNotFound as exc:
        print(f"mlplat pipeline run --local: {exc}", file=sys.stderr)
        return 2
    summary = cfg.state_dir / SUMMARY_FILE
    doc = json.loads(summary.read_text()) if summary.is_file() else {}
    data = args.data or (doc.get("data_dir") or str(cfg.path("data", "sample")))
    if data != SAMPLE_DATA and not Path(data).is_dir():
        print(f"mlplat pipeline run --local: data directory {data} does not exist", file=sys.stderr)
        return 2
    generated = data == SAMPLE_DATA or (data == doc.get("data_dir") and str(doc.get("data", "")).startswith(
        "generated sample"))
    # Without --gates, the platform's rule (local/training.py gates_for): sample floors on generated sample data.
    gates = args.gates if args.gates is not None else gates_for(args.name, generated)[0]
    profile = "--gates" if args.gates else "sample-data floors" if generated else "stack default gates"
    tags = {GATES_SOURCE_TAG: profile}
    if data != SAMPLE_DATA:  # tagged like `local up`'s versions, so a later `up` on the same data reuses it
        tags.update({DATA_TAG: fingerprint(Path(data)), GATES_TAG: profile})
    # The platform must be up before minutes of training: MLflow registers, the model server reloads.
    check_mlflow(cfg.mlflow_url)
    check_model_server(cfg.url("http"))
    bound_mlflow_client()
    os.environ.setdefault(TRACKING_WAIT_ENV, "10")  # MLflow was just seen up: no start-up wait in `register`
    arguments_ = arguments(cfg, data_uri=data, gates=gates, trigger=args.trigger, serving=True, tags=tags)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    print(f"{args.name}: running {pipeline_name(args.name)} with kfp.local (MLflow {cfg.mlflow_url}, Feast "
          f"{arguments_['feast_repo'] or '(a store over the run data)'}, slots {slots_dir(cfg)})", flush=True)
    report = run(args.name, arguments_, root=cfg.path("pipelines", "root"),
                 log_path=cfg.path("pipelines", f"{args.name}-{stamp}.log"))
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
    else:
        print("\n".join(format_report(report, indent="  ")))
    return run_exit_status(report)
