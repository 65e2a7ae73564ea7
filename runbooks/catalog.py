"""Every runbook: its Markdown document and, where it has them, its executable steps, side by side in runbooks/."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from runbooks.alerts import ALERT_RUNBOOKS
from runbooks.data import (
    MSK_BROKER_REPLACEMENT,
    MSK_CONSUMER_LAG,
    MSK_STORAGE_EXPANSION,
    RDS_PITR,
    REDIS_FAILOVER_TEST,
    REDIS_SNAPSHOT_RESTORE,
)
from runbooks.eks import EKS_UPGRADE, NODEGROUP_ROTATION, NODEGROUP_SCALING
from runbooks.engine import Runbook
from runbooks.models import CANARY_PROMOTION, ROLLBACK
from runbooks.recovery import DISASTER_RECOVERY, FEATURE_BACKFILL
from runbooks.redis import AUTH_ROTATION
from runbooks.s3 import OBJECT_RECOVERY

RUNBOOK_DIR = Path(__file__).resolve().parent
EXECUTABLE: dict[str, Runbook] = {rb.name: rb for rb in (
    EKS_UPGRADE, NODEGROUP_SCALING, NODEGROUP_ROTATION, AUTH_ROTATION, REDIS_FAILOVER_TEST, REDIS_SNAPSHOT_RESTORE,
    MSK_STORAGE_EXPANSION, MSK_BROKER_REPLACEMENT, MSK_CONSUMER_LAG, RDS_PITR, OBJECT_RECOVERY, ROLLBACK,
    CANARY_PROMOTION, FEATURE_BACKFILL, DISASTER_RECOVERY, *ALERT_RUNBOOKS,
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


def render_index() -> str:
    """docs/RUNBOOKS.md: every runbook, its executable steps and how to run it."""
    lines = [
        "# Runbooks",
        "",
        "<!-- Generated from runbooks/catalog.py (`mlplat runbook index`); a test fails when stale. -->",
        "",
        "Each runbook is a document in `runbooks/` beside the module with its executable steps.",
        "`mlplat runbook run NAME` is a dry run by default: it checks each step's precondition against the live",
        "system and prints exactly what would",
        "change (read-only diagnosis steps run for real). `--execute` performs the actions, verifies each one, stops",
        "at the first failed verification with its rollback, and appends every action to the audit log (JSON lines:",
        "time, actor, env, runbook, step, target, result).",
        "",
        "| Runbook | Title | Steps | Environments |",
        "|---|---|---|---|",
    ]
    for doc in documents():
        rb = doc.runbook
        steps = "; ".join(s.name + (" (read-only)" if s.read_only else "") for s in rb.steps) if rb else "—"
        envs = ", ".join(rb.envs) if rb else "—"
        lines.append(f"| [{doc.name}](../runbooks/{doc.path.name}) | {doc.title} | {steps} | {envs} |")
    lines += [
        "",
        "Runs without a person: `runbooks/autorollback.py` receives the rollback alerts of contracts/rollback.py",
        "(error rate > 5 %, p99 > 10 ms, F1 drop > 5 % of a model version; Alertmanager webhook on the cluster, the",
        "local Prometheus directly) and runs `model-rollback` with `--execute` when the firing version is the",
        "candidate; its actions are in the same audit log with actor `autorollback/<alert>`. How to disable it:",
        "[model-rollback](../runbooks/model-rollback.md#automatic-rollback-no-person-involved). Approvals",
        "(`mlplat model approve`) are audited in the same log (runbook `model-approve`).",
        "",
        "How the steps were tested: AWS steps against a real moto server (ThreadedMotoServer on 127.0.0.1), with",
        "botocore's Stubber only for the APIs moto lacks (EKS UpdateClusterVersion/UpdateAddon/ListInsights/",
        "UpdateNodegroupVersion, ElastiCache TestFailover, MSK UpdateBrokerStorage/RebootBroker); MLflow steps",
        "against a real local MLflow server; alert diagnosis against a real Prometheus; Kubernetes steps through",
        "the client the cluster uses (`ClusterKubeOps`: the official `kubernetes` client, configured from a",
        "kubeconfig as `--kube cluster` does) against a real HTTP server on 127.0.0.1 that answers the Kubernetes API",
        "calls the steps make, with answers checked against the Kubernetes OpenAPI schema as the client generates",
        "it and against the Seldon CRDs' schema (tests/runbooks/test_kube_api.py; no cluster is available here).",
        "The injectable `InMemoryKubeOps` stand-in remains for the steps' own logic tests.",
        "",
    ]
    return "\n".join(lines)
