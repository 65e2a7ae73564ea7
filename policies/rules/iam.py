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
                    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
                    "aws:iam/policyAttachment:PolicyAttachment")
# Resource-based policies: who (Principal) may act on the resource; input holding the document.
RESOURCE_POLICY_TYPES = {
    ROLE: "assumeRolePolicy",
    "aws:s3/bucketPolicy:BucketPolicy": "policy",
    "aws:kms/key:Key": "policy",
    "aws:kms/keyPolicy:KeyPolicy": "policy",
    "aws:secretsmanager/secretPolicy:SecretPolicy": "policy",
    "aws:ecr/repositoryPolicy:RepositoryPolicy": "policy",
    "aws:sqs/queuePolicy:QueuePolicy": "policy",
    "aws:sns/topicPolicy:TopicPolicy": "policy",
}
# AWS-managed policies that grant (nearly) everything, or everything of a service.
ADMIN_POLICY = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/(.+/)?(AdministratorAccess(-.+)?|PowerUserAccess"
                          r"|IAMFullAccess|[A-Za-z0-9]*FullAccess)$")
# Discovery calls that cannot be scoped to a resource in IAM: allowed on every resource.
DISCOVERY = re.compile(r"^[a-z0-9-]+:((Describe|List)[A-Za-z0-9*]*|Get[A-Za-z0-9]*)$", re.IGNORECASE)
# ... except these, which read data or secrets rather than describing resources.
DATA_READS = re.compile(r"^(s3:GetObject|secretsmanager:GetSecretValue|ssm:GetParameter|kms:GetPublicKey"
                        r"|dynamodb:GetItem|dynamodb:GetRecords|kinesis:GetRecords|sqs:ReceiveMessage"
                        r"|ecr:GetDownloadUrlForLayer|ecr:GetAuthorizationToken|logs:GetLogEvents"
                        r"|kafka-cluster:ReadData|sts:GetSessionToken|sts:GetFederationToken)", re.IGNORECASE)
# Condition keys that restrict a wildcard principal to one account, organisation or source.
SCOPING_CONDITION_KEYS = frozenset(k.lower() for k in (
    "aws:SourceAccount", "aws:SourceArn", "aws:SourceOwner", "aws:PrincipalAccount", "aws:PrincipalArn",
    "aws:PrincipalOrgID", "aws:PrincipalOrgPaths", "aws:SourceVpc", "aws:SourceVpce", "aws:SourceOrgID",
    "kms:CallerAccount",
))
# What AWS's published aws-load-balancer-controller policy grants on `*` without a condition: the WAF
# ACL and the Shield resource come from Ingress annotations, so the controller cannot be scoped further.
LOAD_BALANCER_CONTROLLER_UNSCOPED = ("wafv2:AssociateWebACL", "wafv2:DisassociateWebACL", "shield:CreateProtection",
                                     "shield:DeleteProtection")
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


def _sid(statement: Mapping[str, Any]) -> str:
    sid = statement.get("Sid")
    return f"statement {sid!r}" if sid else "a statement"


def _is_allow(statement: Mapping[str, Any]) -> bool:
    return str(statement.get("Effect", "Allow")) == "Allow"


def wildcard_action(action: str) -> bool:
    """`*`, `*:*`, `s3:*`, `*:GetObject`, `s3:**`: every action of a service, or of every service."""
    service, _, name = action.partition(":")
    return action.strip("*") == "" or service.strip("*") == "" or name.strip("*") == ""


def wildcard_resource(resource: str) -> bool:
    """`*`, or an ARN pattern whose resource part matches everything (`arn:aws:s3:::*`,
    `arn:aws:s3:::*/*`, `arn:aws:iam::123456789012:*`), or any account's resources (`arn:aws:kms:*:*:key/x`)."""
    if resource.strip("*") == "":
        return True
    parts = resource.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return False
    _arn, _partition, service, _region, account, rest = parts
    return service.strip("*") == "" or rest.strip("*/") == "" or (account == "*" and service not in ("s3",))


def over_broad_grants(statement: Mapping[str, Any], allowed_unscoped: Iterable[str] = ()) -> list[str]:
    """Why an identity-policy statement grants too much ([] when it does not). Shared with the
    program (infra/aws/irsa.py), which refuses such statements when it declares them."""
    if not _is_allow(statement):
        return []
    who = _sid(statement)
    problems = []
    if "NotAction" in statement:
        problems.append(f"{who} allows every action except {as_list(statement.get('NotAction'))} (NotAction)")
    if "NotResource" in statement:
        problems.append(f"{who} allows every resource except {as_list(statement.get('NotResource'))} (NotResource)")
    actions = [str(a) for a in as_list(statement.get("Action"))]
    resources = [str(r) for r in as_list(statement.get("Resource"))]
    wild_actions = [a for a in actions if wildcard_action(a)]
    if wild_actions:
        problems.append(f"{who} allows {', '.join(wild_actions)}: every action of "
                        + ("every service" if any(a.partition(':')[0].strip('*') == '' for a in wild_actions)
                           else "the service"))
    wild_resources = [r for r in resources if wildcard_resource(r)]
    allowed = {a.lower() for a in allowed_unscoped}
    unscoped = [a for a in actions if not wildcard_action(a) and a.lower() not in allowed
                and not (DISCOVERY.match(a) and not DATA_READS.match(a))]
    if wild_resources and unscoped and not statement.get("Condition"):
        problems.append(f"{who} allows {', '.join(unscoped)} on {', '.join(wild_resources)} without a condition "
                        "(every resource of the service)")
    return problems


