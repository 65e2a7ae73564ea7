"""S3 buckets of the platform: MLflow artifacts, Feast (offline store + registry), model artifacts and the
data registry's DVC remote (versioned datasets, content-addressed objects under `DATASETS_REMOTE_PREFIX`).

Each bucket is built from the split resources of pulumi-aws v7: versioning, SSE-KMS with a bucket
key (fewer KMS calls and cost), all four public-access blocks, `BucketOwnerEnforced` (no ACLs), a
policy denying plain HTTP and TLS < 1.2, lifecycle rules (non-current versions expire, stale
delete markers and incomplete multipart uploads are cleaned up) and, when configured, server access
logs. The log bucket must use SSE-S3: S3 server access logging cannot deliver into SSE-KMS buckets.
In protected stacks every resource is `protect`ed and retained, so deleting the stack can never
strip encryption or public-access blocks from a bucket that stays behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from contracts import feast
from stacks.context import StackContext

# purpose -> what it holds. The keys are the `DataServices.buckets` keys.
BUCKETS: dict[str, str] = {
    "mlflow": "MLflow artifacts",
    "feast": "Feast offline store and registry",
    "models": "model artifacts served by MLServer",
    "pipelines": "Kubeflow Pipelines artifacts (pipeline root), pipeline packages and run logs",
    "datasets": "versioned training datasets (the data registry's DVC remote)",
}
# Buckets that exist only with the workload that uses them (`workloads.<key>.enabled`).
OPTIONAL_BUCKETS = {"pipelines": "pipelines"}
# Buckets whose objects only the listed workload identities (their IRSA roles) may read or write: the
# bucket policy denies object access to every other principal of the account.
OBJECT_ACCESS_ONLY: dict[str, tuple[str, ...]] = {"pipelines": ("pipelines", "pipeline-runner", "pipelines-ui")}
PIPELINE_ROOT_PREFIX = "pipeline-root/"  # KFP v2 artifacts (kfp-launcher defaultPipelineRoot)
PIPELINE_PACKAGES_PREFIX = "pipelines/"  # pipeline specs the KFP API server stores
PIPELINE_LOGS_PREFIX = "argo-logs/"  # archived step logs (Argo Workflows artifactRepository)
OBJECT_ACTIONS = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"]
# Object layout shared with the workload layer and the IRSA grants.
MLFLOW_ARTIFACT_PREFIX = "artifacts/"
FEAST_OFFLINE_PREFIX = f"{feast.OFFLINE_PREFIX}/"
FEAST_REGISTRY_KEY = feast.REGISTRY_KEY
# The data registry's S3 remote: s3://<datasets bucket>/dvc (objects at dvc/files/md5/..., ml/datasets/).
DATASETS_REMOTE_PREFIX = "dvc/"
ACCESS_LOG_EXPIRATION_DAYS = 365
MIN_TLS_VERSION = "1.2"


def tls_only_statements(bucket_arn: str) -> list[dict[str, Any]]:
    """Deny any request without TLS, or with TLS older than 1.2, whoever makes it."""
    resources = [bucket_arn, f"{bucket_arn}/*"]
    return [
        {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": resources, "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Sid": "DenyOutdatedTls", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": resources, "Condition": {"NumericLessThan": {"s3:TlsVersion": MIN_TLS_VERSION}}},
    ]


def identities_only_statement(bucket_arn: str, role_arns: list[str]) -> dict[str, Any]:
    """Deny reading and writing objects to every principal except `role_arns` (IRSA roles)."""
    return {
        "Sid": "DenyObjectAccessOutsideWorkloadRoles", "Effect": "Deny", "Principal": "*", "Action": OBJECT_ACTIONS,
        "Resource": f"{bucket_arn}/*", "Condition": {"ArnNotEquals": {"aws:PrincipalArn": sorted(role_arns)}},
    }


def access_log_delivery_statement(log_bucket_arn: str, account_id: str) -> dict[str, Any]:
    """Let the S3 logging service write into the log bucket, for this account's buckets only."""
    return {
        "Sid": "AllowServerAccessLogDelivery", "Effect": "Allow",
        "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
        "Resource": f"{log_bucket_arn}/*",
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
    }


@dataclass(frozen=True, kw_only=True)
class StorageArgs:
    """Inputs of `Storage`."""

    ctx: StackContext
    account_id: pulumi.Input[str]
    """Part of every bucket name (globally unique) and the only account that may deliver access logs."""
    key_arn: pulumi.Input[str]
    """The storage KMS key: default SSE-KMS encryption of the platform buckets."""


