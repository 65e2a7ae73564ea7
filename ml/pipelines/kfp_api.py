"""The training pipelines on the cluster's Kubeflow Pipelines: bootstrap on `pulumi up`, runs on demand.

The Pulumi program (infra/workloads/) ships the committed IR of every enabled model and a
bootstrap document (ConfigMap `pipelines-bootstrap`: per model the run parameters, the recurring-run
schedule and the first-install run) and starts a Job in the model-server image that runs

    python -m ml.pipelines.kfp_api bootstrap --host http://ml-pipeline.kubeflow.svc.cluster.local:8888 \
        --config /etc/mlplat/bootstrap/bootstrap.json --ir-dir /etc/mlplat/pipelines

which, idempotently, through the KFP API (kfp.Client):

1. uploads each pipeline, or a new version of it when the IR changed (version name = content hash), with
   the image placeholder of the IR (`mlplatform/model-server:<tag>`, the BOM's) pointed at the stack's
   ECR repository;
2. keeps one recurring run per model (`<model>-schedule`) on the newest version with the configured
   cron schedule (replaced when version, schedule or parameters change; removed when unscheduled);
3. starts `<model>-first-install` once (never again: a run of that name in the experiment means done),
   so that the models are trained, registered and served without a manual step.

The drift-retrain receiver (ml/pipelines/retrain.py) starts runs with `start_run`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from contracts.pipelines import EXPERIMENT, pipeline_name

log = logging.getLogger("mlplat.pipelines")
SCHEDULE_SUFFIX, FIRST_INSTALL_SUFFIX = "schedule", "first-install"


def _name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"key": "display_name", "operation": "EQUALS", "string_value": name}]})


def ir_for_cluster(ir_text: str, placeholder: str, image: str) -> str:
    """The IR with the model-server image placeholder replaced by the stack's image."""
    if placeholder not in ir_text:
        raise ValueError(f"the IR does not name the image placeholder {placeholder!r}; recompile it "
                         "(mlplat pipeline compile --in-place)")
    return ir_text.replace(f"image: {placeholder}", f"image: {image}")


def version_name(model: str, ir_text: str) -> str:
    return f"{pipeline_name(model)}-{hashlib.sha256(ir_text.encode()).hexdigest()[:12]}"


def ensure_version(client: Any, model: str, ir_text: str) -> tuple[str, str, bool]:
    """(pipeline id, version id, uploaded now) of the version holding exactly `ir_text`."""
    name, wanted = pipeline_name(model), version_name(model, ir_text)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_text(ir_text)
        pipeline_id = client.get_pipeline_id(name)
        if pipeline_id is None:
            pipeline_id = client.upload_pipeline(str(path), pipeline_name=name,
                                                 description=f"training pipeline of {model}").pipeline_id
        found = client.list_pipeline_versions(pipeline_id, page_size=100, filter=_name_filter(wanted))
        versions = getattr(found, "pipeline_versions", None) or []
        if versions:
            return pipeline_id, versions[0].pipeline_version_id, False
        version = client.upload_pipeline_version(str(path), pipeline_version_name=wanted, pipeline_id=pipeline_id)
        return pipeline_id, version.pipeline_version_id, True


def _recurring(client: Any, experiment_id: str, name: str) -> list[Any]:
    found = client.list_recurring_runs(experiment_id=experiment_id, page_size=100, filter=_name_filter(name))
    return list(getattr(found, "recurring_runs", None) or [])


def _runs(client: Any, experiment_id: str, name: str) -> list[Any]:
    found = client.list_runs(experiment_id=experiment_id, page_size=10, filter=_name_filter(name))
    return list(getattr(found, "runs", None) or [])


def ensure_schedule(client: Any, experiment_id: str, model: str, pipeline_id: str, version_id: str,
                    cron: str | None, params: dict[str, Any]) -> str:
    """One recurring run per model on the current version; replaced when anything about it changed."""
    name = f"{pipeline_name(model)}-{SCHEDULE_SUFFIX}"
    existing = _recurring(client, experiment_id, name)
    for run in existing:
        same = (cron is not None and getattr(run, "description", "") == _schedule_key(version_id, cron, params))
        if same and len(existing) == 1:
            return f"{name}: unchanged ({cron})"
    for run in existing:
        client.delete_recurring_run(run.recurring_run_id)
    if cron is None:
        return f"{name}: none (no schedule configured)" + (", removed the old one" if existing else "")
    client.create_recurring_run(experiment_id, name, description=_schedule_key(version_id, cron, params),
                                cron_expression=cron, max_concurrency=1, no_catchup=True, params=params,
                                pipeline_id=pipeline_id, version_id=version_id, enabled=True, enable_caching=False)
    return f"{name}: {'replaced' if existing else 'created'} ({cron})"


