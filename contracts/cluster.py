"""Names the cluster side and its operators must agree on, defined once.

The Pulumi program (infra/) creates these objects; the runbooks (runbooks/), which run where pulumi is
not installed, act on them. Both import this module, so a renamed object cannot leave a runbook behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

# Node groups carry this label (value: their role) and the system group carries this taint.
NODE_ROLE_LABEL = "mlplatform.io/node-role"
SYSTEM_TAINT_KEY = "CriticalAddonsOnly"
GPU_TAINT_KEY = "nvidia.com/gpu"
SYSTEM_TOLERATION = {"key": SYSTEM_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True)
class WorkloadIdentity:
    namespace: str
    service_account: str


# name -> the Kubernetes service account its IRSA role trusts (AWS layer and workload layer alike).
WORKLOAD_IDENTITIES: dict[str, WorkloadIdentity] = {
    "mlflow": WorkloadIdentity("mlflow", "mlflow"),
    "feast": WorkloadIdentity("feast", "feast"),
    "feast-ingestor": WorkloadIdentity("feast", "feast-stream-ingestor"),
    "model-serving": WorkloadIdentity("seldon", "model-server"),
    "training": WorkloadIdentity("ml-training", "training"),
    # Writes dataset versions to the data registry's S3 remote (`mlplat data push` in a job or CI runner).
    "dataset-writer": WorkloadIdentity("ml-training", "dataset-writer"),
    # Kubeflow Pipelines (namespace `kubeflow`; the names its manifests give the service accounts): the API
    # server, the pods of pipeline steps (and Argo's log archiving in them), the UI.
    "pipelines": WorkloadIdentity("kubeflow", "ml-pipeline"),
    "pipeline-runner": WorkloadIdentity("kubeflow", "pipeline-runner"),
    "pipelines-ui": WorkloadIdentity("kubeflow", "ml-pipeline-ui"),
    # The streaming-features Flink job's JobManager and TaskManagers (the service account the Flink
    # Kubernetes Operator's chart creates in its watched namespace).
    "flink-job": WorkloadIdentity("flink-jobs", "flink"),
    # The batch-feature Spark job's driver and executors (the Spark Operator's job namespace).
    "spark-features": WorkloadIdentity("spark-jobs", "spark-features"),
    "cluster-autoscaler": WorkloadIdentity("kube-system", "cluster-autoscaler"),
    "aws-load-balancer-controller": WorkloadIdentity("kube-system", "aws-load-balancer-controller"),
}


class KubeObject(NamedTuple):
    """A named object; unpacks as (kind, namespace, name), the arguments the runbooks' Kubernetes client takes."""

    kind: str  # lower-case Kubernetes kind: deployment, statefulset, secret, cronjob, ...
    namespace: str
    name: str

    @property
    def ref(self) -> str:
        """`namespace/name`, as the runbooks and their documents write it."""
        return f"{self.namespace}/{self.name}"


FEAST_NAMESPACE = WORKLOAD_IDENTITIES["feast"].namespace
SELDON_NAMESPACE = WORKLOAD_IDENTITIES["model-serving"].namespace
MLFLOW_NAMESPACE = WORKLOAD_IDENTITIES["mlflow"].namespace
PIPELINES_NAMESPACE = WORKLOAD_IDENTITIES["pipelines"].namespace

FEAST_SERVER = KubeObject("deployment", FEAST_NAMESPACE, "feast-feature-server")
FEAST_INGESTOR = KubeObject("deployment", FEAST_NAMESPACE, "feast-stream-ingestor")
FEAST_MATERIALIZE = KubeObject("cronjob", FEAST_NAMESPACE, "feast-materialize")
FEAST_REDIS_SECRET = KubeObject("secret", FEAST_NAMESPACE, "feast-redis")
FEAST_REDIS_SECRET_KEY = "token"
# The model runtimes' copy of the token (the runtimes read the online store too); same key.
SERVING_REDIS_SECRET = KubeObject("secret", SELDON_NAMESPACE, "online-store-redis")
REDIS_TOKEN_SECRETS = (FEAST_REDIS_SECRET, SERVING_REDIS_SECRET)  # every Kubernetes copy a rotation updates
MODEL_SERVER = KubeObject("statefulset", SELDON_NAMESPACE, "mlserver")  # the Seldon Server of our runtimes
MLFLOW_SERVER = KubeObject("deployment", MLFLOW_NAMESPACE, "mlflow")  # Helm release name = deployment name
# The feedback endpoint (outcomes of served requests: labels, clicks) that the A/B tests and bandits read; its
# Service has the Deployment's name and listens on the container's port (the VPC CNI policy agent needs them equal).
FEEDBACK_SERVER = KubeObject("deployment", "delivery", "feedback")
FEEDBACK_PORT = 9097
FEEDBACK_URL = f"http://{FEEDBACK_SERVER.name}.{FEEDBACK_SERVER.namespace}.svc.cluster.local:{FEEDBACK_PORT}"

# Workloads that hold a Redis connection: restarted when the AUTH token rotates.
REDIS_CLIENTS = (FEAST_SERVER, FEAST_INGESTOR, MODEL_SERVER)
