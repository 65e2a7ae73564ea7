"""What each step of a model's training pipeline does, as plain functions.

The KFP components of ml/pipelines/definition.py are thin wrappers around these (their source is what
the IR carries); everything model-specific comes from the model's plugin (ml/model_plugin.py), found
through the registry, and the MLflow and slot work is the existing code (ml/training/registration.py
`publish`, ml/training/publish.py `publish`). So a step behaves the same under `kfp.local` on this
machine and in a pod of the model-server image on the cluster.

Each step appends one JSON line to `$MLPLAT_PIPELINE_JOURNAL` when that is set (the local runner prints
the run's steps and times from it) and prints the same line to its log (KFP keeps the pod logs).
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from contracts import model_registry
from contracts.governance import GATES
from contracts.pipelines import GATES_SOURCE_TAG, PIPELINE_RUN_TAG, SAMPLE_DATA, TRIGGER_TAG
from ml.data.contract import DataContractError
from ml.data.drift import REFERENCE_FILE
from ml.data.feast_repo import write_repo
from ml.datasets.content import DatasetVersion, describe, materialize, parse_content_uri
from ml.model_plugin import load_plugin
from ml.training.directory_bucket import LOCAL_BUCKET, DirectoryBucket
from ml.training.follow import Serving, promote
from ml.training.gates import check_gates, load_gates
from ml.training.outputs import TrainOutput, read_metadata
from ml.training.publish import publish as publish_slot
from ml.training.tracking import CHAMPION, default_tracking_uri

# Each step runs in a process of its own: MLflow, pandera and Feast are imported by the steps that use them
# (start-up time of the other steps).
JOURNAL_ENV = "MLPLAT_PIPELINE_JOURNAL"
SUMMARY_FILE = "train.json"
REPORT_FILE = "validation.json"
F = TypeVar("F", bound=Callable[..., Any])


def journaled(step: str) -> Callable[[F], F]:
    """Record the step's time, outcome and one-line summary (its return value, or `summary` of a dict)."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(name: str, *args: Any, **kwargs: Any) -> Any:
            started = time.time()
            record: dict[str, Any] = {"step": step, "model": name, "started": started}
            try:
                result = fn(name, *args, **kwargs)
            except BaseException as exc:
                record.update(status="failed", seconds=round(time.time() - started, 2),
                              summary=f"{type(exc).__name__}: {exc}"[:500])
                _journal(record)
                raise
            summary = result.get("summary", "") if isinstance(result, dict) else str(result)
            record.update(status="ok", seconds=round(time.time() - started, 2), summary=summary)
            if isinstance(result, dict):
                record.update({k: v for k, v in result.items() if k != "summary" and _plain(v)})
            _journal(record)
            return result

        return run  # type: ignore[return-value]

    return wrap


def _plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def _journal(record: dict[str, Any]) -> None:
    line = json.dumps(record, default=str, sort_keys=True)
    print(f"[mlplat pipeline step] {line}", file=sys.stderr, flush=True)
    path = os.environ.get(JOURNAL_ENV)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


# ---- data locations: a directory or an s3:// prefix ---------------------------------------------------

def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


def fetch_tree(uri: str, dst: Path) -> list[Path]:
    """Copy the files directly under `uri` (a directory or an s3:// prefix) into `dst`."""
    dst.mkdir(parents=True, exist_ok=True)
    if uri.startswith("s3://"):
        import boto3

        bucket, prefix = _split_s3(uri)
        s3 = boto3.client("s3")
        got = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix):].lstrip("/")
                if not rel or "/" in rel:
                    continue
                s3.download_file(bucket, obj["Key"], str(dst / rel))
                got.append(dst / rel)
        if not got:
            raise FileNotFoundError(f"no objects under {uri}")
        return got
    src = Path(uri)
    if not src.is_dir():
        raise FileNotFoundError(f"data directory {src} does not exist")
    files = sorted(p for p in src.iterdir() if p.is_file() and not p.name.startswith("."))
    for path in files:
        shutil.copy2(path, dst / path.name)
    return [dst / p.name for p in files]


