"""Publish one MLflow registry version to a Seldon model slot, `s3://<models bucket>/<model>/<slot>/`.

The Seldon Model `<model>-<slot>` copies that prefix (rclone) when it (re)loads, and MLServer loads
the copied folder with the runtime named in `model-settings.json`. So a slot must hold exactly one
version's files plus that settings file; `PUBLISHED.json` (model, version, run id, time), written last,
says which version it is and that the publication finished. While a publication runs the marker is
absent: readers (runbooks, operators) then know the slot is being rewritten.

Seldon reloads on a Model spec change, not when bucket contents change: after `publish`, the caller
touches the Model (runbooks/kube.py `touch_model`).

boto3 and mlflow are imported where used, so this module imports where they are absent (.venv).
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.governance import GATES, GATES_AND_APPROVAL, PROMOTION_POLICIES
from contracts.model_slots import (
    EXPLAINER_DIR,
    MODEL_SETTINGS_FILE,
    artifact_model_settings,
    artifact_uri,
    explainer_model_settings,
    slot_prefix,
    version_prefix,
    version_uri,
)
from ml.training.approval import missing_for_production, promotion_policy

MARKER = "PUBLISHED.json"


class PublishError(RuntimeError):
    """The publication cannot start or did not verify; the message names what is wrong."""


@dataclass(frozen=True)
class PublishResult:
    model: str
    version: str
    slot: str
    bucket: str
    run_id: str | None
    published_at: str
    uploaded: tuple[str, ...]  # keys relative to the slot prefix, marker excluded
    deleted: tuple[str, ...]  # keys of the previous version the new one lacks
    bytes: int

    @property
    def prefix(self) -> str:
        return slot_prefix(self.model, self.slot)

    @property
    def uri(self) -> str:
        """The slot as the Seldon Model's storageUri names it."""
        return artifact_uri(self.bucket, self.model, self.slot)


def _check_version(version: int | str) -> str:
    text = str(version).strip()
    if not text.isdigit() or int(text) < 1:
        raise PublishError(f"version must be a registry version number (1, 2, ...), got {version!r}")
    return str(int(text))


def check_bucket(s3: Any, bucket: str) -> None:
    """Raise PublishError when the bucket is missing or not accessible."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise PublishError(f"models bucket {bucket!r} does not exist (check the stack outputs / region)") from exc
        if code in ("403", "AccessDenied"):
            raise PublishError(f"no access to models bucket {bucket!r} with these credentials") from exc
        raise PublishError(f"cannot use models bucket {bucket!r}: {exc}") from exc
    except BotoCoreError as exc:  # no credentials, endpoint unreachable
        raise PublishError(f"cannot reach models bucket {bucket!r}: {exc}") from exc


def _model_version(client: Any, model: str, version: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(model, version)
    except MlflowException as exc:
        try:
            known = sorted(int(v.version) for v in client.search_model_versions(f"name='{model}'"))
        except MlflowException:
            known = []
        if not known:
            raise PublishError(f"registered model {model!r} not found at {client.tracking_uri}") from exc
        raise PublishError(f"{model} has no version {version}; versions: {known}") from exc


def _download(client: Any, model: str, version: str, dst: Path) -> Path:
    """The version's artifact as a local folder (a single-file artifact gets a folder of its own)."""
    import mlflow

    # Resolved through our client: a `models:/` URI would be resolved against the process-global
    # registry URI, not the one given here.
    source = client.get_model_version_download_uri(model, version)
    local = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=source, dst_path=str(dst / "download"), tracking_uri=client.tracking_uri))
    if local.is_file():
        folder = dst / "single"
        folder.mkdir()
        local.rename(folder / local.name)
        local = folder
    return local


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def _listing(s3: Any, bucket: str, prefix: str) -> dict[str, int]:
    """Every object under `prefix`: key relative to it -> size."""
    found: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"][len(prefix):]] = int(obj["Size"])
    return found


def _delete(s3: Any, bucket: str, prefix: str, keys: list[str]) -> None:
    for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
        batch = [{"Key": prefix + k} for k in keys[i:i + 1000]]
        response = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if response.get("Errors"):
            raise PublishError(f"could not delete old objects under s3://{bucket}/{prefix}: {response['Errors'][:3]}")


def read_marker(bucket: str, model: str, slot: str, *, s3_client: Any) -> dict[str, Any] | None:
    """The slot's PUBLISHED.json, or None while nothing (or a publication in progress) is there."""
    return _read_key(s3_client, bucket, slot_prefix(model, slot) + MARKER)


def _read_key(s3_client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) in ("NoSuchKey", "404"):
            return None
        raise
    return json.loads(body)


