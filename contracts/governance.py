"""Model governance names shared by training (ml/), the runbooks, the local platform and the cluster.

Standard library only. What lives here is what several environments must spell the same way: the
promotion policies of `mlplatform:governance.promotion`, the MLflow model-version tags an approval
writes, the artifact paths of model cards, validation reports and drift reports, and the audit-log
format that approvals share with the runbook engine.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.local_platform import state_dir

# ---- promotion policy (`mlplatform:governance.promotion`) -------------------------------------------
GATES = "gates"  # the quality gates alone promote a version to champion (dev)
GATES_AND_APPROVAL = "gatesAndApproval"  # gates + a recorded approval (staging, prod)
PROMOTION_POLICIES = (GATES, GATES_AND_APPROVAL)

# ---- MLflow model-version tags -----------------------------------------------------------------------
GATE_PASSED = "gate.passed"  # "true" / "false", written by ml/training/registration.py `register`
GATE_SUMMARY = "gate.summary"
APPROVAL_STATUS = "approval.status"  # "approved"
APPROVED_BY = "approval.by"
APPROVAL_REASON = "approval.reason"
APPROVED_AT = "approval.at"  # ISO 8601, UTC
PENDING_APPROVAL = "approval.pending"  # "true" while a gated-in version waits for its approval
VALIDATION_PASSED = "validation.passed"  # training-data validation (pandera) result, on run and version

# ---- run artifacts ---------------------------------------------------------------------------------
CARD_DIR = "card"  # run artifact folder of the model card
CARD_JSON = "model_card.json"
CARD_MARKDOWN = "MODEL_CARD.md"
VALIDATION_DIR = "validation"  # run artifact folder of the data-validation reports
DRIFT_DIR = "drift"  # run artifact folder / S3 prefix of drift reports

# ---- audit log ---------------------------------------------------------------------------------------
AUDIT_LOG_ENV = "MLPLAT_AUDIT_LOG"
DEFAULT_AUDIT_LOG = Path(".local") / "runbook-audit.jsonl"


def audit_log_path() -> Path:
    """$MLPLAT_AUDIT_LOG, else `runbook-audit.jsonl` in the local platform's state directory (the file its
    automatic-rollback receiver writes too)."""
    return Path(os.environ.get(AUDIT_LOG_ENV) or state_dir() / DEFAULT_AUDIT_LOG.name)


class AuditLog:
    """Append-only JSON lines, one entry per action: time, actor, env, runbook (or action), step,
    target, result. The runbook engine (runbooks/engine.py) and `mlplat model approve` write the same file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else audit_log_path()

    def record(self, **entry: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **entry}
        with self.path.open("a") as f:
            f.write(json.dumps(line, default=str, sort_keys=True) + "\n")
