"""Training pipelines on the local platform (the `mlplat pipeline` command is in local/cli.py).

`mlplat local up` trains every model by running its compiled pipeline (the committed IR the cluster
uploads) with `kfp.local` against the platform's own stores: MLflow (`cfg.mlflow_url`), the Feast
repository `up` built (`<state>/feast`, read with `get_historical_features`) and the local model
slots (`<state>/model-slots/`, the models bucket's layout; ml/training/directory_bucket.py). The runs
overlap (one child process per model, local/pipeline_runner.py) and the MLflow server may still be
starting when they begin: the `register` step waits for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contracts.local_platform import DEPLOY_REPO, DEPLOY_STACK
from local.config import LocalConfig
from ml.training.directory_bucket import LOCAL_BUCKET
from stacks.config import load_stack_file
from stacks.delivery import deploy_parameter

SUMMARY_FILE = "summary.json"


def slots_dir(cfg: LocalConfig) -> Path:
    return cfg.path("model-slots")


def arguments(cfg: LocalConfig, *, data_uri: str | Path, gates: dict[str, float] | None = None,
              trigger: str = "manual", tags: dict[str, str] | None = None, serving: bool = False,
              seed: int = 0) -> dict[str, Any]:
    """Run parameters for the local platform (contracts/pipelines.py PARAMETERS). Once `local up` made the deploy
    repository, the publish step commits the version to its tree (`deploy`) and, when it serves, applies it."""
    feast = cfg.path("feast")
    repo = cfg.state_dir / DEPLOY_REPO
    return {
        "data_uri": str(data_uri), "seed": seed,
        "feast_repo": str(feast) if (feast / "feature_store.yaml").is_file() else "",
        "gates": json.dumps(gates, sort_keys=True) if gates is not None else "",
        "promotion": "gates", "tracking_uri": cfg.mlflow_url, "slot_dir": str(slots_dir(cfg)),
        "serving_url": cfg.url("http") if serving else "", "trigger": trigger,
        "version_tags": json.dumps(tags or {}, sort_keys=True), "quick": False,
        "deploy": deploy_parameter(load_stack_file(DEPLOY_STACK), LOCAL_BUCKET, location=str(repo))
        if (repo / "HEAD").is_file() else "",
    }


def run_all(cfg: LocalConfig, runs: dict[str, dict[str, Any]], say: Callable[[str], None],
            parallel: int | None = None) -> dict[str, Any]:
    """Run each model's pipeline (`runs`: model -> arguments), `parallel` at a time; print each run's steps
    as it finishes. Returns model -> RunReport. The trained artifact is copied to `<state>/train/<model>`."""
    parallel = max(1, parallel or min(len(runs), os.cpu_count() or 1, 3))
    pending = list(runs)
    active: dict[str, tuple[Any, Path, Path]] = {}
    reports: dict[str, Any] = {}
    try:
        _run_loop(cfg, runs, say, parallel, pending, active, reports)
    except BaseException:  # Ctrl-C: the pipeline processes must not go on writing to the registry
        for proc, _, _ in active.values():
            stop(proc)
        raise
    return reports


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill a pipeline run and every step process it started (its own process group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _run_loop(cfg: LocalConfig, runs: dict[str, dict[str, Any]], say: Callable[[str], None], parallel: int,
              pending: list[str], active: dict[str, tuple[Any, Path, Path]], reports: dict[str, Any]) -> None:
    from local.pipeline_runner import collect, format_report, start  # the KFP SDK: start-up time of the CLI

    root, logs = cfg.path("pipelines", "root"), cfg.path("pipelines")
    total = len(runs)
    while pending or active:
        while pending and len(active) < parallel:
            name = pending.pop(0)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            report_path = logs / f"{name}-{stamp}.report.json"
            log_path = logs / f"{name}-{stamp}.log"
            active[name] = (start(name, runs[name], root=root, log_path=log_path, report_path=report_path,
                                  own_group=True), report_path, log_path)
        done = next((n for n, (proc, _, _) in active.items() if proc.poll() is not None), None)
        if done is None:
            time.sleep(0.1)
            continue
        proc, report_path, log_path = active.pop(done)
        report = reports[done] = collect(done, proc, report_path, log_path)
        index = list(runs).index(done) + 1
        say(f"[{index}/{total}] {done}: pipeline {report.pipeline} (kfp.local, subprocess runner, IR "
            f"{short_path(report.ir)})")
        for line in format_report(report):
            say(line)
        if report.artifact and Path(report.artifact).is_dir():
            dst = cfg.path("train", done)
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(report.artifact, dst)


def short_path(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(__file__).resolve().parents[1]))
    except ValueError:
        return path
