"""The AWS checks of `mlplat conform` (creation order and launch templates, day 2, accelerators, settings that
create nothing): the stacks pass, and each defect class put back into a stack's plan is reported with its
resource (or config key) and field."""

from __future__ import annotations

import base64
import copy
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.conformance import accelerators, aws_checks, aws_order, day2, dead_settings
from infra.conformance.aws_graph import ADDON, ATTACHMENT, LAUNCH_TEMPLATE, NODE_GROUP, AwsGraph
from infra.conformance.charts import ChartStore, mirror_from_env
from infra.conformance.model import KubeObject
from infra.conformance.plan import Plan
from infra.conformance.render import load_chart, objects_of, render_release
from infra.offline.synth import Synthesis

ROOT = Path(__file__).resolve().parents[2]
if not os.environ.get("MLPLAT_CHART_MIRROR"):
    os.environ["MLPLAT_CHART_MIRROR"] = str(ROOT.parent / "shared" / "charts")
MIME = ("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B\"\n\n--B\n"
        "Content-Type: text/x-shellscript; charset=\"us-ascii\"\n\n#!/bin/bash\necho hi\n\n--B--\n")


@pytest.fixture(scope="session")
def states_of(synth: Callable[[str], Synthesis]) -> Callable[[str], dict[str, dict[str, Any]]]:
    return lambda stack: Plan.from_preview(synth(stack).to_preview_json()).states


def _graph(states: dict[str, dict[str, Any]]) -> AwsGraph:
    return AwsGraph(states)


def _copy(states_of: Callable[[str], dict[str, dict[str, Any]]], stack: str = "prod") -> dict[str, dict[str, Any]]:
    return copy.deepcopy(states_of(stack))


def _of(states: dict[str, dict[str, Any]], type_: str, contains: str = "") -> list[dict[str, Any]]:
    return [s for s in states.values() if s["type"] == type_ and contains in s["urn"]]


def _texts(problems: list) -> list[str]:
    return [str(p) for p in problems]


# ---------------------------------------------------------------- the stacks pass
def test_stacks_have_no_creation_order_or_day2_findings(states_of, env):
    graph = _graph(states_of(env))
    assert _texts(aws_order.check(graph, [])) == []
    assert _texts(day2.check(graph)) == []


def test_vpc_cni_and_its_cni_policy_exist_before_every_node_group(states_of, env):
    graph = _graph(states_of(env))
    cni = [a for a in graph.of_type(ADDON) if a.inputs["addonName"] == "vpc-cni"]
    assert len(cni) == 1 and cni[0].inputs["serviceAccountRoleArn"]
    cni_grant = next(a for a in graph.of_type(ATTACHMENT) if a.inputs["policyArn"].endswith("/AmazonEKS_CNI_Policy"))
    for group in graph.of_type(NODE_GROUP):
        assert graph.created_before(cni[0].urn, group.urn) and graph.created_before(cni_grant.urn, group.urn)
    for name in ("coredns", "aws-ebs-csi-driver"):
        addon = next(a for a in graph.of_type(ADDON) if a.inputs["addonName"] == name)
        assert all(graph.created_before(g.urn, addon.urn) for g in graph.of_type(NODE_GROUP))


def test_launch_templates_carry_no_user_data(states_of, env):
    for lt in _of(states_of(env), LAUNCH_TEMPLATE):
        assert "userData" not in lt["inputs"]


def test_parent_waits_count_as_created_before():
    """A child waits for its parent's URN, which resolves after the parent's own dependencies."""
    states = {
        "a": {"urn": "a", "type": "t", "custom": True},
        "comp": {"urn": "comp", "type": "c", "custom": False, "dependencies": ["a"]},
        "child": {"urn": "child", "type": "t", "custom": True, "parent": "comp"},
    }
    graph = _graph(states)
    assert graph.created_before("a", "child") and not graph.created_before("child", "a")


