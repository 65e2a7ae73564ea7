"""Every runbook: its markdown document in runbooks/ and, where it has them, its executable steps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mlplat.runbook.books.data import (
    MSK_BROKER_REPLACEMENT,
    MSK_CONSUMER_LAG,
    MSK_STORAGE_EXPANSION,
    RDS_PITR,
    REDIS_FAILOVER_TEST,
    REDIS_SNAPSHOT_RESTORE,
)
from mlplat.runbook.books.eks import EKS_UPGRADE, NODEGROUP_ROTATION, NODEGROUP_SCALING
from mlplat.runbook.books.models import CANARY_PROMOTION, ROLLBACK
from mlplat.runbook.books.platform import DISASTER_RECOVERY, FEATURE_BACKFILL
from mlplat.runbook.books.redis import AUTH_ROTATION
from mlplat.runbook.books.s3 import OBJECT_RECOVERY
from mlplat.runbook.engine import Runbook

RUNBOOK_DIR = Path(__file__).resolve().parents[2] / "runbooks"
EXECUTABLE: dict[str, Runbook] = {rb.name: rb for rb in (
    EKS_UPGRADE, NODEGROUP_SCALING, NODEGROUP_ROTATION, AUTH_ROTATION, REDIS_FAILOVER_TEST, REDIS_SNAPSHOT_RESTORE,
    MSK_STORAGE_EXPANSION, MSK_BROKER_REPLACEMENT, MSK_CONSUMER_LAG, RDS_PITR, OBJECT_RECOVERY, ROLLBACK,
    CANARY_PROMOTION, FEATURE_BACKFILL, DISASTER_RECOVERY,
)}


@dataclass(frozen=True)
class RunbookDoc:
    name: str
    title: str
    path: Path
    runbook: Runbook | None


def documents() -> list[RunbookDoc]:
    docs = []
    for path in sorted(RUNBOOK_DIR.glob("*.md")):
        if path.name.upper() == "README.MD":
            continue
        heading = re.search(r"^# (.+)$", path.read_text(), re.M)
        title = heading.group(1).strip() if heading else path.stem
        docs.append(RunbookDoc(path.stem, title, path, EXECUTABLE.get(path.stem)))
    return docs
