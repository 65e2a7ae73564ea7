"""`mlplat model train|evaluate`: train, register and gate a registered model; evaluate an artifact.

    mlplat model train NAME --data DIR [--tracking-uri URI] [--sample] [--out DIR] [--seed N]
                            [--stack-file Pulumi.<env>.yaml] [--no-register]
    mlplat model evaluate NAME --model URI_OR_DIR --data FILE [--tracking-uri URI]

Both print one JSON document on stdout (logs go to stderr), so they compose with `jq`.
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
from ml.common.plugin import ModelPlugin, load_plugin

REPO_ROOT = Path(__file__).resolve().parents[2]


def plugin_for(name: str) -> ModelPlugin:
    try:
        return load_plugin(name)
    except ValueError as exc:
        raise SystemExit(f"mlplat model: {exc}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("model", help="train / evaluate the registered models")
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


def _emit(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True, default=str))


def run_train(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    plugin = plugin_for(args.name)
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
        started = time.perf_counter()
        result = plugin.train(args.data, out_dir, params=args.params, seed=args.seed)
        doc: dict[str, Any] = {
            "model": args.name, "artifact": str(out_dir), "metrics": result.metrics,
            "train_seconds": round(time.perf_counter() - started, 2),
        }
        if not args.no_register:
            from ml.common.gates import load_gates
            from ml.common.pipeline import publish

            gates = load_gates(args.name, args.stack_file)
            doc["registry"] = publish(result, args.tracking_uri, gates=gates).as_dict()
    _emit(doc)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    plugin = plugin_for(args.name)
    if not args.data.is_file():
        print(f"mlplat model evaluate: --data {args.data} is not a file", file=sys.stderr)
        return 2
    from ml.common.tracking import resolve_model_dir

    with contextlib.redirect_stdout(sys.stderr):
        model_dir = resolve_model_dir(args.model, args.tracking_uri)
        metrics = plugin.evaluate(model_dir, args.data, seed=args.seed)
    _emit(metrics)
    return 0
