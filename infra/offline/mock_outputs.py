"""Realistic provider outputs for offline synthesis.

A mock that echoes only inputs makes dependent values (ARNs, endpoints, OIDC issuer, generated
passwords) resolve to nothing, and inputs built from them silently lose keys. These mocks return
what the real provider would: deterministic ARNs, ids, endpoints, certificate data and `result`s.

With `first_preview=True` they answer as the engine does in the first `pulumi preview` of a stack,
when no resource exists yet: the id is empty and every value the provider computes (ARNs, ids,
endpoints, certificate data, generated passwords) is Pulumi's unknown sentinel, so it and every
input built from it are unknown. Inputs stay known, and so do the physical names the provider
assigns at `Check` (auto-naming), which a real preview shows too. Data-source calls answer as usual:
the engine runs them during previews.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pulumi
from pulumi.runtime import rpc

ACCOUNT_ID = "123456789012"
# The value the engine hands the program (and `pulumi preview --json` prints) for an output that is
# not known until the resource exists: pulumi/runtime/rpc.py UNKNOWN, pkg/resource/stack
# computedValuePlaceholder.
UNKNOWN = rpc.UNKNOWN
# Outputs known in a first preview although the program did not set them: names the provider
# chooses in `Check` (auto-naming), before anything is created.
PLAN_KNOWN = frozenset({"name", "bucket", "nodeGroupName", "replicationGroupId", "clusterName", "identifier"})


def _digest(*parts: str, n: int = 12) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:n]


def planned(computed: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """The provider-computed part of a resource's state as a first preview has it (see module doc)."""
    out: dict[str, Any] = {}
    for key, value in computed.items():
        if key in inputs:
            given = inputs[key]
            if isinstance(value, dict) and isinstance(given, dict):
                # A block the program sets in part (e.g. an EKS vpcConfig): the rest is computed.
                out[key] = {**{k: UNKNOWN for k in value if k not in given}, **given}
        elif key in PLAN_KNOWN:
            out[key] = value
        else:
            out[key] = UNKNOWN
    return out


class RealisticMocks(pulumi.runtime.Mocks):
    def __init__(self, region: str = "eu-west-1", first_preview: bool = False) -> None:
        self.region = region
        self.first_preview = first_preview

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        # Failures must be a list: the mock monitor iterates over them.
        token = args.token
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:role/deployer",
                    "userId": "AROAEXAMPLE", "id": ACCOUNT_ID}, []
        if token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region, "id": self.region}, []
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}, []
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{self.region}{s}" for s in "abc"]
            return {"names": names, "zoneIds": [f"euw1-az{i}" for i in (1, 2, 3)], "id": self.region}, []
        return {}, []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        typ, name, inputs = args.typ, args.name, dict(args.inputs)
        rid = f"{name}-{_digest(typ, name, n=8)}"
        computed = self._outputs(typ, name, rid, inputs)
        if self.first_preview:
            # Nothing exists yet: the id is unknown (""), computed outputs too.
            return "", {**inputs, **planned(computed, inputs)}
        return rid, {**inputs, **computed}

    def _arn(self, service: str, resource: str, regional: bool = True) -> str:
        region = self.region if regional else ""
        return f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{resource}"

    def _outputs(self, typ: str, name: str, rid: str, inputs: dict[str, Any]) -> dict[str, Any]:
        physical = inputs.get("name") or rid
        handler = _HANDLERS.get(typ)
        if handler is not None:
            return handler(self, physical, rid, inputs)
        if typ.startswith("aws:"):
            module = typ.split(":")[1].split("/")[0]
            return {"arn": self._arn(module, f"{typ.rsplit(':', 1)[-1].lower()}/{rid}"), "name": physical}
        if typ.startswith("random:"):
            return {"result": f"mock-{_digest(typ, name, n=24)}"}
        return {}


def _cluster(m: RealisticMocks, physical: str, rid: str, inputs: dict) -> dict:
    oidc_id = _digest("oidc", physical, n=32).upper()
    vpc = dict(inputs.get("vpcConfig") or {})
    vpc.update({"clusterSecurityGroupId": f"sg-{_digest('cluster-sg', physical, n=17)}",
                "vpcId": f"vpc-{_digest('vpc', n=17)}"})
    return {
        "arn": m._arn("eks", f"cluster/{physical}"), "name": physical, "status": "ACTIVE",
        "endpoint": f"https://{oidc_id}.gr7.{m.region}.eks.amazonaws.com",
        "certificateAuthority": {"data": base64.b64encode(b"-----BEGIN CERTIFICATE-----mock").decode()},
        "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{m.region}.amazonaws.com/id/{oidc_id}"}]}],
        "vpcConfig": vpc, "platformVersion": "eks.1",
    }


def _role(m: RealisticMocks, physical: str, rid: str, inputs: dict) -> dict:
    return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{physical}", "name": physical, "uniqueId": f"AROA{rid.upper()}"}


def _kms_key(m: RealisticMocks, physical: str, rid: str, inputs: dict) -> dict:
    key_id = "-".join(_digest(rid, part, n=n) for part, n in (("a", 8), ("b", 4), ("c", 4), ("d", 4), ("e", 12)))
    return {"arn": m._arn("kms", f"key/{key_id}"), "keyId": key_id}


