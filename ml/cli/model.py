"""`mlplat model train|evaluate|card|approve|drift`: the model lifecycle from the command line.

    mlplat model train NAME --data DIR [--tracking-uri URI] [--sample] [--out DIR] [--seed N]
                            [--stack-file Pulumi.<env>.yaml] [--no-register]
    mlplat model evaluate NAME --model URI_OR_DIR --data FILE [--tracking-uri URI]
    mlplat model card NAME [--version V] [--json] [--tracking-uri URI]
    mlplat model approve NAME VERSION --by WHO --reason TEXT [--stack-file F] [--no-promote]
    mlplat model drift NAME [--samples DIR] [--out DIR] [--window N] [--tracking-uri URI]

train, evaluate and approve print one JSON document on stdout (logs go to stderr), so they compose
with `jq`; card prints Markdown (or JSON with --json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from contracts import model_registry
from contracts.governance import AuditLog
from ml.data.contract import DataContractError
from ml.model_plugin import ModelPlugin, load_plugin
from ml.service_checks import bound_mlflow_client, check_mlflow
from ml.training import card
from ml.training.approval import ApprovalError, approve, promotion_policy
from ml.training.gates import load_gates
from ml.training.tracking import default_tracking_uri, ensure_experiment, resolve_model_dir
from stacks.config import load_stack_file

# Imported where a command runs, for the start-up time of `mlplat` and its other subcommands: MLflow
# (registration, the client), pandera (training-data validation), pandas and Evidently (drift reports).

REPO_ROOT = Path(__file__).resolve().parents[2]


def plugin_for(name: str) -> ModelPlugin:
    try:
        return load_plugin(name)
    except ValueError as exc:
        raise SystemExit(f"mlplat model: {exc}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("model", help="train / evaluate / approve the registered models; cards, drift")
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    names = model_registry.names()

    train = sub.add_parser("train", help="train, log to MLflow, register (challenger; champion if gates pass)")
    train.add_argument("name", choices=names)
    train.add_argument("--data", type=Path, required=True, help="directory with the dataset files")
    train.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or .local/mlflow)")
    train.add_argument("--sample", action="store_true", help="first generate small synthetic data into --data")
    train.add_argument("--out", type=Path, help="where to write the serving artifact (default .local/models/...)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--params", type=json.loads, default=None, help="JSON overriding the algorithm's params")
    train.add_argument("--stack-file", type=Path, help="read quality gates from this Pulumi.<env>.yaml")
    train.add_argument("--no-register", action="store_true", help="skip MLflow; only write the artifact")
    train.set_defaults(func=run_train)

    ev = sub.add_parser("evaluate", help="print held-out metrics of a model as JSON")
    ev.add_argument("name", choices=names)
    ev.add_argument("--model", required=True, help="artifact directory or models:/NAME@ALIAS")
    ev.add_argument("--data", type=Path, required=True, help="a file with the schema of a dataset file")
    ev.add_argument("--tracking-uri", help="MLflow tracking URI for models:/ URIs")
    ev.add_argument("--seed", type=int, default=0, help="seed of any random split the evaluation makes")
    ev.set_defaults(func=run_evaluate)

    card = sub.add_parser("card", help="show the model card of a registered version")
    card.add_argument("name", choices=names)
    card.add_argument("--version", help="registry version (default: the champion, else the challenger)")
    card.add_argument("--json", action="store_true", help="the card as JSON instead of Markdown")
    card.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or .local/mlflow)")
    card.set_defaults(func=run_card)

    ap = sub.add_parser("approve", help="record an approval of a version (MLflow tags + audit log) and promote it")
    ap.add_argument("name", choices=names)
    ap.add_argument("version")
    ap.add_argument("--by", required=True, help="who approves (recorded)")
    ap.add_argument("--reason", required=True, help="why (recorded)")
    ap.add_argument("--stack-file", type=Path, help="the stack whose environment is recorded in the audit log")
    ap.add_argument("--no-promote", action="store_true", help="record the approval only; leave `champion` as is")
    ap.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or .local/mlflow)")
    ap.add_argument("--audit-log", type=Path,
                    help="audit log (default $MLPLAT_AUDIT_LOG or .local/runbook-audit.jsonl)")
    ap.set_defaults(func=run_approve)

    dr = sub.add_parser("drift", help="Evidently drift report: sampled serving inputs vs the training reference")
    dr.add_argument("name", choices=names)
    dr.add_argument("--samples", help="serving samples: a directory or s3://bucket/prefix "
                                      "(default $MLPLAT_SERVING_SAMPLES or .local/serving-samples)")
    dr.add_argument("--model", help="artifact directory or models:/NAME@ALIAS with the reference "
                                    "(default models:/NAME@champion)")
    dr.add_argument("--window", type=int, default=5000, help="the newest N sampled rows (default 5000)")
    dr.add_argument("--out", help="where reports go: a directory or s3://bucket/prefix (default .local/drift-reports)")
    dr.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or .local/mlflow)")
    dr.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    dr.set_defaults(func=run_drift)


TRACKING_FIX = "start the platform with `mlplat local up`, or pass --tracking-uri of a running MLflow server"


def _tracking(args: argparse.Namespace) -> str:
    """The tracking URI the command uses, its server checked first (seconds, not the client's retries)."""
    bound_mlflow_client()
    uri = args.tracking_uri or default_tracking_uri()
    check_mlflow(uri, fix=TRACKING_FIX)
    return uri


def _emit(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True, default=str))