def _schedule_key(version_id: str, cron: str, params: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps([version_id, cron, params], sort_keys=True).encode()).hexdigest()[:16]
    return f"mlplat schedule {digest}"


def start_run(client: Any, experiment_id: str, model: str, pipeline_id: str, version_id: str, params: dict[str, Any],
              run_name: str) -> str:
    run = client.run_pipeline(experiment_id, run_name, params=params, pipeline_id=pipeline_id, version_id=version_id,
                              enable_caching=False)
    return str(run.run_id)


def first_install(client: Any, experiment_id: str, model: str, pipeline_id: str, version_id: str,
                  params: dict[str, Any]) -> str:
    name = f"{pipeline_name(model)}-{FIRST_INSTALL_SUFFIX}"
    if _runs(client, experiment_id, name):
        return f"{name}: ran before (not started again)"
    return f"{name}: started run {start_run(client, experiment_id, model, pipeline_id, version_id, params, name)}"


def latest_version(client: Any, model: str) -> tuple[str, str]:
    pipeline_id = client.get_pipeline_id(pipeline_name(model))
    if pipeline_id is None:
        raise LookupError(f"pipeline {pipeline_name(model)} is not uploaded (the bootstrap Job uploads it)")
    found = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc")
    versions = getattr(found, "pipeline_versions", None) or []
    if not versions:
        raise LookupError(f"pipeline {pipeline_name(model)} has no version")
    return pipeline_id, versions[0].pipeline_version_id


def bootstrap(client: Any, config: dict[str, Any], ir_dir: Path) -> list[str]:
    """Upload, schedule and first-install every model of `config` (see the module docstring)."""
    experiment_id = client.create_experiment(EXPERIMENT).experiment_id
    done = []
    for model, entry in config["pipelines"].items():
        ir_text = ir_for_cluster(_ir(ir_dir, model), config["placeholderImage"], config["image"])
        pipeline_id, version_id, uploaded = ensure_version(client, model, ir_text)
        done.append(f"{pipeline_name(model)}: {'uploaded' if uploaded else 'kept'} version "
                    f"{version_name(model, ir_text)}")
        done.append(ensure_schedule(client, experiment_id, model, pipeline_id, version_id, entry.get("schedule"),
                                    {**entry["parameters"], "trigger": "schedule"}))
        if entry.get("firstInstall", True):
            params = {**entry["parameters"], **entry.get("firstInstallParameters", {}), "trigger": "bootstrap"}
            done.append(first_install(client, experiment_id, model, pipeline_id, version_id, params))
    return done


def _ir(ir_dir: Path, model: str) -> str:
    """The shipped IR, or (a plugin package that ships none) one compiled here, from the image's code."""
    path = ir_dir / f"{model}.yaml"
    if path.is_file():
        return path.read_text()
    # Only here: compiling loads the KFP compiler and every model's plugin (start-up time of the receiver).
    from ml.pipelines.definition import compile_ir

    with tempfile.TemporaryDirectory() as tmp:
        return compile_ir(model, Path(tmp) / f"{model}.yaml").read_text()


def run_on_cluster(host: str, model: str, params: dict[str, Any], *, trigger: str = "manual",
                   client: Any = None) -> dict[str, Any]:
    """Start a run of `model`'s newest pipeline version (mlplat pipeline run NAME --host ...)."""
    if client is None:
        import kfp

        client = kfp.Client(host=host)
    experiment_id = client.create_experiment(EXPERIMENT).experiment_id
    pipeline_id, version_id = latest_version(client, model)
    name = f"{pipeline_name(model)}-{trigger}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_id = start_run(client, experiment_id, model, pipeline_id, version_id, {**params, "trigger": trigger}, name)
    return {"model": model, "run": name, "run_id": run_id, "pipeline_id": pipeline_id, "version_id": version_id}


def wait_for_api(client: Any, timeout_s: float = 900) -> None:
    """The API server answers (the bootstrap Job may start before KFP is ready)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.list_experiments(page_size=1)
            return
        except Exception as exc:  # connection refused, 503 while the API server starts
            if time.monotonic() > deadline:
                raise TimeoutError(f"the KFP API did not answer within {timeout_s:.0f} s: {exc}") from exc
            time.sleep(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ml.pipelines.kfp_api", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="action", required=True)
    b = sub.add_parser("bootstrap", help="upload the pipelines, keep the schedules, start the first-install runs")
    b.add_argument("--host", required=True)
    b.add_argument("--config", type=Path, required=True)
    b.add_argument("--ir-dir", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    import kfp

    client = kfp.Client(host=args.host)
    wait_for_api(client)
    for line in bootstrap(client, json.loads(args.config.read_text()), args.ir_dir):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
