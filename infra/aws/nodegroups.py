"""Managed node groups from config: launch templates with IMDSv2 (hop limit 1, so pods cannot
reach node credentials) and encrypted gp3 root volumes, spread over every private subnet, with the
labels, taints and cluster-autoscaler discovery tags of their role.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from contracts.cluster import GPU_TAINT_KEY, NODE_ROLE_LABEL, SYSTEM_TAINT_KEY
from infra.aws.network import Network
from stacks.context import StackContext
from stacks.schema import NodeGroupConfig

NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)
ROLE_LABEL = NODE_ROLE_LABEL
# Taints keep general pods off dedicated capacity.
ROLE_TAINTS = {
    "system": aws.eks.NodeGroupTaintArgs(key=SYSTEM_TAINT_KEY, value="true", effect="NO_SCHEDULE"),
    "gpu": aws.eks.NodeGroupTaintArgs(key=GPU_TAINT_KEY, value="true", effect="NO_SCHEDULE"),
}
AMI_TYPES = {"gpu": "AL2023_x86_64_NVIDIA"}
DEFAULT_AMI_TYPE = "AL2023_x86_64_STANDARD"


def autoscaler_tags(cluster_name: str) -> dict[str, str]:
    return {"k8s.io/cluster-autoscaler/enabled": "true", f"k8s.io/cluster-autoscaler/{cluster_name}": "owned"}


@dataclass(frozen=True, kw_only=True)
class NodeGroupsArgs:
    """Inputs of `NodeGroups`: one managed node group per `nodeGroups` entry of the stack config."""

    ctx: StackContext
    network: Network
    """The VPC: nodes run in its private subnets."""
    cluster_name: pulumi.Input[str]
    """The EKS cluster the groups join (an output of `Cluster`, so the groups wait for it)."""


class NodeGroups(pulumi.ComponentResource):
    node_role_arn: pulumi.Output[str]
    groups: dict[str, aws.eks.NodeGroup]

    def __init__(self, name: str, args: NodeGroupsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:cluster:NodeGroups", name, None, opts)
        ctx, network, cluster_name = args.ctx, args.network, args.cluster_name
        self._ctx = ctx
        self._child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-node-role",
            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
            tags=ctx.tags(ctx.name("node")), opts=self._child,
        )
        attachments = [
            aws.iam.RolePolicyAttachment(f"{name}-node-{arn.rsplit('/', 1)[1]}", role=role.name, policy_arn=arn,
                                         opts=self._child)
            for arn in NODE_POLICIES
        ]
        self.node_role_arn = role.arn
        self.groups = {
            group_name: self._group(name, group_name, group, role, network, cluster_name, attachments)
            for group_name, group in ctx.cfg.node_groups.items()
        }
        self.register_outputs({"nodeGroups": {k: g.node_group_name for k, g in self.groups.items()}})

    def _launch_template(self, name: str, group_name: str, group: NodeGroupConfig) -> aws.ec2.LaunchTemplate:
        ctx = self._ctx
        tags = ctx.tags(ctx.name("node", group_name))
        return aws.ec2.LaunchTemplate(
            f"{name}-{group_name}-lt",
            name_prefix=f"{ctx.name(group_name)}-",
            description=f"{group.role} nodes of {ctx.cluster_name}",
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1,
                instance_metadata_tags="disabled",
            ),
            block_device_mappings=[aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name="/dev/xvda",
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=group.disk_size_gib, volume_type="gp3", encrypted="true",
                    delete_on_termination="true",
                ),
            )],
            monitoring=aws.ec2.LaunchTemplateMonitoringArgs(enabled=True),
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=tags)
                for kind in ("instance", "volume", "network-interface")
            ],
            # No user data: EKS merges its own bootstrap into the template's, which it accepts only as a MIME
            # multi-part archive (AL2/AL2023) or TOML (Bottlerocket); none is needed, so none is set.
            tags=tags,
            opts=self._child,
        )

    def _group(self, name: str, group_name: str, group: NodeGroupConfig, role: aws.iam.Role, network: Network,
               cluster_name: pulumi.Input[str], attachments: list) -> aws.eks.NodeGroup:
        ctx = self._ctx
        template = self._launch_template(name, group_name, group)
        taint = ROLE_TAINTS.get(group.role)
        return aws.eks.NodeGroup(
            f"{name}-{group_name}",
            cluster_name=cluster_name,
            node_group_name=ctx.name(group_name),
            node_role_arn=role.arn,
            subnet_ids=network.private_subnet_ids,
            instance_types=list(group.instance_types),
            capacity_type=group.capacity_type,
            ami_type=AMI_TYPES.get(group.role, DEFAULT_AMI_TYPE),
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=group.min_size, desired_size=group.desired_size, max_size=group.max_size,
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable_percentage=33),
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)
            ),
            labels={ROLE_LABEL: group.role, **group.labels},
            taints=[taint] if taint else None,
            tags=ctx.tags(ctx.name(group_name), **autoscaler_tags(ctx.cluster_name)),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=attachments,
                # cluster-autoscaler owns the live size; config only sets the initial value.
                ignore_changes=["scalingConfig.desiredSize"],
            ),
        )
