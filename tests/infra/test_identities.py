"""Workload IRSA roles under mocks: trust scoped to one service account, permissions least privilege."""

from __future__ import annotations

import json

import pytest

from infra.aws.controller_policies import cluster_autoscaler_statements, load_balancer_controller_statements
from infra.aws.identities import (
    OPTIONAL_IDENTITY_SWITCHES,
    WORKLOAD_GRANTS,
    BucketGrant,
    bucket_statements,
    workload_statements,
)
from infra.aws.interfaces import WORKLOAD_IDENTITIES
from infra.aws.irsa import assert_no_wildcard_admin
from infra.aws.storage import DATASETS_REMOTE_PREFIX
from stacks.config import load_stack_file, stack_file

IRSA = "mlplatform:identity:IrsaRole"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
S3_MUTATIONS = {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}


def _roles(s) -> dict[str, dict]:
    """IRSA component name -> {"trust": assume-role policy, "statements": inline policy statements}."""
    out = {}
    for comp in s.of_type(IRSA):
        children = [r for r in s.resources if r.parent == comp.urn]
        role = next(r for r in children if r.type == ROLE)
        policy = next((r for r in children if r.type == ROLE_POLICY), None)
        out[comp.name] = {"trust": json.loads(role.inputs["assumeRolePolicy"]),
                          "statements": json.loads(policy.inputs["policy"])["Statement"] if policy else []}
    return out


def _actions(statements: list[dict]) -> set[str]:
    return {a for st in statements for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}


def _resources(statements: list[dict], prefix: str) -> set[str]:
    found = set()
    for st in statements:
        res = [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]
        found |= {r for r in res if r.startswith(prefix)}
    return found


def _installed_identities(env: str) -> set[str]:
    """WORKLOAD_IDENTITIES less the optional ones whose workload the stack does not install."""
    from types import SimpleNamespace


    ctx = SimpleNamespace(cfg=load_stack_file(stack_file(env)))
    return {i for i in WORKLOAD_IDENTITIES if i not in OPTIONAL_IDENTITY_SWITCHES or OPTIONAL_IDENTITY_SWITCHES[i](ctx)}


def test_every_workload_identity_has_a_role(synth, env):
    roles = _roles(synth(env))
    installed = _installed_identities(env)
    assert installed <= set(roles)
    assert "aws-ebs-csi-driver" in roles  # the add-on's own role (infra/aws/addons.py)
    assert set(synth(env).stack_outputs["workloadRoleArns"]) == installed
    # An optional workload that is off gets no role: nothing may assume rights it does not use.
    assert not (set(WORKLOAD_IDENTITIES) - installed) & set(roles)


def test_the_streaming_job_reads_only_the_transactions_topic_and_its_state_prefix():
    placeholders = {"feast": "arn:aws:s3:::feast-bucket"}
    statements = workload_statements("flink-job", placeholders, "arn:aws:kms:r:1:key/k",
                                     "arn:aws:kafka:r:1:cluster/msk/u", ["fraud-transactions"])
    actions = {a for st in statements for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
    assert not any("WriteData" in a or a.endswith(":*") for a in actions), actions
    topics = [st for st in statements if st["Sid"] == "KafkaTopics"]
    assert [t["Resource"] for t in topics] == [["arn:aws:kafka:r:1:topic/msk/u/fraud-transactions"]]
    groups = [st["Resource"] for st in statements if st["Sid"] == "KafkaGroups"]
    assert groups == ["arn:aws:kafka:r:1:group/msk/u/mlplat-flink-*"]
    objects = {r for st in statements for r in ([st["Resource"]] if isinstance(st["Resource"], str)
                                                 else st["Resource"]) if r.startswith("arn:aws:s3:::feast-bucket/")}
    assert objects == {"arn:aws:s3:::feast-bucket/flink/*"}


def test_trust_admits_exactly_one_service_account(synth, env):
    s = synth(env)
    provider = s.stack_outputs["oidcProviderArn"]
    issuer = provider.split(":oidc-provider/", 1)[1]
    for name, role in _roles(s).items():
        (statement,) = role["trust"]["Statement"]
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert statement["Principal"] == {"Federated": provider}
        assert set(statement["Condition"]) == {"StringEquals"}, name  # no StringLike wildcards
        cond = statement["Condition"]["StringEquals"]
        assert cond[f"{issuer}:aud"] == "sts.amazonaws.com"
        if name in WORKLOAD_IDENTITIES:
            who = WORKLOAD_IDENTITIES[name]
            assert cond[f"{issuer}:sub"] == f"system:serviceaccount:{who.namespace}:{who.service_account}"


def test_no_wildcard_admin_anywhere(synth, env):
    s = synth(env)
    for policy in s.of_type(ROLE_POLICY):
        statements = json.loads(policy.inputs["policy"])["Statement"]
        assert_no_wildcard_admin(statements)
        for st in statements:
            if st["Effect"] == "Allow":
                actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
                assert not any(a == "*" or a.endswith(":*") for a in actions), (policy.name, st)


def test_workload_permissions_are_scoped(synth, env):
    s = synth(env)
    roles = _roles(s)
    buckets = {k: f"arn:aws:s3:::{v}" for k, v in s.stack_outputs["buckets"].items()}
    storage_key = s.stack_outputs["dataKeyArns"]["storage"]
    cluster = s.stack_outputs["kafkaClusterArn"]

    serving = roles["model-serving"]["statements"]
    # Serving reads the slots and writes only its sampled inputs (drift reports), nothing else.
    writes = {st["Resource"] for st in serving if S3_MUTATIONS & set(st["Action"])}
    assert writes == {f"{buckets['models']}/serving-samples/*"}
    assert _resources(serving, "arn:aws:s3") == {buckets["models"], f"{buckets['models']}/*",
                                                 f"{buckets['models']}/serving-samples/*"}

    mlflow = roles["mlflow"]["statements"]
    assert _actions(mlflow) >= S3_MUTATIONS
    assert _resources(mlflow, "arn:aws:s3") == {buckets["mlflow"], f"{buckets['mlflow']}/artifacts/*"}
    listing = next(st for st in mlflow if "s3:ListBucket" in st["Action"])
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["artifacts/*"]}}

    assert _resources(roles["feast"]["statements"], "arn:aws:s3") == {buckets["feast"], f"{buckets['feast']}/*"}

    training = roles["training"]["statements"]
    writes = {st["Resource"] for st in training if "s3:PutObject" in st["Action"]}
    assert writes == {f"{buckets['mlflow']}/artifacts/*", f"{buckets['models']}/*"}  # Feast, datasets: read only

    for name in ("mlflow", "feast", "model-serving", "training", "feast-ingestor"):
        statements = roles[name]["statements"]
        assert _resources(statements, "arn:aws:kms") == {storage_key}, name
        assert _resources(statements, "arn:aws:kafka") == set() or name == "feast-ingestor"

    ingestor = roles["feast-ingestor"]["statements"]
    assert _resources(ingestor, "arn:aws:kafka") == {
        cluster,
        cluster.replace(":cluster/", ":topic/") + "/fraud-transactions",
        cluster.replace(":cluster/", ":group/") + "/feast-*",
    }
    assert "kafka-cluster:WriteData" not in _actions(ingestor)
    assert not S3_MUTATIONS & _actions(ingestor)


