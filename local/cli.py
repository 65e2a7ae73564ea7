"""`mlplat local up|status|down`: the whole platform on this machine (the embedded default)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from contracts import model_registry
from local.config import DEFAULT_STATE_DIR, PORT_HELP, LocalConfig, default_ports, otlp_endpoint_from_env
from local.services import PORT_FLAGS


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", type=Path, default=Path(os.environ.get("MLPLAT_LOCAL_DIR", DEFAULT_STATE_DIR)),
                   help="where pids, logs, stores and artifacts live (default: .local/ in the repo; "
                        "env MLPLAT_LOCAL_DIR)")
    ports = default_ports()
    for name, flag in PORT_FLAGS.items():
        p.add_argument(flag, dest=f"port_{name}", type=int, default=ports[name], metavar="PORT",
                       help=f"{PORT_HELP[name]} (default {ports[name]})")


def register(sub: argparse._SubParsersAction) -> None:
    local = sub.add_parser("local", help="run the platform on this machine: up | status | down | chaos")
    actions = local.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start MLflow, Feast, train + register the models, serve them, smoke-test")
    _add_common(up)
    up.add_argument("--data", type=Path, default=None, metavar="DIR",
                    help="train on the files in DIR (shared datasets' names and schemas, e.g. ../shared/datasets); "
                         "default: generated sample data")
    up.add_argument("--redis", action="store_true", help="Feast online store in a local redis-server (default SQLite)")
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
    up.add_argument("-v", "--verbose", action="store_true", help="show the libraries' log messages")
    up.set_defaults(func=_up)
    st = actions.add_parser("status", help="what runs, on which ports, healthy or not")
    _add_common(st)
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=_status)
    dn = actions.add_parser("down", help="stop everything `local up` started (by pid) and free the ports")
    _add_common(dn)
    dn.set_defaults(func=_down)
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
    ports = {name: getattr(args, f"port_{name}") for name in PORT_FLAGS}
    return LocalConfig(state_dir=args.state_dir, ports=ports, **extra)  # type: ignore[arg-type]


def _fail(exc: BaseException) -> int:
    print(f"mlplat local: error: {exc}", file=sys.stderr)
    return 2


def _up(args: argparse.Namespace) -> int:
    from local.platform import SetupError, up
    from local.supervisor import PortInUseError
    from ml.data.contract import DataContractError

    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
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
            gates_stack=args.gates_stack,
            models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
            otlp_endpoint=otlp_endpoint_from_env(),
        )
        return up(cfg)
    except DataContractError as exc:
        print(f"mlplat local: the data in {args.data} does not match the expected schema: {exc}", file=sys.stderr)
        return 2
    except (SetupError, PortInUseError, ValueError) as exc:
        return _fail(exc)


def _status(args: argparse.Namespace) -> int:
    from local.platform import status

    try:
        return status(_config(args), as_json=args.json)
    except ValueError as exc:
        return _fail(exc)


def _chaos(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from local.chaos import Chaos, ChaosError, summary

    logging.basicConfig(level=logging.ERROR)
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


def _down(args: argparse.Namespace) -> int:
    from local.platform import down

    try:
        return down(_config(args))
    except ValueError as exc:
        return _fail(exc)
