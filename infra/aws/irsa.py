"""IAM Roles for Service Accounts: one role per Kubernetes service account, least privilege.

The trust policy admits exactly one service account (`system:serviceaccount:<ns>:<sa>`) through the
cluster's OIDC provider, with the STS audience pinned. Permissions come as explicit statements (or
AWS-managed policy ARNs where AWS maintains the least-privilege set, e.g. the EBS CSI driver);
an over-broad statement (the policy pack's `over_broad_grants`: wildcard or service-wide actions,
NotAction/NotResource, unconditioned changes on every resource) is refused when the document is
rendered, and callers whose ARNs are unknown until `up` check their statement shapes at declaration
(`assert_no_wildcard_admin` with placeholder ARNs), so a first preview refuses them too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from policies.rules.iam import LOAD_BALANCER_CONTROLLER_UNSCOPED, over_broad_grants
from stacks.context import StackContext


@dataclass(frozen=True)
class OidcIssuer:
    """The cluster's OIDC identity provider, as IRSA trust policies need it."""

    provider_arn: pulumi.Input[str]
    issuer_url: pulumi.Input[str]


def role_name(ctx: StackContext, identity: str) -> str:
    """The IAM role name of an IRSA identity (known before the role exists: bucket policies name it)."""
    return ctx.name("irsa", identity)[:64]


def role_arn(ctx: StackContext, account_id: str, identity: str) -> str:
    return f"arn:aws:iam::{account_id}:role/{role_name(ctx, identity)}"


def service_account_subject(namespace: str, service_account: str) -> str:
    return f"system:serviceaccount:{namespace}:{service_account}"


def assert_no_wildcard_admin(statements: Sequence[dict[str, Any]]) -> None:
    """Refuse any statement the policy pack's `iam-no-wildcard-admin` rule would refuse."""
    for s in statements:
        problems = over_broad_grants(s, LOAD_BALANCER_CONTROLLER_UNSCOPED)
        if problems:
            raise ValueError(f"IAM statement {s.get('Sid', '')!r} grants too much: {'; '.join(problems)}")


def trust_policy(provider_arn: str, issuer_url: str, namespace: str, service_account: str) -> str:
    issuer = issuer_url.removeprefix("https://")
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                f"{issuer}:sub": service_account_subject(namespace, service_account),
                f"{issuer}:aud": "sts.amazonaws.com",
            }},
        }],
    })


@dataclass(frozen=True, kw_only=True)
class IrsaRoleArgs:
    """Inputs of `IrsaRole`: who may assume the role and what it may do."""

    ctx: StackContext
    oidc: OidcIssuer
    namespace: str
    service_account: str
    """The one Kubernetes service account (in `namespace`) the trust policy admits."""
    statements: pulumi.Input[Sequence[dict[str, Any]]] | None = None
    """Inline policy statements (refused when over-broad); None: no inline policy."""
    managed_policy_arns: Sequence[str] = ()
    """AWS-managed policies to attach where AWS maintains the least-privilege set."""


class IrsaRole(pulumi.ComponentResource):
    """An IAM role assumable only by one Kubernetes service account."""

    role_arn: pulumi.Output[str]
    role_name: pulumi.Output[str]
    namespace: str
    service_account: str

    def __init__(self, name: str, args: IrsaRoleArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:identity:IrsaRole", name, None, opts)
        ctx, oidc, namespace, service_account = args.ctx, args.oidc, args.namespace, args.service_account
        statements, managed_policy_arns = args.statements, args.managed_policy_arns
        self.namespace = namespace
        self.service_account = service_account
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-role",
            name=role_name(ctx, name),
            description=f"IRSA for {service_account_subject(namespace, service_account)}",
            assume_role_policy=pulumi.Output.all(oidc.provider_arn, oidc.issuer_url).apply(
                lambda a: trust_policy(a[0], a[1], namespace, service_account)
            ),
            max_session_duration=3600,
            tags=ctx.tags(ctx.name("irsa", name), ServiceAccount=f"{namespace}/{service_account}"),
            opts=child,
        )
        grants: list[pulumi.CustomResource] = []
        if statements is not None:
            grants.append(aws.iam.RolePolicy(
                f"{name}-policy", role=role.id,
                policy=pulumi.Output.from_input(statements).apply(_policy_document), opts=child,
            ))
        for i, arn in enumerate(managed_policy_arns):
            grants.append(aws.iam.RolePolicyAttachment(f"{name}-managed-{i}", role=role.name, policy_arn=arn,
                                                       opts=child))
        # The ARN carries the grants as dependencies: whatever hands it to a pod (a ServiceAccount annotation,
        # an add-on, Helm values) is created after the role can do its job, never before its policies exist.
        self.role_arn = pulumi.Output.all(role.arn, *(g.id for g in grants)).apply(lambda a: a[0])
        self.role_name = role.name
        self.register_outputs({"roleArn": role.arn})


def _policy_document(statements: Sequence[dict[str, Any]]) -> str:
    assert_no_wildcard_admin(statements)
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