class Storage(pulumi.ComponentResource):
    """The platform buckets (`BUCKETS`) plus, with access logging, a log bucket."""

    buckets: dict[str, pulumi.Output[str]]  # purpose -> bucket name
    bucket_arns: dict[str, pulumi.Output[str]]
    log_bucket: pulumi.Output[str] | None

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:data:Storage", name, None, opts)
        ctx, account_id, key_arn = args.ctx, args.account_id, args.key_arn
        self._ctx = ctx
        self._name = name
        self._account_id = pulumi.Output.from_input(account_id)
        self._opts = pulumi.ResourceOptions(parent=self, protect=ctx.protect, retain_on_delete=ctx.protect)
        self._blocks: dict[str, aws.s3.BucketPublicAccessBlock] = {}
        sc = ctx.cfg.storage

        self.log_bucket = None
        log_target: aws.s3.Bucket | None = None
        log_ready: list[pulumi.Resource] = []
        if sc.access_logging:
            log_target = self._bucket("access-logs", "S3 server access logs", key_arn=None)
            log_ready = [self._policy("access-logs", log_target, with_log_delivery=True)]
            self._lifecycle("access-logs", log_target, expire_days=ACCESS_LOG_EXPIRATION_DAYS)
            self.log_bucket = log_target.bucket

        self.buckets, self.bucket_arns = {}, {}
        for purpose, holds in BUCKETS.items():
            workload = OPTIONAL_BUCKETS.get(purpose)
            if workload is not None and not getattr(ctx.cfg.workloads, workload).enabled:
                continue
            bucket = self._bucket(purpose, holds, key_arn=key_arn)
            self._policy(purpose, bucket)
            self._lifecycle(purpose, bucket)
            if log_target is not None:
                aws.s3.BucketLogging(
                    f"{name}-{purpose}-logging", bucket=bucket.bucket, target_bucket=log_target.bucket,
                    target_prefix=f"{purpose}/",
                    opts=pulumi.ResourceOptions.merge(self._opts, pulumi.ResourceOptions(depends_on=log_ready)),
                )
            self.buckets[purpose] = bucket.bucket
            self.bucket_arns[purpose] = bucket.arn
        self.register_outputs({"buckets": self.buckets, "logBucket": self.log_bucket})

    def _bucket(self, purpose: str, holds: str, key_arn: pulumi.Input[str] | None) -> aws.s3.Bucket:
        ctx, name, opts = self._ctx, f"{self._name}-{purpose}", self._opts
        bucket = aws.s3.Bucket(
            name,
            bucket=self._account_id.apply(lambda acct: ctx.bucket_name(purpose, acct)),
            force_destroy=ctx.cfg.storage.force_destroy,
            tags=ctx.tags(ctx.name(purpose), Purpose=holds),
            opts=opts,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=bucket.bucket,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"), opts=opts,
        )
        self._blocks[purpose] = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block", bucket=bucket.bucket, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=opts,
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=bucket.bucket,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=opts,
        )
        if key_arn is not None:
            default = aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="aws:kms", kms_master_key_id=key_arn)
            rule = aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=default, bucket_key_enabled=True)
        else:
            default = aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="AES256")
            rule = aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=default)
        aws.s3.BucketServerSideEncryptionConfiguration(f"{name}-encryption", bucket=bucket.bucket, rules=[rule],
                                                       opts=opts)
        return bucket

    def _policy(self, purpose: str, bucket: aws.s3.Bucket, with_log_delivery: bool = False) -> aws.s3.BucketPolicy:
        def document(args: list[str]) -> str:
            arn, acct = args
            statements = tls_only_statements(arn)
            if with_log_delivery:
                statements.append(access_log_delivery_statement(arn, acct))
            if purpose in OBJECT_ACCESS_ONLY:
                from infra.aws.irsa import role_arn

                statements.append(identities_only_statement(
                    arn, [role_arn(self._ctx, acct, ident) for ident in OBJECT_ACCESS_ONLY[purpose]]))
            return json.dumps({"Version": "2012-10-17", "Statement": statements})

        # The ARN from the bucket's name, not from its `arn` output: the name is known in the first
        # preview, so the policy is too, and the policy pack judges it before anything is created.
        # After the public-access block: S3 rejects concurrent policy and block changes on a bucket.
        return aws.s3.BucketPolicy(
            f"{self._name}-{purpose}-policy", bucket=bucket.bucket,
            policy=pulumi.Output.all(bucket.bucket.apply(lambda b: f"arn:aws:s3:::{b}"),
                                     self._account_id).apply(document),
            opts=pulumi.ResourceOptions.merge(
                self._opts, pulumi.ResourceOptions(depends_on=[self._blocks[purpose]])),
        )

    def _lifecycle(self, purpose: str, bucket: aws.s3.Bucket, expire_days: int | None = None) -> None:
        sc = self._ctx.cfg.storage
        every_object = aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix="")
        rules = [
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-noncurrent-versions", status="Enabled", filter=every_object,
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=sc.noncurrent_version_expiration_days),
                # Log objects expire; data objects keep their current version, stale delete markers go.
                expiration=(aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=expire_days) if expire_days
                            else aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(
                                expired_object_delete_marker=True)),
            ),
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="abort-incomplete-multipart-uploads", status="Enabled", filter=every_object,
                abort_incomplete_multipart_upload=(
                    aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=sc.abort_incomplete_multipart_days)),
            ),
        ]
        aws.s3.BucketLifecycleConfiguration(f"{self._name}-{purpose}-lifecycle", bucket=bucket.bucket, rules=rules,
                                            opts=self._opts)
