"""Building blocks shared by the workload components: namespaces, service accounts, Helm releases
from the BOM, container resources from typed config, and the restricted security context.

Manifests are written as camelCase dicts (Kubernetes wire form) on the typed pulumi_kubernetes
resource classes: what the program declares reads exactly like what `mlplat render` writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from contracts.cluster import NODE_ROLE_LABEL, SYSTEM_TOLERATION, WORKLOAD_IDENTITIES
from contracts.pod_spec import (
    CONTAINER_SECURITY_CONTEXT,
    PART_OF,
    TMP_MOUNT,
    labels,
    pod_security_context,
    tmp_volume,
)
from stacks.context import StackContext
from stacks.schema import Resources

IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
# Pod Security Standards level per namespace: our namespaces run restricted pods; node-level agents
# (node-exporter: host network and PID) need privileged in `monitoring`.
PSS_RESTRICTED = "restricted"
PSS_PRIVILEGED = "privileged"
# `kubeflow`: the pods of pipeline steps that KFP 2.17 compiles set no runAsNonRoot on the component's container
# (the image decides its user), which `restricted` refuses; the Argo controller and its CRD job set no seccomp
# profile (docs/CONFORMANCE.md, Pod Security admission).
PSS_BASELINE = "baseline"
# Re-exported for the workload modules (the pod-spec pieces live in contracts/pod_spec.py, which needs no Pulumi).
__all__ = ["CONTAINER_SECURITY_CONTEXT", "NODE_ROLE_LABEL", "PART_OF", "SYSTEM_TOLERATION", "TMP_MOUNT", "labels",
           "pod_security_context", "tmp_volume"]

# What the `restricted` Pod Security level requires of a chart's pod and containers that its values leave
# unset (admission rejects such pods, it fills nothing in). Nothing more: the read-only root and the user
# are the chart's and the image's business (a chart that writes to its root must keep working).
RESTRICTED_POD_SECCOMP: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER: dict[str, Any] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def resources(r: Resources) -> dict[str, dict[str, str]]:
    """Container resources from typed config (requests and limits always both set)."""
    return {"requests": {"cpu": r.cpu_request, "memory": r.memory_request},
            "limits": {"cpu": r.cpu_limit, "memory": r.memory_limit}}


def namespace(name: str, parent: pulumi.Resource, pss: str = PSS_RESTRICTED) -> k8s.core.v1.Namespace:
    return k8s.core.v1.Namespace(
        f"ns-{name}",
        metadata={"name": name, "labels": {
            **labels(name), "pod-security.kubernetes.io/enforce": pss, "pod-security.kubernetes.io/warn": pss,
        }},
        opts=pulumi.ResourceOptions(parent=parent),
    )


def service_account(identity: str, parent: pulumi.Resource, ns: k8s.core.v1.Namespace,
                    role_arn: pulumi.Input[str] | None = None) -> k8s.core.v1.ServiceAccount:
    """The ServiceAccount of a WORKLOAD_IDENTITIES entry, IRSA-annotated when it has a role."""
    ident = WORKLOAD_IDENTITIES[identity]
    annotations = {IRSA_ANNOTATION: role_arn} if role_arn is not None else None
    return k8s.core.v1.ServiceAccount(
        f"sa-{identity}",
        metadata={"name": ident.service_account, "namespace": ident.namespace, "labels": labels(identity),
                  "annotations": annotations},
        # Pods mount a token only where they talk to the Kubernetes API.
        automount_service_account_token=False,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[ns]),
    )


def helm_release(
    name: str,
    ctx: StackContext,
    chart_key: str,
    namespace_name: pulumi.Input[str],
    values: pulumi.Input[Mapping[str, Any]],
    parent: pulumi.Resource,
    depends_on: list[pulumi.Resource] | None = None,
    timeout: int = 600,
    skip_crds: bool = False,
    postrender: str | None = None,
) -> k8s.helm.v3.Release:
    """A Helm release whose chart, version and repository come from the BOM, never from the caller.
    `postrender`: an executable, relative to the project directory, that Helm pipes the manifests through."""
    chart = ctx.bom.charts[chart_key]
    return k8s.helm.v3.Release(
        name,
        name=name,
        chart=chart.chart,
        version=chart.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repository),
        namespace=namespace_name,
        values=values,
        atomic=True,
        cleanup_on_fail=True,
        timeout=timeout,
        max_history=10,
        skip_crds=skip_crds,
        postrender=postrender,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on or []),
    )


def _monitor(kind: str, endpoints_key: str, name: str, namespace_name: str, selector: Mapping[str, str], port: str,
             parent: pulumi.Resource, path: str, interval: str,
             depends_on: list[pulumi.Resource] | None) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        f"{kind.lower()}-{name}",
        api_version="monitoring.coreos.com/v1",
        kind=kind,
        metadata={"name": name, "namespace": namespace_name, "labels": labels(name)},
        spec={"selector": {"matchLabels": dict(selector)}, "namespaceSelector": {"matchNames": [namespace_name]},
              endpoints_key: [{"port": port, "path": path, "interval": interval}]},
        opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on or []),
    )


def service_monitor(name: str, namespace_name: str, selector: Mapping[str, str], port: str,
                    parent: pulumi.Resource, path: str = "/metrics", interval: str = "30s",
                    depends_on: list[pulumi.Resource] | None = None) -> k8s.apiextensions.CustomResource:
    return _monitor("ServiceMonitor", "endpoints", name, namespace_name, selector, port, parent, path, interval,
                    depends_on)


def pod_monitor(name: str, namespace_name: str, selector: Mapping[str, str], port: str,
                parent: pulumi.Resource, path: str = "/metrics", interval: str = "15s",
                depends_on: list[pulumi.Resource] | None = None) -> k8s.apiextensions.CustomResource:
    return _monitor("PodMonitor", "podMetricsEndpoints", name, namespace_name, selector, port, parent, path,
                    interval, depends_on)
