"""The workload layer in one component: everything that runs on the cluster, built from the
stack context, the cluster and the data services.

Order: add-ons and monitoring CRDs first (ServiceMonitors and PrometheusRules need the
kube-prometheus-stack CRDs), then tracing (Seldon and MLServer export to it), then MLflow, Feast
and Seldon. Every Kubernetes resource uses the cluster's provider through this component.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pulumi
import pulumi_kubernetes as k8s

from infra.aws.interfaces import DataServices
from infra.workloads.cluster_addons import ClusterAddonCharts, ClusterAddonChartsArgs
from infra.workloads.experiments import ExperimentControllers, ExperimentControllersArgs, bandit_models
from infra.workloads.feature_store import FeatureStore, FeatureStoreArgs
from infra.workloads.feedback import FeedbackEndpoint, FeedbackEndpointArgs
from infra.workloads.flink import StreamingFeatures, StreamingFeaturesArgs, job_image
from infra.workloads.gitops import GitOps, GitOpsArgs
from infra.workloads.governance import Governance, GovernanceArgs
from infra.workloads.mlflow import Mlflow, MlflowArgs, tracking_uri
from infra.workloads.models_cluster import ReferenceModels, ReferenceModelsArgs
from infra.workloads.observability import Observability, ObservabilityArgs
from infra.workloads.pipelines import Pipelines, PipelinesArgs
from infra.workloads.rollouts import Rollouts, RolloutsArgs
from infra.workloads.seldon import ModelServerRepository, ModelServerRepositoryArgs, Seldon, SeldonArgs
from infra.workloads.spark import SparkFeatures, SparkFeaturesArgs, spark_image
from infra.workloads.tracing import Tracing, TracingArgs
from stacks.context import StackContext


class ClusterHandle(Protocol):
    """What the workload layer needs of infra.aws.cluster.Cluster."""

    name: pulumi.Output[str]
    k8s_provider: k8s.Provider


@dataclass(frozen=True, kw_only=True)
class PlatformArgs:
    """Inputs of `Platform`; which workloads are installed comes from `workloads`."""

    ctx: StackContext
    cluster: ClusterHandle
    """The cluster: every Kubernetes resource of the layer goes through its provider."""
    data: DataServices
    """What the workloads use of the AWS data layer (endpoints, credentials, buckets, IRSA roles)."""
    vpc_id: pulumi.Input[str] | None = None
    """Passed to aws-load-balancer-controller (pods cannot read it from IMDS)."""


class Platform(pulumi.ComponentResource):
    model_server_repository_url: pulumi.Output[str]
    mlflow_tracking_uri: str
    otlp_endpoint: str

    def __init__(self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        ctx, cluster, data, vpc_id = args.ctx, args.cluster, args.data, args.vpc_id
        super().__init__("mlplatform:workloads:Platform", name, None,
                         pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                             providers={"kubernetes": cluster.k8s_provider})))
        wl = ctx.cfg.workloads
        vpc_cidr = str(ctx.cfg.network.vpc_cidr)
        child = pulumi.ResourceOptions(parent=self)
        addons = ClusterAddonCharts("addons", ClusterAddonChartsArgs(
            ctx=ctx, cluster_name=cluster.name, role_arns=data.role_arns, vpc_id=vpc_id), child)
        base: list[pulumi.Resource] = [addons]
        if wl.observability.enabled:
            base.append(Observability("observability", ObservabilityArgs(
                ctx=ctx, data=data, vpc_cidr=vpc_cidr, depends_on=[addons]), child))
        if wl.tracing.enabled:
            tracing = Tracing("tracing", TracingArgs(ctx=ctx, depends_on=base), child)
            self.otlp_endpoint = tracing.otlp_grpc_endpoint
        repo = ModelServerRepository("model-server", ModelServerRepositoryArgs(ctx=ctx), child)
        self.model_server_repository_url = repo.repository_url
        mlflow: Mlflow | None = None
        if wl.mlflow.enabled:
            mlflow = Mlflow("mlflow", MlflowArgs(ctx=ctx, data=data, vpc_cidr=vpc_cidr, ca_image=repo.image,
                                                depends_on=base), child)
            self.mlflow_tracking_uri = mlflow.tracking_uri
        feast: FeatureStore | None = None
        seldon: Seldon | None = None
        if wl.feast.enabled:
            feast = FeatureStore("feast", FeatureStoreArgs(
                ctx=ctx, data=data, vpc_cidr=vpc_cidr, ingestor_image=repo.image, depends_on=base), child)
        if wl.flink.enabled:
            StreamingFeatures("flink", StreamingFeaturesArgs(
                ctx=ctx, data=data, vpc_cidr=vpc_cidr, image=job_image(repo.image), depends_on=base), child)
        if wl.spark.enabled:
            SparkFeatures("spark", SparkFeaturesArgs(
                ctx=ctx, data=data, vpc_cidr=vpc_cidr, image=spark_image(repo.image), depends_on=base), child)
        if wl.seldon.enabled:
            seldon = Seldon("seldon", SeldonArgs(
                ctx=ctx, data=data, vpc_cidr=vpc_cidr, image=repo.image, depends_on=base), child)
        ReferenceModels("models", ReferenceModelsArgs(ctx=ctx, data=data, image=repo.image, seldon=seldon,
                                                      feast=feast), child)
        if wl.gitops.enabled and seldon is not None:
            # Argo CD delivers the Seldon Models and Experiments (the models namespace and CRDs come with Seldon).
            GitOps("gitops", GitOpsArgs(ctx=ctx, seldon=seldon, depends_on=base), child)
        governance = Governance("governance", GovernanceArgs(
            ctx=ctx, data=data, vpc_cidr=vpc_cidr, image=repo.image, depends_on=base), child)
        controllers_after: list[pulumi.Resource] = [governance, *base]
        if wl.feedback.enabled:  # the A/B tests' and bandits' outcomes (its own database on the RDS instance)
            controllers_after.append(FeedbackEndpoint("feedback", FeedbackEndpointArgs(
                ctx=ctx, data=data, vpc_cidr=vpc_cidr, image=repo.image, depends_on=base), child))
        if bandit_models(ctx):  # its service account lives in the governance namespace
            ExperimentControllers("experiments", ExperimentControllersArgs(
                ctx=ctx, image=repo.image, depends_on=controllers_after), child)
        if wl.rollouts.enabled and wl.gitops.enabled and seldon is not None:
            # The cluster rollout Job's settings, state objects, Role and egress (the Job is made on demand).
            Rollouts("rollouts", RolloutsArgs(
                ctx=ctx, image=repo.image, bucket=data.buckets["models"], tracking_uri=tracking_uri(),
                depends_on=[governance, seldon, *base]), child)
        if wl.pipelines.enabled:
            Pipelines("pipelines", PipelinesArgs(
                ctx=ctx, data=data, vpc_cidr=vpc_cidr, image=repo.image, mlflow_tracking_uri=tracking_uri(),
                mlflow_password=mlflow.admin_password if mlflow is not None else None, seldon=seldon,
                depends_on=base), child)
        self.register_outputs({"modelServerRepositoryUrl": repo.repository_url})
