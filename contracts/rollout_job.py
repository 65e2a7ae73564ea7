"""The cluster rollout's Job and the objects around it, as plain manifests (no Pulumi here: the CLI renders the Job).

The stack (infra/workloads/rollouts.py, `workloads.rollouts`) makes, once:
- ConfigMap `rollout-settings` in `ml-training`: what every rollout Job reads (image, Prometheus, MLflow, the
  deploy tree, the promotion policy); `mlplat rollout start --cluster` reads it too, to render the Job;
- ConfigMap `<model>-rollout` per enabled model in the Seldon namespace: the rollout's state (the Job patches its
  data only; Pulumi ignores changes of the data);
- Role + RoleBinding `rollout-controller` in the Seldon namespace for the `training` service account: get and
  patch of exactly those Experiments and state ConfigMaps (`resourceNames`), nothing else;
- NetworkPolicy `rollout-controller-prometheus` in `ml-training`: the rollout pods' egress to Prometheus (the
  namespace's own policies allow HTTPS: the API server, S3, git, and MLflow); and the `monitoring` namespace admits
  them on Prometheus' port.

`mlplat rollout start NAME VERSION --cluster` creates the Job `rollout-<model>` (`job` below): one rollout per model
at a time (a second one is refused by its name), no retry (a rollout that stopped is a result), Pod Security
`restricted`, read-only root filesystem, the deploy repository's credentials mounted read-only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from contracts import rollback
from contracts.cluster import NODE_ROLE_LABEL, SELDON_NAMESPACE, WORKLOAD_IDENTITIES
from contracts.pipelines import DEPLOY_CREDENTIALS_DIR
from contracts.pod_spec import CONTAINER_SECURITY_CONTEXT, TMP_MOUNT, labels, pod_security_context
from contracts.pod_spec import tmp_volume as _tmp_volume

IDENTITY = "training"  # publishes versions to the Seldon slots (IRSA) and writes the deploy tree, as the receiver
NAMESPACE = WORKLOAD_IDENTITIES[IDENTITY].namespace
SERVICE_ACCOUNT = WORKLOAD_IDENTITIES[IDENTITY].service_account
CONTROLLER = "rollout-controller"
SETTINGS = "rollout-settings"
SELECTOR = {"app.kubernetes.io/name": CONTROLLER}
PROMETHEUS_PORT = 9090
PROMETHEUS_SELECTOR = {"app.kubernetes.io/name": "prometheus"}
SETTINGS_KEYS = ("MLPLAT_ROLLOUT_IMAGE", "MLPLAT_DEPLOY", "MLPLAT_PROMETHEUS_URL", "MLFLOW_TRACKING_URI",
                 "MLPLAT_PROMOTION_POLICY", "MLPLAT_SELDON_NAMESPACE", "MLPLAT_ROLLOUT_DEADLINE_S",
                 "MLPLAT_DEPLOY_SECRET", "AWS_REGION", "MLPLAT_RULE_TIMING")


def state_name(model: str) -> str:
    return f"{model}-rollout"


def job_name(model: str) -> str:
    return f"rollout-{model}"


def role_rules(models: Sequence[str]) -> list[dict[str, Any]]:
    """get and patch of the models' Experiments and state ConfigMaps, named one by one; no rule without a model."""
    if not models:
        # An empty `resourceNames` means every object of the resource (RBAC), not none of them.
        return []
    return [{"apiGroups": ["mlops.seldon.io"], "resources": ["experiments"], "verbs": ["get", "patch"],
             "resourceNames": [f"{m}-experiment" for m in models]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"],
             "resourceNames": [state_name(m) for m in models]}]


def prometheus_egress_spec() -> dict[str, Any]:
    return {"podSelector": {"matchLabels": dict(SELECTOR)}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                                "podSelector": {"matchLabels": dict(PROMETHEUS_SELECTOR)}}],
                        "ports": [{"protocol": "TCP", "port": PROMETHEUS_PORT}]}]}


@dataclass(frozen=True)
class Settings:
    """The ConfigMap `rollout-settings` as the CLI reads it."""

    image: str
    deploy: str
    prometheus_url: str
    tracking_uri: str
    promotion_policy: str
    seldon_namespace: str
    deadline_s: int
    deploy_secret: str  # "" when the stack names no credentials Secret
    region: str
    rule_timing: str  # JSON of the rollback rules' windows (contracts/rollback.py Timing) the cluster evaluates

    @classmethod
    def from_config_map(cls, data: dict[str, str]) -> Settings:
        missing = [k for k in SETTINGS_KEYS if k not in data]
        if missing:
            raise ValueError(f"ConfigMap {NAMESPACE}/{SETTINGS} lacks {', '.join(missing)} (made by the stack: "
                             "`pulumi up` with workloads.rollouts.enabled)")
        return cls(data["MLPLAT_ROLLOUT_IMAGE"], data["MLPLAT_DEPLOY"], data["MLPLAT_PROMETHEUS_URL"],
                   data["MLFLOW_TRACKING_URI"], data["MLPLAT_PROMOTION_POLICY"], data["MLPLAT_SELDON_NAMESPACE"],
                   int(data["MLPLAT_ROLLOUT_DEADLINE_S"]), data["MLPLAT_DEPLOY_SECRET"], data["AWS_REGION"],
                   data["MLPLAT_RULE_TIMING"])

    def models(self) -> list[str]:
        return [str(m["name"]) for m in json.loads(self.deploy).get("models", [])]