def test_dataset_versions_are_written_by_one_identity_and_read_by_training(synth, env):
    """The data registry's S3 remote (s3://<datasets bucket>/dvc/): the training pods and the pipeline steps
    read its objects (GetObject: a version is read by content address), only `dataset-writer` writes them."""
    s = synth(env)
    roles = _roles(s)
    datasets = f"arn:aws:s3:::{s.stack_outputs['buckets']['datasets']}"
    remote = f"{datasets}/{DATASETS_REMOTE_PREFIX}*"
    storage_key = s.stack_outputs["dataKeyArns"]["storage"]

    def on_datasets(statements: list[dict]) -> list[dict]:
        return [st for st in statements if _resources([st], datasets)]

    for reader in ("training", "pipeline-runner"):
        statements = on_datasets(roles[reader]["statements"])
        objects = [st for st in statements if st["Resource"] == remote]
        assert [sorted(st["Action"]) for st in objects] == [["s3:GetObject", "s3:GetObjectVersion"]], reader
        listing = next(st for st in statements if "s3:ListBucket" in st["Action"])
        assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{DATASETS_REMOTE_PREFIX}*"]}}, reader
        assert _resources(statements, "arn:aws:s3") == {datasets, remote}, reader

    writer = roles["dataset-writer"]["statements"]
    assert _resources(writer, "arn:aws:s3") == {datasets, remote}  # nothing but the remote's prefix
    assert {st["Resource"] for st in writer if S3_MUTATIONS & set(st["Action"])} == {remote}
    assert _resources(writer, "arn:aws:kms") == {storage_key}
    key = next(st for st in writer if st["Resource"] == storage_key)
    assert "kms:GenerateDataKey" in key["Action"]
    # Nobody else touches the datasets bucket.
    others = {name for name, role in roles.items() if on_datasets(role["statements"])}
    assert others == {"training", "pipeline-runner", "dataset-writer"}
    who = WORKLOAD_IDENTITIES["dataset-writer"]
    assert (who.namespace, who.service_account) == ("ml-training", "dataset-writer")


def test_controllers_change_only_what_they_own(synth, env):
    roles = _roles(synth(env))
    scale = next(st for st in roles["cluster-autoscaler"]["statements"] if st["Sid"] == "ScaleOwnGroups")
    assert scale["Condition"] == {
        "StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/mlplatform-{env}-eks": "owned"}}
    lbc = {st["Sid"]: st for st in roles["aws-load-balancer-controller"]["statements"]}
    assert lbc["CreateTaggedLoadBalancers"]["Condition"] == {"Null": {"aws:RequestTag/elbv2.k8s.aws/cluster": "false"}}
    assert lbc["ManageOwnLoadBalancers"]["Condition"] == {"Null": {"aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}}


def test_grants_cover_every_non_controller_identity():
    assert set(WORKLOAD_GRANTS) | {"cluster-autoscaler", "aws-load-balancer-controller"} == set(WORKLOAD_IDENTITIES)


@pytest.mark.parametrize("statements", [
    cluster_autoscaler_statements("eu-west-1", "123456789012", "c"),
    load_balancer_controller_statements("eu-west-1", "123456789012"),
    bucket_statements("X", "arn:aws:s3:::b", "arn:aws:kms:eu-west-1:1:key/k", BucketGrant("models", "write")),
])
def test_rendered_statements_pass_the_wildcard_guard(statements):
    assert_no_wildcard_admin(statements)
    assert all(st["Sid"].isalnum() for st in statements)


@pytest.mark.parametrize(("statement", "reason"), [
    ({"Sid": "Admin", "Effect": "Allow", "Action": "*", "Resource": "*"}, "allows \\*: every action of every service"),
    ({"Sid": "S3", "Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b"}, "every action of the service"),
    ({"Sid": "Not", "Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}, "NotAction"),
    ({"Sid": "AllBuckets", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::*"},
     "on arn:aws:s3:::\\* without a condition"),
])
def test_wildcard_guard_rejects_over_broad_statements(statement, reason):
    with pytest.raises(ValueError, match=f"IAM statement '{statement['Sid']}' grants too much: .*{reason}"):
        assert_no_wildcard_admin([statement])