def run_train(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    plugin = plugin_for(args.name)
    if not args.no_register:
        _tracking(args)  # before minutes of training, not after
    out_dir = args.out or REPO_ROOT / ".local" / "models" / args.name / time.strftime("%Y%m%d-%H%M%S")
    if out_dir.exists() and any(out_dir.iterdir()):
        print(f"mlplat model train: output directory {out_dir} is not empty", file=sys.stderr)
        return 2
    # Libraries (MLflow, Feast) print to stdout; keep stdout for the JSON result.
    with contextlib.redirect_stdout(sys.stderr):
        if args.sample:
            plugin.generate_sample(args.data, seed=args.seed)
        elif not args.data.is_dir():
            print(f"mlplat model train: --data {args.data} is not a directory (use --sample to generate one)",
                  file=sys.stderr)
            return 2
        from ml.training.validation import recording

        started = time.perf_counter()
        with recording() as validations:
            try:
                result = plugin.train(args.data, out_dir, params=args.params, seed=args.seed)
            except DataContractError as exc:
                return _refused(args, exc, validations)
        doc: dict[str, Any] = {
            "model": args.name, "artifact": str(out_dir), "metrics": result.metrics,
            "train_seconds": round(time.perf_counter() - started, 2),
        }
        if not args.no_register:
            from ml.training.registration import register

            gates = load_gates(args.name, args.stack_file)
            doc["registry"] = register(result, args.tracking_uri, gates=gates,
                                      promotion=promotion_policy(args.stack_file), data_dir=args.data,
                                      validations=validations).as_dict()
    _emit(doc)
    return 0


def _refused(args: argparse.Namespace, exc: Exception, validations: list[Any]) -> int:
    """The training data failed validation: print pandera's report and record a FAILED run with it."""
    report = getattr(exc, "report", None)
    print(f"mlplat model train: the training data failed validation: {exc}", file=sys.stderr)
    if report:
        print(json.dumps(report, indent=1, default=str), file=sys.stderr)
    if not args.no_register:
        client = _client(args.tracking_uri)
        exp = ensure_experiment(client, f"mlplat-{args.name}", client.tracking_uri)
        run = client.create_run(exp, run_name=f"train-{args.name}",
                                tags={"mlplat.model": args.name, "validation.passed": "false"})
        client.log_dict(run.info.run_id, {"passed": False, "error": str(exc),
                                          "results": [v.as_dict() for v in validations]}, "validation/training.json")
        client.set_terminated(run.info.run_id, "FAILED")
        print(f"recorded as FAILED run {run.info.run_id} (artifact validation/training.json)", file=sys.stderr)
    return 1


def run_evaluate(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    plugin = plugin_for(args.name)
    if not args.data.is_file():
        print(f"mlplat model evaluate: --data {args.data} is not a file", file=sys.stderr)
        return 2
    if str(args.model).startswith(("models:/", "runs:/")):
        _tracking(args)
    with contextlib.redirect_stdout(sys.stderr):
        try:
            model_dir = resolve_model_dir(args.model, args.tracking_uri)
        except FileNotFoundError as exc:
            print(f"mlplat model evaluate: {exc}", file=sys.stderr)
            return 2
        metrics = plugin.evaluate(model_dir, args.data, seed=args.seed)
    _emit(metrics)
    return 0


def _client(tracking_uri: str | None) -> Any:
    from mlflow import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def run_card(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    _tracking(args)
    with contextlib.redirect_stdout(sys.stderr):
        try:
            doc = card.load(_client(args.tracking_uri), args.name, args.version)
        except LookupError as exc:
            print(f"mlplat model card: {exc}", file=sys.stderr)
            return 1
    if args.json:
        _emit(doc)
    else:
        print(card.render_markdown(doc))
    return 0


def run_approve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    env = "local"
    if args.stack_file is not None:
        env = str(load_stack_file(args.stack_file).environment)
    _tracking(args)
    with contextlib.redirect_stdout(sys.stderr):
        try:
            result = approve(_client(args.tracking_uri), args.name, args.version, args.by, args.reason,
                             promote=not args.no_promote, env=env, audit=AuditLog(args.audit_log))
        except ApprovalError as exc:
            print(f"mlplat model approve: {exc}", file=sys.stderr)
            return 1
    _emit(result)
    return 0


def run_drift(args: argparse.Namespace) -> int:
    """An Evidently drift report of the sampled serving inputs against the training reference
    (ml/data/drift_report.py), on demand, into local files (or s3://)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from ml.data.drift_report import DriftReportError, run

    if args.model is None or not args.no_log:  # the champion's reference, or the report's run, is in MLflow
        _tracking(args)
    with contextlib.redirect_stdout(sys.stderr):
        try:
            summary = run(args.name, samples=args.samples, model=args.model, window=args.window, out=args.out,
                          tracking_uri=args.tracking_uri, log_to_mlflow=not args.no_log)
        except DriftReportError as exc:
            print(f"mlplat model drift: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 0 if summary.get("validation", {}).get("passed", True) else 3
