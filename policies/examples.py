"""A compliant and a violating example for every rule: the rule tests' fixtures, hand-written in
wire form (camelCase inputs) so rules are tested for resource types before the program declares them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from policies.rules.base import PlanResource

TAGS = {"Environment": "prod", "Platform": "mlplatform", "PlatformVersion": "0.1.0", "ManagedBy": "pulumi"}


def res(type_: str, name: str = "r", protect: bool = False, deps: tuple[str, ...] = (), **props: Any) -> PlanResource:
    return PlanResource(urn=f"urn:pulumi:prod::mlplatform::{type_}::{name}", type=type_, name=name, props=props,
                        protect=protect, dependencies=list(deps))


def urn(type_: str, name: str) -> str:
    return f"urn:pulumi:prod::mlplatform::{type_}::{name}"


@dataclass
class Example:
    passing: list[PlanResource]
    violating: list[PlanResource]
    environment: str = "prod"
    config: dict[str, Any] = field(default_factory=dict)


EKS = "aws:eks/cluster:Cluster"
NG = "aws:eks/nodeGroup:NodeGroup"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
SG = "aws:ec2/securityGroup:SecurityGroup"
BUCKET = "aws:s3/bucket:Bucket"
PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
VERS = "aws:s3/bucketVersioning:BucketVersioning"
BPOL = "aws:s3/bucketPolicy:BucketPolicy"
REDIS = "aws:elasticache/replicationGroup:ReplicationGroup"
MSK = "aws:msk/cluster:Cluster"
RDS = "aws:rds/instance:Instance"
ROLE = "aws:iam/role:Role"
DEPLOY = "kubernetes:apps/v1:Deployment"
RELEASE = "kubernetes:helm.sh/v3:Release"

EKS_OK = {"version": "1.34", "vpcConfig": {"endpointPublicAccess": False, "endpointPrivateAccess": True},
          "encryptionConfig": {"resources": ["secrets"], "provider": {"keyArn": "arn:aws:kms:eu-west-1:1:key/k"}},
          "enabledClusterLogTypes": ["api", "audit", "authenticator"], "tags": TAGS}
LT_OK = {"metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1},
         "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true"}}], "tags": TAGS}
REDIS_OK = {"atRestEncryptionEnabled": True, "transitEncryptionEnabled": True, "authToken": "[secret]",
            "multiAzEnabled": True, "automaticFailoverEnabled": True, "numCacheClusters": 3, "tags": TAGS}
MSK_OK = {"numberOfBrokerNodes": 3, "brokerNodeGroupInfo": {"clientSubnets": ["a", "b", "c"]},
          "encryptionInfo": {"encryptionAtRestKmsKeyArn": "arn:aws:kms:eu-west-1:1:key/k",
                             "encryptionInTransit": {"clientBroker": "TLS", "inCluster": True}},
          "clientAuthentication": {"sasl": {"iam": True}, "unauthenticated": False},
          "loggingInfo": {"brokerLogs": {"cloudwatchLogs": {"enabled": True, "logGroup": "g"}}}, "tags": TAGS}
RDS_OK = {"storageEncrypted": True, "publiclyAccessible": False, "backupRetentionPeriod": 14,
          "deletionProtection": True, "multiAz": True, "skipFinalSnapshot": False, "tags": TAGS}
ISSUER = "oidc.eks.eu-west-1.amazonaws.com/id/ABC"


def trust(condition: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": f"arn:aws:iam::1:oidc-provider/{ISSUER}"},
        "Action": "sts:AssumeRoleWithWebIdentity", "Condition": condition}]})


TRUST_OK = trust({"StringEquals": {f"{ISSUER}:sub": "system:serviceaccount:mlflow:mlflow",
                                   f"{ISSUER}:aud": "sts.amazonaws.com"}})
CONTAINER_OK = {"name": "app", "image": "registry.example/app:1.2.3",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"cpu": "1", "memory": "256Mi"}},
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "allowPrivilegeEscalation": False}}


def deployment(replicas: int = 1, **container: Any) -> dict[str, Any]:
    return {"metadata": {"name": "app", "namespace": "apps"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "x"}},
                     "template": {"metadata": {"labels": {"app": "x"}},
                                  "spec": {"containers": [{**CONTAINER_OK, **container}]}}}}


def bucket_stack(*, pab: bool = True, sse: str = "aws:kms", versioning: str = "Enabled",
                 tls: bool = True) -> list[PlanResource]:
    b = res(BUCKET, "data", bucket="b1", tags=TAGS)
    on = (b.urn,)  # companions name the bucket and depend on it, as `bucket=bucket.bucket` makes them
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": ["arn:aws:s3:::b1"],
            "Condition": {"Bool": {"aws:SecureTransport": "false" if tls else "true"}}}
    out = [b,
           res(SSE, "data-sse", deps=on, bucket="b1",
               rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": sse}}]),
           res(VERS, "data-v", deps=on, bucket="b1", versioningConfiguration={"status": versioning}),
           res(BPOL, "data-p", deps=on, bucket="b1", policy=json.dumps({"Statement": [deny]}))]
    if pab:
        out.append(res(PAB, "data-pab", deps=on, bucket="b1", blockPublicAcls=True, blockPublicPolicy=True,
                       ignorePublicAcls=True, restrictPublicBuckets=True))
    return out


def _one(type_: str, ok: dict[str, Any], bad: dict[str, Any], **kw: Any) -> Example:
    return Example([res(type_, "ok", **ok)], [res(type_, "bad", **bad)], **kw)


EXAMPLES: dict[str, Example] = {
    "eks-endpoint-restricted": _one(EKS, {**EKS_OK, "vpcConfig": {"endpointPublicAccess": True,
                                                                 "publicAccessCidrs": ["203.0.113.0/24"]}},
                                    {**EKS_OK, "vpcConfig": {"endpointPublicAccess": True,
                                                             "publicAccessCidrs": ["0.0.0.0/0"]}}),
    "eks-secrets-encryption": _one(EKS, EKS_OK, {**EKS_OK, "encryptionConfig": None}),
    "eks-control-plane-logging": _one(EKS, EKS_OK, {**EKS_OK, "enabledClusterLogTypes": ["api"]}),
    "eks-supported-version": _one(EKS, EKS_OK, {**EKS_OK, "version": "1.29"}),
    "nodegroup-uses-launch-template": _one(NG, {"launchTemplate": {"id": "lt-1", "version": "1"}}, {}),
    "nodegroup-no-remote-access": _one(NG, {}, {"remoteAccess": {"ec2SshKey": "key"}}),
    "nodes-imdsv2": _one(LT, LT_OK, {**LT_OK, "metadataOptions": {"httpTokens": "optional",
                                                                  "httpPutResponseHopLimit": 2}}),
    "nodes-encrypted-volumes": _one(LT, LT_OK, {**LT_OK, "blockDeviceMappings": [
        {"deviceName": "/dev/xvda", "ebs": {"encrypted": "false"}}]}),
    "nodes-no-public-ip": _one(LT, LT_OK, {**LT_OK, "networkInterfaces": [{"associatePublicIpAddress": "true"}]}),
    "sg-no-public-ingress": Example(
        [res(SG, "alb", ingress=[{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]},
                                 {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["10.0.0.0/16"]}]),
         res("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "https", ipProtocol="tcp",
             fromPort=443, toPort=443, cidrIpv4="0.0.0.0/0")],
        [res(SG, "ssh", ingress=[{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]),
         res("aws:ec2/securityGroupRule:SecurityGroupRule", "all", type="ingress", protocol="-1", fromPort=0,
             toPort=0, ipv6CidrBlocks=["::/0"]),
         res("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "any", ipProtocol="-1",
             cidrIpv4="0.0.0.0/0")]),
    "default-sg-closed": _one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", {"ingress": [], "egress": []},
                              {"ingress": [{"protocol": "-1", "self": True}], "egress": []}),
    "subnet-no-auto-public-ip": _one("aws:ec2/subnet:Subnet", {"mapPublicIpOnLaunch": False},
                                     {"mapPublicIpOnLaunch": True}),
    "vpc-flow-logs": Example(
        [res("aws:ec2/vpc:Vpc", "vpc"), res("aws:ec2/flowLog:FlowLog", "fl", trafficType="ALL",
                                            deps=(urn("aws:ec2/vpc:Vpc", "vpc"),))],
        [res("aws:ec2/vpc:Vpc", "vpc"), res("aws:ec2/flowLog:FlowLog", "fl", trafficType="REJECT",
                                            deps=(urn("aws:ec2/vpc:Vpc", "vpc"),))]),
    "s3-public-access-block-all": _one(PAB, {"blockPublicAcls": True, "blockPublicPolicy": True,
                                             "ignorePublicAcls": True, "restrictPublicBuckets": True},
                                       {"blockPublicAcls": True, "blockPublicPolicy": False,
                                        "ignorePublicAcls": True, "restrictPublicBuckets": True}),
    "s3-bucket-public-access-block": Example(bucket_stack(), bucket_stack(pab=False)),
    "s3-sse-kms": Example(bucket_stack(), bucket_stack(sse="AES256")),
    "s3-versioning": Example(bucket_stack(), bucket_stack(versioning="Suspended")),
    "s3-tls-only": Example(bucket_stack(), bucket_stack(tls=False)),
    "s3-no-public-acl": _one(BUCKET, {"bucket": "b"}, {"bucket": "b", "acl": "public-read"}),
    "kms-key-rotation": _one("aws:kms/key:Key", {"enableKeyRotation": True}, {"enableKeyRotation": False}),
    "kms-deletion-window": _one("aws:kms/key:Key", {"deletionWindowInDays": 30}, {"deletionWindowInDays": 7}),
    "redis-encryption-at-rest": _one(REDIS, REDIS_OK, {**REDIS_OK, "atRestEncryptionEnabled": False}),
    "redis-encryption-in-transit": _one(REDIS, REDIS_OK, {**REDIS_OK, "transitEncryptionEnabled": False}),
    "redis-auth": _one(REDIS, REDIS_OK, {**REDIS_OK, "authToken": None}),
    "redis-multi-az": _one(REDIS, REDIS_OK, {**REDIS_OK, "multiAzEnabled": False, "numCacheClusters": 1}),
    "msk-tls-only": _one(MSK, MSK_OK, {**MSK_OK, "encryptionInfo": {
        "encryptionAtRestKmsKeyArn": "k", "encryptionInTransit": {"clientBroker": "TLS_PLAINTEXT"}}}),
    "msk-encryption-at-rest": _one(MSK, MSK_OK, {**MSK_OK, "encryptionInfo": {
        "encryptionInTransit": {"clientBroker": "TLS"}}}),
    "msk-iam-auth": _one(MSK, MSK_OK, {**MSK_OK, "clientAuthentication": {"unauthenticated": True}}),
    "msk-multi-az": _one(MSK, MSK_OK, {**MSK_OK, "numberOfBrokerNodes": 2,
                                       "brokerNodeGroupInfo": {"clientSubnets": ["a", "b"]}}),
    "msk-logging": _one(MSK, MSK_OK, {**MSK_OK, "loggingInfo": None}),
    "rds-storage-encrypted": _one(RDS, RDS_OK, {**RDS_OK, "storageEncrypted": False}),
    "rds-not-public": _one(RDS, RDS_OK, {**RDS_OK, "publiclyAccessible": True}),
    "rds-backups": _one(RDS, RDS_OK, {**RDS_OK, "backupRetentionPeriod": 1}),
    "rds-deletion-protection": _one(RDS, RDS_OK, {**RDS_OK, "deletionProtection": False}),
    "rds-multi-az": _one(RDS, RDS_OK, {**RDS_OK, "multiAz": False}),
    "iam-no-wildcard-admin": Example(
        [res("aws:iam/rolePolicy:RolePolicy", "ok", policy=json.dumps({"Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"},
            {"Effect": "Deny", "Action": "*", "Resource": "*"}]}))],
        [res("aws:iam/rolePolicy:RolePolicy", "bad", policy=json.dumps({"Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"}]})),
         res("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "admin",
             policyArn="arn:aws:iam::aws:policy/AdministratorAccess")]),
    "iam-no-public-principal": Example(
        [res(BPOL, "ok", bucket="b1", policy=json.dumps({"Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::b1/*",
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
            {"Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
             "Resource": "arn:aws:s3:::b1/*", "Condition": {"StringEquals": {"aws:SourceAccount": "1"}}}]}))],
        [res(BPOL, "public", bucket="b1", policy=json.dumps({"Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b1/*"}]}))]),
    "irsa-trust-single-service-account": Example(
        [res(ROLE, "irsa", assumeRolePolicy=TRUST_OK, tags=TAGS)],
        [res(ROLE, "wild", assumeRolePolicy=trust({"StringLike": {f"{ISSUER}:sub": "system:serviceaccount:*"}})),
         res(ROLE, "noaud", assumeRolePolicy=trust({"StringEquals": {
             f"{ISSUER}:sub": ["system:serviceaccount:a:a", "system:serviceaccount:b:b"]}}))]),
    "required-tags": _one("aws:ec2/vpc:Vpc", {"tags": TAGS}, {"tags": {"Name": "vpc"}}),
    "k8s-resources-requests-limits": _one(DEPLOY, deployment(), deployment(resources={"requests": {"cpu": "1"}})),
    "k8s-run-as-non-root": _one(DEPLOY, deployment(), deployment(securityContext={"runAsUser": 0})),
    "k8s-no-privilege-escalation": _one(DEPLOY, deployment(), deployment(securityContext={
        "runAsNonRoot": True, "privileged": True, "allowPrivilegeEscalation": True})),
    "k8s-image-pinned": Example(
        [res(DEPLOY, "ok", **deployment()),
         res(RELEASE, "rel", values={"image": {"repository": "x/y", "tag": "1.0"}})],
        [res(DEPLOY, "latest", **deployment(image="registry.example/app:latest")),
         res(DEPLOY, "untagged", **deployment(image="registry.example:5000/app")),
         res(RELEASE, "rel", values={"server": {"image": {"repository": "x/y", "tag": "latest"}}})]),
    "helm-chart-pinned": _one(RELEASE, {"chart": "mlflow", "version": "1.11.0",
                                        "repositoryOpts": {"repo": "https://community-charts.github.io/helm-charts"}},
                              {"chart": "mlflow", "version": "~1.11", "repositoryOpts": {"repo": "http://x"}}),
    "k8s-pdb-for-replicated": Example(
        [res(DEPLOY, "app", **deployment(replicas=2)),
         res("kubernetes:policy/v1:PodDisruptionBudget", "pdb", metadata={"namespace": "apps"},
             spec={"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}})],
        [res(DEPLOY, "app", **deployment(replicas=2)),
         res("kubernetes:policy/v1:PodDisruptionBudget", "pdb", metadata={"namespace": "other"},
             spec={"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}})]),
    "k8s-networkpolicy-per-namespace": Example(
        [res("kubernetes:core/v1:Namespace", "ns", metadata={"name": "apps"}),
         res("kubernetes:networking.k8s.io/v1:NetworkPolicy", "deny", metadata={"namespace": "apps"})],
        [res("kubernetes:core/v1:Namespace", "ns", metadata={"name": "apps"}),
         res("kubernetes:networking.k8s.io/v1:NetworkPolicy", "deny", metadata={"namespace": "other"})]),
    "protect-stateful-resources": Example(
        [res(RDS, "db", protect=True), res(BUCKET, "b", protect=True), res("aws:ec2/vpc:Vpc", "vpc")],
        [res(RDS, "db", protect=False), res(BUCKET, "b", protect=True)]),
}
