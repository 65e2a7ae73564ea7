"""Drift reports with Evidently: a window of sampled serving inputs against the training reference.

    mlplat model drift NAME [--samples DIR|s3://...] [--window N] [--out DIR|s3://...]   (on demand)
    python -m ml.data.drift_report NAME ...                                           (the CronJob)

The reference is the training rows of the monitored columns that the pipeline saved with the artifact
(`reference_sample.json`, ml/data/drift.py); the current data is the newest `window` rows of the
serving samples (ml/serving/serving_log.py). Evidently's `DataDriftPreset` tests every column (its
default method per column type and size); `score` is the model's output, so its result is the
prediction drift. Before that the window is validated with the model's serving schema (pandera,
ml/training/validation.py). Written per run under `<out>/<model>/<UTC time>/`: `report.html` (Evidently's
page), `report.json`, `validation.json` and `summary.json`; logged to MLflow (experiment
`mlplat-<model>-monitoring`: metrics `drift.share`, `drift.<column>`, tag `validation.passed`, the files).
The runtime's PSI gauge (`mlplat_model_drift_psi`) stays the alerting signal; this is the report a
person reads when that alert fires (runbooks/model-drift.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from contracts import model_registry
from contracts.governance import DRIFT_DIR, VALIDATION_PASSED
from ml.data.contract import DataContractError
from ml.data.drift import REFERENCE_SAMPLE_FILE
from ml.model_plugin import load_plugin
from ml.serving.serving_log import SAMPLES_ENV, read_window
from ml.training.tracking import default_tracking_uri, ensure_experiment, mlflow_key, pin_alias, resolve_model_dir
from ml.training.validation import finite_numbers, recording, validate

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SAMPLES = REPO_ROOT / ".local" / "serving-samples"
DEFAULT_OUT = REPO_ROOT / ".local" / "drift-reports"
MIN_ROWS = 30


class DriftReportError(RuntimeError):
    """The report cannot be made (no reference sample, too few serving rows); the message says why."""


def reference_frame(model_dir: Path) -> pd.DataFrame:
    path = Path(model_dir) / REFERENCE_SAMPLE_FILE
    if not path.is_file():
        raise DriftReportError(f"{model_dir} has no {REFERENCE_SAMPLE_FILE}: the version was trained before drift "
                               f"reports existed; retrain it (mlplat model train)")
    columns = json.loads(path.read_text())["columns"]
    n = min(len(v) for v in columns.values())
    return pd.DataFrame({k: v[:n] for k, v in columns.items()})


def _column_results(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for metric in snapshot.get("metrics", []):
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith("ValueDrift"):
            continue
        value, threshold, method = float(metric["value"]), float(config["threshold"]), str(config["method"])
        # p-value methods drift below the threshold, distance methods above it.
        drifted = value < threshold if "p_value" in method else value >= threshold
        out[config["column"]] = {"method": method, "score": value, "threshold": threshold, "drifted": drifted}
    return out


def _write(out: str, rel: str, files: dict[str, str]) -> str:
    """Write `files` under `<out>/<rel>/`; returns where they went (a directory or an s3:// prefix)."""
    if out.startswith("s3://"):
        import boto3

        bucket, _, prefix = out.removeprefix("s3://").partition("/")
        base = "/".join(p for p in (prefix.strip("/"), rel) if p)
        s3 = boto3.client("s3")
        for name, body in files.items():
            kind = "text/html" if name.endswith(".html") else "application/json"
            s3.put_object(Bucket=bucket, Key=f"{base}/{name}", Body=body.encode(), ContentType=kind)
        return f"s3://{bucket}/{base}/"
    folder = Path(out) / rel
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (folder / name).write_text(body)
    return str(folder)


def run(name: str, *, samples: str | None = None, model: str | None = None, window: int = 5000,
        out: str | None = None, tracking_uri: str | None = None, log_to_mlflow: bool = True,
        min_rows: int = MIN_ROWS) -> dict[str, Any]:
    """`min_rows`: fewer sampled rows than this make no report (DriftReportError): too few to judge drift."""

    plugin = load_plugin(name)
    samples = samples or os.environ.get(SAMPLES_ENV) or str(DEFAULT_SAMPLES)
    out = out or str(DEFAULT_OUT)
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    model_uri, version = pin_alias(model or f"models:/{name}@champion", uri)
    model_dir = resolve_model_dir(model_uri, uri)
    reference = reference_frame(model_dir)
    rows = read_window(samples, name, window)
    if len(rows) < max(min_rows, 1):
        raise DriftReportError(f"{len(rows)} sampled serving row(s) of {name} under {samples}: need at least "
                               f"{min_rows} (serving samples: parameters.extra.serving_samples or ${SAMPLES_ENV})")
    current = pd.DataFrame(rows)
    columns = [c for c in reference.columns if c in current.columns]
    if not columns:
        raise DriftReportError(f"the serving samples share no column with the reference ({list(reference.columns)})")

    schema = plugin.serving_schema() or finite_numbers(f"{name}.serving_inputs", columns)
    with recording() as validations, contextlib.suppress(DataContractError):  # recorded; the report is still made
        validate(schema, current[columns], f"{samples} ({name}, newest {len(current)} rows)")
    validation = {"passed": all(v.passed for v in validations), "results": [v.as_dict() for v in validations]}

    from evidently import Report
    from evidently.presets import DataDriftPreset

    snapshot = Report([DataDriftPreset()]).run(current_data=current[columns].astype(float),
                                               reference_data=reference[columns].astype(float))
    snap = json.loads(json.dumps(snapshot.dict(), default=float))
    per_column = _column_results(snap)
    drifted = sorted(c for c, r in per_column.items() if r["drifted"])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    ts = [r["_ts"] for r in rows if "_ts" in r]
    summary: dict[str, Any] = {
        "model": name, "reference": {"uri": model_uri, "version": version, "rows": len(reference)},
        "window": {"rows": len(current), "requested": window, "source": samples,
                   "versions": dict(Counter(str(r.get("_version")) for r in rows)),
                   "from": datetime.fromtimestamp(min(ts), UTC).isoformat() if ts else None,
                   "to": datetime.fromtimestamp(max(ts), UTC).isoformat() if ts else None},
        "drifted_columns": drifted, "drift_share": len(drifted) / len(per_column) if per_column else 0.0,
        "columns": per_column, "prediction_drift": per_column.get("score"),
        "validation": {"passed": validation["passed"], "library": validations[0].library if validations else None,
                       "failures": sum(v.failure_count for v in validations)},
        "library": f"evidently {_version('evidently')}",
    }
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "report.html"
        snapshot.save_html(str(html))
        files = {"report.html": html.read_text(), "report.json": json.dumps(snap, indent=1),
                 "validation.json": json.dumps(validation, indent=1, default=str)}
    summary["report"] = _write(out, f"{name}/{stamp}", {**files, "summary.json": json.dumps(summary, indent=1)})
    if log_to_mlflow:
        summary["mlflow_run"] = _log(uri, name, stamp, summary, files)
    return summary


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _log(uri: str, name: str, stamp: str, summary: dict[str, Any], files: dict[str, str]) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = ensure_experiment(client, f"mlplat-{name}-monitoring", uri)
    run = client.create_run(exp, run_name=f"drift-{stamp}", tags={
        "mlplat.model": name, "mlplat.kind": "drift-report",
        VALIDATION_PASSED: str(summary["validation"]["passed"]).lower(),
        "drift.reference_version": str(summary["reference"]["version"]), "drift.report": summary["report"]})
    rid = run.info.run_id
    client.log_metric(rid, "drift.share", summary["drift_share"])
    client.log_metric(rid, "window.rows", summary["window"]["rows"])
    for column, result in summary["columns"].items():
        client.log_metric(rid, f"drift.{mlflow_key(column)}", result["score"])
    for file_name, body in {**files, "summary.json": json.dumps(summary, indent=1)}.items():
        client.log_text(rid, body, f"{DRIFT_DIR}/{file_name}")
    client.set_terminated(rid)
    return rid


def main(argv: list[str] | None = None) -> int:
    """The cluster CronJob's entry point: one report per model named on the command line."""

    p = argparse.ArgumentParser(prog="python -m ml.data.drift_report", description=main.__doc__)
    p.add_argument("models", nargs="+", choices=model_registry.names())
    p.add_argument("--samples", required=True, help="serving samples: a directory or s3://bucket/prefix")
    p.add_argument("--out", required=True, help="reports: a directory or s3://bucket/prefix")
    p.add_argument("--window", type=int, default=5000)
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--min-samples", type=int, default=MIN_ROWS,
                   help=f"no report on fewer sampled rows (default {MIN_ROWS}; the stack's "
                        "`workloads.pipelines.retrainMinSamples`)")
    args = p.parse_args(argv)
    failed = 0
    for name in args.models:
        try:
            summary = run(name, samples=args.samples, window=args.window, out=args.out,
                          tracking_uri=args.tracking_uri, min_rows=args.min_samples)
        except DriftReportError as exc:
            print(f"{name}: no report: {exc}", file=sys.stderr)
            continue  # too little traffic is not a failure of the job
        except Exception as exc:
            print(f"{name}: drift report failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(json.dumps({k: summary[k] for k in ("model", "drifted_columns", "drift_share", "report")}))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