def publish(model: str, version: int | str, slot: str, bucket: str, *, tracking_uri: str | None,
            s3_client: Any, actor: str | None = None, promotion: str = GATES) -> PublishResult:
    """Copy `models:/<model>/<version>` to the slot so that it holds exactly that version, then verify.

    `promotion` is the stack's `governance.promotion`: under `gatesAndApproval` (staging, prod) a
    version whose gates did not pass or that has no recorded approval is refused before anything is
    touched, with a message naming what is missing.

    The version's immutable prefix (`publish_version`) is written first when it is missing, so a deploy tree
    that names the version (contracts/deploy_tree.py) finds its files whichever publication came first.

    Order: drop the old marker, upload the new files (model-settings.json included), delete what the
    previous version had and the new one lacks, write the marker; then list the prefix and read the
    marker back. Raises PublishError naming the bad input or the mismatch found."""
    version = _check_version(version)
    try:
        prefix = slot_prefix(model, slot)
        artifact_uri(bucket, model, slot)
    except ValueError as exc:
        raise PublishError(str(exc)) from exc
    client, mv = _checked(model, version, bucket, s3_client, tracking_uri, promotion, f"the {slot} slot")
    _ensure_version(client, mv, model, version, bucket, s3_client, actor)
    marker, files, stale = _publish_prefix(client, mv, model, version, prefix, bucket, s3_client, actor,
                                           {"slot": slot})
    return PublishResult(model=model, version=version, slot=slot, bucket=bucket, run_id=marker["run_id"],
                         published_at=marker["published_at"], uploaded=files, deleted=stale,
                         bytes=marker["bytes"])


def publish_version(model: str, version: int | str, bucket: str, *, tracking_uri: str | None, s3_client: Any,
                    actor: str | None = None, promotion: str = GATES) -> str:
    """Write `models:/<model>/<version>` to its immutable prefix `<model>/versions/<version>/` unless it is
    already complete there (its marker names the version), and return the prefix's URI (the storageUri the
    deploy tree gives a slot serving the version). No Model reads the prefix until a deploy tree change names
    it, so this changes nothing that serves; the promotion policy is checked first all the same, so a version
    the stack may not serve is never staged."""
    version = _check_version(version)
    try:
        uri = version_uri(bucket, model, version)
    except ValueError as exc:
        raise PublishError(str(exc)) from exc
    client, mv = _checked(model, version, bucket, s3_client, tracking_uri, promotion, "a deploy tree")
    _ensure_version(client, mv, model, version, bucket, s3_client, actor)
    return uri


def version_published(bucket: str, model: str, version: str, *, s3_client: Any) -> bool:
    """Whether the version's immutable prefix holds a finished publication of it."""
    return (_read_key(s3_client, bucket, version_prefix(model, version) + MARKER) or {}).get("version") == str(version)


def _checked(model: str, version: str, bucket: str, s3_client: Any, tracking_uri: str | None, promotion: str,
             where: str) -> tuple[Any, Any]:
    """The registry client and the model version, once the model, the bucket and the promotion policy allow
    the publication (PublishError before anything is written)."""
    try:
        artifact_model_settings(model)
    except ValueError as exc:
        raise PublishError(str(exc)) from exc
    check_bucket(s3_client, bucket)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    mv = _model_version(client, model, version)
    if promotion == GATES_AND_APPROVAL:
        missing = missing_for_production(dict(mv.tags or {}), promotion)
        if missing:
            raise PublishError(f"models:/{model}/{version} may not serve from {where} of a stack whose "
                               f"promotion policy is {promotion}: it lacks {'; '.join(missing)}")
    return client, mv


def _ensure_version(client: Any, mv: Any, model: str, version: str, bucket: str, s3_client: Any,
                    actor: str | None) -> None:
    # Written once: a version's files never change, so a finished copy is never rewritten (a Model may be
    # loading it).
    if not version_published(bucket, model, version, s3_client=s3_client):
        _publish_prefix(client, mv, model, version, version_prefix(model, version), bucket, s3_client, actor, {})


