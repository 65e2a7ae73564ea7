"""Promotion policy and approvals: what a model version needs before it may serve production traffic.

The policy is `mlplatform:governance.promotion` of the stack (stacks/schema.py): `gates` promotes a
version to `champion` when its quality gates pass; `gatesAndApproval` also needs a recorded approval
(`mlplat model approve NAME VERSION --by WHO --reason ...`), stored as MLflow model-version tags
(contracts/governance.py) and written to the same audit log as runbook actions. Training on such a
stack registers the version (`challenger`, tag `approval.pending`) without promoting it; the approval
promotes it. `ml/training/publish.py` refuses to put a version into a Seldon slot of such a stack while
anything in `missing_for_production` is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.governance import (
    APPROVAL_REASON,
    APPROVAL_STATUS,
    APPROVED_AT,
    APPROVED_BY,
    GATE_PASSED,
    GATE_SUMMARY,
    GATES,
    GATES_AND_APPROVAL,
    PENDING_APPROVAL,
    AuditLog,
)
from stacks.config import load_stack_file
from stacks.schema import GovernanceConfig

CHAMPION = "champion"


class ApprovalError(RuntimeError):
    """An approval cannot be recorded (unknown version, failed gates, empty approver or reason)."""


def promotion_policy(stack_file: str | Path | None = None) -> str:
    """`governance.promotion` of a stack file; without one the schema default (`gates`)."""

    if stack_file is None:
        return GovernanceConfig().promotion

    return load_stack_file(stack_file).governance.promotion


def missing_for_production(tags: dict[str, str], policy: str) -> list[str]:
    """What a model version (its tags) lacks before it may serve under `policy`; empty: nothing."""
    missing = []
    if tags.get(GATE_PASSED) != "true":
        summary = tags.get(GATE_SUMMARY) or "no gate result recorded"
        missing.append(f"passing quality gates ({summary})")
    if policy == GATES_AND_APPROVAL and tags.get(APPROVAL_STATUS) != "approved":
        missing.append("a recorded approval (`mlplat model approve NAME VERSION --by WHO --reason ...`)")
    return missing


def _champion(client: Any, name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def approve(client: Any, name: str, version: str | int, by: str, reason: str, *, promote: bool = True,
            env: str = "local", audit: AuditLog | None = None, precheck: Callable[[], None] | None = None,
            mover: Callable[[str], list[str]] | None = None) -> dict[str, Any]:
    """Record an approval of `name` v`version` (tags + audit log entry) and, with `promote`, set `champion`.

    An approval never overrides the quality gates: a version whose gates failed is refused. Nor does it
    demote: approving a version older than the current champion with `promote` is refused before anything is
    recorded (going back is the model-rollback runbook's job). `precheck` runs before anything changes (the
    local platform: its model server must answer); `mover` moves the alias instead of a plain alias write
    (the local platform: ml/training/follow.py `promote`, so that the slot and the server follow)."""
    from mlflow.exceptions import MlflowException

    version = str(version)
    if not by.strip():
        raise ApprovalError("--by must name who approves")
    if not reason.strip():
        raise ApprovalError("--reason must say why the version is approved")
    try:
        mv = client.get_model_version(name, version)
    except MlflowException as exc:
        raise ApprovalError(f"{name} has no version {version} in the registry at {client.tracking_uri}") from exc
    missing = missing_for_production(dict(mv.tags), GATES)
    if missing:
        raise ApprovalError(f"{name} v{version} cannot be approved: it lacks {'; '.join(missing)}")
    previous = _champion(client, name)
    if promote and previous is not None and int(previous) > int(version):
        raise ApprovalError(
            f"{name}@champion is v{previous}, newer than v{version}: approving v{version} with promotion would "
            f"demote it; nothing was recorded. To serve v{version} again run `mlplat runbook run model-rollback "
            f"--param model={name} --param to_version={version} --execute`; to record the approval only, add "
            "--no-promote")
    if promote and precheck is not None:
        precheck()
    at = datetime.now(UTC).isoformat(timespec="seconds")
    for key, value in {APPROVAL_STATUS: "approved", APPROVED_BY: by, APPROVAL_REASON: reason, APPROVED_AT: at}.items():
        client.set_model_version_tag(name, version, key, value)
    if PENDING_APPROVAL in mv.tags:
        client.delete_model_version_tag(name, version, PENDING_APPROVAL)
    serving: list[str] = []
    if promote and mover is not None:
        serving = mover(version)
    elif promote:
        client.set_registered_model_alias(name, CHAMPION, version)
    result = {"model": name, "version": version, "approved_by": by, "reason": reason, "approved_at": at,
              "champion": version if promote else previous, "previous_champion": previous}
    if serving:
        result["serving"] = serving
    (audit or AuditLog()).record(actor=by, env=env, runbook="model-approve", step="record approval"
                                 + (" and promote to champion" if promote else ""),
                                 target=f"models:/{name}/{version}", result="ok", details=result)
    return result