# ---------------------------------------------------------------- launch templates
@pytest.mark.parametrize(("field", "value", "expected"), [
    ("userData", base64.b64encode(b"# nodes bootstrap with the defaults\n").decode(), ".userData: user data"),
    ("iamInstanceProfile", {"name": "x"}, ".iamInstanceProfile: EKS refuses"),
    ("networkInterfaces", [{"subnetId": "subnet-1"}], ".networkInterfaces[0].subnetId"),
    ("instanceType", "m6i.large", "NodeGroup nodes-system .instanceTypes"),
    ("imageId", "ami-123", "NodeGroup nodes-system .amiType"),
    ("vpcSecurityGroupIds", ["sg-0custom"], ".vpcSecurityGroupIds: custom security groups replace"),
])
def test_launch_template_defects_are_reported(states_of, field, value, expected):
    states = _copy(states_of)
    _of(states, LAUNCH_TEMPLATE, "nodes-system-lt")[0]["inputs"][field] = value
    found = _texts(aws_order.launch_template_problems(_graph(states)))
    assert any(expected in f for f in found), found


def test_mime_multipart_user_data_is_accepted(states_of):
    states = _copy(states_of)
    _of(states, LAUNCH_TEMPLATE, "nodes-system-lt")[0]["inputs"]["userData"] = base64.b64encode(MIME.encode()).decode()
    assert aws_order.launch_template_problems(_graph(states)) == []


def test_disk_size_with_a_launch_template_is_reported(states_of):
    states = _copy(states_of)
    _of(states, NODE_GROUP, "nodes-general")[0]["inputs"]["diskSize"] = 50
    assert any("nodes-general .diskSize" in t for t in _texts(aws_order.launch_template_problems(_graph(states))))


# ---------------------------------------------------------------- what nodes need when they join
def _drop(states: dict[str, dict[str, Any]], urns: set[str]) -> None:
    for st in states.values():
        st["dependencies"] = [d for d in st.get("dependencies") or [] if d not in urns]


def test_cni_permission_granted_after_the_nodes_join_is_reported(states_of):
    """The defect as it was: vpc-cni (and its IRSA role) created after the node groups."""
    states = _copy(states_of)
    network = {s["urn"] for s in states.values() if "node-network" in s["urn"]}
    _drop(states, network)
    found = _texts(aws_order.node_join_problems(_graph(states)))
    assert len([f for f in found if ".nodeRoleArn: aws-node has no AmazonEKS_CNI_Policy" in f]) == 4, found


def test_cni_policy_on_the_node_role_satisfies_the_join(states_of):
    states = _copy(states_of)
    _drop(states, {s["urn"] for s in states.values() if "node-network" in s["urn"]})
    worker = _of(states, ATTACHMENT, "AmazonEKSWorkerNodePolicy")[0]
    cni = copy.deepcopy(worker)
    cni["urn"] = worker["urn"].replace("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy")
    cni["inputs"]["policyArn"] = "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"
    states[cni["urn"]] = cni
    for group in _of(states, NODE_GROUP):
        group["dependencies"].append(cni["urn"])
    assert aws_order.node_join_problems(_graph(states)) == []


def test_no_self_managed_add_ons_needs_kube_proxy_before_the_nodes(states_of):
    states = _copy(states_of)
    _of(states, "aws:eks/cluster:Cluster")[0]["inputs"]["bootstrapSelfManagedAddons"] = False
    found = _texts(aws_order.node_join_problems(_graph(states)))
    assert len(found) == 4 and all(".clusterName: the cluster has no self-managed kube-proxy" in f for f in found)


def test_node_role_without_worker_or_registry_policy_is_reported(states_of):
    states = _copy(states_of)
    ecr = _of(states, ATTACHMENT, "AmazonEC2ContainerRegistryReadOnly")[0]
    del states[ecr["urn"]]
    _drop(states, {ecr["urn"]})
    found = _texts(aws_order.node_join_problems(_graph(states)))
    assert any("cannot pull images from ECR" in f for f in found), found


# ---------------------------------------------------------------- add-ons, IRSA, load balancers
def test_coredns_before_any_node_group_is_reported(states_of):
    states = _copy(states_of)
    groups = {s["urn"] for s in _of(states, NODE_GROUP)}
    _drop(states, groups | {s["urn"] for s in states.values() if s["type"] == "mlplatform:cluster:NodeGroups"})
    found = _texts(aws_order.addon_problems(_graph(states)))
    assert any("addons-coredns .addonName" in f for f in found), found


