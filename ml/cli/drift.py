"""`mlplat model drift NAME`: an Evidently drift report of the sampled serving inputs against the
training reference (ml/data/drift_report.py), on demand, into local files."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys


def register(sub: argparse._SubParsersAction, names: tuple[str, ...]) -> None:
    p = sub.add_parser("drift", help="Evidently drift report: sampled serving inputs vs the training reference")
    p.add_argument("name", choices=names)
    p.add_argument("--samples", help="serving samples: a directory or s3://bucket/prefix "
                                     "(default $MLPLAT_SERVING_SAMPLES or .local/serving-samples)")
    p.add_argument("--model", help="artifact directory or models:/NAME@ALIAS with the reference "
                                   "(default models:/NAME@champion)")
    p.add_argument("--window", type=int, default=5000, help="the newest N sampled rows (default 5000)")
    p.add_argument("--out", help="where reports go: a directory or s3://bucket/prefix (default .local/drift-reports)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or .local/mlflow)")
    p.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    p.set_defaults(func=run_drift)


def run_drift(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from ml.data.drift_report import DriftReportError, run

    with contextlib.redirect_stdout(sys.stderr):
        try:
            summary = run(args.name, samples=args.samples, model=args.model, window=args.window, out=args.out,
                          tracking_uri=args.tracking_uri, log_to_mlflow=not args.no_log)
        except DriftReportError as exc:
            print(f"mlplat model drift: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 0 if summary.get("validation", {}).get("passed", True) else 3


