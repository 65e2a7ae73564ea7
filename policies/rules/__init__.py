"""All rules of the pack, in documentation order. Importable without pulumi_policy."""

from __future__ import annotations

from policies.rules import data, eks, iam, kubernetes, network, stack, storage
from policies.rules.base import PlanResource, Rule, StackInfo

PACK_NAME = "mlplatform-guardrails"


def _collect() -> list[Rule]:
    rules: list[Rule] = []
    for module in (eks, network, storage, data, iam, kubernetes, stack):
        rules.extend(v for v in vars(module).values() if isinstance(v, Rule))
    names = [r.name for r in rules]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"duplicate rule names: {sorted(duplicates)}")
    return rules


ALL_RULES: list[Rule] = _collect()
RULES_BY_NAME: dict[str, Rule] = {r.name: r for r in ALL_RULES}

__all__ = ["ALL_RULES", "PACK_NAME", "RULES_BY_NAME", "PlanResource", "Rule", "StackInfo"]
