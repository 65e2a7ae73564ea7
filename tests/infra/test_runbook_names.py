"""The runbooks act on resources by the names the program gives them (they run where pulumi is absent,
so the names are shared through stacks/context.py or checked here)."""

from __future__ import annotations

from infra.workloads import feature_store, mlflow, seldon
from runbooks import data, models, redis
from stacks.config import load_stack_file, stack_file
from stacks.context import StackContext


def test_redis_client_names_match_the_workloads():
    assert redis.K8S_SECRET == (feature_store.NAMESPACE, feature_store.REDIS_SECRET)
    assert ("deployment", feature_store.NAMESPACE, feature_store.SERVER_DEPLOYMENT) in redis.REDIS_CLIENTS
    assert ("statefulset", seldon.NAMESPACE, seldon.SERVER_NAME) in redis.REDIS_CLIENTS
    assert data.MLFLOW_DEPLOYMENT == ("deployment", mlflow.NAMESPACE, mlflow.RELEASE)
    assert models.SELDON_NAMESPACE == seldon.NAMESPACE


def test_physical_names_come_from_the_shared_naming_code(synth):
    plan = synth("prod")
    ctx = StackContext(load_stack_file(stack_file("prod")))
    group = plan.one("aws:elasticache/replicationGroup:ReplicationGroup")
    assert group.inputs["replicationGroupId"] == ctx.redis_group_id
    assert plan.one("aws:rds/instance:Instance").inputs["identifier"] == ctx.database_identifier
    assert plan.one("aws:msk/cluster:Cluster").inputs["clusterName"] == ctx.kafka_cluster_name
    secrets = {s.inputs["name"] for s in plan.of_type("aws:secretsmanager/secret:Secret")}
    assert {ctx.redis_secret_name, ctx.database_secret_name} <= secrets
    buckets = {b.inputs["bucket"] for b in plan.of_type("aws:s3/bucket:Bucket")}
    assert ctx.bucket_name("models", "123456789012") in buckets


def test_rotated_credentials_are_not_reverted_by_pulumi(synth):
    plan = synth("prod")
    group = plan.one("aws:elasticache/replicationGroup:ReplicationGroup")
    assert "authToken" in group.ignore_changes
    versions = plan.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    assert versions and all("secretString" in v.ignore_changes for v in versions)
    k8s_secret = next(r for r in plan.of_type("kubernetes:core/v1:Secret")
                      if r.inputs["metadata"]["name"] == feature_store.REDIS_SECRET)
    assert {"stringData", "data"} <= set(k8s_secret.ignore_changes)


def test_every_stack_output_a_runbook_reads_is_exported(synth):
    """`--outputs FILE` (pulumi stack output --json) overrides the derived names with these keys."""
    import re
    from pathlib import Path

    books = Path(data.__file__).parent
    keys = set()
    for source in books.glob("*.py"):
        text = source.read_text()
        keys |= set(re.findall(r'ctx\.output\("([A-Za-z]+)"', text))
        keys |= set(re.findall(r'stack_outputs(?:\.get\(|\[)"([A-Za-z]+)"', text))
    assert keys >= {"redisReplicationGroupId", "databaseIdentifier", "buckets", "kafkaClusterArn"}
    assert keys <= set(synth("prod").stack_outputs)
