"""The runbooks act on resources by the names the program gives them. They run where pulumi is absent,
so the names are shared through stacks/context.py (AWS) and contracts/cluster.py (Kubernetes)."""

from __future__ import annotations

from contracts.cluster import (
    FEAST_INGESTOR,
    FEAST_MATERIALIZE,
    FEAST_REDIS_SECRET,
    FEAST_SERVER,
    MLFLOW_SERVER,
    REDIS_TOKEN_SECRETS,
)
from infra.workloads import feature_store
from stacks.config import load_stack_file, stack_file
from stacks.context import StackContext


def test_workloads_create_the_objects_the_runbooks_act_on(synth):
    """Both sides import contracts/cluster.py; this checks the program really creates those objects."""
    plan = synth("prod")
    secret = next(r for r in plan.of_type("kubernetes:core/v1:Secret")
                  if r.inputs["metadata"]["name"] == FEAST_REDIS_SECRET.name)
    assert secret.inputs["metadata"]["namespace"] == FEAST_REDIS_SECRET.namespace
    releases = {(r.inputs["namespace"], r.inputs["name"]) for r in plan.of_type("kubernetes:helm.sh/v3:Release")}
    assert (MLFLOW_SERVER.namespace, MLFLOW_SERVER.name) in releases
    assert (FEAST_SERVER.namespace, "feast") in releases  # the chart's fullnameOverride names the Deployment
    deployments = {(r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"])
                   for r in plan.of_type("kubernetes:apps/v1:Deployment")}
    assert (FEAST_INGESTOR.namespace, FEAST_INGESTOR.name) in deployments
    cronjobs = {(r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"])
                for r in plan.of_type("kubernetes:batch/v1:CronJob")}
    assert (FEAST_MATERIALIZE.namespace, FEAST_MATERIALIZE.name) in cronjobs


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
    # Every Kubernetes copy of the Redis token the rotation runbook patches (contracts/cluster.py).
    assert feature_store.REDIS_SECRET in {s.name for s in REDIS_TOKEN_SECRETS}
    for copy in REDIS_TOKEN_SECRETS:
        k8s_secret = next(r for r in plan.of_type("kubernetes:core/v1:Secret")
                          if (r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"]) == (
                              copy.namespace, copy.name))
        assert {"stringData", "data"} <= set(k8s_secret.ignore_changes)


def test_every_stack_output_a_runbook_reads_is_exported(synth):
    """`--outputs FILE` (pulumi stack output --json) overrides the derived names with these keys."""
    import re
    from pathlib import Path

    books = Path(__file__).resolve().parents[2] / "runbooks"
    keys = set()
    for source in books.glob("*.py"):
        text = source.read_text()
        keys |= set(re.findall(r'ctx\.output\("([A-Za-z]+)"', text))
        keys |= set(re.findall(r'stack_outputs(?:\.get\(|\[)"([A-Za-z]+)"', text))
    assert keys >= {"redisReplicationGroupId", "databaseIdentifier", "buckets", "kafkaClusterArn"}
    assert keys <= set(synth("prod").stack_outputs)