def push_tree(src: Path, uri: str) -> int:
    """Copy the files of `src` to `uri` (a directory or an s3:// prefix); returns how many."""
    files = sorted(p for p in Path(src).iterdir() if p.is_file())
    if uri.startswith("s3://"):
        import boto3

        bucket, prefix = _split_s3(uri)
        s3 = boto3.client("s3")
        for path in files:
            s3.upload_file(str(path), bucket, f"{prefix}/{path.name}" if prefix else path.name)
        return len(files)
    Path(uri).mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy2(path, Path(uri) / path.name)
    return len(files)


def _size(paths: list[Path]) -> str:
    total = sum(p.stat().st_size for p in paths)
    return f"{total / 1e6:.1f} MB" if total >= 1e5 else f"{total / 1e3:.0f} kB"


# ---- the steps ----------------------------------------------------------------------------------------

@journaled("prepare-data")
def prepare_data(name: str, data_uri: str, seed: int, offline_uri: str, out_dir: str) -> str:
    """The model's data files into `out_dir`: the product's sample (`data_uri` = "sample", written by the
    model's own generator) or a copy of a directory / s3:// prefix. With `offline_uri`, the model's
    feature Parquet files go to `<offline_uri>/<model>/`, where the Feast offline store reads them."""

    plugin, out = load_plugin(name), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    address = parse_content_uri(data_uri)
    if data_uri == SAMPLE_DATA:
        plugin.generate_sample(out, seed=seed)
        files = sorted(p for p in out.iterdir() if p.is_file())
        what = f"generated sample data (seed {seed}): {len(files)} file(s), {_size(files)}"
    elif address is not None:
        # A dataset version's content address: object reads only, each file checked against its MD5.
        files = materialize(address[0], address[1], out)
        what = (f"dataset version {address[1]}: {len(files)} file(s), {_size(files)} by content address "
                f"from {address[0]}")
    else:
        files = fetch_tree(data_uri, out)
        what = f"{len(files)} file(s), {_size(files)} from {data_uri}"
    if offline_uri:
        with tempfile.TemporaryDirectory(prefix="mlplat-offline-") as tmp:
            views = plugin.write_feature_data(out, Path(tmp))
            if views:
                push_tree(Path(tmp), f"{offline_uri.rstrip('/')}/{name}")
                what += f"; offline store {offline_uri.rstrip('/')}/{name}/: {', '.join(views)}"
    return what


def _feature_store(name: str, data_dir: Path, feast_repo: str, offline_uri: str, work: Path) -> Any:
    """The store `read-features` reads: the given repository, or one over the run's offline data
    (`<offline_uri>/<model>/`, else Parquet derived from the data) with a registry of its own."""
    from feast import FeatureStore

    if feast_repo:
        return FeatureStore(repo_path=feast_repo)
    plugin = load_plugin(name)
    parquet = work / "offline"
    if offline_uri:
        fetch_tree(f"{offline_uri.rstrip('/')}/{name}", parquet)
    else:
        plugin.write_feature_data(data_dir, parquet)
    repo = write_repo(work / "repo")
    store = FeatureStore(repo_path=str(repo))
    store.apply(plugin.feature_definitions(parquet))
    return store


@journaled("read-features")
def read_features(name: str, data_dir: str, feast_repo: str, offline_uri: str, out_dir: str) -> str:
    """The files `train` reads, with the stored features read back from the Feast offline store
    (`get_historical_features`, the plugin's `read_features`); a model without features reads its source."""

    plugin = load_plugin(name)
    if plugin.spec.features is None:
        return plugin.read_features(None, Path(data_dir), Path(out_dir))
    with tempfile.TemporaryDirectory(prefix="mlplat-feast-") as tmp:
        store = _feature_store(name, Path(data_dir), feast_repo, offline_uri, Path(tmp))
        return plugin.read_features(store, Path(data_dir), Path(out_dir))


@journaled("validate-data")
def validate_data(name: str, data_dir: str, report_path: str) -> str:
    """The model's data contract (pandera schemas) on the training files; a violation fails the step,
    and so the run, before anything is trained. The report goes to `report_path` either way."""
    from ml.training.validation import recording

    with recording() as results:
        try:
            described = load_plugin(name).check_data(Path(data_dir))
        except DataContractError as exc:
            Path(report_path).write_text(json.dumps({"passed": False, "error": str(exc),
                                                     "results": [r.as_dict() for r in results]}, default=str))
            raise
    Path(report_path).write_text(json.dumps({"passed": True, "description": described,
                                             "results": [r.as_dict() for r in results]}, default=str))
    checks = sum(r.checks for r in results)
    return f"{described}; {len(results)} schema(s), {checks} checks passed"