def _oidc_provider(m: RealisticMocks, physical: str, rid: str, inputs: dict) -> dict:
    url = str(inputs.get("url", "")).removeprefix("https://")
    return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{url}"}


def _launch_template(m: RealisticMocks, physical: str, rid: str, inputs: dict) -> dict:
    return {"arn": m._arn("ec2", f"launch-template/lt-{_digest(rid, n=17)}"), "latestVersion": 1,
            "defaultVersion": 1, "id": f"lt-{_digest(rid, n=17)}"}


def _node_group(m: RealisticMocks, physical: str, rid: str, inputs: dict) -> dict:
    name = inputs.get("nodeGroupName") or rid
    return {"arn": m._arn("eks", f"nodegroup/{inputs.get('clusterName', 'cluster')}/{name}/{_digest(rid)}"),
            "nodeGroupName": name, "status": "ACTIVE"}


def _log_group(m: RealisticMocks, physical: str, rid: str, inputs: dict) -> dict:
    return {"arn": m._arn("logs", f"log-group:{physical}"), "name": physical}


def _bucket(m: RealisticMocks, physical: str, rid: str, inputs: dict) -> dict:
    bucket = inputs.get("bucket") or f"{rid}".lower()
    return {"arn": f"arn:aws:s3:::{bucket}", "bucket": bucket, "id": bucket,
            "bucketRegionalDomainName": f"{bucket}.s3.{m.region}.amazonaws.com"}


def _replication_group(m: RealisticMocks, physical: str, rid: str, inputs: dict) -> dict:
    gid = inputs.get("replicationGroupId") or rid
    return {"arn": m._arn("elasticache", f"replicationgroup:{gid}"), "port": inputs.get("port", 6379),
            "primaryEndpointAddress": f"master.{gid}.abcdef.euw1.cache.amazonaws.com",
            "readerEndpointAddress": f"replica.{gid}.abcdef.euw1.cache.amazonaws.com"}


def _msk(m: RealisticMocks, physical: str, rid: str, inputs: dict) -> dict:
    name = inputs.get("clusterName") or rid
    hosts = [f"b-{i}.{name}.abc123.c2.kafka.{m.region}.amazonaws.com" for i in (1, 2, 3)]
    # One listener per enabled client authentication (9098 IAM, 9096 SCRAM), on the same hosts.
    scram = bool((inputs.get("clientAuthentication") or {}).get("sasl", {}).get("scram"))
    return {"arn": m._arn("kafka", f"cluster/{name}/{_digest(rid, n=8)}-1"),
            "bootstrapBrokersSaslIam": ",".join(f"{h}:9098" for h in hosts),
            "bootstrapBrokersSaslScram": ",".join(f"{h}:9096" for h in hosts) if scram else "",
            "currentVersion": "K3AEGXETSR30VB", "zookeeperConnectString": ""}


def _msk_configuration(m: RealisticMocks, physical: str, rid: str, inputs: dict) -> dict:
    return {"arn": m._arn("kafka", f"configuration/{physical}/{_digest(rid, n=8)}"), "latestRevision": 1}


def _db_instance(m: RealisticMocks, physical: str, rid: str, inputs: dict) -> dict:
    ident = inputs.get("identifier") or rid
    address = f"{ident}.c9akciq32.{m.region}.rds.amazonaws.com"
    secret = m._arn("secretsmanager", f"secret:rds!db-{_digest(rid, n=8)}-AbCdEf")
    return {"arn": m._arn("rds", f"db:{ident}"), "address": address, "endpoint": f"{address}:5432",
            "port": 5432, "masterUserSecrets": [{"secretArn": secret, "secretStatus": "active",
                                                  "kmsKeyId": inputs.get("masterUserSecretKmsKeyId", "")}]}


def _secret(m: RealisticMocks, physical: str, rid: str, inputs: dict) -> dict:
    return {"arn": m._arn("secretsmanager", f"secret:{physical}-AbCdEf"), "id": physical}


def _ecr(m: RealisticMocks, physical: str, rid: str, inputs: dict) -> dict:
    return {"arn": m._arn("ecr", f"repository/{physical}"),
            "repositoryUrl": f"{ACCOUNT_ID}.dkr.ecr.{m.region}.amazonaws.com/{physical}"}


def _policy_doc(m: RealisticMocks, physical: str, rid: str, inputs: dict) -> dict:
    return {"json": json.dumps(inputs)}


_HANDLERS = {
    "aws:eks/cluster:Cluster": _cluster,
    "aws:iam/role:Role": _role,
    "aws:kms/key:Key": _kms_key,
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": _oidc_provider,
    "aws:ec2/launchTemplate:LaunchTemplate": _launch_template,
    "aws:eks/nodeGroup:NodeGroup": _node_group,
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:s3/bucket:Bucket": _bucket,
    "aws:s3/bucketV2:BucketV2": _bucket,
    "aws:elasticache/replicationGroup:ReplicationGroup": _replication_group,
    "aws:msk/cluster:Cluster": _msk,
    "aws:msk/configuration:Configuration": _msk_configuration,
    "aws:rds/instance:Instance": _db_instance,
    "aws:secretsmanager/secret:Secret": _secret,
    "aws:ecr/repository:Repository": _ecr,
    "aws:iam/getPolicyDocument:getPolicyDocument": _policy_doc,
}
