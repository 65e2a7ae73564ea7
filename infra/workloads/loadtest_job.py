"""The cluster's load test: `mlplat loadtest` as a Kubernetes Job against the Seldon mesh.

Not part of the stack (a load test is run on purpose, not on every `pulumi up`): `mlplat loadtest-job`
renders these manifests for `kubectl apply -f -`:

- Namespace `loadtest`, Pod Security `restricted` enforced (also listed in
  infra/conformance/external-objects.yaml, since the `seldon` ingress policy of the stack names it);
- NetworkPolicies: deny everything, then allow DNS (kube-dns) and egress to Seldon's envoy pods (the
  `seldon-mesh` Service's endpoints) on its HTTP listener only. The `seldon` namespace admits this
  namespace on that listener (infra/workloads/seldon.py CALLER_NAMESPACES);
- ConfigMap `loadtest-requests`: the request mix (`mlplat loadtest --save-requests`, built where the
  data and the model artifacts are);
- Job `loadtest-<stamp>`: the model-server image (it carries `ml/`, the Locust pin and `mlplat`) runs
  `mlplat loadtest --mesh` with the stack's service levels passed explicitly; its exit code is the Job's
  verdict (1: objective missed). Non-root, read-only root filesystem, no capabilities, RuntimeDefault
  seccomp, no service-account token, a size-limited /tmp; on the general nodes so that the load
  generator does not take CPU from the model servers it measures.
"""

from __future__ import annotations

import json
import re
from typing import Any

from infra.workloads.kube import (
    CONTAINER_SECURITY_CONTEXT,
    NODE_ROLE_LABEL,
    PSS_RESTRICTED,
    TMP_MOUNT,
    labels,
    pod_security_context,
    tmp_volume,
)
from infra.workloads.seldon import NAMESPACE as SELDON_NAMESPACE
from stacks.schema import ServiceLevelsConfig

NAMESPACE = "loadtest"
REQUESTS_CONFIG_MAP = "loadtest-requests"
REQUESTS_FILE = "requests.json"
REQUESTS_DIR = "/etc/mlplat-loadtest"
MESH_URL = f"http://seldon-mesh.{SELDON_NAMESPACE}.svc.cluster.local"
ENVOY_SELECTOR = {"app.kubernetes.io/name": "seldon-envoy"}
ENVOY_HTTP_PORT = 9000  # the pod port behind seldon-mesh:80 (NetworkPolicies see the pod port)
CONFIG_MAP_LIMIT = 1_000_000  # bytes; the API server refuses larger ConfigMaps (1 MiB with metadata)


def _labels(component: str | None = None) -> dict[str, str]:
    # Applied on demand with kubectl, not by the stack.
    return {**labels(NAMESPACE, component), "app.kubernetes.io/managed-by": "mlplat-loadtest-job"}


def _ns(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": {
        **_labels(), "pod-security.kubernetes.io/enforce": PSS_RESTRICTED,
        "pod-security.kubernetes.io/warn": PSS_RESTRICTED}}}


def network_policies() -> list[dict[str, Any]]:
    def policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": name, "namespace": NAMESPACE, "labels": _labels("network")},
                "spec": spec}

    return [
        policy("default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        policy("allow-dns", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
            "to": [{**_ns("kube-system"), "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}),
        policy("allow-seldon-mesh", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
            "to": [{**_ns(SELDON_NAMESPACE), "podSelector": {"matchLabels": dict(ENVOY_SELECTOR)}}],
            "ports": [{"protocol": "TCP", "port": ENVOY_HTTP_PORT}]}]}),
    ]


def requests_config_map(mix_json: str) -> dict[str, Any]:
    """The request mix as a ConfigMap; ValueError when it is not a mix or too large for one."""
    doc = json.loads(mix_json)
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict) or not doc["models"]:
        raise ValueError("the request mix has no models (write one with `mlplat loadtest --save-requests FILE`)")
    if len(mix_json.encode()) > CONFIG_MAP_LIMIT:
        raise ValueError(f"the request mix is {len(mix_json.encode()):,} bytes; a ConfigMap holds at most "
                         f"{CONFIG_MAP_LIMIT:,} (save fewer requests per model)")
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": REQUESTS_CONFIG_MAP, "namespace": NAMESPACE, "labels": _labels("requests")},
            "data": {REQUESTS_FILE: mix_json}}


def duration_seconds(duration: str) -> int:
    """Seconds of a `mlplat loadtest --duration` value (30, 30s, 2m, 1h); ValueError otherwise."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", duration.strip().lower())
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"duration {duration!r} is not a positive number of seconds or a value like 30s, 2m, 1h")
    return int(float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)])


def job(image: str, levels: ServiceLevelsConfig, users: int, duration: str, name: str,
        models: list[str] | None = None) -> dict[str, Any]:
    if users < 1:
        raise ValueError(f"users must be at least 1, got {users}")
    command = ["python", "-m", "mlplat", "loadtest", "--mesh", "--target", MESH_URL,
               "--requests", f"{REQUESTS_DIR}/{REQUESTS_FILE}", "--users", str(users), "--duration", duration,
               "--p99-ms", f"{levels.latency_p99_ms:g}", "--max-error-ratio", f"{levels.max_error_ratio:g}"]
    for model in models or []:
        command += ["--model", model]
    pod_labels = _labels("locust")
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": pod_labels},
            "spec": {
                "backoffLimit": 0,  # a load test that failed is a result, not something to retry
                # The load's duration, plus time to pull the image, build nothing and report.
                "activeDeadlineSeconds": duration_seconds(duration) + 600,
                "ttlSecondsAfterFinished": 86400,
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "securityContext": pod_security_context(),
                        "nodeSelector": {NODE_ROLE_LABEL: "general"},
                        "containers": [{
                            "name": "locust",
                            "image": image,
                            "command": command,
                            "env": [{"name": "HOME", "value": "/tmp"}],
                            "resources": {"requests": {"cpu": "1", "memory": "512Mi"},
                                          "limits": {"cpu": "2", "memory": "1Gi"}},
                            "securityContext": CONTAINER_SECURITY_CONTEXT,
                            "volumeMounts": [{"name": "requests", "mountPath": REQUESTS_DIR, "readOnly": True},
                                             TMP_MOUNT],
                        }],
                        "volumes": [{"name": "requests", "configMap": {"name": REQUESTS_CONFIG_MAP}},
                                    tmp_volume("256Mi")],
                    },
                },
            }}


def manifests(image: str, levels: ServiceLevelsConfig, mix_json: str, users: int, duration: str, name: str,
              models: list[str] | None = None) -> list[dict[str, Any]]:
    """Everything `kubectl apply` needs, in apply order."""
    return [namespace(), *network_policies(), requests_config_map(mix_json),
            job(image, levels, users, duration, name, models)]