@journaled("train")
def train(name: str, data_dir: str, seed: int, quick: bool, model_dir: str, summary_path: str) -> dict[str, Any]:
    """The model's own training code (plugin `train`): fit, held-out metrics, serving artifact in `model_dir`."""

    started = time.perf_counter()
    Path(model_dir).mkdir(parents=True, exist_ok=True)  # as `mlplat local up` and `model train` hand it over
    out = load_plugin(name).train(Path(data_dir), Path(model_dir), seed=seed, quick=quick)
    doc = {"name": out.name, "params": out.params, "metrics": out.metrics, "info": out.info,
           "segments": out.segments, "seconds": round(time.perf_counter() - started, 2)}
    Path(summary_path).write_text(json.dumps(doc, default=str))
    shown = ", ".join(f"{k}={v:.3f}" for k, v in list(out.metrics.items())[:3])
    return {"summary": f"held-out {shown}", "artifact": str(model_dir)}


@journaled("evaluate")
def evaluate(name: str, model_dir: str, summary_path: str) -> dict[str, Any]:
    """The held-out metrics of the artifact: measured by the model's training code on rows it did not fit
    on, read back from the artifact itself (`mlplat-model.json`), checked against what `train` reported and
    finite; notes a missing drift reference. Returns them (`metrics`; the gates read them)."""

    meta = read_metadata(Path(model_dir))
    if meta.get("name") != name:
        raise ValueError(f"the artifact in {model_dir} is {meta.get('name')!r}, not {name!r}")
    reported = json.loads(Path(summary_path).read_text())["metrics"]
    metrics = {k: float(v) for k, v in meta.get("metrics", {}).items()}
    if metrics != {k: float(v) for k, v in reported.items()}:
        raise ValueError(f"the artifact's metrics {metrics} differ from those train reported {reported}")
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"held-out metrics are not finite: {bad}")
    # A model without a drift reference serves, but its drift is not monitored (nor retrained on).
    drift = "" if (Path(model_dir) / REFERENCE_FILE).is_file() else f"; no {REFERENCE_FILE}: drift not monitored"
    shown = ", ".join(f"{k}={v:.3f}" for k, v in list(metrics.items())[:3])
    return {"summary": f"{len(metrics)} held-out metrics read back from the artifact ({shown}, ...){drift}",
            "metrics": metrics}


def resolve_gates(name: str, gates: str, data_uri: str) -> tuple[dict[str, float], str]:
    """(floors, where they come from): the given JSON, else the sample floors on generated sample data
    (the same rule as `mlplat local up`), else the schema's default quality gates."""

    if gates.strip():
        return {k: float(v) for k, v in json.loads(gates).items()}, "the run's gates"
    if data_uri == SAMPLE_DATA:
        return dict(model_registry.get(name).sample_gates), "sample-data floors"

    return load_gates(name), "schema default gates"


TRACKING_WAIT_ENV = "MLPLAT_TRACKING_WAIT_S"


def wait_for_tracking(uri: str, timeout_s: float | None = None) -> None:
    """An MLflow server that is still starting (the local platform starts it while runs begin): wait up to
    `timeout_s`, else $MLPLAT_TRACKING_WAIT_S, else 300 s (a command that found it up sets a short wait)."""
    if not uri.startswith(("http://", "https://")):
        return
    if timeout_s is None:
        timeout_s = float(os.environ.get(TRACKING_WAIT_ENV, "300"))
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"MLflow at {uri} did not answer within {timeout_s:.0f} s; start the platform with "
                               "`mlplat local up` (or check it with `mlplat local status`)")
        time.sleep(0.5)


def dataset_of(name: str, data_uri: str, source_dir: str) -> DatasetVersion:
    """The exact dataset a run read: the content hash of the files `prepare-data` wrote, located at the
    version's remote when `data_uri` is a content address (it must hash to that address), else at `data_uri`."""
    described = describe(Path(source_dir), f"{name}-data")
    address = parse_content_uri(data_uri)
    if address is None:
        return DatasetVersion(**{**described.__dict__, "location": data_uri})
    remote, md5 = address
    if described.md5 != md5:
        raise ValueError(f"the prepared data hashes to {described.md5}, not to the version {md5} it was read as")
    return DatasetVersion(**{**described.__dict__, "location": remote, "content_addressed": True})


