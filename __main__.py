"""ML platform composition root: typed config -> AWS components -> workloads -> exports.

Each line builds one concern; the modules under infra/aws/ and infra/workloads/ hold the detail.
"""

import pulumi
import pulumi_aws as aws

from infra.aws.addons import ClusterAddons, ClusterAddonsArgs
from infra.aws.cluster import Cluster, ClusterArgs
from infra.aws.data_services import DataLayer, DataLayerArgs
from infra.aws.network import Network, NetworkArgs
from infra.aws.nodegroups import NodeGroups, NodeGroupsArgs
from infra.config_source import load_platform_config
from infra.workloads.platform import Platform, PlatformArgs
from stacks.context import StackContext

ctx = StackContext(load_platform_config())
aws_provider = aws.Provider(
    "aws", region=ctx.cfg.region, default_tags=aws.ProviderDefaultTagsArgs(tags=ctx.default_tags)
)
on_aws = pulumi.ResourceOptions(providers={"aws": aws_provider})

network = Network("network", NetworkArgs(ctx=ctx), on_aws)
cluster = Cluster("cluster", ClusterArgs(ctx=ctx, network=network), on_aws)
node_network = ClusterAddons("node-network", ClusterAddonsArgs(ctx=ctx, cluster=cluster, before_nodes=True), on_aws)
nodes = NodeGroups("nodes", NodeGroupsArgs(ctx=ctx, network=network, cluster_name=cluster.name),
                   pulumi.ResourceOptions.merge(on_aws, pulumi.ResourceOptions(depends_on=[node_network])))
addons = ClusterAddons("addons", ClusterAddonsArgs(ctx=ctx, cluster=cluster), pulumi.ResourceOptions.merge(
    on_aws, pulumi.ResourceOptions(depends_on=[nodes])))
data = DataLayer("data", DataLayerArgs(ctx=ctx, network=network, cluster=cluster), on_aws)
workloads = Platform("workloads", PlatformArgs(ctx=ctx, cluster=cluster, data=data.services, vpc_id=network.vpc_id),
                     pulumi.ResourceOptions.merge(on_aws, pulumi.ResourceOptions(depends_on=[addons])))

pulumi.export("platformVersion", ctx.bom.platform.version)
pulumi.export("environment", ctx.env)
pulumi.export("vpcId", network.vpc_id)
pulumi.export("privateSubnetIds", network.private_subnet_ids)
pulumi.export("clusterName", cluster.name)
pulumi.export("clusterEndpoint", cluster.endpoint)
pulumi.export("oidcProviderArn", cluster.oidc.provider_arn)
pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("modelServerRepositoryUrl", workloads.model_server_repository_url)
for key, value in data.exports().items():
    pulumi.export(key, value)
