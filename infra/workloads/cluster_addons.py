"""Cluster add-ons installed by Helm: aws-load-balancer-controller, cluster-autoscaler (image tag
matching the cluster's Kubernetes minor version) and metrics-server. The two AWS-facing ones use
the IRSA roles of the data layer (WORKLOAD_IDENTITIES); all run on the tainted system nodes.
With a GPU node group, the NVIDIA device plugin runs on its nodes: the AL2023 NVIDIA AMI carries the
driver but no device plugin, and without one no node advertises `nvidia.com/gpu`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from infra.aws.interfaces import WORKLOAD_IDENTITIES
from infra.workloads.kube import (
    IRSA_ANNOTATION,
    NODE_ROLE_LABEL,
    RESTRICTED_CONTAINER,
    RESTRICTED_POD_SECCOMP,
    SYSTEM_TOLERATION,
    helm_release,
)
from stacks.context import StackContext

NAMESPACE = "kube-system"
ON_SYSTEM_NODES = {"nodeSelector": {NODE_ROLE_LABEL: "system"}, "tolerations": [SYSTEM_TOLERATION]}
# kube-system enforces no Pod Security level on EKS, but these pods need nothing that `restricted` forbids, so
# they meet it: the settings each chart leaves unset (merged with its defaults), as the charts' own
# commented-out values suggest.
LBC_SECURITY = {"podSecurityContext": RESTRICTED_POD_SECCOMP, "securityContext": RESTRICTED_CONTAINER}
AUTOSCALER_SECURITY = {
    "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534, "fsGroup": 65534,
                        **RESTRICTED_POD_SECCOMP},
    "containerSecurityContext": RESTRICTED_CONTAINER,
}


def load_balancer_controller_values(ctx: StackContext, cluster_name: pulumi.Input[str],
                                    vpc_id: pulumi.Input[str] | None,
                                    role_arn: pulumi.Input[str]) -> dict[str, Any]:
    ident = WORKLOAD_IDENTITIES["aws-load-balancer-controller"]
    values = {
        "clusterName": cluster_name,
        "region": ctx.cfg.region,
        "replicaCount": 2,
        "serviceAccount": {"create": True, "name": ident.service_account, "annotations": {IRSA_ANNOTATION: role_arn}},
        "podDisruptionBudget": {"maxUnavailable": 1},
        **LBC_SECURITY,
        **ON_SYSTEM_NODES,
    }
    if vpc_id is not None:
        # Pods cannot read the VPC id from IMDS (hop limit 1), so pass it.
        values["vpcId"] = vpc_id
    return values


def device_plugin_values() -> dict[str, Any]:
    """Run the plugin on the GPU group's nodes. The chart's default affinity asks for node-feature-discovery
    labels (or nvidia.com/gpu.present) that EKS nodes do not carry; its default tolerations already
    cover the group's nvidia.com/gpu taint."""
    return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": NODE_ROLE_LABEL, "operator": "In", "values": ["gpu"]}]}]}}},
            # The chart sets no seccomp profile; its container default already drops every capability and
            # privilege escalation. It stays root: it serves its socket in the host's root-owned
            # /var/lib/kubelet/device-plugins (checkov baseline).
            "podSecurityContext": RESTRICTED_POD_SECCOMP}


def cluster_autoscaler_values(ctx: StackContext, cluster_name: pulumi.Input[str],
                              role_arn: pulumi.Input[str]) -> dict[str, Any]:
    ident = WORKLOAD_IDENTITIES["cluster-autoscaler"]
    return {
        "cloudProvider": "aws",
        "awsRegion": ctx.cfg.region,
        "autoDiscovery": {"clusterName": cluster_name},
        "image": {"tag": ctx.bom.cluster_autoscaler_image_tags[ctx.kubernetes_version]},
        "rbac": {"serviceAccount": {"create": True, "name": ident.service_account,
                                    "annotations": {IRSA_ANNOTATION: role_arn}}},
        "extraArgs": {"balance-similar-node-groups": True, "skip-nodes-with-system-pods": False,
                      "expander": "least-waste"},
        **AUTOSCALER_SECURITY,
        **ON_SYSTEM_NODES,
    }


@dataclass(frozen=True, kw_only=True)
class ClusterAddonChartsArgs:
    """Inputs of `ClusterAddonCharts`; which charts are installed comes from `workloads.addons`."""

    ctx: StackContext
    cluster_name: pulumi.Input[str]
    role_arns: dict[str, pulumi.Output[str]]
    """`WORKLOAD_IDENTITIES` key -> IRSA role ARN (the controllers use theirs)."""
    vpc_id: pulumi.Input[str] | None = None
    """Passed to aws-load-balancer-controller, which cannot read it from IMDS (hop limit 1)."""
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    """What the releases wait for."""


class ClusterAddonCharts(pulumi.ComponentResource):
    def __init__(self, name: str, args: ClusterAddonChartsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:ClusterAddonCharts", name, None, opts)
        ctx, cluster_name, role_arns, vpc_id = args.ctx, args.cluster_name, args.role_arns, args.vpc_id
        depends_on = args.depends_on
        addons = ctx.cfg.workloads.addons
        deps = depends_on or []
        self.releases = []
        if addons.metrics_server:
            self.releases.append(helm_release("metrics-server", ctx, "metrics-server", NAMESPACE, {
                "replicas": 2, "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
                # Its container already meets `restricted`; the pod-level profile covers any container added.
                "podSecurityContext": RESTRICTED_POD_SECCOMP, **ON_SYSTEM_NODES,
            }, self, depends_on=deps))
        if addons.aws_load_balancer_controller:
            self.releases.append(helm_release(
                "aws-load-balancer-controller", ctx, "aws-load-balancer-controller", NAMESPACE,
                load_balancer_controller_values(ctx, cluster_name, vpc_id,
                                                role_arns["aws-load-balancer-controller"]),
                self, depends_on=deps))
        if addons.cluster_autoscaler:
            self.releases.append(helm_release(
                "cluster-autoscaler", ctx, "cluster-autoscaler", NAMESPACE,
                cluster_autoscaler_values(ctx, cluster_name, role_arns["cluster-autoscaler"]), self,
                depends_on=deps))
        if any(group.role == "gpu" for group in ctx.cfg.node_groups.values()):
            self.releases.append(helm_release("nvidia-device-plugin", ctx, "nvidia-device-plugin", NAMESPACE,
                                              device_plugin_values(), self, depends_on=deps))
        self.register_outputs({"releases": [r.name for r in self.releases]})
