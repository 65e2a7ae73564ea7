"""Building blocks shared by the data-service components (Redis, MSK, RDS).

- `node_only_security_group`: the only way into a data service is from the EKS nodes' security
  group on the service's ports; no CIDR rules, no egress (these services never call out).
- `StoredSecret`: a generated credential kept in Secrets Manager under the secrets KMS key, so the
  runbooks can read and rotate it without the Pulumi state.
- `stateful_options`: `protect` + `retain_on_delete` for data-bearing resources of protected stacks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from stacks.context import StackContext


def stateful_options(ctx: StackContext, parent: pulumi.Resource, **extra: Any) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, protect=ctx.protect, retain_on_delete=ctx.protect, **extra)


def node_only_security_group(
    name: str, ctx: StackContext, vpc_id: pulumi.Input[str], node_sg_id: pulumi.Input[str],
    ports: Sequence[tuple[int, int, str]], purpose: str, parent: pulumi.Resource,
) -> aws.ec2.SecurityGroup:
    """Security group admitting TCP `ports` [(from, to, description)] only from the node SG."""
    physical = ctx.name(purpose)
    return aws.ec2.SecurityGroup(
        name,
        name=physical,
        vpc_id=vpc_id,
        description=f"{purpose}: ingress from EKS nodes only",
        ingress=[
            aws.ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=lo, to_port=hi,
                                             security_groups=[node_sg_id], description=desc)
            for lo, hi, desc in ports
        ],
        # Explicitly none: the data services answer connections, they never open any.
        egress=[],
        tags=ctx.tags(physical),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def generated_password(name: str, length: int, parent: pulumi.Resource) -> random.RandomPassword:
    """Alphanumeric secret (valid as Redis AUTH token and RDS password without escaping)."""
    return random.RandomPassword(name, length=length, special=False, min_lower=4, min_upper=4, min_numeric=4,
                                 opts=pulumi.ResourceOptions(parent=parent))


class StoredSecret:
    """A Secrets Manager secret (KMS-encrypted) holding a JSON document of connection details."""

    arn: pulumi.Output[str]
    secret_name: str
    version: aws.secretsmanager.SecretVersion  # depend on it where the value must exist first

    def __init__(self, name: str, ctx: StackContext, secret_name: str, description: str,
                 kms_key_arn: pulumi.Input[str], value: Mapping[str, pulumi.Input[Any]],
                 parent: pulumi.Resource) -> None:
        self.secret_name = secret_name
        secret = aws.secretsmanager.Secret(
            name,
            name=secret_name,
            description=description,
            kms_key_id=kms_key_arn,
            # 0: a recreated stack reuses the name at once; otherwise a deleted secret stays recoverable.
            recovery_window_in_days=ctx.cfg.secrets.recovery_window_days,
            tags=ctx.tags(secret_name),
            opts=stateful_options(ctx, parent),
        )
        self.version = aws.secretsmanager.SecretVersion(
            f"{name}-value",
            secret_id=secret.id,
            secret_string=pulumi.Output.secret(pulumi.Output.from_input(dict(value)).apply(json.dumps)),
            # Runbooks rotate credentials in Secrets Manager; the first value is only the initial one.
            opts=stateful_options(ctx, parent, ignore_changes=["secretString", "versionStages"]),
        )
        self.arn = secret.arn
