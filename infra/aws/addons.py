"""EKS managed add-ons pinned from the BOM, each AWS-facing one with its own IRSA role, and the
encrypted gp3 default StorageClass, in two stages around the node groups:

- before the nodes (`before_nodes=True`): vpc-cni with its IRSA role. A joining node's `aws-node`
  needs AmazonEKS_CNI_Policy to give it a pod network (EKS User Guide, create-node-role.md and
  cni-iam-role.md); the policy is on the add-on's role, not on the node role, so the add-on and its
  role exist before any node starts, or the nodes stay NotReady and the node group fails to create.
- after the nodes: CoreDNS and the EBS CSI driver run Deployments, which never become ready (and the
  add-on never leaves DEGRADED) without a node; kube-proxy and the StorageClass come with them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from contracts.cluster import SYSTEM_TOLERATION
from infra.aws.cluster import Cluster
from infra.aws.irsa import IrsaRole, IrsaRoleArgs
from stacks.context import StackContext

# add-on -> (namespace, service account, AWS-managed least-privilege policy) for those calling AWS APIs.
ADDON_IDENTITIES = {
    "vpc-cni": ("kube-system", "aws-node", "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"),
    "aws-ebs-csi-driver": (
        "kube-system", "ebs-csi-controller-sa", "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
    ),
}
# Add-ons whose pods the node groups need when they join (installed in the `before_nodes` stage).
BEFORE_NODES = ("vpc-cni",)
# The system node group is tainted (SYSTEM_TOLERATION): its add-ons must tolerate that taint.
ADDON_CONFIGURATION = {
    # The VPC CNI's network policy agent enforces the platform's NetworkPolicies; without it they are inert
    # (EKS user guide, "Limit Pod traffic with Kubernetes network policies": add-on configuration values).
    "vpc-cni": {"enableNetworkPolicy": "true"},
    "coredns": {"tolerations": [SYSTEM_TOLERATION]},
    "aws-ebs-csi-driver": {"controller": {"tolerations": [SYSTEM_TOLERATION]}},
}


@dataclass(frozen=True, kw_only=True)
class ClusterAddonsArgs:
    """Inputs of `ClusterAddons`: the managed add-ons pinned in the BOM for the cluster's version."""

    ctx: StackContext
    cluster: Cluster
    """The cluster: its name, OIDC issuer (add-on IRSA roles) and Kubernetes provider (StorageClass)."""
    before_nodes: bool = False
    """True: only the add-ons of `BEFORE_NODES`; False: the others and the default StorageClass."""


class ClusterAddons(pulumi.ComponentResource):
    roles: dict[str, IrsaRole]

    def __init__(self, name: str, args: ClusterAddonsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:cluster:ClusterAddons", name, None, opts)
        ctx, cluster = args.ctx, args.cluster
        child = pulumi.ResourceOptions(parent=self)
        self.roles = {}
        addons = {}
        for addon, version in ctx.bom.addons_for(ctx.kubernetes_version).items():
            if (addon in BEFORE_NODES) != args.before_nodes:
                continue
            role_arn = None
            if addon in ADDON_IDENTITIES:
                namespace, sa, policy = ADDON_IDENTITIES[addon]
                self.roles[addon] = IrsaRole(addon, IrsaRoleArgs(
                    ctx=ctx, oidc=cluster.oidc, namespace=namespace, service_account=sa,
                    managed_policy_arns=[policy]), opts=child)
                role_arn = self.roles[addon].role_arn
            config = ADDON_CONFIGURATION.get(addon)
            addons[addon] = aws.eks.Addon(
                f"{name}-{addon}",
                cluster_name=cluster.name,
                addon_name=addon,
                addon_version=version,
                service_account_role_arn=role_arn,
                configuration_values=json.dumps(config) if config else None,
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="PRESERVE",
                tags=ctx.tags(ctx.name(addon)),
                opts=child,
            )
        if not args.before_nodes:
            self._storage_class(name, ctx, cluster, addons["aws-ebs-csi-driver"])
        self.register_outputs({"addons": {k: a.addon_version for k, a in addons.items()}})

    def _storage_class(self, name: str, ctx: StackContext, cluster: Cluster, ebs_csi: aws.eks.Addon) -> None:
        k8s.storage.v1.StorageClass(
            f"{name}-gp3",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="gp3-encrypted",
                annotations={"storageclass.kubernetes.io/is-default-class": "true"},
            ),
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3", "encrypted": "true", "fsType": "ext4"},
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            # `Retain`: volumes outlive their claims (cluster.volumeReclaimPolicy).
            reclaim_policy=ctx.cfg.cluster.volume_reclaim_policy,
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.k8s_provider,
                                        depends_on=[ebs_csi]),
        )
