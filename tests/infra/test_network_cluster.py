"""Foundation resources under mocks, for every environment: real inputs of the synthesized program."""

from __future__ import annotations

import json

import pytest

from infra.aws.irsa import assert_no_wildcard_admin, trust_policy
from infra.aws.nodegroups import autoscaler_tags
from stacks.config import load_stack_file, stack_file

VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
NAT = "aws:ec2/natGateway:NatGateway"
EKS = "aws:eks/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
EXPECTED_NATS = {"dev": 1, "staging": 1, "prod": 3}


def _tier(synthesis, tier: str) -> list:
    return [r for r in synthesis.of_type(SUBNET) if r.inputs["tags"]["Tier"] == tier]


def test_three_distinct_zones_per_tier(synth, env):
    s = synth(env)
    for tier in ("public", "private", "isolated"):
        subnets = _tier(s, tier)
        assert len(subnets) == 3
        assert len({sn.inputs["availabilityZone"] for sn in subnets}) == 3
        assert all(sn.inputs["mapPublicIpOnLaunch"] is False for sn in subnets)


def test_nat_gateways_per_environment(synth, env):
    s = synth(env)
    nats = s.of_type(NAT)
    assert len(nats) == EXPECTED_NATS[env]
    public_ids = {sn.name for sn in _tier(s, "public")}
    # NAT gateways live in public subnets (the mock id starts with the subnet's resource name).
    assert all(n.inputs["subnetId"].rsplit("-", 1)[0] in public_ids for n in nats)


def test_private_route_tables_use_nat_and_isolated_has_no_internet(synth, env):
    s = synth(env)
    tables = {r.name: r for r in s.of_type("aws:ec2/routeTable:RouteTable")}
    private = [t for name, t in tables.items() if "-private-rt-" in name]
    assert len(private) == 3
    assert all(t.inputs["routes"][0]["natGatewayId"] for t in private)
    isolated = next(t for name, t in tables.items() if name.endswith("isolated-rt"))
    assert not isolated.inputs.get("routes")


def test_subnet_tags_for_load_balancers(synth, env):
    s = synth(env)
    cluster_tag = f"kubernetes.io/cluster/mlplatform-{env}-eks"
    assert len(_tier(s, "public")) == len(_tier(s, "private")) == 3  # the checks below are not vacuous
    assert all(sn.inputs["tags"]["kubernetes.io/role/elb"] == "1" for sn in _tier(s, "public"))
    assert all(sn.inputs["tags"]["kubernetes.io/role/internal-elb"] == "1" for sn in _tier(s, "private"))
    assert all(sn.inputs["tags"][cluster_tag] == "shared" for sn in _tier(s, "private"))


