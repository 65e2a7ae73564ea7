"""Platform-wide runbooks: feature backfill / re-materialization, disaster-recovery preflight."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.cluster import FEAST_MATERIALIZE
from runbooks.aws_calls import aws_read, expect
from runbooks.context import RunContext
from runbooks.engine import Runbook, Step, StepFailed

FEAST_NAMESPACE, MATERIALIZE_CRONJOB = FEAST_MATERIALIZE.namespace, FEAST_MATERIALIZE.name
LOCAL_FEAST_REPO = Path(".local") / "feast"


def _window(ctx: RunContext) -> tuple[str, str]:
    start, end = ctx.param("start"), ctx.param("end", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    for name, value in (("start", start), ("end", end)):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise StepFailed(f"--param {name}={value!r} is not an ISO-8601 time") from None
    expect(start < end, f"start {start} must be before end {end}")
    return start, end


def _materialize_args(ctx: RunContext) -> list[str]:
    start, end = _window(ctx)
    views = [v for v in ctx.params.get("views", "").split(",") if v]
    return ["materialize", start, end, *(a for v in views for a in ("--views", v))]


def _feast_repo(ctx: RunContext) -> Path:
    return Path(ctx.param("feast_repo", str(LOCAL_FEAST_REPO)))


def _backfill(ctx: RunContext) -> dict[str, Any]:
    args = _materialize_args(ctx)
    if ctx.env == "local":
        repo = _feast_repo(ctx)
        expect((repo / "feature_store.yaml").exists(), f"no Feast repository at {repo} (is the local platform up?)")
        done = subprocess.run(["feast", *args], cwd=repo, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise StepFailed(f"feast {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
        return {"materialized": " ".join(args[1:3])}
    if ctx.kube is None:
        raise StepFailed("no Kubernetes access (--kube cluster)")
    job = f"feast-backfill-{datetime.now(UTC):%Y%m%d%H%M%S}"
    ctx.kube.run_job_from_cronjob(FEAST_NAMESPACE, MATERIALIZE_CRONJOB, job, args)
    ctx.state["job"] = job
    return {"job": f"{FEAST_NAMESPACE}/{job}"}


def _verify_backfill(ctx: RunContext, result: dict[str, Any]) -> None:
    if ctx.env == "local":
        return  # `feast materialize` exits non-zero on failure; the action checked it
    kube = ctx.kube
    assert kube is not None
    ctx.wait_for(f"job {ctx.state['job']}", lambda: kube.job_succeeded(FEAST_NAMESPACE, ctx.state["job"]),
                 timeout_s=3600, poll_s=10)


def _backfill_plan(ctx: RunContext) -> list[str]:
    args = " ".join(_materialize_args(ctx))
    if ctx.env == "local":
        return [f"feast {args} (in {_feast_repo(ctx)})"]
    return [f"kubernetes: job from cronjob {FEAST_NAMESPACE}/{MATERIALIZE_CRONJOB} with args: feast {args}"]


FEATURE_BACKFILL = Runbook(
    name="feature-backfill",
    title="Backfill or re-materialize online features",
    steps=[
        Step("materialize the window into the online store", lambda ctx: "feast online store",
             precondition=lambda ctx: None, plan=_backfill_plan, action=_backfill, verify=_verify_backfill,
             rollback="materialization is idempotent: re-run with the correct window"),
    ],
)


def _backups(ctx: RunContext) -> dict[str, Any]:
    """Everything a rebuild restores from must exist and be recent."""
    s, findings = ctx.stack, {}
    rds = ctx.aws("rds").describe_db_instances(DBInstanceIdentifier=s.database_identifier)["DBInstances"][0]
    findings["rds_backup_retention_days"] = rds.get("BackupRetentionPeriod", 0)
    findings["rds_latest_restorable"] = str(rds.get("LatestRestorableTime"))
    snaps = ctx.aws("elasticache").describe_snapshots(ReplicationGroupId=s.redis_group_id)["Snapshots"]
    findings["redis_snapshots"] = len(snaps)
    s3 = ctx.aws("s3")
    for purpose in ("mlflow", "feast", "models"):
        bucket = s.bucket_name(purpose, ctx.account_id)
        findings[f"s3_{purpose}_versioning"] = s3.get_bucket_versioning(Bucket=bucket).get("Status", "Disabled")
    return findings


def _check_backups(ctx: RunContext, result: dict[str, Any]) -> None:
    problems = [k for k, v in result.items() if v in (0, "Disabled", "None")]
    expect(not problems, f"not recoverable from backups: {problems}")


DISASTER_RECOVERY = Runbook(
    name="disaster-recovery",
    title="Disaster recovery: rebuild an environment from code and backups",
    envs=("dev", "staging", "prod"),
    steps=[aws_read("preflight: backups and versioned data exist", lambda ctx: ctx.env, _backups, _check_backups)],
)
