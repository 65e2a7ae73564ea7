"""The workload layer in one component: everything that runs on the cluster, built from the
stack context, the cluster and the data services.

Order: add-ons and monitoring CRDs first (ServiceMonitors and PrometheusRules need the
kube-prometheus-stack CRDs), then tracing (Seldon and MLServer export to it), then MLflow, Feast
and Seldon. Every Kubernetes resource uses the cluster's provider through this component.
"""

from __future__ import annotations

from typing import Protocol

import pulumi
import pulumi_kubernetes as k8s

from infra.aws.interfaces import DataServices
from infra.workloads.cluster_addons import ClusterAddonCharts
from infra.workloads.feature_store import FeatureStore
from infra.workloads.governance import Governance
from infra.workloads.mlflow import Mlflow
from infra.workloads.models_cluster import ReferenceModels
from infra.workloads.observability import Observability
from infra.workloads.seldon import ModelServerRepository, Seldon
from infra.workloads.tracing import Tracing
from stacks.context import StackContext


class ClusterHandle(Protocol):
    """What the workload layer needs of infra.aws.cluster.Cluster."""

    name: pulumi.Output[str]
    k8s_provider: k8s.Provider


class Platform(pulumi.ComponentResource):
    model_server_repository_url: pulumi.Output[str]
    mlflow_tracking_uri: str
    otlp_endpoint: str

    def __init__(self, name: str, ctx: StackContext, cluster: ClusterHandle, data: DataServices,
                 vpc_id: pulumi.Input[str] | None = None, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:Platform", name, None,
                         pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                             providers={"kubernetes": cluster.k8s_provider})))
        wl = ctx.cfg.workloads
        vpc_cidr = str(ctx.cfg.network.vpc_cidr)
        child = pulumi.ResourceOptions(parent=self)
        addons = ClusterAddonCharts("addons", ctx, cluster.name, data.role_arns, vpc_id, child)
        base: list[pulumi.Resource] = [addons]
        if wl.observability.enabled:
            base.append(Observability("observability", ctx, data, vpc_cidr, child, depends_on=[addons]))
        if wl.tracing.enabled:
            tracing = Tracing("tracing", ctx, child, depends_on=base)
            self.otlp_endpoint = tracing.otlp_grpc_endpoint
        repo = ModelServerRepository("model-server", ctx, child)
        self.model_server_repository_url = repo.repository_url
        if wl.mlflow.enabled:
            mlflow = Mlflow("mlflow", ctx, data, vpc_cidr, child, depends_on=base)
            self.mlflow_tracking_uri = mlflow.tracking_uri
        feast: FeatureStore | None = None
        seldon: Seldon | None = None
        if wl.feast.enabled:
            feast = FeatureStore("feast", ctx, data, vpc_cidr, repo.image, child, depends_on=base)
        if wl.seldon.enabled:
            seldon = Seldon("seldon", ctx, data, vpc_cidr, repo.image, child, depends_on=base)
        ReferenceModels("models", ctx, data, repo.image, child, seldon=seldon, feast=feast)
        Governance("governance", ctx, data, vpc_cidr, repo.image, child, depends_on=base)
        self.register_outputs({"modelServerRepositoryUrl": repo.repository_url})