def test_flow_logs_and_s3_gateway_endpoint(synth, env):
    s = synth(env)
    flow = s.one("aws:ec2/flowLog:FlowLog")
    assert flow.inputs["trafficType"] == "ALL"
    assert flow.inputs["logDestination"].startswith("arn:aws:logs:")
    endpoints = {e.inputs["serviceName"]: e for e in s.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")}
    assert endpoints["com.amazonaws.eu-west-1.s3"].inputs["vpcEndpointType"] == "Gateway"
    wanted = load_stack_file(stack_file(env)).network.interface_endpoints
    interface = {name.removeprefix("com.amazonaws.eu-west-1.") for name, e in endpoints.items()
                 if e.inputs["vpcEndpointType"] == "Interface"}
    assert interface == set(wanted)


def test_cluster_secrets_encrypted_with_rotating_kms_key(synth, env):
    s = synth(env)
    cluster = s.one(EKS)
    key = s.one("aws:kms/key:Key", "cluster-secrets-key")
    assert key.inputs["enableKeyRotation"] is True
    encryption = cluster.inputs["encryptionConfig"]
    assert encryption["resources"] == ["secrets"]
    assert encryption["provider"]["keyArn"].startswith("arn:aws:kms:")
    assert key.urn in cluster.dependencies


def test_cluster_logs_and_version(synth, env):
    cluster = synth(env).one(EKS)
    assert {"api", "audit", "authenticator"} <= set(cluster.inputs["enabledClusterLogTypes"])
    assert cluster.inputs["version"] == "1.34"
    assert cluster.inputs["accessConfig"]["authenticationMode"] == "API"


@pytest.mark.parametrize(("env_name", "public", "cidrs"), [
    ("dev", True, ["0.0.0.0/0"]),
    ("staging", True, ["203.0.113.0/24"]),
    ("prod", False, None),
])
def test_endpoint_exposure_per_environment(synth, env_name, public, cidrs):
    vpc_config = synth(env_name).one(EKS).inputs["vpcConfig"]
    assert vpc_config["endpointPrivateAccess"] is True
    assert vpc_config["endpointPublicAccess"] is public
    assert vpc_config.get("publicAccessCidrs") == cidrs


def test_cluster_nodes_only_in_private_subnets(synth, env):
    s = synth(env)
    private_ids = {sn.name for sn in _tier(s, "private")}
    groups = s.of_type(NODE_GROUP)
    assert len(groups) >= 3
    for group in [*groups, s.one(EKS)]:
        subnet_ids = group.inputs.get("subnetIds") or group.inputs["vpcConfig"]["subnetIds"]
        assert {i.rsplit("-", 1)[0] for i in subnet_ids} == private_ids


def test_launch_templates_require_imdsv2_and_encrypted_gp3(synth, env):
    templates = synth(env).of_type(LAUNCH_TEMPLATE)
    assert templates
    for lt in templates:
        md = lt.inputs["metadataOptions"]
        assert md["httpTokens"] == "required"
        assert md["httpPutResponseHopLimit"] == 1
        ebs = lt.inputs["blockDeviceMappings"][0]["ebs"]
        assert ebs["encrypted"] == "true" and ebs["volumeType"] == "gp3"


def test_node_group_sizes_labels_taints_from_config(synth, env):
    s = synth(env)
    cfg = load_stack_file(stack_file(env))
    groups = {g.inputs["nodeGroupName"]: g for g in s.of_type(NODE_GROUP)}
    assert set(groups) == {f"mlplatform-{env}-{name}" for name in cfg.node_groups}
    for name, want in cfg.node_groups.items():
        got = groups[f"mlplatform-{env}-{name}"]
        assert got.inputs["scalingConfig"] == {
            "minSize": want.min_size, "desiredSize": want.desired_size, "maxSize": want.max_size}
        assert got.inputs["capacityType"] == want.capacity_type
        assert got.inputs["labels"]["mlplatform.io/node-role"] == want.role
        assert autoscaler_tags(f"mlplatform-{env}-eks").items() <= got.inputs["tags"].items()
        taints = {t["key"] for t in got.inputs.get("taints") or []}
        assert taints == {"system": {"CriticalAddonsOnly"}, "gpu": {"nvidia.com/gpu"}}.get(want.role, set())
        assert "scalingConfig.desiredSize" in got.ignore_changes


def test_gpu_group_in_prod_scales_from_zero():
    cfg = load_stack_file(stack_file("prod"))
    gpu = cfg.node_groups["gpu"]
    assert gpu.min_size == 0 and gpu.instance_types[0].startswith("g")


def test_addons_pinned_from_bom_with_irsa(synth, env):
    from stacks.bom import load_bom

    s = synth(env)
    addons = {a.inputs["addonName"]: a for a in s.of_type("aws:eks/addon:Addon")}
    assert {k: a.inputs["addonVersion"] for k, a in addons.items()} == load_bom().addons_for("1.34")
    assert addons["aws-ebs-csi-driver"].inputs["serviceAccountRoleArn"].startswith("arn:aws:iam::")
    storage_class = s.one("kubernetes:storage.k8s.io/v1:StorageClass")
    assert storage_class.inputs["parameters"] == {"type": "gp3", "encrypted": "true", "fsType": "ext4"}
    assert storage_class.inputs["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"


def test_irsa_trust_is_scoped_to_one_service_account(synth, env):
    s = synth(env)
    components = s.of_type("mlplatform:identity:IrsaRole")
    assert components
    for component in components:
        role = next(r for r in s.resources if r.parent == component.urn and r.type == "aws:iam/role:Role")
        statement = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        assert len(statement) == 1
        conditions = statement[0]["Condition"]["StringEquals"]
        subjects = [v for k, v in conditions.items() if k.endswith(":sub")]
        namespace, sa = role.inputs["tags"]["ServiceAccount"].split("/")
        assert subjects == [f"system:serviceaccount:{namespace}:{sa}"]
        assert [v for k, v in conditions.items() if k.endswith(":aud")] == ["sts.amazonaws.com"]
        assert statement[0]["Principal"]["Federated"].startswith("arn:aws:iam::123456789012:oidc-provider/")


def test_trust_policy_and_wildcard_guard():
    doc = json.loads(trust_policy("arn:p", "https://oidc.example/id/X", "ns", "sa"))
    assert doc["Statement"][0]["Condition"]["StringEquals"]["oidc.example/id/X:sub"] == "system:serviceaccount:ns:sa"
    with pytest.raises(ValueError, match=r"grants too much: a statement allows \*: every action of every service"):
        assert_no_wildcard_admin([{"Effect": "Allow", "Action": "*", "Resource": "*"}])
    with pytest.raises(ValueError, match=r"allows s3:GetObject on \* without a condition"):  # every bucket's data
        assert_no_wildcard_admin([{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}])
    assert_no_wildcard_admin([{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}])
    assert_no_wildcard_admin([{"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}])


def test_every_taggable_aws_resource_is_tagged(synth, env):
    import importlib
    import inspect

    s = synth(env)
    required = {"Environment": env, "Platform": "mlplatform", "PlatformVersion": s.stack_outputs["platformVersion"],
                "ManagedBy": "pulumi"}
    checked = 0
    for r in s.aws_resources():
        module_path, cls = r.type.split(":")[1].split("/")[0], r.type.rsplit(":", 1)[-1]
        resource_cls = getattr(importlib.import_module(f"pulumi_aws.{module_path}"), cls)
        if "tags" not in inspect.signature(resource_cls._internal_init).parameters:
            continue
        checked += 1
        assert required.items() <= (r.inputs.get("tags") or {}).items(), f"{r.type} {r.name} lacks platform tags"
    assert checked > 20
    default_tags = s.one("pulumi:providers:aws").inputs["defaultTags"]
    # Provider inputs travel JSON-encoded on the wire.
    assert json.loads(default_tags)["tags"] == required


def test_every_aws_resource_uses_the_tagging_provider(synth, env):
    s = synth(env)
    provider = s.one("pulumi:providers:aws")
    resources = list(s.aws_resources())
    assert len(resources) > 50 and all(r.provider == provider.urn for r in resources)


def test_stack_exports_platform_version(synth, env):
    from stacks.bom import load_bom

    outputs = synth(env).stack_outputs
    assert outputs["platformVersion"] == load_bom().platform.version
    assert outputs["environment"] == env
    assert outputs["kubeconfig"] == "[secret]"


def test_preview_mode_and_update_mode_declare_the_same_resources(synth):
    from infra.offline.synth import synthesize

    preview = synth("dev")  # the session's synthesis is the preview one
    update = synthesize("dev", preview=False)
    assert sorted(r.urn for r in preview.resources) == sorted(r.urn for r in update.resources)