@journaled("register")
def register(name: str, model_dir: str, summary_path: str, report_path: str, data_dir: str, gates: str,
             data_uri: str, promotion: str, tracking_uri: str, trigger: str, version_tags: str,
             run_label: str = "", source_dir: str = "") -> dict[str, Any]:
    """Log the run (params, held-out metrics, artifact, data validation, model card) to MLflow and register
    the version as `challenger`, with the gate result recorded on it (ml/training/registration.py `register`,
    which promotes nothing here: `gate` and `publish` decide)."""
    from ml.training.registration import register as register_in_mlflow
    from ml.training.validation import ValidationResult

    uri = tracking_uri or default_tracking_uri()
    wait_for_tracking(uri)
    doc = json.loads(Path(summary_path).read_text())
    out = TrainOutput(name, Path(model_dir), doc["params"], {k: float(v) for k, v in doc["metrics"].items()},
                      doc.get("info", {}), doc.get("segments", {}))
    report = json.loads(Path(report_path).read_text())
    validations = [ValidationResult(**r) for r in report.get("results", [])]
    floors, source = resolve_gates(name, gates, data_uri)
    tags = {TRIGGER_TAG: trigger, **json.loads(version_tags or "{}")}
    source = tags.pop(GATES_SOURCE_TAG, source)
    if run_label:
        tags[PIPELINE_RUN_TAG] = run_label
    dataset = dataset_of(name, data_uri, source_dir) if source_dir else None
    result = register_in_mlflow(out, uri, gates=floors, promotion=promotion, data_dir=Path(data_dir),
                                validations=validations, promote=False, tags=tags, dataset=dataset)
    data = f"; data {dataset.md5[:12]} from {dataset.location}" if dataset is not None else ""
    return {"summary": f"v{result.version} registered as challenger (run {result.run_id[:8]}; "
                       f"trigger {trigger}){data}",
            "version": result.version, "run_id": result.run_id, "gates": json.dumps(floors, sort_keys=True),
            "gates_source": source}


@journaled("gate")
def gate(name: str, metrics: str, gates: str, source: str = "") -> dict[str, Any]:
    """The quality gates (ml/training/gates.py) on the held-out metrics: every floor must be reached."""

    result = check_gates({k: float(v) for k, v in json.loads(metrics).items()}, json.loads(gates))
    verdict = "pass" if result.passed else "FAIL"
    return {"summary": f"{verdict} ({source or 'floors'}): {result.summary()}", "passed": result.passed,
            "detail": result.summary()}


def _reload_local(serving_url: str, name: str) -> str:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{serving_url.rstrip('/')}/v2/repository/models/{name}/load", data=b"",
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=180) as resp:
            return f"MLServer reloaded {name} ({resp.status})"
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"MLServer at {serving_url} refused to reload {name}: {exc.code} {exc.read()[:300]!r}") \
            from exc


# The Seldon Model parameters a publication sets, as runbooks/kube.py `touched_parameters` does (Seldon
# reloads a Model whose spec changes; the registry version says which version the slot holds).
REGISTRY_VERSION_PARAM, TOUCHED_AT_PARAM = "registry-version", "published-at"


