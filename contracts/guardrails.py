"""Guard rails stated once: the tiers, thresholds and predicates that both the stack-config validation
(stacks/rules.py, before any resource is declared) and the CrossGuard policy pack (policies/rules/, on
the planned resources) enforce.

So a stack file that passes `mlplat validate-config` does not fail the pack on one of these, and a
threshold changes in one place. Standard library only: the pack imports this from `.venv-policy`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

TIERS = ("dev", "staging", "prod")

# --- Tiers in which a requirement applies (the policy rules' `environments` default) ---
# Stateful resources carry `protect` and `retain_on_delete`; the database has deletion protection and
# keeps a final snapshot; deleting a resource never drops its data (snapshots, backups, secrets, volumes).
PROTECTED_TIERS = ("prod",)
# RDS runs Multi-AZ with a synchronous standby.
DATABASE_MULTI_AZ_TIERS = ("prod",)
# Kubeflow Pipelines keeps runs and ML metadata in the managed (Multi-AZ) database, not on a volume.
PIPELINES_MANAGED_DB_TIERS = DATABASE_MULTI_AZ_TIERS
# Redis runs Multi-AZ with automatic failover onto at least MIN_FAILOVER_REPLICAS replica(s).
REDIS_MULTI_AZ_TIERS = ("staging", "prod")
MIN_FAILOVER_REPLICAS = 1

# --- Minimums per tier (see `tier_minimum`) ---
# Automated RDS backups, in days.
MIN_BACKUP_RETENTION_DAYS: Mapping[str, int] = {"dev": 1, "staging": 3, "prod": 7}
# KMS key deletion windows (KMS accepts 7 to 30 days), in days.
MIN_KMS_DELETION_WINDOW_DAYS: Mapping[str, int] = {"dev": 7, "staging": 7, "prod": 30}

# --- Values ---
# EKS control-plane log types every cluster ships to CloudWatch.
REQUIRED_CONTROL_PLANE_LOGS = ("api", "audit", "authenticator")
# MSK brokers span at least this many availability zones, in every tier (the pack's msk-multi-az).
MSK_MIN_ZONES = 3
# A public EKS API endpoint must list CIDRs and none may be the whole internet in these tiers (the pack's
# eks-endpoint-restricted is mandatory there; policies/config/dev.json makes it advisory in dev).
RESTRICTED_ENDPOINT_TIERS = ("staging", "prod")
# Every VPC ships flow logs of all traffic, in every tier (the pack's vpc-flow-logs).
FLOW_LOG_TIERS = TIERS
# Promotion to champion needs a recorded approval besides the quality gates in these tiers.
APPROVAL_TIERS = ("prod",)
# CIDRs that mean "the whole internet".
OPEN_CIDRS = ("0.0.0.0/0", "::/0")


def tier_minimum(minimums: Mapping[str, int], tier: str) -> int:
    """The minimum of `tier`; an unknown or missing tier gets the strictest one (nothing is waived)."""
    return int(minimums[tier]) if tier in minimums else max(int(v) for v in minimums.values())


def open_cidrs(cidrs: Iterable[object]) -> list[str]:
    """The entries of `cidrs` that open something to the whole internet."""
    return [str(c) for c in cidrs if str(c) in OPEN_CIDRS]


def spreads_evenly(brokers: int, zones: int) -> bool:
    """Whether `brokers` Kafka brokers divide evenly over `zones` availability zones (MSK requires it)."""
    return zones > 0 and brokers % zones == 0
