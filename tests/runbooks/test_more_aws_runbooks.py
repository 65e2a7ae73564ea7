"""The remaining AWS runbooks. moto (a real ThreadedMotoServer) where it implements the API; botocore's
Stubber where it does not — each such test says which calls moto lacks."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import boto3
from botocore.stub import ANY, Stubber

from runbooks.context import RunContext
from runbooks.data import (
    MSK_BROKER_REPLACEMENT,
    MSK_CONSUMER_LAG,
    MSK_STORAGE_EXPANSION,
    RDS_PITR,
    REDIS_FAILOVER_TEST,
    REDIS_SNAPSHOT_RESTORE,
)
from runbooks.eks import EKS_UPGRADE, NODEGROUP_ROTATION, NODEGROUP_SCALING
from runbooks.engine import AuditLog, run
from runbooks.kube import InMemoryKubeOps
from runbooks.recovery import DISASTER_RECOVERY, FEATURE_BACKFILL
from stacks.config import load_stack_file, stack_file
from stacks.context import StackContext

STAGING = StackContext(load_stack_file(stack_file("staging")))
DEV = StackContext(load_stack_file(stack_file("dev")))
REGION = "eu-west-1"


def _run(runbook, ctx, tmp_path, execute=True):
    out = io.StringIO()
    report = run(runbook, ctx, execute=execute, audit=AuditLog(tmp_path / "audit.jsonl"), out=out)
    return report, out.getvalue()


def _eks_cluster(stack: StackContext, groups=("inference",)) -> None:
    eks = boto3.client("eks", region_name=REGION)
    eks.create_cluster(name=stack.cluster_name, version="1.34", roleArn="arn:aws:iam::123456789012:role/eks",
                       resourcesVpcConfig={"subnetIds": ["subnet-1", "subnet-2"]})
    for g in groups:
        eks.create_nodegroup(clusterName=stack.cluster_name, nodegroupName=stack.name(g),
                             nodeRole="arn:aws:iam::123456789012:role/node", subnets=["subnet-1"],
                             scalingConfig={"minSize": 1, "maxSize": 4, "desiredSize": 1})


def test_nodegroup_scaling_within_bounds(aws_env, tmp_path):
    _eks_cluster(DEV)
    ctx = RunContext(env="dev", params={"nodegroup": "inference", "desired": "3"})
    report, out = _run(NODEGROUP_SCALING, ctx, tmp_path)
    assert report.ok, out
    group = boto3.client("eks", region_name=REGION).describe_nodegroup(
        clusterName=DEV.cluster_name, nodegroupName=DEV.name("inference"))["nodegroup"]
    assert group["scalingConfig"] == {"minSize": 1, "maxSize": 4, "desiredSize": 3}


def test_nodegroup_scaling_refuses_out_of_bounds(aws_env, tmp_path):
    _eks_cluster(DEV)
    report, out = _run(NODEGROUP_SCALING, RunContext(env="dev", params={"desired": "9"}), tmp_path)
    assert not report.ok and "outside the configured bounds 1..4" in out


def _stubbed(service: str) -> tuple[object, Stubber]:
    client = boto3.client(service, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def test_eks_upgrade_control_plane_addons_nodes(tmp_path):
    """Stubber: moto has no UpdateClusterVersion, UpdateAddon, DescribeAddon, DescribeUpdate,
    UpdateNodegroupVersion or ListInsights."""
    eks, stub = _stubbed("eks")
    name, group = STAGING.cluster_name, STAGING.name("inference")
    addons = STAGING.bom.addons_for("1.35")
    stub.add_response("describe_cluster", {"cluster": {"name": name, "version": "1.34"}}, {"name": name})
    stub.add_response("list_nodegroups", {"nodegroups": [group]}, {"clusterName": name})
    stub.add_response("describe_nodegroup", {"nodegroup": {"nodegroupName": group, "version": "1.34"}},
                      {"clusterName": name, "nodegroupName": group})
    stub.add_response("list_insights", {"insights": [{"name": "Deprecated APIs removed in 1.35",
                                                      "insightStatus": {"status": "PASSING"}}]}, {
        "clusterName": name, "filter": {"categories": ["UPGRADE_READINESS"], "kubernetesVersions": ["1.35"]}})
    stub.add_response("update_cluster_version", {"update": {"id": "u1", "status": "InProgress"}},
                      {"name": name, "version": "1.35"})
    stub.add_response("describe_update", {"update": {"id": "u1", "status": "Successful"}},
                      {"name": name, "updateId": "u1"})
    stub.add_response("describe_cluster", {"cluster": {"name": name, "version": "1.35"}}, {"name": name})
    for i, (addon, version) in enumerate(addons.items()):
        stub.add_response("update_addon", {"update": {"id": f"a{i}"}}, {
            "clusterName": name, "addonName": addon, "addonVersion": version, "resolveConflicts": "PRESERVE"})
        stub.add_response("describe_update", {"update": {"id": f"a{i}", "status": "Successful"}},
                          {"name": name, "updateId": f"a{i}"})
    for addon, version in addons.items():
        stub.add_response("describe_addon", {"addon": {"addonName": addon, "addonVersion": version}},
                          {"clusterName": name, "addonName": addon})
    stub.add_response("update_nodegroup_version", {"update": {"id": "n1"}},
                      {"clusterName": name, "nodegroupName": group, "version": "1.35"})
    stub.add_response("describe_update", {"update": {"id": "n1", "status": "Successful"}},
                      {"name": name, "updateId": "n1", "nodegroupName": group})
    stub.add_response("describe_nodegroup", {"nodegroup": {"nodegroupName": group, "version": "1.35"}},
                      {"clusterName": name, "nodegroupName": group})
    with stub:
        report, out = _run(EKS_UPGRADE, RunContext(env="staging", clients={"eks": eks}, params={"poll_s": "0"}),
                           tmp_path)
        stub.assert_no_pending_responses()
    assert report.ok, out
    audit = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert len(audit) == 3  # control plane, add-ons, node groups


def test_eks_upgrade_preflight_blocks_on_insights_and_skips(tmp_path):
    """Stubber: moto has no ListInsights."""
    eks, stub = _stubbed("eks")
    name = STAGING.cluster_name
    stub.add_response("describe_cluster", {"cluster": {"name": name, "version": "1.33"}}, {"name": name})
    with stub:
        report, out = _run(EKS_UPGRADE, RunContext(env="staging", clients={"eks": eks},
                                                   params={"to_version": "1.35"}), tmp_path, execute=False)
    assert not report.ok and "1.33 -> 1.35 skips versions" in out
    eks, stub = _stubbed("eks")
    stub.add_response("describe_cluster", {"cluster": {"name": name, "version": "1.34"}}, {"name": name})
    stub.add_response("list_nodegroups", {"nodegroups": []}, {"clusterName": name})
    stub.add_response("list_insights", {"insights": [{"name": "Deprecated APIs removed in 1.35",
                                                      "insightStatus": {"status": "ERROR"}}]}, {
        "clusterName": name, "filter": ANY})
    with stub:
        report, out = _run(EKS_UPGRADE, RunContext(env="staging", clients={"eks": eks}), tmp_path, execute=False)
    assert not report.ok and "Deprecated APIs removed in 1.35" in out


def test_nodegroup_rotation(tmp_path):
    """Stubber: moto has no UpdateNodegroupVersion or DescribeUpdate."""
    eks, stub = _stubbed("eks")
    name, group = STAGING.cluster_name, STAGING.name("inference")
    key = {"clusterName": name, "nodegroupName": group}
    stub.add_response("describe_nodegroup", {"nodegroup": {"releaseVersion": "1.34.1-20261001"}}, key)
    stub.add_response("update_nodegroup_version", {"update": {"id": "r1"}}, {**key, "force": False})
    stub.add_response("describe_update", {"update": {"id": "r1", "status": "Successful"}},
                      {"name": name, "updateId": "r1", "nodegroupName": group})
    stub.add_response("describe_nodegroup", {"nodegroup": {"status": "ACTIVE", "releaseVersion": "1.34.1-20261101"}},
                      key)
    with stub:
        report, out = _run(NODEGROUP_ROTATION, RunContext(env="staging", clients={"eks": eks},
                                                          params={"poll_s": "0"}), tmp_path)
    assert report.ok, out


def _seed_db(stack: StackContext) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{12 + i}.0/24", AvailabilityZone=f"{REGION}{az}")[
        "Subnet"]["SubnetId"] for i, az in enumerate("ab")]
    rds = boto3.client("rds", region_name=REGION)
    rds.create_db_subnet_group(DBSubnetGroupName=stack.name("postgres"), DBSubnetGroupDescription="isolated",
                               SubnetIds=subnets)
    rds.create_db_instance(DBInstanceIdentifier=stack.database_identifier, DBInstanceClass="db.t4g.small",
                           Engine="postgres", MasterUsername="mlflow", MasterUserPassword="not-a-real-pass",
                           AllocatedStorage=20, BackupRetentionPeriod=3, StorageEncrypted=True,
                           DBSubnetGroupName=stack.name("postgres"))


def test_rds_point_in_time_restore_and_cut_over(aws_env, tmp_path):
    _seed_db(STAGING)
    kube = InMemoryKubeOps(workloads={("deployment", "mlflow", "mlflow")})
    when = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    ctx = RunContext(env="staging", kube=kube, params={"restore_time": when, "poll_s": "0"})
    rds = boto3.client("rds", region_name=REGION)
    report, out = _run(RDS_PITR, ctx, tmp_path)
    assert report.ok, out
    # The original identifier now names the restored instance; the original lives on, renamed.
    current = rds.describe_db_instances(DBInstanceIdentifier=STAGING.database_identifier)["DBInstances"][0]
    retired = rds.describe_db_instances(DBInstanceIdentifier=f"{STAGING.database_identifier}-before-restore")[
        "DBInstances"][0]
    identifiers = {d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]}
    assert f"{STAGING.database_identifier}-pitr" not in identifiers  # renamed to the original identifier
    assert current["StorageEncrypted"] and not current.get("PubliclyAccessible", False)
    assert retired["DBInstanceStatus"] == "available"
    assert [c[1][:3] for c in kube.calls if c[0] == "restart"] == [("deployment", "mlflow", "mlflow")]


def test_rds_restore_rejects_bad_time(aws_env, tmp_path):
    _seed_db(STAGING)
    report, out = _run(RDS_PITR, RunContext(env="staging", params={"restore_time": "yesterday"}), tmp_path)
    assert not report.ok and "is not an ISO-8601 time" in out


def _seed_redis_with_snapshot(stack: StackContext) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    ec.create_replication_group(ReplicationGroupId=stack.redis_group_id, ReplicationGroupDescription="x",
                                Engine="redis", CacheNodeType="cache.r7g.large", NumCacheClusters=2,
                                TransitEncryptionEnabled=True)
    ec.create_snapshot(ReplicationGroupId=stack.redis_group_id, SnapshotName="nightly")


def test_redis_snapshot_restore(aws_env, tmp_path):
    _seed_redis_with_snapshot(STAGING)
    report, out = _run(REDIS_SNAPSHOT_RESTORE, RunContext(env="staging", params={"poll_s": "0"}), tmp_path)
    assert report.ok, out
    restored = boto3.client("elasticache", region_name=REGION).describe_replication_groups(
        ReplicationGroupId=f"{STAGING.redis_group_id}-restore")["ReplicationGroups"][0]
    assert restored["Status"] == "available"


def test_redis_failover_test(tmp_path):
    """Stubber: moto has no TestFailover (and no member roles)."""
    ec, stub = _stubbed("elasticache")
    gid = STAGING.redis_group_id

    def group(primary: str) -> dict:
        members = [{"CacheClusterId": m, "CurrentRole": "primary" if m == primary else "replica"}
                   for m in (f"{gid}-001", f"{gid}-002")]
        return {"ReplicationGroups": [{"ReplicationGroupId": gid, "Status": "available", "AutomaticFailover": "enabled",
                                       "NodeGroups": [{"NodeGroupId": "0001", "NodeGroupMembers": members}]}]}

    stub.add_response("describe_replication_groups", group(f"{gid}-001"), {"ReplicationGroupId": gid})
    stub.add_response("test_failover", {"ReplicationGroup": {"ReplicationGroupId": gid}},
                      {"ReplicationGroupId": gid, "NodeGroupId": "0001"})
    stub.add_response("describe_replication_groups", group(f"{gid}-002"), {"ReplicationGroupId": gid})
    with stub:
        report, out = _run(REDIS_FAILOVER_TEST, RunContext(env="staging", clients={"elasticache": ec},
                                                           params={"poll_s": "0"}), tmp_path)
    assert report.ok, out


def test_msk_storage_expansion_and_broker_replacement(tmp_path):
    """Stubber: moto has no UpdateBrokerStorage or RebootBroker."""
    arn = f"arn:aws:kafka:{REGION}:123456789012:cluster/{STAGING.kafka_cluster_name}/abc"
    info = {"ClusterInfo": {"State": "ACTIVE", "CurrentVersion": "K1", "Provisioned": {
        "NumberOfBrokerNodes": 3, "BrokerNodeGroupInfo": {
        "ClientSubnets": ["s"], "InstanceType": "kafka.m7g.large",
        "StorageInfo": {"EbsStorageInfo": {"VolumeSize": 100}}}}}}
    kafka, stub = _stubbed("kafka")
    stub.add_response("describe_cluster_v2", info, {"ClusterArn": arn})
    stub.add_response("update_broker_storage", {"ClusterArn": arn, "ClusterOperationArn": "op"}, {
        "ClusterArn": arn, "CurrentVersion": "K1",
        "TargetBrokerEBSVolumeInfo": [{"KafkaBrokerNodeId": "All", "VolumeSizeGB": 200}]})
    stub.add_response("describe_cluster_v2", info, {"ClusterArn": arn})
    outputs = {"kafkaClusterArn": arn}
    with stub:
        report, out = _run(MSK_STORAGE_EXPANSION, RunContext(env="staging", clients={"kafka": kafka},
                                                             stack_outputs=outputs,
                                                             params={"volume_gib": "200", "poll_s": "0"}), tmp_path)
    assert report.ok, out
    kafka, stub = _stubbed("kafka")
    stub.add_response("describe_cluster_v2", info, {"ClusterArn": arn})
    with stub:
        report, out = _run(MSK_STORAGE_EXPANSION, RunContext(env="staging", clients={"kafka": kafka},
                                                             stack_outputs=outputs, params={"volume_gib": "9000"}),
                           tmp_path)
    assert not report.ok and "exceeds kafka.maxEbsVolumeGib=500" in out
    kafka, stub = _stubbed("kafka")
    stub.add_response("describe_cluster_v2", info, {"ClusterArn": arn})
    stub.add_response("reboot_broker", {"ClusterArn": arn}, {"ClusterArn": arn, "BrokerIds": ["2"]})
    stub.add_response("describe_cluster_v2", info, {"ClusterArn": arn})
    with stub:
        report, out = _run(MSK_BROKER_REPLACEMENT, RunContext(env="staging", clients={"kafka": kafka},
                                                              stack_outputs=outputs,
                                                              params={"broker_id": "2", "poll_s": "0"}), tmp_path)
    assert report.ok, out


def test_msk_consumer_lag_reads_cloudwatch(aws_env, tmp_path):
    cw = boto3.client("cloudwatch", region_name=REGION)
    dims = [{"Name": "Cluster Name", "Value": DEV.kafka_cluster_name},
            {"Name": "Consumer Group", "Value": "feast-stream-ingestor"},
            {"Name": "Topic", "Value": "fraud-transactions"}]
    now = datetime.now(UTC)
    for minutes, lag in ((40, 100), (20, 900), (5, 4000)):
        cw.put_metric_data(Namespace="AWS/Kafka", MetricData=[{"MetricName": "MaxOffsetLag", "Dimensions": dims,
                                                              "Timestamp": now - timedelta(minutes=minutes),
                                                              "Value": lag}])
    outputs = {"kafkaClusterArn": "arn:aws:kafka:eu-west-1:123456789012:cluster/x/y"}
    report, out = _run(MSK_CONSUMER_LAG, RunContext(env="dev", stack_outputs=outputs), tmp_path, execute=False)
    assert report.ok, out
    assert "max_offset_lag=4000" in out and "trend=growing" in out


def test_feature_backfill_on_the_cluster_uses_the_materialization_cronjob(tmp_path):
    """Kubernetes through the injectable InMemoryKubeOps (no API server here)."""
    kube = InMemoryKubeOps()
    ctx = RunContext(env="staging", kube=kube, params={"start": "2026-11-01T00:00:00", "end": "2026-11-02T00:00:00"})
    report, out = _run(FEATURE_BACKFILL, ctx, tmp_path)
    assert report.ok, out
    (call,) = [c for c in kube.calls if c[0] == "run_job_from_cronjob"]
    assert call[1][:2] == ("feast", "feast-materialize")
    assert call[1][3] == ["materialize", "2026-11-01T00:00:00", "2026-11-02T00:00:00"]
    report, out = _run(FEATURE_BACKFILL, RunContext(env="staging", kube=kube, params={"start": "2026-11-03",
                                                                                       "end": "2026-11-01"}), tmp_path)
    assert not report.ok and "must be before end" in out


def test_disaster_recovery_preflight(aws_env, tmp_path):
    _seed_db(STAGING)
    _seed_redis_with_snapshot(STAGING)
    s3 = boto3.client("s3", region_name=REGION)
    account = boto3.client("sts", region_name=REGION).get_caller_identity()["Account"]
    for purpose in ("mlflow", "feast", "models"):
        bucket = STAGING.bucket_name(purpose, account)
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        if purpose != "feast":
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    report, out = _run(DISASTER_RECOVERY, RunContext(env="staging"), tmp_path, execute=False)
    assert not report.ok and "s3_feast_versioning" in out
    s3.put_bucket_versioning(Bucket=STAGING.bucket_name("feast", account),
                             VersioningConfiguration={"Status": "Enabled"})
    report, out = _run(DISASTER_RECOVERY, RunContext(env="staging"), tmp_path, execute=False)
    assert report.ok, out
