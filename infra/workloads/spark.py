"""Batch features on Spark: the Spark Operator (kubeflow/spark-operator chart, pinned in the BOM) in its own
namespace, and the scheduled job that computes every model's batch feature views into the Feast offline store.

- `spark-operator`: the controller only. Its admission webhook is off: the job's driver and executor pods are
  shaped by Spark pod templates (`driver.template` / `executor.template`, Spark >= 3.0), which spark-submit
  applies itself, so no pod needs mutating (the operator labels a pod for the webhook only when the app has
  no template). Its RBAC is limited to the job namespace: with an explicit `spark.jobNamespaces` the chart
  binds the controller with a Role there and keeps only `get` on CRDs cluster-wide.
- `spark-jobs`: the `ScheduledSparkApplication` and the pods it runs, under the `spark-features` service
  account (IRSA: write to the offline-store prefix of the Feast bucket; created by the chart with the role
  annotation, with the namespaced Role the driver needs to create its executors).
- The job: `python -m ml.data.spark_features` in the spark-features image (docker/spark-features/Dockerfile),
  S3 through S3A with the pod's web identity, Parquet with microsecond timestamps at
  `s3a://<feast bucket>/offline/<model>/<view>.parquet`, the files the models' Feast sources name; the
  `feast-materialize` CronJob then loads them into the online store.
- Monitoring: a PodMonitor on the controller's metrics port, alert rules with runbooks
  (`contracts/spark.py`), and a Grafana dashboard of job health and feature freshness.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from contracts import spark as contract
from contracts.cluster import WORKLOAD_IDENTITIES
from contracts.feast import OFFLINE_PREFIX
from infra.workloads.args import WorkloadArgs
from infra.workloads.isolation import (
    ANYWHERE,
    PORT_HTTPS,
    EgressRule,
    NamespacePolicy,
    network_policies,
)
from infra.workloads.kube import (
    IRSA_ANNOTATION,
    NODE_ROLE_LABEL,
    RESTRICTED_CONTAINER,
    labels,
    pod_security_context,
)
from infra.workloads.operator_jobs import Scrape, monitoring, operator, tagged_image
from stacks.context import StackContext
from stacks.schema import SparkPodResources

OPERATOR_NAMESPACE = contract.OPERATOR_NAMESPACE
JOB_NAMESPACE = WORKLOAD_IDENTITIES["spark-features"].namespace
SERVICE_ACCOUNT = WORKLOAD_IDENTITIES["spark-features"].service_account
RELEASE = "spark-operator"
METRICS_PORT = 8080
CONTROLLER_SELECTOR = {"app.kubernetes.io/name": "spark-operator", "app.kubernetes.io/instance": RELEASE,
                       "app.kubernetes.io/component": "controller"}
JOB_NAME = contract.JOB_NAME
SPARK_UID = 185  # the `spark` user of Spark's images and of ours
APP_FILE = "local:///opt/mlplatform/ml/data/spark_features.py"
COMPONENT = "spark-features"  # the dashboard's and the alert rules' names
# The S3A settings of the job: credentials from the pod's IRSA web identity (the AWS SDK v2 default chain),
# and the region's endpoint (through the VPC's S3 gateway endpoint).
S3A_CONF = {
    "spark.hadoop.fs.s3a.aws.credentials.provider":
        "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider",
    "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
}
# The same job settings as on one machine (ml/data/spark_features.py JOB_CONF).
JOB_CONF = {"spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS", "spark.sql.session.timeZone": "UTC"}

_QUANTITY = re.compile(r"^(\d+)(Mi|Gi)$")


def spark_image(model_server_image: pulumi.Input[str]) -> pulumi.Output[str]:
    """The job image is pushed to the model-server repository with the tag `<model-server tag>-spark-features`."""
    return tagged_image(model_server_image, "spark-features")


def spark_memory(quantity: str) -> tuple[str, str]:
    """(JVM memory, memoryOverhead) in Spark's `<n>m` form for a pod memory request: the pod Spark asks for is
    the sum, so the JVM gets 3/4 of the request and the overhead (off-heap, Python workers) the rest."""
    match = _QUANTITY.match(quantity)
    if not match:
        raise ValueError(f"Spark pod memory must be whole Mi or Gi (e.g. 2Gi), got {quantity!r}")
    mib = int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)
    heap = mib * 3 // 4
    return f"{heap}m", f"{mib - heap}m"


def _cores(quantity: str) -> int:
    # Spark counts whole cores; the pod's CPU request and limit come from the typed config.
    return max(1, int(float(quantity[:-1]) / 1000) if quantity.endswith("m") else int(float(quantity)))


def operator_values(ctx: StackContext, role_arn: pulumi.Input[str]) -> dict[str, Any]:
    """Values of the spark-operator chart (checked against the rendered chart by `mlplat conform`)."""
    return {
        "controller": {
            "nodeSelector": {NODE_ROLE_LABEL: "general"},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
            # The chart sets the container's restricted context; the pod's needs the seccomp profile and a user.
            "podSecurityContext": {**pod_security_context(SPARK_UID)},
            # No Service per application for the Spark UI: nobody outside the job namespace reaches it.
            "uiService": {"enable": False},
        },
        # Pod templates shape the job's pods (module docstring): no mutating webhook, no certificates.
        "webhook": {"enable": False},
        "spark": {
            "jobNamespaces": [JOB_NAMESPACE],
            "serviceAccount": {"name": SERVICE_ACCOUNT, "annotations": {IRSA_ANNOTATION: role_arn}},
        },
        # Ours scrapes it (a PodMonitor in this program, like every other workload's).
        "prometheus": {"metrics": {"enable": True, "port": METRICS_PORT}, "podMonitor": {"create": False}},
    }


def _pod_template(role: str, res: SparkPodResources) -> dict[str, Any]:
    """A Spark pod template: restricted Pod Security, general nodes, a writable /tmp (Spark's local dirs)."""
    container = {"name": f"spark-kubernetes-{role}", "securityContext": {
        **RESTRICTED_CONTAINER, "runAsNonRoot": True, "readOnlyRootFilesystem": True}}
    return {
        "metadata": {"labels": labels("spark-features", role)},
        "spec": {
            "securityContext": pod_security_context(SPARK_UID),
            "nodeSelector": {NODE_ROLE_LABEL: "general"},
            # What Spark sets on the container anyway (cores from coreRequest/coreLimit, memory + overhead as
            # request and limit), stated here so that the template alone says what the pod gets.
            "containers": [{**container, "resources": {
                "requests": {"cpu": res.cpu_request, "memory": res.memory},
                "limits": {"cpu": res.cpu_limit, "memory": res.memory}},
                            "volumeMounts": [{"name": "spark-local", "mountPath": "/tmp"}]}],
            "volumes": [{"name": "spark-local", "emptyDir": {"sizeLimit": "8Gi"}}],
        },
    }


def application_spec(ctx: StackContext, image: str, feast_bucket: str) -> dict[str, Any]:
    """The SparkApplication the schedule creates (checked against the chart's CRD schema by `mlplat conform`)."""
    cfg = ctx.cfg.workloads.spark
    data = cfg.data_uri if cfg.data_uri == "sample" else "s3a://" + cfg.data_uri.removeprefix("s3://")
    driver_memory, driver_overhead = spark_memory(cfg.driver.memory)
    executor_memory, executor_overhead = spark_memory(cfg.executor.memory)
    return {
        "type": "Python",
        "pythonVersion": "3",
        "mode": "cluster",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "mainApplicationFile": APP_FILE,
        "arguments": ["--data", data, "--out", f"s3a://{feast_bucket}/{OFFLINE_PREFIX}"],
        "sparkVersion": ctx.bom.python["pyspark"],
        "sparkConf": {**JOB_CONF, **S3A_CONF, "spark.hadoop.fs.s3a.endpoint.region": ctx.cfg.region},
        "restartPolicy": {"type": "OnFailure", "onFailureRetries": 2, "onFailureRetryInterval": 300,
                          "onSubmissionFailureRetries": 2, "onSubmissionFailureRetryInterval": 60},
        "timeToLiveSeconds": 86400,
        "driver": {
            "cores": _cores(cfg.driver.cpu_request), "coreRequest": cfg.driver.cpu_request,
            "coreLimit": cfg.driver.cpu_limit, "memory": driver_memory, "memoryOverhead": driver_overhead,
            "serviceAccount": SERVICE_ACCOUNT, "template": _pod_template("driver", cfg.driver),
        },
        "executor": {
            "instances": cfg.executor_instances, "cores": _cores(cfg.executor.cpu_request),
            "coreRequest": cfg.executor.cpu_request, "coreLimit": cfg.executor.cpu_limit,
            "memory": executor_memory, "memoryOverhead": executor_overhead,
            "serviceAccount": SERVICE_ACCOUNT, "template": _pod_template("executor", cfg.executor),
        },
    }


@dataclass(frozen=True, kw_only=True)
class SparkFeaturesArgs(WorkloadArgs):
    """Inputs of `SparkFeatures` (settings from `workloads.spark`)."""

    image: pulumi.Input[str]
    """The spark-features image (docker/spark-features/Dockerfile) in the model-server repository."""


class SparkFeatures(pulumi.ComponentResource):
    def __init__(self, name: str, args: SparkFeaturesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:SparkFeatures", name, None, opts)
        ctx, data, depends_on = args.ctx, args.data, args.depends_on
        op = operator(self, ctx, release=RELEASE, chart_key="spark-operator", operator_namespace=OPERATOR_NAMESPACE,
                      jobs_namespace=JOB_NAMESPACE, values=operator_values(ctx, data.role_arns["spark-features"]),
                      depends_on=depends_on or [])
        self.release = op.release
        # Both call the Kubernetes API (the controller: applications and pods; the driver: its executors) and
        # the job reaches S3 over HTTPS; inside the job namespace the driver and executors talk to each other.
        for ns_name, ns in ((OPERATOR_NAMESPACE, op.namespace), (JOB_NAMESPACE, op.jobs_namespace)):
            network_policies(NamespacePolicy(ns_name, egress=[EgressRule(ANYWHERE, (PORT_HTTPS,))]), self, [ns])
        spec = pulumi.Output.all(pulumi.Output.from_input(args.image), data.buckets["feast"]).apply(
            lambda a: application_spec(ctx, a[0], a[1]))
        cfg = ctx.cfg.workloads.spark
        k8s.apiextensions.CustomResource(
            f"{name}-scheduled-job", api_version="sparkoperator.k8s.io/v1beta2", kind="ScheduledSparkApplication",
            # `app_type` becomes a label of the operator's metrics (the alerts and dashboard select on it).
            metadata={"name": JOB_NAME, "namespace": JOB_NAMESPACE,
                      "labels": {**labels("spark-features", "batch-features"), "app_type": contract.APP_TYPE}},
            spec={"schedule": cfg.schedule, "concurrencyPolicy": "Forbid", "successfulRunHistoryLimit": 3,
                  "failedRunHistoryLimit": 3, "template": spec},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[op.jobs_namespace, self.release]))
        monitoring(self, name, ctx, component=COMPONENT,
                   scrapes=(Scrape(RELEASE, OPERATOR_NAMESPACE, CONTROLLER_SELECTOR),), namespaces=[op.namespace],
                   dashboard=contract.DASHBOARD, rule_groups=contract.rule_groups, depends_on=depends_on or [])
        self.register_outputs({"jobNamespace": JOB_NAMESPACE})