def touch_seldon_model(namespace: str, model: str, version: str) -> str:
    """Patch `<model>-champion` so Seldon re-copies the slot (in-cluster credentials of the step's pod)."""
    from datetime import UTC, datetime

    from kubernetes import client, config

    config.load_incluster_config()
    api = client.CustomObjectsApi()
    name = f"{model}-champion"
    current = api.get_namespaced_custom_object("mlops.seldon.io", "v1alpha1", namespace, "models", name)
    ours = (REGISTRY_VERSION_PARAM, TOUCHED_AT_PARAM)
    kept = [p for p in current["spec"].get("parameters") or [] if p.get("name") not in ours]
    params = [*kept, {"name": REGISTRY_VERSION_PARAM, "value": str(version)},
              {"name": TOUCHED_AT_PARAM, "value": datetime.now(UTC).isoformat()}]
    api.patch_namespaced_custom_object("mlops.seldon.io", "v1alpha1", namespace, "models", name, {
        "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}, "spec": {"parameters": params}})
    return f"touched Model {namespace}/{name}"


def _deploy_tree(deploy: str, client: Any, name: str, version: str, trigger: str) -> tuple[bool, str]:
    """The deploy tree's commit (or pull-request branch) of the version (ml/delivery/tree_publish.py): whether
    the configured branch now deploys it, and a line for the log. A model the stack does not enable has no
    folder in the tree: nothing is written for it."""
    from ml.delivery import tree_publish  # git and the model card: only the publish step needs them

    if not tree_publish.covers(deploy, name):
        return True, f"{name} is not enabled in the deploy tree's stack: no tree change"
    outcome = tree_publish.write_release(deploy, client, name, str(version), actor=f"pipeline/{trigger}")
    return outcome.branch == tree_publish.parse_parameter(deploy).target.branch, outcome.message


@journaled("publish")
def publish(name: str, version: str, promotion: str, tracking_uri: str, slot_bucket: str, slot_dir: str,
            serving_url: str, seldon_namespace: str, trigger: str, deploy: str = "") -> str:
    """Only after a passing gate (and unless the stack's promotion policy also wants an approval,
    `gatesAndApproval`: then it waits for `mlplat model approve`). With a `deploy` tree (GitOps) on the
    cluster: the version's immutable prefix is staged, the version written into the tree (a commit, or a branch
    for review), and the champion slot and alias follow only a commit (ml/delivery/promotion.py); locally the
    step applies a committed tree itself. Without a tree `champion` moves, the version is published to the
    champion slot with ml/training/publish.py and the Seldon Model is touched / the local MLServer reloaded."""
    from mlflow import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    if promotion != GATES:
        return (f"v{version} passed its gates and waits for an approval ({promotion}): "
                f"mlplat model approve {name} {version} --by WHO --reason ...; nothing published")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    if serving_url and slot_dir and not slot_bucket:
        # The local platform: alias, slot and served version move together, or none of them does. With a deploy
        # tree the commit comes first and the tree is applied (as `mlplat local apply` does for a champion);
        # a change proposed for review is applied when it is merged.
        done = []
        if deploy:
            applies, line = _deploy_tree(deploy, client, name, version, trigger)
            done.append(line)
            if not applies:
                return "; ".join(done)
        done += promote(client, name, str(version), Serving(Path(slot_dir), serving_url),
                        actor=f"pipeline/{trigger}")  # who published; the tree is how
        return "; ".join(done)
    if deploy and (slot_bucket or slot_dir) and not seldon_namespace:
        from ml.delivery import promotion as tree_promotion  # git: only a GitOps publication needs it
        from ml.delivery import tree_publish

        if tree_publish.covers(deploy, name):
            # A GitOps cluster: the tree decides what serves; the slot and the alias follow the deploy branch, so a
            # change proposed for review (prod) moves neither before it is merged (ml/delivery/promotion.py).
            s3_client = tree_promotion.s3_for(None if slot_bucket else Path(slot_dir), deploy)
            steps = tree_promotion.cluster_steps(deploy, uri, promotion, s3_client, f"pipeline/{trigger}")
            return "; ".join(tree_promotion.promote(steps, name, str(version)))
    client.set_registered_model_alias(name, CHAMPION, str(version))
    done = [f"champion -> v{version}"]
    s3: Any = None
    bucket = slot_bucket
    if slot_bucket:
        import boto3

        s3 = boto3.client("s3")
    elif slot_dir:
        s3, bucket = DirectoryBucket(slot_dir), LOCAL_BUCKET
        s3.create_bucket(Bucket=bucket)
    if s3 is not None:
        result = publish_slot(name, version, CHAMPION, bucket, tracking_uri=uri, s3_client=s3,
                              actor=f"pipeline/{trigger}", promotion=promotion)
        where = result.uri if slot_bucket else str(Path(slot_dir) / bucket / result.prefix)
        done.append(f"slot {where} ({len(result.uploaded)} files)")
    if serving_url:
        done.append(_reload_local(serving_url, name))
    if seldon_namespace:
        done.append(touch_seldon_model(seldon_namespace, name, version))
    elif deploy:
        # A model outside the tree's stack, or no models bucket: the tree says why nothing is written.
        done.append(_deploy_tree(deploy, client, name, version, trigger)[1])
    elif slot_bucket:
        # GitOps without deploy credentials for the pipeline: someone with write access writes the tree.
        done.append(f"serving follows the deploy tree: mlplat model promote {name} {version} --stack-file ...")
    return "; ".join(done)
