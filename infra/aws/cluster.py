"""EKS control plane: KMS-encrypted secrets, control-plane logs, per-environment endpoint exposure,
API authentication mode with access entries, the OIDC provider for IRSA, and a Kubernetes provider
for the workload layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.aws.irsa import OidcIssuer
from infra.aws.network import Network
from stacks.context import StackContext

CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


def _assume_role_policy(service: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": ["sts:AssumeRole", "sts:TagSession"]}]})


def kubeconfig(name: str, endpoint: str, ca_data: str, region: str) -> str:
    """Kubeconfig that authenticates with `aws eks get-token` (no long-lived credentials)."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "users": [{"name": name, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", name, "--region", region, "--output", "json"]}}}],
    })


@dataclass(frozen=True, kw_only=True)
class ClusterArgs:
    """Inputs of `Cluster`."""

    ctx: StackContext
    network: Network
    """The VPC: the control plane's network interfaces go into its private subnets."""


class Cluster(pulumi.ComponentResource):
    name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    secrets_key_arn: pulumi.Output[str]
    node_security_group_id: pulumi.Output[str]
    oidc: OidcIssuer
    kubeconfig: pulumi.Output[str]
    k8s_provider: k8s.Provider

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:cluster:Cluster", name, None, opts)
        ctx, network = args.ctx, args.network
        cc = ctx.cfg.cluster
        child = pulumi.ResourceOptions(parent=self)
        cluster_name = ctx.cluster_name

        key = aws.kms.Key(
            f"{name}-secrets-key",
            description=f"EKS secrets envelope encryption for {cluster_name}",
            enable_key_rotation=True,
            deletion_window_in_days=cc.secrets_key_deletion_window_days,
            tags=ctx.tags(ctx.name("eks-secrets")),
            # Losing this key makes every Kubernetes secret of the cluster unreadable.
            opts=pulumi.ResourceOptions(parent=self, protect=ctx.protect, retain_on_delete=ctx.protect),
        )
        aws.kms.Alias(f"{name}-secrets-key-alias", name=f"alias/{ctx.name('eks-secrets')}",
                      target_key_id=key.key_id, opts=child)

        role = aws.iam.Role(
            f"{name}-role", assume_role_policy=_assume_role_policy("eks.amazonaws.com"),
            tags=ctx.tags(ctx.name("eks-cluster")), opts=child,
        )
        cluster_policy = aws.iam.RolePolicyAttachment(
            f"{name}-cluster-policy", role=role.name,
            policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy", opts=child,
        )
        # The cluster role may use exactly its own secrets key, nothing else.
        key_grant = aws.iam.RolePolicy(
            f"{name}-secrets-key-use", role=role.id,
            policy=key.arn.apply(lambda arn: json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"],
                "Resource": arn}]})),
            opts=child,
        )
        # Created ahead of the cluster so that retention applies (EKS would create it without one).
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-control-plane-logs", name=f"/aws/eks/{cluster_name}/cluster",
            retention_in_days=cc.log_retention_days, tags=ctx.tags(ctx.name("eks-logs")), opts=child,
        )

        cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=cluster_name,
            version=ctx.kubernetes_version,
            role_arn=role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=network.private_subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=cc.endpoint_public_access,
                public_access_cidrs=[str(c) for c in cc.public_access_cidrs] if cc.endpoint_public_access else None,
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=key.arn), resources=["secrets"],
            ),
            enabled_cluster_log_types=list(cc.log_types),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                # The identity that runs `pulumi up` administers the cluster it creates (Helm installs).
                bootstrap_cluster_creator_admin_permissions=True,
            ),
            # Standard support only: upgrades follow runbooks/eks-upgrade.md instead of paid extended support.
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type="STANDARD"),
            tags=ctx.tags(cluster_name),
            # CreateCluster needs AmazonEKSClusterPolicy on the role (EKS User Guide, cluster-iam-role.md).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group, key_grant, cluster_policy]),
        )

        issuer_url = cluster.identities.apply(lambda ids: ids[0].oidcs[0].issuer)
        oidc_provider = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc", url=issuer_url, client_id_lists=["sts.amazonaws.com"],
            tags=ctx.tags(ctx.name("oidc")), opts=child,
        )
        for i, principal in enumerate(cc.admin_role_arns):
            entry = aws.eks.AccessEntry(
                f"{name}-admin-{i}", cluster_name=cluster.name, principal_arn=principal, type="STANDARD",
                tags=ctx.tags(ctx.name("admin", str(i))), opts=child,
            )
            aws.eks.AccessPolicyAssociation(
                f"{name}-admin-{i}-policy", cluster_name=cluster.name, principal_arn=principal,
                policy_arn=CLUSTER_ADMIN_POLICY,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]),
            )

        self.name = cluster.name
        self.endpoint = cluster.endpoint
        self.secrets_key_arn = key.arn
        self.node_security_group_id = cluster.vpc_config.cluster_security_group_id
        self.oidc = OidcIssuer(provider_arn=oidc_provider.arn, issuer_url=issuer_url)
        self.kubeconfig = pulumi.Output.secret(pulumi.Output.all(
            cluster.name, cluster.endpoint, cluster.certificate_authority.data,
        ).apply(lambda a: kubeconfig(a[0], a[1], a[2], ctx.cfg.region)))
        self.k8s_provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=self.kubeconfig, enable_server_side_apply=True, opts=child,
        )
        self.register_outputs({
            "clusterName": self.name, "endpoint": self.endpoint, "oidcProviderArn": oidc_provider.arn,
        })
