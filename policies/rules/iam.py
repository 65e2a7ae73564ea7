"""IAM least privilege, IRSA trust scoping, and tagging."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from policies.rules.base import StackInfo, as_list, as_mapping, policy_document, resource_rule, statements

ROLE = "aws:iam/role:Role"
POLICY_DOCUMENT_TYPES = ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy", "aws:iam/userPolicy:UserPolicy",
                         "aws:iam/groupPolicy:GroupPolicy")
ATTACHMENT_TYPES = ("aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
                    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment")
ADMIN_POLICY_ARNS = ("arn:aws:iam::aws:policy/AdministratorAccess", "arn:aws:iam::aws:policy/IAMFullAccess")
SUBJECT = re.compile(r"^system:serviceaccount:[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")

# AWS resource types that accept tags (the ones this platform declares or is likely to).
TAGGABLE = frozenset({
    "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/routeTable:RouteTable",
    "aws:ec2/internetGateway:InternetGateway", "aws:ec2/natGateway:NatGateway", "aws:ec2/eip:Eip",
    "aws:ec2/securityGroup:SecurityGroup", "aws:ec2/vpcEndpoint:VpcEndpoint", "aws:ec2/flowLog:FlowLog",
    "aws:ec2/launchTemplate:LaunchTemplate", "aws:eks/cluster:Cluster", "aws:eks/nodeGroup:NodeGroup",
    "aws:eks/addon:Addon", "aws:eks/accessEntry:AccessEntry", "aws:iam/role:Role", "aws:iam/policy:Policy",
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider", "aws:kms/key:Key",
    "aws:cloudwatch/logGroup:LogGroup", "aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2",
    "aws:elasticache/replicationGroup:ReplicationGroup", "aws:elasticache/subnetGroup:SubnetGroup",
    "aws:elasticache/parameterGroup:ParameterGroup", "aws:msk/cluster:Cluster",
    "aws:rds/instance:Instance", "aws:rds/subnetGroup:SubnetGroup", "aws:rds/parameterGroup:ParameterGroup",
    "aws:secretsmanager/secret:Secret",
})


def _is_wildcard_admin(statement: Mapping[str, Any]) -> bool:
    actions = [str(a) for a in as_list(statement.get("Action"))]
    resources = [str(r) for r in as_list(statement.get("Resource"))]
    return (statement.get("Effect", "Allow") == "Allow" and any(a in ("*", "*:*") for a in actions)
            and "*" in resources)


def _documents(type_: str, props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if type_ == ROLE:
        return [policy_document(as_mapping(p).get("policy")) for p in as_list(props.get("inlinePolicies"))]
    return [policy_document(props.get("policy"))]


@resource_rule(
    "iam-no-wildcard-admin", [ROLE, *POLICY_DOCUMENT_TYPES, *ATTACHMENT_TYPES], area="IAM", severity="critical",
    description="No IAM policy allows every action on every resource, and no AdministratorAccess attachment.",
    remediation="List the actions and resource ARNs the workload needs (infra/aws/irsa.py statements).",
)
def iam_no_wildcard_admin(type_: str, props: Mapping[str, Any], _c: Mapping[str, Any],
                          _s: StackInfo) -> Iterable[str]:
    if type_ in ATTACHMENT_TYPES:
        if props.get("policyArn") in ADMIN_POLICY_ARNS:
            yield f"attaches {props.get('policyArn')}"
        return
    if type_ == ROLE:
        for arn in as_list(props.get("managedPolicyArns")):
            if arn in ADMIN_POLICY_ARNS:
                yield f"attaches {arn}"
    for doc in _documents(type_, props):
        for s in statements(doc):
            if _is_wildcard_admin(s):
                yield f"statement {s.get('Sid', '')!r} allows Action * on Resource *".replace(" '' ", " ")


def _web_identity_problems(statement: Mapping[str, Any]) -> list[str]:
    condition = as_mapping(statement.get("Condition"))
    equals = as_mapping(condition.get("StringEquals"))
    like = as_mapping(condition.get("StringLike"))
    problems = []
    subs = [v for k, v in equals.items() if k.endswith(":sub")]
    if any(k.endswith(":sub") for k in like):
        problems.append("the :sub condition uses StringLike (wildcards admit other service accounts)")
    values = [str(x) for v in subs for x in as_list(v)]
    if len(values) != 1:
        problems.append(f"trust admits {len(values)} service-account subjects, not exactly one")
    elif not SUBJECT.match(values[0]):
        problems.append(f"subject {values[0]!r} is not system:serviceaccount:<namespace>:<name>")
    auds = [str(x) for k, v in equals.items() if k.endswith(":aud") for x in as_list(v)]
    if auds != ["sts.amazonaws.com"]:
        problems.append("the :aud condition is not pinned to sts.amazonaws.com")
    return problems


@resource_rule(
    "irsa-trust-single-service-account", [ROLE], area="IAM", severity="critical",
    description="A role assumable through the cluster's OIDC provider trusts exactly one service account "
                "(StringEquals on :sub) with the STS audience pinned.",
    remediation="Create workload roles with infra/aws/irsa.py IrsaRole(namespace, service_account).",
)
def irsa_trust_single_sa(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any],
                         _s: StackInfo) -> Iterable[str]:
    for s in statements(policy_document(props.get("assumeRolePolicy"))):
        if "sts:AssumeRoleWithWebIdentity" in as_list(s.get("Action")) and s.get("Effect", "Allow") == "Allow":
            yield from _web_identity_problems(s)


@resource_rule(
    "required-tags", sorted(TAGGABLE), area="Tagging", severity="medium",
    description="Every taggable AWS resource carries the platform tags (directly or through the provider's "
                "default tags).",
    remediation="Pass `tags=ctx.tags(...)` (stacks/context.py) and use the stack's AWS provider.",
    config={"requiredTags": {"type": "array", "items": {"type": "string"},
                             "default": ["Environment", "Platform", "PlatformVersion", "ManagedBy"],
                             "description": "Tag keys every taggable resource must carry."}},
)
def required_tags(_t: str, props: Mapping[str, Any], config: Mapping[str, Any], stack: StackInfo) -> Iterable[str]:
    tags = {**stack.default_tags, **as_mapping(props.get("tags"))}
    missing = [k for k in config["requiredTags"] if not tags.get(k)]
    if missing:
        yield f"missing tags: {', '.join(missing)}"
