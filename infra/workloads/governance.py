"""Model governance on the cluster: scheduled drift reports and the automatic-rollback receiver.

Both run in namespace `ml-training` as the `training` identity (IRSA: the models bucket read/write, MLflow
artifacts): the models bucket holds the serving samples the runtimes write (`serving-samples/`) and the
reports (`drift-reports/`), and rolling back publishes a version to a Seldon slot.

- CronJob `drift-reports` (`mlplatform:governance.driftReports`): `python -m ml.data.drift_report`
  in the model-server image, one Evidently report per enabled model, into
  `s3://<models bucket>/drift-reports/<model>/<time>/` and an MLflow run (ml/data/drift_report.py).
- Deployment + Service `model-rollback-receiver` (`mlplatform:governance.autoRollback.enabled`):
  `python -m runbooks.autorollback --kube cluster` in the ops image (docker/ops/Dockerfile: the runbooks
  are not in the model-server image); Alertmanager posts the rollback alerts (contracts/rollback.py) to
  it (infra/workloads/observability.py routes them). It may patch the Seldon Models and Experiments in
  `seldon` (Role + RoleBinding) and nothing else in the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from contracts.cluster import MLFLOW_SERVER, SELDON_NAMESPACE, WORKLOAD_IDENTITIES
from contracts.pipelines import DEPLOY_CREDENTIALS_DIR
from infra.workloads.args import WorkloadArgs
from infra.workloads.gitops import PORT_SSH
from infra.workloads.isolation import (
    ANYWHERE,
    PORT_HTTPS,
    EgressRule,
    NamespacePolicy,
    PeerEgressRule,
    network_policies,
)
from infra.workloads.kube import (
    CONTAINER_SECURITY_CONTEXT,
    NODE_ROLE_LABEL,
    TMP_MOUNT,
    labels,
    namespace,
    pod_security_context,
    service_account,
    tmp_volume,
)
from stacks.context import StackContext
from stacks.delivery import deploy_parameter, writes_tree_over_ssh

IDENTITY = "training"
DATASET_WRITER = "dataset-writer"
NAMESPACE = WORKLOAD_IDENTITIES[IDENTITY].namespace
RECEIVER = "model-rollback-receiver"
RECEIVER_PORT = 9095
DRIFT_JOB = "drift-reports"
SAMPLES_PREFIX = "serving-samples"
REPORTS_PREFIX = "drift-reports"
MLFLOW_PORT = 5000
TMP_VOLUME = tmp_volume("1Gi")


def receiver_url() -> str:
    """Where Alertmanager posts the rollback alerts (Alertmanager webhook format)."""
    return f"http://{RECEIVER}.{NAMESPACE}.svc.cluster.local:{RECEIVER_PORT}/alerts"


def ops_image(model_server_image: str) -> str:
    """The ops image (runbooks + ml) is pushed to the model-server repository with the tag `<tag>-ops`."""
    return f"{model_server_image}-ops"


def _mlflow_uri() -> str:
    from infra.workloads.mlflow import tracking_uri

    return tracking_uri()


def drift_job_spec(ctx: StackContext, image: pulumi.Input[str], bucket: pulumi.Input[str]) -> dict[str, Any]:
    cfg = ctx.cfg.governance.drift_reports
    models = [n for n in ctx.cfg.models.names() if ctx.cfg.models[n].enabled]
    args = pulumi.Output.from_input(bucket).apply(lambda b: [
        "python", "-m", "ml.data.drift_report", *models, "--samples", f"s3://{b}/{SAMPLES_PREFIX}",
        "--out", f"s3://{b}/{REPORTS_PREFIX}", "--window", str(cfg.window_rows), "--tracking-uri", _mlflow_uri(),
        "--min-samples", str(min(ctx.cfg.workloads.pipelines.retrain_min_samples, cfg.window_rows))])
    return {
        "schedule": cfg.schedule, "concurrencyPolicy": "Forbid", "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {"spec": {"backoffLimit": 1, "activeDeadlineSeconds": 3600, "template": {
            "metadata": {"labels": labels("governance", "drift-reports")},
            "spec": {
                "serviceAccountName": WORKLOAD_IDENTITIES[IDENTITY].service_account,
                "restartPolicy": "Never",
                "securityContext": pod_security_context(),
                "nodeSelector": {NODE_ROLE_LABEL: "general"},
                "containers": [{
                    "name": "drift-report", "image": image, "command": args,
                    "env": [{"name": "AWS_REGION", "value": ctx.cfg.region}, {"name": "HOME", "value": "/tmp"},
                            {"name": "MPLCONFIGDIR", "value": "/tmp"}],
                    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                  "limits": {"cpu": "2", "memory": "4Gi"}},
                    "securityContext": CONTAINER_SECURITY_CONTEXT,
                    "volumeMounts": [TMP_MOUNT],
                }],
                "volumes": [TMP_VOLUME],
            },
        }}},
    }


def receiver_spec(ctx: StackContext, image: pulumi.Input[str], bucket: pulumi.Input[str]) -> dict[str, Any]:
    selector = {"app.kubernetes.io/name": RECEIVER}
    outputs = pulumi.Output.from_input(bucket).apply(lambda b: f'{{"buckets": {{"models": "{b}"}}}}')
    gitops = ctx.cfg.workloads.gitops
    # With GitOps a champion rollback is a commit to the deploy tree (runbooks/deploy_tree.py): the tree's
    # description and the deploy credentials (the same out-of-band Secret as the publish step's, in this namespace).
    deploy_env, mounts, volumes = [], [TMP_MOUNT], [TMP_VOLUME]
    if gitops.enabled and gitops.credentials_secret:
        deploy = pulumi.Output.from_input(bucket).apply(lambda b: deploy_parameter(ctx.cfg, b))
        deploy_env = [{"name": "MLPLAT_DEPLOY", "value": deploy}]
        mounts = [TMP_MOUNT, {"name": "deploy-git", "mountPath": DEPLOY_CREDENTIALS_DIR, "readOnly": True}]
        volumes = [TMP_VOLUME, {"name": "deploy-git", "secret": {"secretName": gitops.credentials_secret,
                                                                 "optional": True}}]
    return {
        "replicas": 1, "selector": {"matchLabels": selector},
        "strategy": {"type": "Recreate"},  # one receiver: rollbacks never run twice at once
        "template": {
            "metadata": {"labels": {**labels("governance", "autorollback"), **selector}},
            "spec": {
                "serviceAccountName": WORKLOAD_IDENTITIES[IDENTITY].service_account,
                "automountServiceAccountToken": True,  # it patches Seldon Models/Experiments
                "securityContext": pod_security_context(),
                "nodeSelector": {NODE_ROLE_LABEL: "general"},
                "containers": [{
                    "name": "receiver", "image": image,
                    "command": ["sh", "-c", 'printf "%s" "$STACK_OUTPUTS" > /tmp/outputs.json && exec python -m '
                                f"runbooks.autorollback --env {ctx.cfg.environment} --host 0.0.0.0 --port "
                                f"{RECEIVER_PORT} --kube cluster --outputs /tmp/outputs.json --state-dir /tmp "
                                "--audit-log /tmp/runbook-audit.jsonl"],
                    "env": [{"name": "MLFLOW_TRACKING_URI", "value": _mlflow_uri()},
                            {"name": "AWS_REGION", "value": ctx.cfg.region}, {"name": "HOME", "value": "/tmp"},
                            {"name": "STACK_OUTPUTS", "value": outputs}, *deploy_env],
                    "ports": [{"name": "http", "containerPort": RECEIVER_PORT}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 30},
                    "resources": {"requests": {"cpu": "100m", "memory": "512Mi"},
                                  "limits": {"cpu": "1", "memory": "1Gi"}},
                    "securityContext": CONTAINER_SECURITY_CONTEXT,
                    "volumeMounts": mounts,
                }],
                "volumes": volumes,
            },
        },
    }


@dataclass(frozen=True, kw_only=True)
class GovernanceArgs(WorkloadArgs):
    """Inputs of `Governance` (settings from `governance`)."""

    image: pulumi.Input[str]
    """The model-server image the drift-report CronJob runs."""


class Governance(pulumi.ComponentResource):
    """Namespace `ml-training`, the `training` and `dataset-writer` service accounts, the drift-report CronJob
    and the receiver."""

    def __init__(self, name: str, args: GovernanceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:Governance", name, None, opts)
        ctx, data, image, depends_on = args.ctx, args.data, args.image, args.depends_on
        cfg = ctx.cfg.governance
        ns = namespace(NAMESPACE, self)
        after_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns, *(depends_on or [])])
        network_policies(NamespacePolicy(
            NAMESPACE,  # Alertmanager (monitoring) reaches the receiver through the scrape rule's allowance
            egress=[EgressRule(ANYWHERE, (PORT_HTTPS, *((PORT_SSH,) if writes_tree_over_ssh(ctx.cfg) else ()))),
                    PeerEgressRule((MLFLOW_SERVER.namespace,), (MLFLOW_PORT,))],  # S3, STS, the API, git
        ), self, [ns])
        sa = service_account(IDENTITY, self, ns, data.role_arns.get(IDENTITY))
        # The data registry's writer (infra/aws/identities.py): a service account for the jobs that push.
        service_account(DATASET_WRITER, self, ns, data.role_arns.get(DATASET_WRITER))
        bucket = data.buckets["models"]
        if cfg.drift_reports.enabled:
            k8s.batch.v1.CronJob(
                f"{name}-drift-reports",
                metadata={"name": DRIFT_JOB, "namespace": NAMESPACE, "labels": labels("governance", "drift-reports")},
                spec=drift_job_spec(ctx, image, bucket),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[ns, sa]))
        if cfg.auto_rollback.enabled:
            self._receiver(name, ctx, image, bucket, ns, sa, after_ns)
        self.register_outputs({})

    def _receiver(self, name: str, ctx: StackContext, image: pulumi.Input[str], bucket: pulumi.Input[str],
                  ns: k8s.core.v1.Namespace, sa: k8s.core.v1.ServiceAccount,
                  after_ns: pulumi.ResourceOptions) -> None:
        role = k8s.rbac.v1.Role(
            f"{name}-rollback-role",
            metadata={"name": RECEIVER, "namespace": SELDON_NAMESPACE, "labels": labels("governance", "autorollback")},
            # Argo CD owns the Models with GitOps (a rollback writes the tree): the receiver patches Experiments only.
            rules=[{"apiGroups": ["mlops.seldon.io"],
                    "resources": ["experiments"] if ctx.cfg.workloads.gitops.enabled else ["models", "experiments"],
                    "verbs": ["get", "patch"]}],
            opts=after_ns)
        k8s.rbac.v1.RoleBinding(
            f"{name}-rollback-binding",
            metadata={"name": RECEIVER, "namespace": SELDON_NAMESPACE, "labels": labels("governance", "autorollback")},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": RECEIVER},
            subjects=[{"kind": "ServiceAccount", "namespace": NAMESPACE,
                       "name": WORKLOAD_IDENTITIES[IDENTITY].service_account}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role, sa]))
        ops = pulumi.Output.from_input(image).apply(ops_image)
        k8s.apps.v1.Deployment(
            f"{name}-rollback-receiver",
            metadata={"name": RECEIVER, "namespace": NAMESPACE, "labels": labels("governance", "autorollback")},
            spec=receiver_spec(ctx, ops, bucket), opts=pulumi.ResourceOptions(parent=self, depends_on=[ns, sa]))
        k8s.core.v1.Service(
            f"{name}-rollback-receiver-service",
            metadata={"name": RECEIVER, "namespace": NAMESPACE, "labels": labels("governance", "autorollback")},
            spec={"selector": {"app.kubernetes.io/name": RECEIVER},
                  "ports": [{"name": "http", "port": RECEIVER_PORT, "targetPort": RECEIVER_PORT, "protocol": "TCP"}]},
            opts=after_ns)
