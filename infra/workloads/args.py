"""Inputs most workload components share; each component's own `*Args` class extends this one."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from infra.aws.interfaces import DataServices
from stacks.context import StackContext


@dataclass(frozen=True, kw_only=True)
class WorkloadArgs:
    ctx: StackContext
    data: DataServices
    """The data layer's endpoints, credentials, buckets and IRSA role ARNs."""
    vpc_cidr: str
    """The VPC range: the namespace's egress to the data services is allowed to it only."""
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    """What the component's Helm releases wait for (add-ons, monitoring CRDs); not the component itself."""