def _publish_prefix(client: Any, mv: Any, model: str, version: str, prefix: str, bucket: str, s3_client: Any,
                    actor: str | None, extra: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...],
                                                                        tuple[str, ...]]:
    """Make `prefix` hold exactly the version's files and its marker: (marker, uploaded keys, deleted keys)."""
    settings = artifact_model_settings(model)
    with tempfile.TemporaryDirectory(prefix="mlplat-publish-") as tmp:
        folder = _download(client, model, version, Path(tmp))
        files = _files(folder)
        files.pop(MARKER, None)  # reserved for ours
        if not files:
            raise PublishError(f"models:/{model}/{version} has no artifact files (source {mv.source})")
        # Ours replaces any settings file in the artifact: the slot's runtime is the reference model's.
        (folder / MODEL_SETTINGS_FILE).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
        files[MODEL_SETTINGS_FILE] = folder / MODEL_SETTINGS_FILE
        files.update(_explainer_copy(model, folder, files))
        sizes = {key: path.stat().st_size for key, path in files.items()}
        before = _listing(s3_client, bucket, prefix)
        if MARKER in before:
            s3_client.delete_object(Bucket=bucket, Key=prefix + MARKER)
        for key, path in files.items():
            s3_client.upload_file(str(path), bucket, prefix + key)
    stale = sorted(set(before) - set(files) - {MARKER})
    _delete(s3_client, bucket, prefix, stale)
    marker = {"model": model, "version": version, "run_id": mv.run_id or None, "source": mv.source,
              **extra, "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "files": len(files), "bytes": sum(sizes.values())}
    if actor:
        marker["actor"] = actor
    s3_client.put_object(Bucket=bucket, Key=prefix + MARKER, ContentType="application/json",
                         Body=json.dumps(marker, indent=2, sort_keys=True).encode())
    _verify(s3_client, bucket, prefix, sizes, marker)
    return marker, tuple(files), tuple(stale)


def _explainer_copy(model: str, folder: Path, files: dict[str, Path]) -> dict[str, Path]:
    """Keys of the slot's `explainer/` folder: the artifact files again, with the explainer's settings file
    (Seldon's agent copies one prefix per Model, so the explainer's Model needs a folder of its own)."""
    settings = explainer_model_settings(model)
    if settings is None:
        return {}
    own = folder.parent / "explainer-settings"
    own.mkdir(exist_ok=True)
    (own / MODEL_SETTINGS_FILE).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    out = {f"{EXPLAINER_DIR}/{key}": path for key, path in files.items()
           if key != MODEL_SETTINGS_FILE and not key.startswith(f"{EXPLAINER_DIR}/")}
    out[f"{EXPLAINER_DIR}/{MODEL_SETTINGS_FILE}"] = own / MODEL_SETTINGS_FILE
    return out


def _verify(s3: Any, bucket: str, prefix: str, sizes: dict[str, int], marker: dict[str, Any]) -> None:
    where = f"s3://{bucket}/{prefix}"
    listed = _listing(s3, bucket, prefix)
    listed.pop(MARKER, None)
    if listed != sizes:
        missing = sorted(set(sizes) - set(listed))
        extra = sorted(set(listed) - set(sizes))
        wrong = sorted(k for k in set(sizes) & set(listed) if sizes[k] != listed[k])
        raise PublishError(f"{where} does not hold exactly v{marker['version']}: missing {missing}, "
                           f"unexpected {extra}, size mismatch {wrong}")
    read = _read_key(s3, bucket, prefix + MARKER)
    if read != marker:
        raise PublishError(f"{where}{MARKER} reads back as {read}, expected {marker}")


def main(argv: list[str] | None = None) -> int:
    """`python -m ml.training.publish MODEL VERSION SLOT --bucket B`: publish by hand (the
    Model still has to be touched, see docs/WORKLOADS.md); prints the result and the seconds taken."""
    import argparse
    import time

    import boto3

    p = argparse.ArgumentParser(prog="python -m ml.training.publish", description=main.__doc__)
    p.add_argument("model")
    p.add_argument("version")
    p.add_argument("slot")
    p.add_argument("--bucket", required=True, help="the models bucket (stack output buckets.models)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    p.add_argument("--promotion", choices=PROMOTION_POLICIES, default=None,
                   help="promotion policy (default: governance.promotion of --stack-file, else gatesAndApproval)")
    p.add_argument("--stack-file", default=None, help="Pulumi.<env>.yaml whose governance.promotion applies")
    args = p.parse_args(argv)
    promotion = args.promotion
    if promotion is None:
        promotion = promotion_policy(args.stack_file) if args.stack_file else GATES_AND_APPROVAL
    started = time.perf_counter()
    try:
        result = publish(args.model, args.version, args.slot, args.bucket, tracking_uri=args.tracking_uri,
                         s3_client=boto3.client("s3"), promotion=promotion)
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"uri": result.uri, "version": result.version, "run_id": result.run_id,
                      "files": len(result.uploaded), "deleted": len(result.deleted), "bytes": result.bytes,
                      "seconds": round(time.perf_counter() - started, 2)}, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
