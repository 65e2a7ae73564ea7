"""Stack-level rules about resource options rather than properties."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from contracts.guardrails import PROTECTED_TIERS
from policies.rules.base import PlanResource, StackInfo, applies, environments_config, stack_rule

STATEFUL_TYPES = [
    "aws:rds/instance:Instance", "aws:elasticache/replicationGroup:ReplicationGroup", "aws:msk/cluster:Cluster",
    "aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2", "aws:kms/key:Key",
]


@stack_rule(
    "protect-stateful-resources", area="Stack", severity="critical",
    description="In protected tiers, stateful resources (databases, caches, brokers, buckets, KMS keys) carry "
                "Pulumi's `protect` option, so no update or destroy can delete them.",
    remediation="Set `mlplatform:protectStatefulResources: true` and build stateful resources with "
                "`ResourceOptions(protect=ctx.protect, retain_on_delete=ctx.protect)`.",
    config={"environments": environments_config(PROTECTED_TIERS),
            "statefulTypes": {"type": "array", "items": {"type": "string"}, "default": STATEFUL_TYPES,
                              "description": "Resource types that hold state."}},
)
def protect_stateful(resources: Sequence[PlanResource], config: Mapping[str, Any],
                     stack: StackInfo) -> Iterable[tuple[str, str]]:
    if not applies(config, stack):
        return
    for r in resources:
        if r.type in config["statefulTypes"] and not r.protect:
            yield r.urn, f"{r.type} is stateful but not protected"
