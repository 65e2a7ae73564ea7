"""Every runbook: its markdown document in runbooks/ and, where it has them, its executable steps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mlplat.runbook.books.models import CANARY_PROMOTION, ROLLBACK
from mlplat.runbook.books.redis import AUTH_ROTATION
from mlplat.runbook.books.s3 import OBJECT_RECOVERY
from mlplat.runbook.engine import Runbook

RUNBOOK_DIR = Path(__file__).resolve().parents[2] / "runbooks"
EXECUTABLE: dict[str, Runbook] = {rb.name: rb for rb in (AUTH_ROTATION, OBJECT_RECOVERY, ROLLBACK, CANARY_PROMOTION)}


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
