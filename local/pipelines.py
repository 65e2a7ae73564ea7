"""Training pipelines on the local platform, and the `mlplat pipeline` command.

`mlplat local up` trains every model by running its compiled pipeline (the committed IR the cluster
uploads) with `kfp.local` against the platform's own stores: MLflow (`cfg.mlflow_url`), the Feast
repository `up` built (`<state>/feast`, read with `get_historical_features`) and the local model
slots (`<state>/model-slots/`, the models bucket's layout; ml/pipelines/local_slots.py). The runs
overlap (one child process per model, ml/pipelines/local_run.py) and the MLflow server may still be
starting when they begin: the `register` step waits for it.

    mlplat pipeline list
    mlplat pipeline compile --out DIR        one IR YAML per registered model (--check: committed IR current)
    mlplat pipeline run NAME [--local]       --local: on the running local platform; else on a KFP endpoint
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts import model_registry
from contracts.pipelines import GATES_SOURCE_TAG, SAMPLE_DATA, STEPS, pipeline_name
from local.config import DEFAULT_STATE_DIR, LocalConfig, default_ports

SUMMARY_FILE = "summary.json"


def slots_dir(cfg: LocalConfig) -> Path:
    return cfg.path("model-slots")


def arguments(cfg: LocalConfig, *, data_uri: str | Path, gates: dict[str, float] | None = None,
              trigger: str = "manual", tags: dict[str, str] | None = None, serving: bool = False,
              seed: int = 0) -> dict[str, Any]:
    """Run parameters for the local platform (contracts/pipelines.py PARAMETERS)."""
    feast = cfg.path("feast")
    return {
        "data_uri": str(data_uri), "seed": seed,
        "feast_repo": str(feast) if (feast / "feature_store.yaml").is_file() else "",
        "gates": json.dumps(gates, sort_keys=True) if gates is not None else "",
        "promotion": "gates", "tracking_uri": cfg.mlflow_url, "slot_dir": str(slots_dir(cfg)),
        "serving_url": cfg.url("http") if serving else "", "trigger": trigger,
        "version_tags": json.dumps(tags or {}, sort_keys=True), "quick": False,
    }


def run_all(cfg: LocalConfig, runs: dict[str, dict[str, Any]], say: Callable[[str], None],
            parallel: int | None = None) -> dict[str, Any]:
    """Run each model's pipeline (`runs`: model -> arguments), `parallel` at a time; print each run's steps
    as it finishes. Returns model -> RunReport. The trained artifact is copied to `<state>/train/<model>`."""
    from ml.pipelines.local_run import collect, format_report, start

    parallel = max(1, parallel or min(len(runs), os.cpu_count() or 1, 3))
    root, logs = cfg.path("pipelines", "root"), cfg.path("pipelines")
    pending = list(runs)
    active: dict[str, tuple[Any, Path, Path]] = {}
    reports: dict[str, Any] = {}
    total = len(runs)
    while pending or active:
        while pending and len(active) < parallel:
            name = pending.pop(0)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            report_path = logs / f"{name}-{stamp}.report.json"
            log_path = logs / f"{name}-{stamp}.log"
            active[name] = (start(name, runs[name], root=root, log_path=log_path, report_path=report_path),
                            report_path, log_path)
        done = next((n for n, (proc, _, _) in active.items() if proc.poll() is not None), None)
        if done is None:
            time.sleep(0.1)
            continue
        proc, report_path, log_path = active.pop(done)
        report = reports[done] = collect(done, proc, report_path, log_path)
        index = list(runs).index(done) + 1
        say(f"[{index}/{total}] {done}: pipeline {report.pipeline} (kfp.local, subprocess runner, IR "
            f"{_short(report.ir)})")
        for line in format_report(report):
            say(line)
        if report.artifact and Path(report.artifact).is_dir():
            dst = cfg.path("train", done)
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(report.artifact, dst)
    return reports


def _short(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(__file__).resolve().parents[1]))
    except ValueError:
        return path


# ---- mlplat pipeline ------------------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction) -> None:
    pipe = sub.add_parser("pipeline", help="training pipelines (Kubeflow Pipelines): list | compile | run")
    actions = pipe.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="one pipeline per registered model, its steps and committed IR")
    ls.set_defaults(func=_list)
    co = actions.add_parser("compile", help="compile every model's pipeline to IR YAML")
    co.add_argument("--out", type=Path, default=None, metavar="DIR", help="write <model>.yaml files into DIR")
    co.add_argument("--in-place", action="store_true",
                    help="write the committed IR beside each model's spec.py (training_pipeline.yaml)")
    co.add_argument("--check", action="store_true", help="exit 1 when a committed IR differs from a fresh compile")
    co.set_defaults(func=_compile)
    rn = actions.add_parser("run", help="run one model's pipeline: --local on this machine's platform, else on KFP")
    rn.add_argument("name", choices=model_registry.names())
    rn.add_argument("--local", action="store_true", help="kfp.local on the running local platform (mlplat local up)")
    rn.add_argument("--state-dir", type=Path, default=Path(os.environ.get("MLPLAT_LOCAL_DIR", DEFAULT_STATE_DIR)))
    rn.add_argument("--data", default=None, metavar="DIR|sample",
                    help="data to train on (default: the local platform's data; `sample`: the pipeline generates it)")
    rn.add_argument("--gates", default=None, metavar="JSON", help='floors, e.g. \'{"auc": 0.9}\' (default: the rule '
                    "of the platform: sample floors on sample data, else the schema's gates)")
    rn.add_argument("--trigger", default="manual", choices=["manual", "drift", "schedule", "bootstrap"])
    rn.add_argument("--host", default=os.environ.get("KFP_HOST"), help="KFP API endpoint (cluster runs; env KFP_HOST)")
    rn.add_argument("--params", default="{}", metavar="JSON", help="cluster runs: pipeline arguments")
    rn.add_argument("--json", action="store_true", help="print the run report as JSON")
    rn.set_defaults(func=_run)


def _list(args: argparse.Namespace) -> int:
    from ml.pipelines.definition import committed_ir

    print(f"{'model':<16}{'pipeline':<26}committed IR")
    for name in model_registry.names():
        path = committed_ir(name)
        state = "" if path.is_file() else "  (missing: mlplat pipeline compile --in-place)"
        print(f"{name:<16}{pipeline_name(name):<26}{_short(str(path))}{state}")
    print(f"\nsteps: {' -> '.join(STEPS[:-1])} -> {STEPS[-1]} (only when the gates pass)")
    return 0


def _compile(args: argparse.Namespace) -> int:
    import tempfile

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
    return LocalConfig(state_dir=state_dir, ports=default_ports())


def _run(args: argparse.Namespace) -> int:
    if not args.local:
        from ml.pipelines.cluster import run_on_cluster

        if not args.host:
            print("mlplat pipeline run: give --host (the KFP API, e.g. http://localhost:8888 through "
                  "`kubectl -n kubeflow port-forward svc/ml-pipeline 8888`) or --local", file=sys.stderr)
            return 2
        print(json.dumps(run_on_cluster(args.host, args.name, json.loads(args.params), trigger=args.trigger),
                         indent=1))
        return 0
    from ml.pipelines.local_run import format_report, run

    cfg = _platform(args.state_dir)
    summary = cfg.state_dir / SUMMARY_FILE
    if not summary.is_file():
        print(f"mlplat pipeline run --local: no local platform in {cfg.state_dir}; start it with `mlplat local up`",
              file=sys.stderr)
        return 2
    doc = json.loads(summary.read_text())
    data = args.data or (doc.get("data_dir") or str(cfg.path("data", "sample")))
    if data != SAMPLE_DATA and not Path(data).is_dir():
        print(f"mlplat pipeline run --local: data directory {data} does not exist", file=sys.stderr)
        return 2
    generated = data == SAMPLE_DATA or (data == doc.get("data_dir") and str(doc.get("data", "")).startswith(
        "generated sample"))
    if args.gates:
        gates = json.loads(args.gates)
    else:  # the platform's rule (local/training.py gates_for): sample floors on generated sample data
        from local.training import gates_for

        gates = gates_for(args.name, generated)[0]
    profile = "--gates" if args.gates else "sample-data floors" if generated else "stack default gates"
    tags = {GATES_SOURCE_TAG: profile}
    if data != SAMPLE_DATA:  # tagged like `local up`'s versions, so a later `up` on the same data reuses it
        from local.training import DATA_TAG, GATES_TAG, fingerprint

        tags.update({DATA_TAG: fingerprint(Path(data)), GATES_TAG: profile})
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
    return 0 if report.status == "SUCCEEDED" else 1