def job(settings: Settings, model: str, version: str, steps: Sequence[int], interval_s: float, min_requests: int,
        *, poll_s: float = 15, started_by: str = "") -> dict[str, Any]:
    """The rollout's Job; ValueError for a model the stack does not enable or a bad argument."""
    enabled = settings.models()
    if model not in enabled:
        raise ValueError(f"model {model!r} is not enabled in this stack's deploy tree (enabled: "
                         f"{', '.join(enabled) or 'none'})")
    if not str(version).isdigit() or int(version) < 1:
        raise ValueError(f"version must be a registry version number, got {version!r}")
    if min_requests < 1:
        raise ValueError(f"--min-requests must be >= 1, got {min_requests}")
    # Every step lasts at least one interval: a rollout that needs longer than the Job's deadline is certain to be
    # killed midway (the champion gets the traffic back, the challenger is never judged).
    if len(steps) * interval_s > settings.deadline_s:
        raise ValueError(f"{len(steps)} steps of {interval_s:g} s need at least {len(steps) * interval_s:g} s, longer "
                         f"than the rollout Job's deadline of {settings.deadline_s} s "
                         "(workloads.rollouts.deadlineHours): use a shorter --interval or fewer --steps")
    command = ["python", "-m", "ml.delivery.cluster_rollout", model, str(version),
               "--steps", ",".join(str(s) for s in steps), "--interval", f"{interval_s:g}s",
               "--min-requests", str(min_requests), "--poll", f"{poll_s:g}s"]
    # Made on demand by the CLI, not by the stack.
    pod_labels = {**labels("delivery", CONTROLLER), **SELECTOR, "mlplatform.io/model": model,
                  "app.kubernetes.io/managed-by": "mlplat-rollout"}
    mounts, volumes = [TMP_MOUNT], [_tmp_volume("256Mi")]
    if settings.deploy_secret:
        mounts.append({"name": "deploy-git", "mountPath": DEPLOY_CREDENTIALS_DIR, "readOnly": True})
        volumes.append({"name": "deploy-git", "secret": {"secretName": settings.deploy_secret}})
    annotations = {"mlplatform.io/version": str(version)}
    if started_by:
        annotations["mlplatform.io/started-by"] = started_by
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name(model), "namespace": NAMESPACE, "labels": pod_labels,
                     "annotations": annotations},
        "spec": {
            "backoffLimit": 0,  # a stopped rollout is a result; a crashed one has already handed traffic back
            "activeDeadlineSeconds": settings.deadline_s,
            "ttlSecondsAfterFinished": 7 * 86400,  # the state stays in its ConfigMap; the log for a week
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "automountServiceAccountToken": True,  # it patches the Experiment and its state ConfigMap
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 60,  # time to put the champion back at 100 %
                    "securityContext": pod_security_context(),
                    "nodeSelector": {NODE_ROLE_LABEL: "general"},
                    "containers": [{
                        "name": "rollout", "image": settings.image, "command": command,
                        "envFrom": [{"configMapRef": {"name": SETTINGS}}],
                        "env": [{"name": "HOME", "value": "/tmp"}],
                        "resources": {"requests": {"cpu": "100m", "memory": "512Mi"},
                                      "limits": {"cpu": "1", "memory": "1Gi"}},
                        "securityContext": CONTAINER_SECURITY_CONTEXT,
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    }


def settings_data(image: str, deploy: str, prometheus_url: str, tracking_uri: str, policy: str, deadline_s: int,
                  deploy_secret: str, region: str, timing: rollback.Timing | None = None) -> dict[str, str]:
    """The data of ConfigMap `rollout-settings` (every value a string). `timing`: the rollback rules' windows the
    cluster's PrometheusRule uses (its default), so the analysis and the alerts judge alike."""
    rule_timing = json.dumps(asdict(timing or rollback.Timing()), sort_keys=True)
    return dict(zip(SETTINGS_KEYS, (image, deploy, prometheus_url, tracking_uri, policy, SELDON_NAMESPACE,
                                    str(deadline_s), deploy_secret, region, rule_timing), strict=True))
