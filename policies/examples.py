"""The rule tests' fixtures, hand-written in wire form (camelCase inputs) so rules are tested for
resource types before the program declares them.

`EXAMPLES`: a compliant and a violating example for every rule. `BRANCHES`: one violating fixture for
every other way a rule can fail (each branch of its check), with whatever compliant context it needs.
Fixtures are complete: a passing fixture passes the whole pack, and a violating one is caught by its
rule and by no other (tests/policy/test_rule_branches.py), so each tests exactly one thing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from policies.rules.base import PlanResource

TAGS = {"Environment": "prod", "Platform": "mlplatform", "PlatformVersion": "0.2.1", "ManagedBy": "pulumi"}


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


@dataclass
class Branch:
    """One more way `rule` fails: the violation message contains `message`."""

    rule: str
    message: str
    resources: list[PlanResource]
    environment: str = "prod"


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
KMS_OK = {"enableKeyRotation": True, "deletionWindowInDays": 30, "tags": TAGS}
SG_OK = {"ingress": [{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]},
                     {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["10.0.0.0/16"]}], "tags": TAGS}
NG_OK = {"launchTemplate": {"id": "lt-1", "version": "1"}, "tags": TAGS}
RELEASE_OK = {"chart": "mlflow", "version": "1.11.0", "repositoryOpts": {"repo": "https://community-charts.github.io/helm-charts"},
              "values": {"image": {"repository": "x/y", "tag": "1.0"}}}
SGR = "aws:ec2/securityGroupRule:SecurityGroupRule"
SGI = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
DEFAULT_SG = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
VPC = "aws:ec2/vpc:Vpc"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
KMS = "aws:kms/key:Key"
ACL = "aws:s3/bucketAclV2:BucketAclV2"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACH = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
NAMESPACE = "kubernetes:core/v1:Namespace"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
JOB = "kubernetes:batch/v1:Job"
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
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


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: Any, resource: Any = "arn:aws:s3:::b1/*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def vpc_with_flow_log(traffic: str = "ALL") -> list[PlanResource]:
    return [res(VPC, "vpc", tags=TAGS),
            res(FLOW_LOG, "fl", trafficType=traffic, tags=TAGS, deps=(urn(VPC, "vpc"),))]


def deployment(replicas: int = 1, **container: Any) -> dict[str, Any]:
    return {"metadata": {"name": "app", "namespace": "apps"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "x"}},
                     "template": {"metadata": {"labels": {"app": "x"}},
                                  "spec": {"containers": [{**CONTAINER_OK, **container}]}}}}


SERVICE = "kubernetes:core/v1:Service"
LB_SCHEME = "service.beta.kubernetes.io/aws-load-balancer-scheme"
PIPELINES_BUCKET = "mlplatform-prod-pipelines-111122223333-eu-west-1"
ROLES = ["arn:aws:iam::111122223333:role/mlplatform-prod-irsa-pipelines",
         "arn:aws:iam::111122223333:role/mlplatform-prod-irsa-pipeline-runner"]
TLS_DENY = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": [f"arn:aws:s3:::{PIPELINES_BUCKET}"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def scoped_to(roles: list[str], operator: str = "ArnNotEquals") -> dict[str, Any]:
    return {"Effect": "Deny", "Principal": "*", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": f"arn:aws:s3:::{PIPELINES_BUCKET}/*", "Condition": {operator: {"aws:PrincipalArn": roles}}}


def bucket_stack(*, pab: bool = True, sse: str | None = "aws:kms", versioning: str | None = "Enabled",
                 tls: bool | None = True) -> list[PlanResource]:
    """A bucket with its companions; `None` leaves a companion out."""
    b = res(BUCKET, "data", protect=True, bucket="b1", tags=TAGS)
    on = (b.urn,)  # companions name the bucket and depend on it, as `bucket=bucket.bucket` makes them
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": ["arn:aws:s3:::b1"],
            "Condition": {"Bool": {"aws:SecureTransport": "false" if tls else "true"}}}
    out = [b]
    if sse is not None:
        out.append(res(SSE, "data-sse", deps=on, bucket="b1",
                       rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": sse}}] if sse else []))
    if versioning is not None:
        out.append(res(VERS, "data-v", deps=on, bucket="b1", versioningConfiguration={"status": versioning}))
    if tls is not None:
        out.append(res(BPOL, "data-p", deps=on, bucket="b1", policy=json.dumps({"Statement": [deny]})))
    if pab:
        out.append(res(PAB, "data-pab", deps=on, bucket="b1", blockPublicAcls=True, blockPublicPolicy=True,
                       ignorePublicAcls=True, restrictPublicBuckets=True))
    return out


def _one(type_: str, ok: dict[str, Any], bad: dict[str, Any], **kw: Any) -> Example:
    return Example([res(type_, "ok", **ok)], [res(type_, "bad", **bad)], **kw)


def _one(type_: str, ok: dict[str, Any], bad: dict[str, Any], protect: bool = False, **kw: Any) -> Example:
    return Example([res(type_, "ok", protect=protect, **ok)], [res(type_, "bad", protect=protect, **bad)], **kw)


def _without(props: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k not in keys}


EXAMPLES: dict[str, Example] = {
    "eks-endpoint-restricted": _one(EKS, {**EKS_OK, "vpcConfig": {"endpointPublicAccess": True,
                                                                 "publicAccessCidrs": ["203.0.113.0/24"]}},
                                    {**EKS_OK, "vpcConfig": {"endpointPublicAccess": True,
                                                             "publicAccessCidrs": ["0.0.0.0/0"]}}),
    "eks-secrets-encryption": _one(EKS, EKS_OK, {**EKS_OK, "encryptionConfig": None}),
    "eks-control-plane-logging": _one(EKS, EKS_OK, {**EKS_OK, "enabledClusterLogTypes": ["api"]}),
    "eks-supported-version": _one(EKS, EKS_OK, {**EKS_OK, "version": "1.29"}),
    "nodegroup-uses-launch-template": _one(NG, NG_OK, {"tags": TAGS}),
    "nodegroup-no-remote-access": _one(NG, NG_OK, {**NG_OK, "remoteAccess": {"ec2SshKey": "key"}}),
    "nodes-imdsv2": _one(LT, LT_OK, {**LT_OK, "metadataOptions": {"httpTokens": "optional",
                                                                  "httpPutResponseHopLimit": 2}}),
    "nodes-encrypted-volumes": _one(LT, LT_OK, {**LT_OK, "blockDeviceMappings": [
        {"deviceName": "/dev/xvda", "ebs": {"encrypted": "false"}}]}),
    "nodes-no-public-ip": _one(LT, LT_OK, {**LT_OK, "networkInterfaces": [{"associatePublicIpAddress": "true"}]}),
    "sg-no-public-ingress": Example(
        [res(SG, "alb", **SG_OK), res(SGI, "https", ipProtocol="tcp", fromPort=443, toPort=443, cidrIpv4="0.0.0.0/0")],
        [res(SG, "ssh", tags=TAGS,
             ingress=[{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]),
         res(SGR, "all", type="ingress", protocol="-1", fromPort=0, toPort=0, ipv6CidrBlocks=["::/0"]),
         res(SGI, "any", ipProtocol="-1", cidrIpv4="0.0.0.0/0")]),
    "default-sg-closed": _one(DEFAULT_SG, {"ingress": [], "egress": []},
                              {"ingress": [{"protocol": "-1", "self": True}], "egress": []}),
    "subnet-no-auto-public-ip": _one("aws:ec2/subnet:Subnet", {"mapPublicIpOnLaunch": False, "tags": TAGS},
                                     {"mapPublicIpOnLaunch": True, "tags": TAGS}),
    "vpc-flow-logs": Example(vpc_with_flow_log(), vpc_with_flow_log("REJECT")),
    "s3-public-access-block-all": _one(PAB, {"blockPublicAcls": True, "blockPublicPolicy": True,
                                             "ignorePublicAcls": True, "restrictPublicBuckets": True},
                                       {"blockPublicAcls": True, "blockPublicPolicy": False,
                                        "ignorePublicAcls": True, "restrictPublicBuckets": True}),
    "s3-bucket-public-access-block": Example(bucket_stack(), bucket_stack(pab=False)),
    "s3-sse-kms": Example(bucket_stack(), bucket_stack(sse="AES256")),
    "s3-versioning": Example(bucket_stack(), bucket_stack(versioning="Suspended")),
    "s3-tls-only": Example(bucket_stack(), bucket_stack(tls=False)),
    "s3-no-public-acl": _one(ACL, {"bucket": "b1", "acl": "private"}, {"bucket": "b1", "acl": "public-read"}),
    "kms-key-rotation": _one(KMS, KMS_OK, {**KMS_OK, "enableKeyRotation": False}, protect=True),
    # 3 days: below every tier's minimum (KMS itself accepts 7 to 30).
    "kms-deletion-window": _one(KMS, KMS_OK, {**KMS_OK, "deletionWindowInDays": 3}, protect=True),
    "redis-encryption-at-rest": _one(REDIS, REDIS_OK, {**REDIS_OK, "atRestEncryptionEnabled": False}, protect=True),
    "redis-encryption-in-transit": _one(REDIS, REDIS_OK, {**REDIS_OK, "transitEncryptionEnabled": False},
                                        protect=True),
    "redis-auth": _one(REDIS, REDIS_OK, {**REDIS_OK, "authToken": None}, protect=True),
    "redis-multi-az": _one(REDIS, REDIS_OK, {**REDIS_OK, "multiAzEnabled": False, "numCacheClusters": 1},
                           protect=True),
    "msk-tls-only": _one(MSK, MSK_OK, {**MSK_OK, "encryptionInfo": {
        "encryptionAtRestKmsKeyArn": "k", "encryptionInTransit": {"clientBroker": "TLS_PLAINTEXT"}}}, protect=True),
    "msk-encryption-at-rest": _one(MSK, MSK_OK, {**MSK_OK, "encryptionInfo": {
        "encryptionInTransit": {"clientBroker": "TLS"}}}, protect=True),
    "msk-iam-auth": _one(MSK, MSK_OK, {**MSK_OK, "clientAuthentication": {"unauthenticated": True}}, protect=True),
    "msk-multi-az": _one(MSK, MSK_OK, {**MSK_OK, "numberOfBrokerNodes": 2,
                                       "brokerNodeGroupInfo": {"clientSubnets": ["a", "b"]}}, protect=True),
    "msk-logging": _one(MSK, MSK_OK, {**MSK_OK, "loggingInfo": None}, protect=True),
    "rds-storage-encrypted": _one(RDS, RDS_OK, {**RDS_OK, "storageEncrypted": False}, protect=True),
    "rds-not-public": _one(RDS, RDS_OK, {**RDS_OK, "publiclyAccessible": True}, protect=True),
    "rds-backups": _one(RDS, RDS_OK, {**RDS_OK, "backupRetentionPeriod": 0}, protect=True),
    "rds-deletion-protection": _one(RDS, RDS_OK, {**RDS_OK, "deletionProtection": False}, protect=True),
    "rds-multi-az": _one(RDS, RDS_OK, {**RDS_OK, "multiAz": False}, protect=True),
    "iam-no-wildcard-admin": Example(
        [res(ROLE_POLICY, "ok", policy=policy(allow(["s3:GetObject"]), {"Effect": "Deny", "Action": "*",
                                                                         "Resource": "*"}))],
        [res(ROLE_POLICY, "bad", policy=policy(allow("*", "*"))),
         res(ATTACH, "admin", policyArn="arn:aws:iam::aws:policy/AdministratorAccess")]),
    "iam-no-public-principal": Example(
        [res(BPOL, "ok", bucket="b1", policy=policy(
            {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::b1/*",
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
            {"Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
             "Resource": "arn:aws:s3:::b1/*", "Condition": {"StringEquals": {"aws:SourceAccount": "1"}}}))],
        [res(BPOL, "public", bucket="b1", policy=policy(
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b1/*"}))]),
    "irsa-trust-single-service-account": Example(
        [res(ROLE, "irsa", assumeRolePolicy=TRUST_OK, tags=TAGS)],
        [res(ROLE, "wild", tags=TAGS,
             assumeRolePolicy=trust({"StringLike": {f"{ISSUER}:sub": "system:serviceaccount:*"}})),
         res(ROLE, "noaud", tags=TAGS, assumeRolePolicy=trust({"StringEquals": {
             f"{ISSUER}:sub": ["system:serviceaccount:a:a", "system:serviceaccount:b:b"]}}))]),
    "required-tags": _one("aws:ec2/subnet:Subnet", {"mapPublicIpOnLaunch": False, "tags": TAGS},
                          {"mapPublicIpOnLaunch": False, "tags": {"Name": "subnet"}}),
    "k8s-resources-requests-limits": _one(DEPLOY, deployment(), deployment(resources={"requests": {"cpu": "1"}})),
    "k8s-run-as-non-root": _one(DEPLOY, deployment(), deployment(securityContext={
        "runAsUser": 0, "allowPrivilegeEscalation": False})),
    "k8s-no-privilege-escalation": _one(DEPLOY, deployment(), deployment(securityContext={
        "runAsNonRoot": True, "privileged": True, "allowPrivilegeEscalation": True})),
    "k8s-image-pinned": Example(
        [res(DEPLOY, "ok", **deployment()), res(RELEASE, "rel", **RELEASE_OK)],
        [res(DEPLOY, "latest", **deployment(image="registry.example/app:latest")),
         res(DEPLOY, "untagged", **deployment(image="registry.example:5000/app")),
         res(RELEASE, "rel", **{**RELEASE_OK,
                                "values": {"server": {"image": {"repository": "x/y", "tag": "latest"}}}})]),
    "helm-chart-pinned": _one(RELEASE, RELEASE_OK, {**RELEASE_OK, "version": "~1.11", "repositoryOpts": {"repo": "http://x"}}),
    "k8s-pdb-for-replicated": Example(
        [res(DEPLOY, "app", **deployment(replicas=2)),
         res(PDB, "pdb", metadata={"namespace": "apps"},
             spec={"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}})],
        [res(DEPLOY, "app", **deployment(replicas=2)),
         res(PDB, "pdb", metadata={"namespace": "other"},
             spec={"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}})]),
    "k8s-load-balancer-internal": _one(
        SERVICE, {"metadata": {"name": "ui", "annotations": {LB_SCHEME: "internal"}},
                  "spec": {"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/16"]}},
        {"metadata": {"name": "ui"}, "spec": {"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/16"]}}),
    "s3-objects-scoped-to-roles": _one(
        BPOL, {"bucket": PIPELINES_BUCKET, "policy": json.dumps({"Statement": [TLS_DENY, scoped_to(ROLES)]})},
        {"bucket": PIPELINES_BUCKET, "policy": json.dumps({"Statement": [TLS_DENY]})}),
    "k8s-networkpolicy-per-namespace": Example(
        [res(NAMESPACE, "ns", metadata={"name": "apps"}), res(NETPOL, "deny", metadata={"namespace": "apps"})],
        [res(NAMESPACE, "ns", metadata={"name": "apps"}), res(NETPOL, "deny", metadata={"namespace": "other"})]),
    "protect-stateful-resources": Example(
        [res(RDS, "db", protect=True, **RDS_OK), res(KMS, "key", protect=True, **KMS_OK), *vpc_with_flow_log()],
        [res(RDS, "db", protect=False, **RDS_OK), res(KMS, "key", protect=True, **KMS_OK)]),
}


def _b(rule: str, message: str, *resources: PlanResource, environment: str = "prod") -> Branch:
    return Branch(rule, message, list(resources), environment)


def _bucket_with(**props: Any) -> list[PlanResource]:
    bucket, *companions = bucket_stack()
    return [res(BUCKET, bucket.name, protect=True, **{**bucket.props, **props}), *companions]


def _cronjob(image: str) -> dict[str, Any]:
    pod = deployment(image=image)["spec"]["template"]
    return {"metadata": {"name": "job", "namespace": "apps"}, "spec": {"schedule": "* * * * *",
                                                                     "jobTemplate": {"spec": {"template": pod}}}}


def _pod(**pod: Any) -> dict[str, Any]:
    d = deployment()
    d["spec"]["template"]["spec"].update(pod)
    return d


BRANCHES: list[Branch] = [
    _b("k8s-load-balancer-internal", "loadBalancerSourceRanges admit the internet (0.0.0.0/0)",
       res(SERVICE, "ui", metadata={"name": "ui", "annotations": {LB_SCHEME: "internal"}},
           spec={"type": "LoadBalancer", "loadBalancerSourceRanges": ["0.0.0.0/0"]})),
    _b("s3-objects-scoped-to-roles", "include a wildcard",
       res(BPOL, "p", bucket=PIPELINES_BUCKET, policy=json.dumps({"Statement": [
           TLS_DENY, scoped_to(["arn:aws:iam::111122223333:role/*"], "ArnNotLike")]}))),
    _b("eks-endpoint-restricted", "open to 0.0.0.0/0 (no publicAccessCidrs)",
       res(EKS, "c", **{**EKS_OK, "vpcConfig": {"endpointPublicAccess": True}})),
    _b("eks-endpoint-restricted", "open to 0.0.0.0/0 (no publicAccessCidrs)",  # AWS's default is public
       res(EKS, "c", **{**EKS_OK, "vpcConfig": {}})),
    _b("eks-endpoint-restricted", "open to ::/0",
       res(EKS, "c", **{**EKS_OK, "vpcConfig": {"endpointPublicAccess": True,
                                                "publicAccessCidrs": ["203.0.113.0/24", "::/0"]}})),
    _b("eks-secrets-encryption", "has no provider.keyArn",
       res(EKS, "c", **{**EKS_OK, "encryptionConfig": {"resources": ["secrets"], "provider": {}}})),
    _b("eks-supported-version", "no explicit Kubernetes version", res(EKS, "c", **_without(EKS_OK, "version"))),
    _b("nodes-imdsv2", "httpPutResponseHopLimit is None",
       res(LT, "lt", **{**LT_OK, "metadataOptions": {"httpTokens": "required"}})),
    _b("nodes-imdsv2", "httpPutResponseHopLimit is 2, above 1",
       res(LT, "lt", **{**LT_OK, "metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 2}})),
    _b("nodes-imdsv2", "httpTokens is None, not 'required'",
       res(LT, "lt", **{**LT_OK, "metadataOptions": {"httpPutResponseHopLimit": 1}})),
    _b("nodes-encrypted-volumes", "no blockDeviceMappings", res(LT, "lt", **_without(LT_OK, "blockDeviceMappings"))),
    _b("sg-no-public-ingress", "ingress from ::/0 on port 5432",
       res(SG, "db", tags=TAGS, ingress=[{"protocol": "tcp", "fromPort": 5432, "toPort": 5432,
                                          "ipv6CidrBlocks": ["::/0"]}])),
    _b("sg-no-public-ingress", "ingress from 0.0.0.0/0 on port 80-443",  # a range that merely includes 443
       res(SG, "web", tags=TAGS, ingress=[{"protocol": "tcp", "fromPort": 80, "toPort": 443,
                                           "cidrBlocks": ["0.0.0.0/0"]}])),
    _b("sg-no-public-ingress", "ingress from 0.0.0.0/0 on port 443",  # UDP 443 is not HTTPS
       res(SG, "quic", tags=TAGS, ingress=[{"protocol": "udp", "fromPort": 443, "toPort": 443,
                                            "cidrBlocks": ["0.0.0.0/0"]}])),
    _b("sg-no-public-ingress", "ingress from 0.0.0.0/0 on port 22",
       res(SGR, "ssh", type="ingress", protocol="tcp", fromPort=22, toPort=22, cidrBlocks=["0.0.0.0/0"])),
    _b("sg-no-public-ingress", "ingress from ::/0 on port 8080",
       res(SGI, "v6", ipProtocol="tcp", fromPort=8080, toPort=8080, cidrIpv6="::/0")),
    _b("default-sg-closed", "has ingress or egress rules",
       res(DEFAULT_SG, "default", ingress=[], egress=[{"protocol": "-1", "cidrBlocks": ["0.0.0.0/0"]}])),
    _b("vpc-flow-logs", "no flow log with trafficType ALL", res(VPC, "vpc", tags=TAGS)),
    _b("vpc-flow-logs", "no flow log with trafficType ALL",  # a flow log of another VPC
       res(VPC, "a", tags=TAGS), res(VPC, "b", tags=TAGS),
       res(FLOW_LOG, "fl", trafficType="ALL", tags=TAGS, deps=(urn(VPC, "a"),))),
    _b("s3-public-access-block-all", "blockPublicAcls, blockPublicPolicy, ignorePublicAcls, restrictPublicBuckets",
       res(PAB, "pab", bucket="b1")),
    _b("s3-bucket-public-access-block", "has no BucketPublicAccessBlock",  # the block of another bucket
       *[r if r.type != PAB else res(PAB, "other-pab", bucket="b2", blockPublicAcls=True, blockPublicPolicy=True,
                                     ignorePublicAcls=True, restrictPublicBuckets=True) for r in bucket_stack()]),
    _b("s3-sse-kms", "has no server-side encryption configuration", *bucket_stack(sse=None)),
    _b("s3-sse-kms", "default encryption is unset", *bucket_stack(sse="")),
    _b("s3-versioning", "no BucketVersioning", *bucket_stack(versioning=None)),
    _b("s3-tls-only", "no bucket policy denies", *bucket_stack(tls=None)),
    _b("s3-no-public-acl", "canned ACL public-read", *_bucket_with(acl="public-read")),
    _b("s3-no-public-acl", "canned ACL authenticated-read", res(ACL, "acl", bucket="b1", acl="authenticated-read")),
    _b("s3-no-public-acl", "grants READ to AllUsers", res(ACL, "acl", bucket="b1", accessControlPolicy={
        "owner": {"id": "o"}, "grants": [{"grantee": {"type": "Group", "uri": ALL_USERS}, "permission": "READ"}]})),
    _b("s3-no-public-acl", "grants WRITE to AuthenticatedUsers", *_bucket_with(grants=[
        {"type": "Group", "uri": "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
         "permissions": ["WRITE"]}])),
    _b("kms-deletion-window", "deletionWindowInDays is None",
       res(KMS, "key", protect=True, **_without(KMS_OK, "deletionWindowInDays"))),
    _b("redis-encryption-in-transit", "transitEncryptionMode is `preferred`",
       res(REDIS, "r", protect=True, **{**REDIS_OK, "transitEncryptionMode": "preferred"})),
    _b("redis-multi-az", "automaticFailoverEnabled is not true",
       res(REDIS, "r", protect=True, **{**REDIS_OK, "automaticFailoverEnabled": False})),
    _b("redis-multi-az", "no replica to fail over to",
       res(REDIS, "r", protect=True, **{**REDIS_OK, "numCacheClusters": 1})),
    _b("redis-multi-az", "no replica to fail over to",  # cluster mode: replicas per shard
       res(REDIS, "r", protect=True, **{**_without(REDIS_OK, "numCacheClusters"), "replicasPerNodeGroup": 0})),
    _b("msk-tls-only", "inCluster is false", res(MSK, "k", protect=True, **{**MSK_OK, "encryptionInfo": {
        "encryptionAtRestKmsKeyArn": "k", "encryptionInTransit": {"clientBroker": "TLS", "inCluster": False}}})),
    _b("msk-iam-auth", "clientAuthentication.unauthenticated is true", res(MSK, "k", protect=True, **{
        **MSK_OK, "clientAuthentication": {"sasl": {"iam": True}, "unauthenticated": True}})),
    _b("msk-iam-auth", "clientAuthentication.sasl.iam is not true", res(MSK, "k", protect=True, **{
        **MSK_OK, "clientAuthentication": {"sasl": {"scram": True}, "unauthenticated": False}})),
    _b("msk-multi-az", "4 brokers cannot spread evenly over 3 zones",
       res(MSK, "k", protect=True, **{**MSK_OK, "numberOfBrokerNodes": 4})),
    _b("rds-backups", "backupRetentionPeriod is None",
       res(RDS, "db", protect=True, **_without(RDS_OK, "backupRetentionPeriod"))),
    _b("rds-deletion-protection", "skipFinalSnapshot is true",
       res(RDS, "db", protect=True, **{**RDS_OK, "skipFinalSnapshot": True})),
    # Every form of over-broad IAM grant, not only `*`.
    _b("iam-no-wildcard-admin", "allows *:*: every action of every service",
       res(ROLE_POLICY, "p", policy=policy(allow("*:*", "arn:aws:s3:::b1")))),
    _b("iam-no-wildcard-admin", "allows s3:*: every action of the service",
       res(ROLE_POLICY, "p", policy=policy(allow("s3:*", ["arn:aws:s3:::b1", "arn:aws:s3:::b1/*"])))),
    _b("iam-no-wildcard-admin", "allows *:GetObject: every action of every service",
       res(ROLE_POLICY, "p", policy=policy(allow("*:GetObject")))),
    _b("iam-no-wildcard-admin", "(NotAction)",
       res(ROLE_POLICY, "p", policy=policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}))),
    _b("iam-no-wildcard-admin", "(NotResource)",
       res(ROLE_POLICY, "p", policy=policy({"Effect": "Allow", "Action": "s3:GetObject",
                                            "NotResource": "arn:aws:s3:::secret/*"}))),
    _b("iam-no-wildcard-admin", "allows ec2:TerminateInstances on * without a condition",
       res(ROLE_POLICY, "p", policy=policy(allow(["ec2:DescribeInstances", "ec2:TerminateInstances"], "*")))),
    _b("iam-no-wildcard-admin", "allows s3:GetObject on arn:aws:s3:::* without a condition",
       res(ROLE_POLICY, "p", policy=policy(allow("s3:GetObject", "arn:aws:s3:::*")))),
    _b("iam-no-wildcard-admin", "allows s3:PutObject on arn:aws:s3:::*/* without a condition",
       res(ROLE_POLICY, "p", policy=policy(allow("s3:PutObject", "arn:aws:s3:::*/*")))),
    _b("iam-no-wildcard-admin", "allows secretsmanager:GetSecretValue on * without a condition",  # a read of secrets
       res(ROLE_POLICY, "p", policy=policy(allow("secretsmanager:GetSecretValue", "*")))),
    _b("iam-no-wildcard-admin", "allows s3:Get* on * without a condition",  # Get* covers GetObject
       res(ROLE_POLICY, "p", policy=policy(allow("s3:Get*", "*")))),
    _b("iam-no-wildcard-admin", "allows kms:Decrypt on arn:aws:kms:*:*:key/k",  # any account's key
       res(ROLE_POLICY, "p", policy=policy(allow("kms:Decrypt", "arn:aws:kms:*:*:key/k")))),
    _b("iam-no-wildcard-admin", "allows iam:*: every action of the service",
       res("aws:iam/policy:Policy", "p", tags=TAGS, policy=policy(allow("iam:*", "*")))),
    _b("iam-no-wildcard-admin", "allows *: every action of every service",  # inline policy of a role
       res(ROLE, "r", tags=TAGS, assumeRolePolicy=TRUST_OK, inlinePolicies=[{"name": "i", "policy": policy(
           allow("*", "*"))}])),
    _b("iam-no-wildcard-admin", "attaches arn:aws:iam::aws:policy/PowerUserAccess",
       res(ROLE, "r", tags=TAGS, assumeRolePolicy=TRUST_OK,
           managedPolicyArns=["arn:aws:iam::aws:policy/PowerUserAccess"])),
    _b("iam-no-wildcard-admin", "attaches arn:aws:iam::aws:policy/AmazonS3FullAccess",
       res(ATTACH, "a", role="r", policyArn="arn:aws:iam::aws:policy/AmazonS3FullAccess")),
    _b("iam-no-public-principal", "allows any principal (`*`)", res(KMS, "key", protect=True, **{
        **KMS_OK, "policy": policy({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt",
                                    "Resource": "*"})})),
    _b("iam-no-public-principal", "allows any principal (`*`)", res(BPOL, "p", bucket="b1", policy=policy(
        {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::1:root", "*"]}, "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::b1/*", "Condition": {"Bool": {"aws:SecureTransport": "true"}}}))),
    _b("iam-no-public-principal", "(NotPrincipal)", res(BPOL, "p", bucket="b1", policy=policy(
        {"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::1:root"}, "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::b1/*"}))),
    _b("iam-no-public-principal", "allows any principal (`*`)",  # anyone may assume the role
       res(ROLE, "r", tags=TAGS, assumeRolePolicy=policy({"Effect": "Allow", "Principal": {"AWS": "*"},
                                                          "Action": "sts:AssumeRole"}))),
    _b("irsa-trust-single-service-account", "is not system:serviceaccount:<namespace>:<name>",
       res(ROLE, "r", tags=TAGS, assumeRolePolicy=trust({"StringEquals": {
           f"{ISSUER}:sub": "system:serviceaccount:Bad_NS:x", f"{ISSUER}:aud": "sts.amazonaws.com"}}))),
    _b("irsa-trust-single-service-account", "the :aud condition is not pinned to sts.amazonaws.com",
       res(ROLE, "r", tags=TAGS, assumeRolePolicy=trust({"StringEquals": {
           f"{ISSUER}:sub": "system:serviceaccount:a:a"}}))),
    _b("irsa-trust-single-service-account", "trust admits 0 service-account subjects",
       res(ROLE, "r", tags=TAGS, assumeRolePolicy=trust({"StringEquals": {f"{ISSUER}:aud": "sts.amazonaws.com"}}))),
    _b("required-tags", "missing tags: Environment",  # an empty value is no tag
       res("aws:ec2/subnet:Subnet", "s", mapPublicIpOnLaunch=False, tags={**TAGS, "Environment": ""})),
    _b("k8s-run-as-non-root", "does not set runAsNonRoot",
       res(DEPLOY, "d", **deployment(securityContext={"allowPrivilegeEscalation": False}))),
    _b("k8s-no-privilege-escalation", "pod sets hostNetwork", res(DEPLOY, "d", **_pod(hostNetwork=True))),
    _b("k8s-no-privilege-escalation", "does not set allowPrivilegeEscalation: false",
       res(DEPLOY, "d", **deployment(securityContext={"runAsNonRoot": True, "runAsUser": 10001}))),
    _b("k8s-image-pinned", "has no image", res(DEPLOY, "d", **deployment(image=""))),
    _b("k8s-image-pinned", "uses :latest",  # a CronJob's pod spec sits deeper
       res("kubernetes:batch/v1:CronJob", "cj", **_cronjob("registry.example/app:latest"))),
    _b("k8s-image-pinned", "values.server.image: image x/y:latest uses :latest",
       res(RELEASE, "rel", **{**RELEASE_OK, "values": {"server": {"image": "x/y:latest"}}})),
    _b("helm-chart-pinned", "devel: true admits pre-release charts",
       res(RELEASE, "rel", **{**RELEASE_OK, "devel": True})),
    _b("helm-chart-pinned", "chart source mlflow is not an https:// or oci:// repository",
       res(RELEASE, "rel", **_without(RELEASE_OK, "repositoryOpts"))),
    _b("k8s-pdb-for-replicated", "no PodDisruptionBudget selects them",  # a PDB for other pods
       res(DEPLOY, "app", **deployment(replicas=3)),
       res(PDB, "pdb", metadata={"namespace": "apps"}, spec={"selector": {"matchLabels": {"app": "other"}}})),
]

def _with_default_tags(r: PlanResource) -> PlanResource:
    return replace(r, props={k: v for k, v in r.props.items() if k != "tags"},
                   provider_props={"defaultTags": {"tags": TAGS}})


# Compliant edge cases (the whole pack passes them, in prod unless said otherwise): what rules allow.
ALLOWED: dict[str, list[PlanResource]] = {
    "AES256 on the access-log target bucket": [
        *bucket_stack(),
        *[res(r.type, f"logs{r.name[4:]}", protect=r.protect, deps=(urn(BUCKET, "logs"),),
              **{**r.props, "bucket": "logs"}) for r in bucket_stack(sse="AES256")],
        res("aws:s3/bucketLoggingV2:BucketLoggingV2", "data-logging", bucket="b1", targetBucket="logs")],
    "HTTPS (443/tcp) from the internet": [res(SGI, "https", ipProtocol="tcp", fromPort=443, toPort=443,
                                              cidrIpv6="::/0")],
    "asymmetric KMS key without rotation": [res(KMS, "sign", protect=True, **{**_without(KMS_OK, "enableKeyRotation"),
                                                                              "customerMasterKeySpec": "RSA_2048"})],
    "discovery on *, conditioned changes on *, Deny anything": [res(ROLE_POLICY, "p", policy=policy(
        allow(["ec2:DescribeInstances", "ec2:Describe*", "elasticloadbalancing:DescribeTags"], "*"),
        allow("autoscaling:SetDesiredCapacity", "*",
              Condition={"StringEquals": {"aws:ResourceTag/k8s.io/cluster-autoscaler/c": "owned"}}),
        {"Effect": "Deny", "NotAction": "s3:*", "NotResource": "arn:aws:s3:::b1/*"},
        allow("wafv2:AssociateWebACL", "*")))],
    "KMS key policy for the account root": [res(KMS, "key", protect=True, **{**KMS_OK, "policy": policy(
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "kms:*", "Resource": "*"})})],
    "wildcard principal pinned to the account": [res(BPOL, "p", bucket="b1", policy=policy(
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b1/*",
         "Condition": {"StringEquals": {"aws:PrincipalAccount": "1"}}}))],
    "tags from the provider's default tags": [_with_default_tags(res("aws:ec2/subnet:Subnet", "s", tags=TAGS,
                                                                     mapPublicIpOnLaunch=False))],
    "OCI chart, digest-pinned image": [res(RELEASE, "rel", chart="oci://registry.example/charts/x", version="v2.0.1",
                                           values={"image": "registry.example/x@sha256:" + "a" * 64})],
    "single replica needs no PDB": [res(DEPLOY, "d", **deployment(replicas=1))],
}
# Tier-scoped rules waive outside their tiers.
ALLOWED_IN_DEV: dict[str, list[PlanResource]] = {
    "no Multi-AZ, no deletion protection, unprotected state": [
        res(RDS, "db", **{**RDS_OK, "multiAz": False, "deletionProtection": False, "skipFinalSnapshot": True,
                          "tags": {**TAGS, "Environment": "dev"}})],
}
