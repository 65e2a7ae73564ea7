"""S3 and KMS rules. S3 settings live in companion resources, so most S3 rules look at the whole stack."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from contracts.guardrails import MIN_KMS_DELETION_WINDOW_DAYS
from policies.rules.base import (
    PlanResource,
    StackInfo,
    UnknownAtPreview,
    as_list,
    as_mapping,
    get_path,
    is_unknown,
    peek,
    per_resource,
    policy_document,
    resource_rule,
    stack_rule,
    statements,
    tier_minimum_of,
    tier_minimums_config,
    truthy,
)

BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
SSE = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
       "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
VERSIONING = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_LOGGING = ("aws:s3/bucketLogging:BucketLogging", "aws:s3/bucketLoggingV2:BucketLoggingV2")
BUCKET_ACL = ("aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2")
KMS_KEY = "aws:kms/key:Key"
PAB_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
PUBLIC_ACLS = ("public-read", "public-read-write", "authenticated-read")
PUBLIC_GROUPS = ("http://acs.amazonaws.com/groups/global/AllUsers",
                 "http://acs.amazonaws.com/groups/global/AuthenticatedUsers")


def _refers(r: PlanResource, bucket: PlanResource, key: str) -> bool:
    """Whether `r.props[key]` names `bucket`: by name when both are known, else by dependency."""
    name, target = peek(bucket.props, "bucket"), peek(r.props, key)
    if name and target and not is_unknown(name) and not is_unknown(target):
        return bool(target == name)
    return bucket.urn in r.dependencies


def _companions(bucket: PlanResource, resources: Sequence[PlanResource], types: Sequence[str]) -> list[PlanResource]:
    """Resources of `types` configuring `bucket` (their `bucket` input names it)."""
    return [r for r in resources if r.type in types and _refers(r, bucket, "bucket")]


def _is_log_target(bucket: PlanResource, resources: Sequence[PlanResource]) -> bool:
    return any(r.type in BUCKET_LOGGING and _refers(r, bucket, "targetBucket") and not _refers(r, bucket, "bucket")
               for r in resources)


def _buckets(resources: Sequence[PlanResource]) -> list[PlanResource]:
    return [r for r in resources if r.type in BUCKETS]


@resource_rule(
    "s3-public-access-block-all", [PUBLIC_ACCESS_BLOCK], area="S3", severity="critical",
    description="A bucket's public-access block sets all four flags.",
    remediation="Set blockPublicAcls, blockPublicPolicy, ignorePublicAcls and restrictPublicBuckets to true.",
)
def s3_public_access_block_all(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any],
                               _s: StackInfo) -> Iterable[str]:
    off = [f for f in PAB_FLAGS if not truthy(props.get(f))]
    if off:
        yield f"public-access block flags not true: {', '.join(off)}"


@stack_rule(
    "s3-bucket-public-access-block", area="S3", severity="critical",
    description="Every bucket has its own public-access block resource.",
    remediation="Create buckets through infra/aws/storage.py, which adds a BucketPublicAccessBlock.",
)
def s3_bucket_public_access_block(resources: Sequence[PlanResource], _c: Mapping[str, Any],
                                  _s: StackInfo) -> Iterable[tuple[str, str]]:
    def check(bucket: PlanResource) -> Iterable[str]:
        if not _companions(bucket, resources, (PUBLIC_ACCESS_BLOCK,)):
            yield "bucket has no BucketPublicAccessBlock"

    yield from per_resource(_buckets(resources), check)


@stack_rule(
    "s3-sse-kms", area="S3", severity="high",
    description="Every bucket encrypts objects by default with a KMS key (SSE-KMS). Only a server-access-log "
                "target bucket may use SSE-S3 (AES256), because S3 cannot deliver access logs into SSE-KMS buckets.",
    remediation="Add a BucketServerSideEncryptionConfiguration with sseAlgorithm `aws:kms` and the storage "
                "KMS key.",
)
def s3_sse_kms(resources: Sequence[PlanResource], _c: Mapping[str, Any],
               _s: StackInfo) -> Iterable[tuple[str, str]]:
    def check(bucket: PlanResource) -> Iterable[str]:
        configs = _companions(bucket, resources, SSE)
        # The algorithm is config; the key ARN beside it (unknown until the key exists) is not read.
        rules = [as_mapping(r) for c in configs for r in as_list(c.props.get("rules"))]
        algorithms = [get_path(r, "applyServerSideEncryptionByDefault.sseAlgorithm") for r in rules]
        allowed = ("aws:kms", "aws:kms:dsse", "AES256") if _is_log_target(bucket, resources) else ("aws:kms",
                                                                                                   "aws:kms:dsse")
        if not configs:
            yield "bucket has no server-side encryption configuration"
        elif not algorithms or any(a not in allowed for a in algorithms):
            yield f"default encryption is {algorithms or 'unset'}, not aws:kms"

    yield from per_resource(_buckets(resources), check)


@stack_rule(
    "s3-versioning", area="S3", severity="medium",
    description="Every bucket has versioning enabled (model artifacts and registries must be recoverable).",
    remediation="Add a BucketVersioning with `versioningConfiguration.status: Enabled`.",
)
def s3_versioning(resources: Sequence[PlanResource], _c: Mapping[str, Any],
                  _s: StackInfo) -> Iterable[tuple[str, str]]:
    def check(bucket: PlanResource) -> Iterable[str]:
        states = [get_path(v.props, "versioningConfiguration.status")
                  for v in _companions(bucket, resources, VERSIONING)]
        if "Enabled" not in states:
            yield f"versioning is not Enabled ({states or 'no BucketVersioning'})"

    yield from per_resource(_buckets(resources), check)


def _denies_insecure_transport(doc: Mapping[str, Any]) -> bool:
    for s in statements(doc):
        condition = as_mapping(as_mapping(s.get("Condition")).get("Bool"))
        secure = condition.get("aws:SecureTransport")
        if s.get("Effect") == "Deny" and str(secure).lower() == "false":
            return True
    return False


@stack_rule(
    "s3-tls-only", area="S3", severity="high",
    description="Every bucket policy denies requests that do not use TLS (aws:SecureTransport = false).",
    remediation="Attach a BucketPolicy with a Deny statement on `aws:SecureTransport: false` for the bucket "
                "and its objects.",
)
def s3_tls_only(resources: Sequence[PlanResource], _c: Mapping[str, Any],
                _s: StackInfo) -> Iterable[tuple[str, str]]:
    def check(bucket: PlanResource) -> Iterable[str]:
        documents = [peek(p.props, "policy") for p in _companions(bucket, resources, (BUCKET_POLICY,))]
        if any(_denies_insecure_transport(policy_document(d)) for d in documents if not is_unknown(d)):
            return
        if any(is_unknown(d) for d in documents):  # a policy built from ARNs not known yet
            raise UnknownAtPreview("policy")
        yield "no bucket policy denies aws:SecureTransport = false"

    yield from per_resource(_buckets(resources), check)


OBJECT_ACTIONS = ("s3:GetObject", "s3:PutObject")
PRINCIPAL_CONDITIONS = ("ArnNotEquals", "ArnNotLike")


def _scopes_objects_to_roles(doc: Mapping[str, Any]) -> bool | str:
    """True when a Deny statement limits reading and writing objects to named role ARNs; a message when it
    names them with a wildcard that admits any role."""
    for s in statements(doc):
        actions = {str(a) for a in as_list(s.get("Action"))}
        if s.get("Effect") != "Deny" or s.get("Principal") not in ("*", {"AWS": "*"}):
            continue
        if not ({"s3:*", "s3:GetObject*"} & actions or set(OBJECT_ACTIONS) <= actions):
            continue
        condition = as_mapping(s.get("Condition"))
        for operator in PRINCIPAL_CONDITIONS:
            arns = [str(a) for a in as_list(as_mapping(condition.get(operator)).get("aws:PrincipalArn"))]
            if arns:
                wild = [a for a in arns if a.endswith(":role/*") or a == "*"]
                return f"the roles allowed to use objects include a wildcard ({', '.join(wild)})" if wild else True
    return False


@resource_rule(
    "s3-objects-scoped-to-roles", [BUCKET_POLICY], area="S3", severity="high",
    description="Buckets that hold one workload's data (`purposes`, e.g. the Kubeflow Pipelines artifacts) deny "
                "reading and writing objects to every principal but that workload's IRSA roles.",
    remediation="Add a Deny statement on s3:GetObject/s3:PutObject for `<bucket>/*` with "
                "`ArnNotEquals: {aws:PrincipalArn: [the workload's role ARNs]}` (infra/aws/storage.py "
                "OBJECT_ACCESS_ONLY).",
    config={"purposes": {"type": "array", "items": {"type": "string"}, "default": ["pipelines"],
                         "description": "Bucket purposes (the name part after `<prefix>-<env>-`) to check"}},
)
def s3_objects_scoped_to_roles(_t: str, props: Mapping[str, Any], config: Mapping[str, Any],
                               _s: StackInfo) -> Iterable[str]:
    if is_unknown(peek(props, "bucket")):
        raise UnknownAtPreview("bucket")
    bucket = str(peek(props, "bucket") or "")
    if not any(f"-{purpose}-" in bucket for purpose in config["purposes"]):
        return
    document = peek(props, "policy")
    if is_unknown(document):
        raise UnknownAtPreview("policy")
    verdict = _scopes_objects_to_roles(policy_document(document))
    if verdict is False:
        yield f"the policy of {bucket} does not deny object access to principals outside the workload's roles"
    elif isinstance(verdict, str):
        yield verdict


@resource_rule(
    "s3-no-public-acl", [*BUCKETS, *BUCKET_ACL], area="S3", severity="critical",
    description="No bucket or bucket ACL grants public or any-AWS-account access: no public canned ACL, no grant "
                "to the AllUsers or AuthenticatedUsers groups.",
    remediation="Remove the canned ACL and the group grants; buckets are private with object ownership enforced.",
)
def s3_no_public_acl(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any], _s: StackInfo) -> Iterable[str]:
    if props.get("acl") in PUBLIC_ACLS:
        yield f"canned ACL {props.get('acl')}"
    # BucketAclV2: accessControlPolicy.grants[].grantee.uri; the legacy Bucket: grants[].uri.
    grants = [as_mapping(g) for g in [*as_list(get_path(props, "accessControlPolicy.grants")),
                                      *as_list(props.get("grants"))]]
    for g in grants:
        uri = str(as_mapping(g.get("grantee")).get("uri") or g.get("uri") or "")
        if uri in PUBLIC_GROUPS:
            permissions = ", ".join(str(p) for p in [*as_list(g.get("permission")), *as_list(g.get("permissions"))])
            yield f"grants {permissions or 'access'} to {uri.rsplit('/', 1)[-1]}"


@resource_rule(
    "kms-key-rotation", [KMS_KEY], area="KMS", severity="medium",
    description="Symmetric customer-managed KMS keys rotate automatically.",
    remediation="Set `enableKeyRotation: true` (infra/aws/kms.py does for every key).",
)
def kms_key_rotation(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any], _s: StackInfo) -> Iterable[str]:
    spec = props.get("customerMasterKeySpec") or props.get("keySpec") or "SYMMETRIC_DEFAULT"
    if spec == "SYMMETRIC_DEFAULT" and not truthy(props.get("enableKeyRotation")):
        yield "enableKeyRotation is not true"


@resource_rule(
    "kms-deletion-window", [KMS_KEY], area="KMS", severity="low", enforcement="advisory",
    description="KMS keys keep a deletion window long enough to notice and cancel a mistaken deletion.",
    remediation="Raise `mlplatform:dataKeys.deletionWindowDays` (data keys) or "
                "`mlplatform:cluster.secretsKeyDeletionWindowDays` (EKS secrets key).",
    config={"minimumDays": tier_minimums_config(MIN_KMS_DELETION_WINDOW_DAYS, "Smallest deletion window in days")},
)
def kms_deletion_window(_t: str, props: Mapping[str, Any], config: Mapping[str, Any],
                        stack: StackInfo) -> Iterable[str]:
    days = props.get("deletionWindowInDays")
    minimum = tier_minimum_of(config["minimumDays"], stack)
    if days is None or int(days) < minimum:
        yield f"deletionWindowInDays is {days!r}, below {minimum}"
