"""EKS control plane and worker-node rules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from contracts.guardrails import REQUIRED_CONTROL_PLANE_LOGS, open_cidrs
from policies.rules.base import StackInfo, as_list, as_mapping, is_set, resource_rule, truthy

EKS_CLUSTER = "aws:eks/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


@resource_rule(
    "eks-endpoint-restricted", [EKS_CLUSTER], area="EKS", severity="high",
    description="The EKS API endpoint is private, or public only to listed CIDR ranges (never 0.0.0.0/0).",
    remediation="Set `mlplatform:cluster.endpointPublicAccess: false`, or list office/VPN ranges in "
                "`publicAccessCidrs`.",
)
def eks_endpoint_restricted(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any],
                            _s: StackInfo) -> Iterable[str]:
    vpc = as_mapping(props.get("vpcConfig"))
    if vpc.get("endpointPublicAccess") is not None and not truthy(vpc.get("endpointPublicAccess")):
        return
    cidrs = [str(c) for c in as_list(vpc.get("publicAccessCidrs"))]
    if not cidrs:
        yield "the public endpoint is open to 0.0.0.0/0 (no publicAccessCidrs)"
    elif open_ := open_cidrs(cidrs):
        yield f"the public endpoint is open to {', '.join(open_)}"


@resource_rule(
    "eks-secrets-encryption", [EKS_CLUSTER], area="EKS", severity="high",
    description="Kubernetes secrets are envelope-encrypted with a customer-managed KMS key.",
    remediation="Give the cluster an `encryptionConfig` with `resources: [secrets]` and a KMS key ARN.",
)
def eks_secrets_encryption(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any],
                           _s: StackInfo) -> Iterable[str]:
    enc = as_mapping(props.get("encryptionConfig"))
    if "secrets" not in as_list(enc.get("resources")):
        yield "encryptionConfig does not cover `secrets`"
    elif not is_set(as_mapping(enc.get("provider")), "keyArn"):  # the key's ARN is unknown until it exists
        yield "encryptionConfig has no provider.keyArn"


@resource_rule(
    "eks-control-plane-logging", [EKS_CLUSTER], area="EKS", severity="medium",
    description="The control plane ships at least the api, audit and authenticator logs to CloudWatch.",
    remediation="Add the missing types to `mlplatform:cluster.logTypes`.",
    config={"requiredLogTypes": {"type": "array", "items": {"type": "string"},
                                 "default": list(REQUIRED_CONTROL_PLANE_LOGS),
                                 "description": "Control-plane log types that must be enabled."}},
)
def eks_control_plane_logging(_t: str, props: Mapping[str, Any], config: Mapping[str, Any],
                              _s: StackInfo) -> Iterable[str]:
    enabled = set(as_list(props.get("enabledClusterLogTypes")))
    missing = [t for t in config["requiredLogTypes"] if t not in enabled]
    if missing:
        yield f"control-plane log types not enabled: {', '.join(missing)}"


@resource_rule(
    "eks-supported-version", [EKS_CLUSTER], area="EKS", severity="high",
    description="The cluster runs a Kubernetes version this platform release is tested against.",
    remediation="Set `mlplatform:cluster.kubernetesVersion` to a supported version (stacks/bom.yaml "
                "`kubernetes.supported`) and follow runbooks/eks-upgrade.md.",
    config={"supportedVersions": {"type": "array", "items": {"type": "string"},
                                  "default": ["1.33", "1.34", "1.35"],
                                  "description": "Kubernetes minor versions allowed (kept equal to the BOM)."}},
)
def eks_supported_version(_t: str, props: Mapping[str, Any], config: Mapping[str, Any],
                          _s: StackInfo) -> Iterable[str]:
    version = props.get("version")
    if not version:
        yield "no explicit Kubernetes version (EKS would pick its default)"
    elif str(version) not in config["supportedVersions"]:
        yield f"Kubernetes {version} is not in the supported set {config['supportedVersions']}"


@resource_rule(
    "nodegroup-uses-launch-template", [NODE_GROUP], area="EKS nodes", severity="medium",
    description="Managed node groups use a launch template, so IMDSv2 and volume encryption are ours to set.",
    remediation="Create the node group through infra/aws/nodegroups.py, which attaches a launch template.",
)
def nodegroup_uses_launch_template(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any],
                                   _s: StackInfo) -> Iterable[str]:
    lt = as_mapping(props.get("launchTemplate"))
    if not (is_set(lt, "id") or is_set(lt, "name")):  # the template's id is unknown until it exists
        yield "node group has no launchTemplate"


@resource_rule(
    "nodegroup-no-remote-access", [NODE_GROUP], area="EKS nodes", severity="high",
    description="Worker nodes accept no SSH (no `remoteAccess`); use SSM Session Manager instead.",
    remediation="Remove `remoteAccess` from the node group.",
)
def nodegroup_no_remote_access(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any],
                               _s: StackInfo) -> Iterable[str]:
    if is_set(props, "remoteAccess"):
        yield "node group enables SSH remoteAccess"


@resource_rule(
    "nodes-imdsv2", [LAUNCH_TEMPLATE], area="EKS nodes", severity="high",
    description="Instances require IMDSv2 tokens with a hop limit of 1, so pods cannot reach node credentials.",
    remediation="Set `metadataOptions: {httpTokens: required, httpPutResponseHopLimit: 1}` on the launch template.",
    config={"maxHopLimit": {"type": "integer", "default": 1,
                            "description": "Largest allowed httpPutResponseHopLimit."}},
)
def nodes_imdsv2(_t: str, props: Mapping[str, Any], config: Mapping[str, Any],
                 _s: StackInfo) -> Iterable[str]:
    meta = as_mapping(props.get("metadataOptions"))
    if meta.get("httpTokens") != "required":
        yield f"metadataOptions.httpTokens is {meta.get('httpTokens')!r}, not 'required'"
    hops = meta.get("httpPutResponseHopLimit")
    if hops is None or int(hops) > int(config["maxHopLimit"]):
        yield f"metadataOptions.httpPutResponseHopLimit is {hops!r}, above {config['maxHopLimit']}"


@resource_rule(
    "nodes-encrypted-volumes", [LAUNCH_TEMPLATE], area="EKS nodes", severity="high",
    description="Every EBS volume of a launch template is encrypted.",
    remediation="Set `ebs.encrypted: true` on each blockDeviceMapping (infra/aws/nodegroups.py does).",
)
def nodes_encrypted_volumes(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any],
                            _s: StackInfo) -> Iterable[str]:
    mappings = [as_mapping(m) for m in as_list(props.get("blockDeviceMappings"))]
    if not mappings:
        yield "no blockDeviceMappings: the root volume falls back to the AMI's (unencrypted) default"
    for m in mappings:
        ebs = as_mapping(m.get("ebs"))
        if ebs and not truthy(ebs.get("encrypted")):
            yield f"volume {m.get('deviceName', '?')} is not encrypted"


@resource_rule(
    "nodes-no-public-ip", [LAUNCH_TEMPLATE], area="EKS nodes", severity="high",
    description="Worker nodes get no public IP address.",
    remediation="Drop `associatePublicIpAddress` from the launch template's networkInterfaces; nodes live in "
                "private subnets.",
)
def nodes_no_public_ip(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any],
                       _s: StackInfo) -> Iterable[str]:
    for i, nic in enumerate(as_list(props.get("networkInterfaces"))):
        if truthy(as_mapping(nic).get("associatePublicIpAddress")):
            yield f"networkInterfaces[{i}] associates a public IP"