def test_irsa_grants_created_after_their_consumer_are_reported(states_of):
    """The defect as it was: consumers depended on the role ARN alone, not on the role's policies."""
    states = _copy(states_of)
    grants = {s["urn"] for s in states.values() if s["type"] in (ATTACHMENT, "aws:iam/rolePolicy:RolePolicy")
              and "IrsaRole" in s["urn"]}
    addon = _of(states, ADDON, "addons-aws-ebs-csi-driver")[0]
    addon["dependencies"] = [d for d in addon["dependencies"] if d not in grants]
    addon["parent"] = None
    found = _texts(aws_order.addon_problems(_graph(states)))
    assert any("addons-aws-ebs-csi-driver .serviceAccountRoleArn" in f for f in found), found


def test_load_balancer_service_before_the_controller_is_reported(states_of):
    states = _copy(states_of)
    service = {"urn": "urn:svc", "type": "kubernetes:core/v1:Service", "custom": True, "dependencies": []}
    states["urn:svc"] = service
    obj = KubeObject({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ui", "namespace": "kubeflow"},
                      "spec": {"type": "LoadBalancer"}}, origin="plan ui", urn="urn:svc")
    found = _texts(aws_order.release_problems(_graph(states), [obj]))
    assert any("Service kubeflow/ui" in f and ".spec" in f for f in found), found


def test_cluster_created_before_its_role_holds_the_cluster_policy_is_reported(states_of):
    """The defect as it was: the cluster waited for its role, not for AmazonEKSClusterPolicy on it."""
    states = _copy(states_of)
    policy = _of(states, ATTACHMENT, "cluster-cluster-policy")[0]["urn"]
    _of(states, "aws:eks/cluster:Cluster")[0]["dependencies"].remove(policy)
    found = _texts(aws_order.service_role_problems(_graph(states)))
    assert found == ["[aws-order] Cluster cluster-eks .roleArn: uses role cluster-role before its grants "
                     "cluster-cluster-policy exist (depend on them)"]


def test_flow_log_before_its_delivery_policy_is_reported(states_of):
    states = _copy(states_of)
    flow_log = _of(states, "aws:ec2/flowLog:FlowLog")[0]
    flow_log["dependencies"] = [d for d in flow_log["dependencies"] if "flow-logs-policy" not in d]
    assert any("FlowLog network-flow-log .roleArn" in t for t in _texts(aws_order.service_role_problems(
        _graph(states))))


def test_load_balancer_controller_without_vpc_id_behind_hop_limit_1_is_reported(states_of):
    states = _copy(states_of)
    release = _of(states, "kubernetes:helm.sh/v3:Release", "aws-load-balancer-controller")[0]
    del release["inputs"]["values"]["vpcId"]
    found = _texts(aws_order.imds_problems(_graph(states)))
    assert [f.split(":")[0] for f in found] == ["[aws-order] Release aws-load-balancer-controller .values.vpcId"]


@pytest.mark.parametrize(("version", "replicas", "expected"), [
    ("3.5.1", 3, ".clusterArn: the topic API needs Kafka 3.6.0 or later"),
    ("3.8.x", 4, ".replicationFactor: 4 replicas on 3 brokers"),
])
def test_msk_topic_preconditions_are_reported(states_of, version, replicas, expected):
    states = _copy(states_of)
    _of(states, aws_order.MSK_CLUSTER)[0]["inputs"]["kafkaVersion"] = version
    _of(states, aws_order.MSK_TOPIC)[0]["inputs"]["replicationFactor"] = replicas
    found = _texts(aws_order.topic_problems(_graph(states)))
    assert len(found) == 1 and expected in found[0], found


# ---------------------------------------------------------------- day 2
def test_exact_rds_minor_version_with_automatic_upgrades_is_reported(states_of):
    states = _copy(states_of)
    _of(states, day2.RDS_INSTANCE)[0]["inputs"]["engineVersion"] = "16.10"
    assert any(".engineVersion" in t for t in _texts(day2.check(_graph(states))))


@pytest.mark.parametrize(("type_", "path"), [
    (day2.RDS_INSTANCE, "allocatedStorage"),
    (day2.MSK_CLUSTER, day2.MSK_VOLUME),
    (NODE_GROUP, "scalingConfig.desiredSize"),
])
def test_inputs_aws_changes_without_ignore_changes_are_reported(states_of, type_, path):
    states = _copy(states_of)
    node = _of(states, type_)[0]
    node["ignoreChanges"] = [p for p in node.get("ignoreChanges") or [] if p != path]
    found = _texts(day2.check(_graph(states)))
    assert any(f".{path}" in f for f in found), found


