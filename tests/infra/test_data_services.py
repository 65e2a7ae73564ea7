"""Data layer under mocks, for every environment: encryption, HA, network exposure, protection, exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.aws.kafka import SCRAM_USERNAME, scram_secret_name, server_properties, topic_arn
from infra.aws.kms import DATA_DOMAINS, key_policy
from infra.aws.redis import cache_cluster_zones
from infra.aws.storage import BUCKETS
from stacks.bom import load_bom
from stacks.config import load_stack_file, stack_file

REDIS = "aws:elasticache/replicationGroup:ReplicationGroup"
MSK = "aws:msk/cluster:Cluster"
MSK_CONFIG = "aws:msk/configuration:Configuration"
RDS = "aws:rds/instance:Instance"
BUCKET = "aws:s3/bucket:Bucket"
KEY = "aws:kms/key:Key"
SECRET = "aws:secretsmanager/secret:Secret"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
SG = "aws:ec2/securityGroup:SecurityGroup"
STATEFUL = (REDIS, MSK, RDS, BUCKET, SECRET, SECRET_VERSION, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "aws:s3/bucketPolicy:BucketPolicy")
OPEN_WORLD = {"0.0.0.0/0", "::/0"}


def _cfg(env: str):
    return load_stack_file(stack_file(env))


def _data_keys(s) -> dict[str, str]:
    return s.stack_outputs["dataKeyArns"]


def _isolated_subnets(s) -> list[str]:
    ids = [f"{r.name}-" for r in s.of_type("aws:ec2/subnet:Subnet") if r.inputs["tags"]["Tier"] == "isolated"]
    assert len(ids) == 3
    return ids


def _by_bucket(s, type_: str) -> dict[str, dict]:
    return {r.inputs["bucket"]: r.inputs for r in s.of_type(type_)}


def test_redis_encrypted_authenticated_and_ha_per_environment(synth, env):
    s, cfg = synth(env), _cfg(env)
    rg = s.one(REDIS).inputs
    assert rg["atRestEncryptionEnabled"] is True and rg["kmsKeyId"] == _data_keys(s)["cache"]
    assert rg["transitEncryptionEnabled"] is True and rg["transitEncryptionMode"] == "required"
    assert rg["authToken"] == "[secret]"
    assert rg["engineVersion"] == load_bom().engines["redis"]
    assert rg["numCacheClusters"] == 1 + cfg.redis.replicas_per_shard
    zones = rg["preferredCacheClusterAzs"]
    assert len(zones) == rg["numCacheClusters"] and len(set(zones)) == min(len(zones), 3)
    ha = env != "dev"
    assert rg["multiAzEnabled"] is ha and rg["automaticFailoverEnabled"] is ha
    if ha:
        assert rg["numCacheClusters"] >= 2
    if env == "prod":
        assert rg["snapshotRetentionLimit"] >= 7
    assert bool(rg.get("finalSnapshotIdentifier")) is (env != "dev")
    assert rg["logDeliveryConfigurations"][0]["logType"] == "slow-log"
    assert rg["logDeliveryConfigurations"][0]["destinationType"] == "cloudwatch-logs"
    subnets = s.one("aws:elasticache/subnetGroup:SubnetGroup").inputs["subnetIds"]
    assert all(any(sn.startswith(p) for p in _isolated_subnets(s)) for sn in subnets) and len(subnets) == 3


def test_msk_tls_only_iam_and_scram_auth_kms_and_brokers_spread(synth, env):
    s, cfg = synth(env), _cfg(env)
    msk = s.one(MSK).inputs
    assert msk["numberOfBrokerNodes"] % 3 == 0
    assert msk["kafkaVersion"] == load_bom().engines["kafka"]
    nodes = msk["brokerNodeGroupInfo"]
    assert len(nodes["clientSubnets"]) == 3
    assert all(any(sn.startswith(p) for p in _isolated_subnets(s)) for sn in nodes["clientSubnets"])
    assert nodes["storageInfo"]["ebsStorageInfo"]["volumeSize"] == cfg.kafka.ebs_volume_gib
    assert msk["encryptionInfo"] == {"encryptionAtRestKmsKeyArn": _data_keys(s)["streaming"],
                                     "encryptionInTransit": {"clientBroker": "TLS", "inCluster": True}}
    # IAM for our clients, SCRAM for Seldon; never unauthenticated, never TLS client certificates.
    assert msk["clientAuthentication"] == {"sasl": {"iam": True, "scram": True}, "unauthenticated": False}
    prometheus = msk["openMonitoring"]["prometheus"]
    assert prometheus["jmxExporter"]["enabledInBroker"] and prometheus["nodeExporter"]["enabledInBroker"]
    assert msk["loggingInfo"]["brokerLogs"]["cloudwatchLogs"]["enabled"] is True
    props = s.one(MSK_CONFIG).inputs["serverProperties"].splitlines()
    for line in ("auto.create.topics.enable=false", "default.replication.factor=3", "min.insync.replicas=2"):
        assert line in props
    target = s.one("aws:appautoscaling/target:Target").inputs
    assert target["scalableDimension"] == "kafka:broker-storage:VolumeSize"
    assert target["maxCapacity"] == cfg.kafka.max_ebs_volume_gib
    policy = s.one("aws:appautoscaling/policy:Policy").inputs["targetTrackingScalingPolicyConfiguration"]
    assert policy["predefinedMetricSpecification"]["predefinedMetricType"] == "KafkaBrokerStorageUtilization"


def test_rds_private_encrypted_ssl_and_ha_per_environment(synth, env):
    s, cfg = synth(env), _cfg(env)
    db = s.one(RDS).inputs
    assert db["storageEncrypted"] is True and db["kmsKeyId"] == _data_keys(s)["database"]
    assert db["publiclyAccessible"] is False
    assert db["password"] == "[secret]"
    assert db["engine"] == "postgres" and db["engineVersion"] == load_bom().engines["postgres"]
    assert db["multiAz"] is cfg.database.multi_az
    assert db["deletionProtection"] is cfg.database.deletion_protection
    assert db["backupRetentionPeriod"] == cfg.database.backup_retention_days
    if env == "prod":
        assert db["multiAz"] and db["deletionProtection"] and db["backupRetentionPeriod"] >= 7
        assert db["skipFinalSnapshot"] is False and db["finalSnapshotIdentifier"]
    params = {p["name"]: p["value"] for p in s.one("aws:rds/parameterGroup:ParameterGroup").inputs["parameters"]}
    assert params["rds.force_ssl"] == "1"


def test_buckets_encrypted_private_tls_only_versioned_with_lifecycle(synth, env):
    s, cfg = synth(env), _cfg(env)
    names = s.stack_outputs["buckets"]
    assert set(names) == set(BUCKETS)
    log_bucket = s.stack_outputs.get("accessLogBucket")
    assert bool(log_bucket) is (env == "prod")
    every = [*names.values(), *([log_bucket] if log_bucket else [])]
    assert sorted(r.inputs["bucket"] for r in s.of_type(BUCKET)) == sorted(every)
    versioning = _by_bucket(s, "aws:s3/bucketVersioning:BucketVersioning")
    blocks = _by_bucket(s, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    ownership = _by_bucket(s, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    encryption = _by_bucket(s, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    policies = _by_bucket(s, "aws:s3/bucketPolicy:BucketPolicy")
    lifecycles = _by_bucket(s, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    for name in every:
        assert versioning[name]["versioningConfiguration"]["status"] == "Enabled"
        assert all(blocks[name][k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                                     "restrictPublicBuckets"))
        assert ownership[name]["rule"]["objectOwnership"] == "BucketOwnerEnforced"
        deny = next(st for st in json.loads(policies[name]["policy"])["Statement"]
                    if st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}})
        assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
        assert deny["Resource"] == [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]
        rules = {r["id"]: r for r in lifecycles[name]["rules"]}
        assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"]["noncurrentDays"] == \
            cfg.storage.noncurrent_version_expiration_days
        assert rules["abort-incomplete-multipart-uploads"]["abortIncompleteMultipartUpload"][
            "daysAfterInitiation"] == cfg.storage.abort_incomplete_multipart_days
        sse = encryption[name]["rules"][0]
        if name == log_bucket:  # S3 server access logs can only be delivered to SSE-S3 buckets
            assert sse["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
        else:
            assert sse["applyServerSideEncryptionByDefault"] == {
                "sseAlgorithm": "aws:kms", "kmsMasterKeyId": _data_keys(s)["storage"]}
            assert sse["bucketKeyEnabled"] is True
    assert s.of_type(BUCKET) and all(r.inputs.get("forceDestroy", False) is (env == "dev") for r in s.of_type(BUCKET))
    logging = _by_bucket(s, "aws:s3/bucketLogging:BucketLogging")
    if env == "prod":
        assert sorted(logging) == sorted(names.values())
        assert all(v["targetBucket"] == log_bucket for v in logging.values())
    else:
        assert not logging


def test_no_security_group_admits_the_internet(synth, env):
    s = synth(env)
    rules = [rule for sg in s.of_type(SG) for rule in sg.inputs.get("ingress", [])]
    rules += [r.inputs for r in s.of_type("aws:ec2/securityGroupRule:SecurityGroupRule")
              if r.inputs["type"] == "ingress"]
    for rule in rules:
        assert not OPEN_WORLD & set(rule.get("cidrBlocks", []) + rule.get("ipv6CidrBlocks", [])), rule
    for rule in s.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        assert rule.inputs.get("cidrIpv4") not in OPEN_WORLD and rule.inputs.get("cidrIpv6") not in OPEN_WORLD


def test_data_services_admit_only_the_node_security_group(synth, env):
    s = synth(env)
    data_sgs = [sg for sg in s.of_type(SG) if sg.parent and ":data:" in sg.parent]
    assert sorted(sg.inputs["name"].rsplit("-", 1)[-1] for sg in data_sgs) == ["kafka", "postgres", "redis"]
    sources = set()
    for sg in data_sgs:
        assert sg.inputs["egress"] == []
        for rule in sg.inputs["ingress"]:
            assert not rule.get("cidrBlocks") and rule["protocol"] == "tcp"
            sources.update(rule["securityGroups"])
    assert len(sources) == 1 and next(iter(sources)).startswith("sg-")
    ports = {sg.inputs["name"].rsplit("-", 1)[-1]: [(r["fromPort"], r["toPort"]) for r in sg.inputs["ingress"]]
             for sg in data_sgs}
    assert ports == {"redis": [(6379, 6379)], "kafka": [(9098, 9098), (9096, 9096), (11001, 11002)],
                     "postgres": [(5432, 5432)]}


def test_stateful_resources_protected_and_retained_only_when_configured(synth, env):
    s = synth(env)
    stateful = [r for r in s.resources if r.type in STATEFUL] + [r for r in s.of_type(KEY) if ":data:" in r.urn]
    assert len(stateful) >= 20
    protected = env == "prod"
    for r in stateful:
        assert (r.protect, r.retain_on_delete) == (protected, protected), r.urn


def test_kms_keys_rotate_and_are_usable_only_through_their_service(synth, env):
    s = synth(env)
    keys = {r.inputs["tags"]["DataDomain"]: r.inputs for r in s.of_type(KEY) if "DataDomain" in r.inputs["tags"]}
    assert set(keys) == set(DATA_DOMAINS)
    for domain, key in keys.items():
        assert key["enableKeyRotation"] is True
        statements = json.loads(key["policy"])["Statement"]
        assert not any(st["Action"] in ("kms:*", ["kms:*"]) for st in statements)
        use = next(st for st in statements if "kms:Decrypt" in st["Action"])
        assert use["Condition"]["StringEquals"]["kms:ViaService"] == [
            f"{svc}.eu-west-1.amazonaws.com" for svc in DATA_DOMAINS[domain]]
    aliases = sorted(r.inputs["name"] for r in s.of_type("aws:kms/alias:Alias") if ":data:" in r.urn)
    assert aliases == sorted(f"alias/mlplatform-{env}/{d}" for d in DATA_DOMAINS)


def test_credentials_generated_and_kept_in_kms_encrypted_secrets(synth, env):
    s = synth(env)
    secrets = {r.inputs["name"]: r.inputs for r in s.of_type(SECRET)}
    assert set(secrets) >= {f"mlplatform-{env}/redis/feast", f"mlplatform-{env}/postgres/mlflow"}
    # MSK SCRAM secrets use the streaming key (see test_msk_scram_secret_...); every other one the secrets key.
    assert all(sec["kmsKeyId"] == _data_keys(s)["secrets"] for name, sec in secrets.items()
               if not name.startswith("AmazonMSK_"))
    versions = s.of_type(SECRET_VERSION)
    assert len(versions) >= 2 and all(v.inputs["secretString"] == "[secret]" for v in versions)
    assert len(s.of_type("random:index/randomPassword:RandomPassword")) >= 2
    outputs = s.stack_outputs
    assert outputs["redisSecretArn"].startswith("arn:aws:secretsmanager:")
    assert outputs["databaseSecretArn"].startswith("arn:aws:secretsmanager:")


def test_msk_scram_secret_is_prefixed_streaming_key_encrypted_and_associated(synth, env):
    s = synth(env)
    name = f"AmazonMSK_mlplatform-{env}-seldon"
    assert scram_secret_name(f"mlplatform-{env}") == name
    (secret,) = [r for r in s.of_type(SECRET) if r.inputs["name"].startswith("AmazonMSK_")]
    assert secret.inputs["name"] == name
    # MSK refuses secrets under the AWS-managed key: the customer-managed streaming key encrypts it.
    assert secret.inputs["kmsKeyId"] == _data_keys(s)["streaming"]
    (version,) = [r for r in s.of_type(SECRET_VERSION) if secret.urn in r.dependencies]
    assert version.inputs["secretString"] == "[secret]"
    (assoc,) = s.of_type("aws:msk/singleScramSecretAssociation:SingleScramSecretAssociation")
    assert assoc.inputs == {"clusterArn": s.stack_outputs["kafkaClusterArn"],
                            "secretArn": s.stack_outputs["kafkaScramSecretArn"]}
    # The value must exist before MSK reads the secret on association.
    assert version.urn in assoc.dependencies and s.one(MSK).urn in assoc.dependencies
    assert not s.of_type("aws:msk/scramSecretAssociation:ScramSecretAssociation")
    # The streaming key is usable through Secrets Manager (the SCRAM secret) as well as MSK.
    key = next(r for r in s.of_type(KEY) if r.inputs["tags"].get("DataDomain") == "streaming")
    use = next(st for st in json.loads(key.inputs["policy"])["Statement"] if "kms:Decrypt" in st["Action"])
    assert use["Condition"]["StringEquals"]["kms:ViaService"] == [
        "kafka.eu-west-1.amazonaws.com", "secretsmanager.eu-west-1.amazonaws.com"]


def test_stack_exports_for_users(synth, env):
    out = synth(env).stack_outputs
    assert out["redisEndpoint"] and out["redisPort"] == 6379
    assert out["databaseEndpoint"] and out["databasePort"] == 5432
    iam, scram = out["kafkaBootstrapBrokersIam"].split(","), out["kafkaBootstrapBrokersScram"].split(",")
    assert all(b.endswith(":9098") for b in iam) and all(b.endswith(":9096") for b in scram)
    assert [b.rsplit(":", 1)[0] for b in iam] == [b.rsplit(":", 1)[0] for b in scram]  # same brokers
    assert out["kafkaScramSecretArn"].startswith("arn:aws:secretsmanager:")
    assert out["kafkaClusterArn"].startswith("arn:aws:kafka:")
    assert {"mlflow", "feast", "feast-ingestor", "model-serving", "training"} <= set(out["workloadRoleArns"])
    # Secret values never appear in outputs; only their Secrets Manager ARNs do.
    assert "[secret]" not in json.dumps({k: v for k, v in out.items() if k != "kubeconfig"})


CONTRACT_PROGRAM = '''
import runpy
import pulumi
program = runpy.run_path({main!r})
svc = program["data"].services
pulumi.export("contract", {{
    "redis": [svc.redis.host, svc.redis.port, svc.redis.auth_token, svc.redis.tls],
    "kafka": [svc.kafka.bootstrap_brokers_iam, svc.kafka.cluster_arn, svc.kafka.topics,
              svc.kafka.bootstrap_brokers_scram, svc.kafka.scram_username, svc.kafka.scram_password],
    "database": [svc.database.host, svc.database.port, svc.database.database, svc.database.username,
                 svc.database.password],
    "buckets": svc.buckets,
    "roleArns": svc.role_arns,
}})
'''


@pytest.mark.parametrize("stack", ["prod"])
def test_data_services_contract_is_complete(tmp_path, stack):
    """Every field of the `DataServices` the workload layer consumes resolves to a value."""
    from infra.offline.synth import REPO_ROOT, synthesize

    program = tmp_path / "contract.py"
    program.write_text(CONTRACT_PROGRAM.format(main=str(Path(REPO_ROOT) / "__main__.py")))
    contract = synthesize(stack, program=program).stack_outputs["contract"]
    for section in ("redis", "kafka", "database"):
        assert all(v not in (None, "", []) for v in contract[section]), (section, contract[section])
    assert contract["redis"][2] == "[secret]" and contract["database"][4] == "[secret]"
    assert contract["kafka"][2] == ["fraud-transactions"]
    assert contract["kafka"][3].endswith(":9096") and contract["kafka"][4] == SCRAM_USERNAME
    assert contract["kafka"][5] == "[secret]"
    assert set(contract["buckets"]) == set(BUCKETS) and all(contract["buckets"].values())
    assert set(contract["roleArns"]) == {"mlflow", "feast", "feast-ingestor", "model-serving", "training",
                                         "dataset-writer", "pipelines", "pipeline-runner", "pipelines-ui",
                                         "cluster-autoscaler", "aws-load-balancer-controller",
                                         "spark-features", "flink-job"}  # prod runs both feature jobs


def test_building_blocks():
    assert cache_cluster_zones(["a", "b", "c"], 5) == ["a", "b", "c", "a", "b"]
    assert server_properties(1)["default.replication.factor"] == "1"
    assert server_properties(1)["min.insync.replicas"] == "1"
    assert server_properties(6)["min.insync.replicas"] == "2"
    arn = "arn:aws:kafka:eu-west-1:123456789012:cluster/c/uuid-1"
    assert topic_arn(arn, "t") == "arn:aws:kafka:eu-west-1:123456789012:topic/c/uuid-1/t"
    policy = key_policy("123456789012", "eu-west-1", ("s3",))
    assert [st["Sid"] for st in policy["Statement"]] == ["KeyAdministration", "UseThroughDomainServiceOnly"]


def test_bucket_name_too_long_is_rejected():
    from stacks.context import StackContext

    ctx = StackContext(_cfg("staging"), project="a-very-long-project-name-for-buckets")
    with pytest.raises(ValueError, match="exceeds 63 characters"):
        ctx.bucket_name("models", "123456789012")


@pytest.mark.parametrize(("backup", "maintenance", "overlaps"), [
    ("01:00-02:00", "sun:02:30-sun:03:30", False),
    ("03:00-04:00", "sun:02:30-sun:03:30", True),
    ("00:00-00:40", "sun:23:30-mon:00:30", True),  # maintenance wraps past the end of the week
    ("23:30-00:30", "sat:10:00-sat:11:00", False),  # backup wraps past midnight
])
def test_backup_and_maintenance_window_overlap(backup, maintenance, overlaps):
    from stacks.rules import _daily_in_week, _overlap, _weekly

    assert any(_overlap(day, _weekly(maintenance)) for day in _daily_in_week(backup)) is overlaps