def _documents(type_: str, props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if type_ == ROLE:
        return [policy_document(as_mapping(p).get("policy")) for p in as_list(props.get("inlinePolicies"))]
    return [policy_document(props.get("policy"))]


@resource_rule(
    "iam-no-wildcard-admin", [ROLE, *POLICY_DOCUMENT_TYPES, *ATTACHMENT_TYPES], area="IAM", severity="critical",
    description="No IAM policy grants more than named actions on named resources: no `*`, `*:*` or service-wide "
                "(`s3:*`) actions, no NotAction or NotResource, no unconditioned non-discovery action on every "
                "resource (`*`, `arn:aws:s3:::*`), no AdministratorAccess, PowerUserAccess or *FullAccess "
                "attachment.",
    remediation="List the actions and resource ARNs the workload needs (infra/aws/identities.py grants); scope "
                "actions on `*` with a tag or service condition.",
    config={"allowedUnscopedActions": {
        "type": "array", "items": {"type": "string"},
        "default": list(LOAD_BALANCER_CONTROLLER_UNSCOPED),
        "description": "Actions allowed on every resource without a condition (default: what AWS's published "
                       "aws-load-balancer-controller policy grants on `*`: the WAF ACL and Shield resources come "
                       "from Ingress annotations)."}},
    decided="update",
    preview_guard="Attachments and documents known at preview (the controller policies) are decided then. Inline "
                  "policies naming a KMS key, the MSK cluster or a log group created in the same update are unknown "
                  "until `up`: the workload grants are checked with the same function (`over_broad_grants`) when "
                  "the program declares them, before any ARN exists (infra/aws/identities.py "
                  "`check_workload_grants`), and every pull request runs this rule on the offline plan "
                  "(`mlplat policy --stack ENV`), whose mocks give those ARNs their real shape.",
)
def iam_no_wildcard_admin(type_: str, props: Mapping[str, Any], config: Mapping[str, Any],
                          _s: StackInfo) -> Iterable[str]:
    if type_ in ATTACHMENT_TYPES:
        if ADMIN_POLICY.match(str(props.get("policyArn") or "")):
            yield f"attaches {props.get('policyArn')}"
        return
    if type_ == ROLE:
        for arn in as_list(props.get("managedPolicyArns")):
            if ADMIN_POLICY.match(str(arn)):
                yield f"attaches {arn}"
    for doc in _documents(type_, props):
        for s in statements(doc):
            yield from over_broad_grants(s, config["allowedUnscopedActions"])


def _principals(statement: Mapping[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    if isinstance(principal, str):
        return [principal]
    return [str(p) for v in as_mapping(principal).values() for p in as_list(v)]


def _scoped(statement: Mapping[str, Any]) -> bool:
    keys = {k.lower() for op in as_mapping(statement.get("Condition")).values() for k in as_mapping(op)}
    return bool(keys & SCOPING_CONDITION_KEYS)


@resource_rule(
    "iam-no-public-principal", sorted(RESOURCE_POLICY_TYPES), area="IAM", severity="critical",
    description="No resource or trust policy allows a wildcard principal (`*`, `{AWS: *}`) unless a condition "
                "pins the caller's account, organisation or source, and none allows through NotPrincipal.",
    remediation="Name the principals (account roots, role ARNs, service principals) or add an aws:SourceAccount / "
                "aws:PrincipalOrgID condition.",
    decided="update",
    preview_guard="Bucket and KMS key policies are known at preview (ARNs from names) and decided then. IRSA trust "
                  "policies name the cluster's OIDC provider, unknown until the cluster exists; they come only from "
                  "infra/aws/irsa.py `trust_policy`, whose principal is that provider (never `*`), and every pull "
                  "request runs this rule on the offline plan (`mlplat policy --stack ENV`).",
)
def iam_no_public_principal(type_: str, props: Mapping[str, Any], _c: Mapping[str, Any],
                            _s: StackInfo) -> Iterable[str]:
    for s in statements(policy_document(props.get(RESOURCE_POLICY_TYPES[type_]))):
        if not _is_allow(s):
            continue
        if "NotPrincipal" in s:
            yield f"{_sid(s)} allows every principal except {s.get('NotPrincipal')} (NotPrincipal)"
        elif "*" in _principals(s) and not _scoped(s):
            yield f"{_sid(s)} allows any principal (`*`) without an account or organisation condition"


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
    decided="update",
    preview_guard="The trust policy's condition keys are the cluster's OIDC issuer, unknown until the cluster "
                  "exists. Trust policies come only from infra/aws/irsa.py `trust_policy` (StringEquals on :sub "
                  "and :aud, one service account), and every pull request runs this rule on the offline plan "
                  "(`mlplat policy --stack ENV`), whose mocks give the issuer its real shape.",
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