def test_patch_pinned_redis_is_reported(states_of):
    states = _copy(states_of)
    _of(states, day2.REPLICATION_GROUP)[0]["inputs"]["engineVersion"] = "7.1.0"
    assert any("ReplicationGroup" in t and ".engineVersion" in t for t in _texts(day2.check(_graph(states))))


# ---------------------------------------------------------------- accelerators
def _device_plugin(states: dict[str, dict[str, Any]], values: dict[str, Any] | None) -> list[KubeObject]:
    """The NVIDIA device plugin rendered with the pinned chart and the plan's values (or the chart's own)."""
    plan = Plan.from_states("prod", states.values())
    release = plan.release("nvidia-device-plugin")
    if values is not None:
        release.values = values
    store = ChartStore(mirror=mirror_from_env(), online=False)
    rendered = render_release(load_chart(store.path(release.chart, release.version, release.repository or "")),
                              release)
    assert rendered.error is None
    return objects_of(release, rendered.templates)


def test_gpu_group_with_the_device_plugin_passes(states_of):
    states = states_of("prod")
    assert accelerators.check(_graph(states), _device_plugin(copy.deepcopy(states), None)) == []


def test_gpu_group_without_a_device_plugin_is_reported(states_of):
    found = _texts(accelerators.check(_graph(states_of("prod")), []))
    assert any("NodeGroup nodes-gpu .instanceTypes: no pod can ever be given a GPU" in f for f in found), found


def test_device_plugin_with_the_charts_default_affinity_is_reported(states_of):
    """The chart's own affinity wants node-feature-discovery labels that EKS nodes do not have."""
    states = copy.deepcopy(states_of("prod"))
    found = _texts(accelerators.check(_graph(states), _device_plugin(states, {})))
    assert any("required node affinity matches none" in f for f in found), found


def test_gpu_group_on_a_standard_ami_or_without_toleration_is_reported(states_of):
    states = _copy(states_of)
    plugin = _device_plugin(copy.deepcopy(states), None)
    _of(states, NODE_GROUP, "nodes-gpu")[0]["inputs"]["taints"] = [
        {"key": "dedicated", "value": "gpu", "effect": "NO_SCHEDULE"}]
    assert any("does not tolerate the group's taint dedicated=gpu" in f
               for f in _texts(accelerators.check(_graph(states), plugin)))
    _of(states, NODE_GROUP, "nodes-gpu")[0]["inputs"]["amiType"] = "AL2023_x86_64_STANDARD"
    assert any("nodes-gpu .amiType" in f for f in _texts(accelerators.check(_graph(states), plugin)))


# ---------------------------------------------------------------- settings that create nothing
def test_every_setting_is_read_by_the_program():
    assert _texts(dead_settings.check()) == []


def test_a_setting_no_resource_reads_is_reported(tmp_path):
    for entry in dead_settings.PROGRAM:
        src = ROOT / entry
        if src.is_dir():
            shutil.copytree(src, tmp_path / entry)
        else:
            (tmp_path / entry).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, tmp_path / entry)
    kafka = tmp_path / "infra/aws/kafka.py"
    text = kafka.read_text()
    assert "partition_count=topic.partitions" in text
    kafka.write_text(text.replace("partition_count=topic.partitions", "partition_count=6"))
    assert _texts(dead_settings.check(tmp_path)) == [
        "[dead-setting] mlplatform:kafka.topics[].partitions: validated by the stack schema but read by no "
        "resource of the program: the setting changes nothing in AWS or the cluster"]


def test_the_conform_pass_runs_every_aws_check(states_of):
    """`mlplat conform` calls aws_checks.check (runner step 6): one defect of each class, each reported."""
    states = _copy(states_of)
    _of(states, LAUNCH_TEMPLATE, "nodes-system-lt")[0]["inputs"]["iamInstanceProfile"] = {"name": "x"}
    _of(states, day2.RDS_INSTANCE)[0]["ignoreChanges"] = []
    plan = Plan.from_states("prod", states.values())
    checks = {p.check for p in aws_checks.check(plan, [])}  # no rendered objects: no device plugin either
    assert checks == {"aws-order", "day2", "accelerators"}
