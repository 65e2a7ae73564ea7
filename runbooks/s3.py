"""S3 runbook: recover a deleted or overwritten object from its versions (buckets are versioned)."""

from __future__ import annotations

from typing import Any

from runbooks.context import RunContext
from runbooks.engine import Runbook, Step, StepFailed

PURPOSES = ("mlflow", "feast", "models")


def _bucket(ctx: RunContext) -> str:
    purpose = ctx.param("bucket", "models")
    if purpose not in PURPOSES:
        raise StepFailed(f"--param bucket must be one of {', '.join(PURPOSES)}, got {purpose!r}")
    named = (ctx.stack_outputs.get("buckets") or {}).get(purpose)
    return named or ctx.stack.bucket_name(purpose, ctx.account_id)


def _key(ctx: RunContext) -> str:
    return ctx.param("key")


def _versions(ctx: RunContext) -> list[dict[str, Any]]:
    """Versions and delete markers of exactly this key, newest first."""
    s3, bucket, key = ctx.aws("s3"), _bucket(ctx), _key(ctx)
    entries: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        entries += [{**v, "DeleteMarker": False} for v in page.get("Versions", []) if v["Key"] == key]
        entries += [{**m, "DeleteMarker": True} for m in page.get("DeleteMarkers", []) if m["Key"] == key]
    # S3 lists versions newest first; `IsLatest` marks the current entry (timestamps can tie).
    return sorted(entries, key=lambda e: not e["IsLatest"])


def _choose(ctx: RunContext) -> dict[str, Any]:
    entries = _versions(ctx)
    if not entries:
        raise StepFailed(f"s3://{_bucket(ctx)}/{_key(ctx)} has no versions: nothing to recover")
    wanted = ctx.params.get("version_id")
    if wanted:
        chosen = next((e for e in entries if e["VersionId"] == wanted and not e["DeleteMarker"]), None)
        if chosen is None:
            raise StepFailed(f"version {wanted} is not a restorable version of the key")
    else:
        # Deleted: the newest real version. Overwritten: the one before the current version.
        real = [e for e in entries if not e["DeleteMarker"]]
        skip = 0 if entries[0]["DeleteMarker"] else 1
        if len(real) <= skip:
            raise StepFailed("the current version is the only one; there is nothing older to restore")
        chosen = real[skip]
    ctx.state["restore"] = chosen
    current = entries[0]
    return {"current": "delete marker" if current["DeleteMarker"] else current["VersionId"],
            "restore_version": chosen["VersionId"], "restore_etag": chosen["ETag"],
            "versions": len(entries)}


def _restore(ctx: RunContext) -> dict[str, Any]:
    chosen = ctx.state["restore"]
    copied = ctx.aws("s3").copy_object(
        Bucket=_bucket(ctx), Key=_key(ctx),
        CopySource={"Bucket": _bucket(ctx), "Key": _key(ctx), "VersionId": chosen["VersionId"]},
        MetadataDirective="COPY",
    )
    return {"new_version": copied.get("VersionId"), "from_version": chosen["VersionId"]}


def _verify_restore(ctx: RunContext, result: dict[str, Any]) -> None:
    head = ctx.aws("s3").head_object(Bucket=_bucket(ctx), Key=_key(ctx))
    if head["ETag"] != ctx.state["restore"]["ETag"]:
        want = ctx.state["restore"]["ETag"]
        raise StepFailed(f"current ETag {head['ETag']} differs from the restored version's {want}")


OBJECT_RECOVERY = Runbook(
    name="s3-object-recovery",
    title="Recover a deleted or overwritten S3 object from its versions",
    envs=("dev", "staging", "prod"),
    steps=[
        Step("find the version to restore", lambda ctx: f"s3://{_bucket(ctx)}/{_key(ctx)}",
             precondition=lambda ctx: None, plan=lambda ctx: [], action=_choose,
             verify=lambda ctx, r: None, rollback="nothing changed", read_only=True),
        Step("copy that version over the current one", lambda ctx: f"s3://{_bucket(ctx)}/{_key(ctx)}",
             precondition=lambda ctx: None,
             plan=lambda ctx: [f"s3:CopyObject s3://{_bucket(ctx)}/{_key(ctx)} from version "
                               f"{ctx.state['restore']['VersionId']} (a new version; nothing is deleted)"],
             action=_restore, verify=_verify_restore,
             rollback="the replaced version is still there: run again with --param version_id=<it>"),
    ],
)
