"""Customer-managed KMS keys for the data layer: one key per data domain.

Decision (docs/DATA_SERVICES.md): a key per domain rather than one platform key, so that
- a key policy can restrict use to the one AWS service that stores that domain's data
  (`kms:ViaService`): the storage key works only through S3, the database key only through RDS;
- an IAM grant on one key (e.g. model serving's decrypt on the storage key) never opens another
  domain's data, and disabling a key isolates exactly one domain in an incident;
- CloudTrail shows per-domain key usage.
The account root keeps key *administration* (so IAM admins can always repair a policy) but not
key *use*: use is granted only through the domain's service, to account principals whose own IAM
policy also allows it. Keys rotate yearly; in protected stacks they are `protect`ed and retained.
The streaming key also encrypts the MSK SASL/SCRAM secrets (MSK rejects secrets under the AWS-managed
Secrets Manager key), so it is usable through Secrets Manager as well as through MSK (whose key
use, grants included, stays limited to principals of this account).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from stacks.context import StackContext

# domain -> AWS services (endpoint prefix) that may use the key on a caller's behalf.
DATA_DOMAINS: dict[str, tuple[str, ...]] = {
    "storage": ("s3",),
    "database": ("rds",),
    "cache": ("elasticache",),
    "streaming": ("kafka", "secretsmanager"),
    "secrets": ("secretsmanager",),
}

KEY_ADMIN_ACTIONS = [
    "kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*", "kms:Revoke*",
    "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource",
    "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand",
]
KEY_USE_ACTIONS = [
    "kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey", "kms:CreateGrant",
]


def key_policy(account_id: str, region: str, services: tuple[str, ...]) -> dict[str, Any]:
    """Key policy: account administers the key; use only through `services`, only from this account."""
    root = f"arn:aws:iam::{account_id}:root"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "KeyAdministration", "Effect": "Allow", "Principal": {"AWS": root},
             "Action": KEY_ADMIN_ACTIONS, "Resource": "*"},
            {"Sid": "UseThroughDomainServiceOnly", "Effect": "Allow", "Principal": {"AWS": root},
             "Action": KEY_USE_ACTIONS, "Resource": "*",
             "Condition": {"StringEquals": {
                 "kms:ViaService": [f"{s}.{region}.amazonaws.com" for s in services],
                 "kms:CallerAccount": account_id,
             }}},
        ],
    }


@dataclass(frozen=True, kw_only=True)
class DataKeysArgs:
    """Inputs of `DataKeys`."""

    ctx: StackContext
    account_id: pulumi.Input[str]
    """The AWS account whose principals may use the keys (through the domain's service only)."""


class DataKeys(pulumi.ComponentResource):
    """One rotating customer-managed key (with alias) per entry of `DATA_DOMAINS`."""

    arns: dict[str, pulumi.Output[str]]
    aliases: dict[str, str]

    def __init__(self, name: str, args: DataKeysArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:data:DataKeys", name, None, opts)
        ctx, account_id = args.ctx, args.account_id
        stateful = pulumi.ResourceOptions(parent=self, protect=ctx.protect, retain_on_delete=ctx.protect)
        self.arns, self.aliases = {}, {}
        for domain, services in DATA_DOMAINS.items():
            key = aws.kms.Key(
                f"{name}-{domain}",
                description=f"{ctx.prefix} {domain} data (usable via {', '.join(services)} only)",
                enable_key_rotation=True,
                rotation_period_in_days=365,
                # A key scheduled for deletion can still be cancelled within this window.
                deletion_window_in_days=ctx.cfg.data_keys.deletion_window_days,
                policy=pulumi.Output.from_input(account_id).apply(
                    lambda acct, s=services: json.dumps(key_policy(acct, ctx.cfg.region, s))
                ),
                tags=ctx.tags(ctx.name(domain), DataDomain=domain),
                opts=stateful,
            )
            alias = f"alias/{ctx.prefix}/{domain}"
            aws.kms.Alias(f"{name}-{domain}-alias", name=alias, target_key_id=key.key_id,
                          opts=pulumi.ResourceOptions(parent=self))
            self.arns[domain] = key.arn
            self.aliases[domain] = alias
        self.register_outputs({"keyArns": self.arns})
