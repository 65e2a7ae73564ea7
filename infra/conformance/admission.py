"""Pod Security admission over every pod the platform makes, at its namespace's enforce level.

Admission rejects a pod that does not meet its namespace's level; it never fills a setting in. For a
workload the rejection comes when the controller creates the pod (the Deployment is admitted with a
warning, its ReplicaSet then cannot make pods), so every pod template is evaluated: Pods, Deployments,
ReplicaSets, StatefulSets, DaemonSets, Jobs, CronJobs, ReplicationControllers and PodTemplates, whether
a release renders them (hooks included), the program declares them, the Kubeflow kustomize tree holds
them, or an operator derives them from a custom resource (infra/conformance/operators.py).

The level is the `pod-security.kubernetes.io/enforce` (and `-version`) label of the namespace object
that the plan, a release or `external-objects.yaml` declares (infra/conformance/pss.py parses them as
the admission plugin does). A namespace that nothing declares, or one without the label, runs at the
cluster's default, which on EKS is `privileged` (EKS configures no other default and no exemptions).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from infra.conformance import pss
from infra.conformance.model import KubeObject, Problem

CHECK = "admission"
CLUSTER_DEFAULT = pss.LevelVersion(pss.PRIVILEGED)
WORKLOAD_KINDS = frozenset({"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "ReplicationController"})


def pod_templates(obj: KubeObject) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path of the template, template with `metadata` and `spec`) of every pod the object makes."""
    manifest = obj.manifest
    spec = manifest.get("spec") or {}
    if obj.kind == "Pod":
        yield "", manifest
    elif obj.kind in WORKLOAD_KINDS:
        yield "spec.template.", spec.get("template") or {}
    elif obj.kind == "CronJob":
        job = (spec.get("jobTemplate") or {}).get("spec") or {}
        yield "spec.jobTemplate.spec.template.", job.get("template") or {}
    elif obj.kind == "PodTemplate":
        yield "template.", manifest.get("template") or {}


@dataclass(frozen=True)
class NamespacePolicy:
    name: str
    enforce: pss.LevelVersion
    declared_by: str  # where the namespace object comes from, or why the default applies


def namespace_policies(objects: list[KubeObject], external: list[KubeObject]) -> tuple[
        dict[str, NamespacePolicy], list[Problem]]:
    policies: dict[str, NamespacePolicy] = {}
    problems = []
    for ns in [o for o in external if o.kind == "Namespace"] + [o for o in objects if o.kind == "Namespace"]:
        enforce, errors = pss.enforce_policy(ns.labels, CLUSTER_DEFAULT)
        policies[ns.name] = NamespacePolicy(ns.name, enforce, ns.origin)
        problems.extend(Problem(CHECK, ns.where, f"metadata.labels: {e}", ns.release) for e in errors)
    return policies, problems


def policy_for(policies: dict[str, NamespacePolicy], namespace: str) -> NamespacePolicy:
    return policies.get(namespace) or NamespacePolicy(
        namespace, CLUSTER_DEFAULT, "no namespace object declares it: the cluster default (EKS: privileged)")


def evaluate_object(obj: KubeObject, policy: NamespacePolicy, kubernetes_version: str) -> list[Problem]:
    """The violations of every pod template of `obj` at the namespace's level, one problem per field."""
    level = policy.enforce
    if level.version == pss.LATEST:
        # `latest` is the newest policy the cluster's own admission plugin knows: its Kubernetes version.
        level = pss.LevelVersion(level.level, f"v{kubernetes_version}")
    out = []
    for prefix, template in pod_templates(obj):
        result = pss.evaluate(level, template.get("metadata"), template.get("spec"))
        for v in result.violations:
            where = f"namespace {obj.namespace} enforces {policy.enforce}; check {v.check}"
            out.append(Problem(CHECK, obj.where, f"{prefix}{v.path}: {v.message} ({where})", obj.release))
    return out


def check(objects: list[KubeObject], derived: list[KubeObject], external: list[KubeObject],
          kubernetes_version: str) -> tuple[list[Problem], list[str]]:
    """Problems (a pod its namespace's level refuses, a bad label) and notes (the level of each namespace)."""
    policies, problems = namespace_policies(objects, external)
    used: dict[str, int] = {}
    for obj in objects + derived:
        if not any(True for _ in pod_templates(obj)):
            continue
        policy = policy_for(policies, obj.namespace)
        used[obj.namespace] = used.get(obj.namespace, 0) + 1
        problems.extend(evaluate_object(obj, policy, kubernetes_version))
    minor = int(kubernetes_version.split(".")[1]) if kubernetes_version.count(".") == 1 else pss.MAX_MINOR
    notes = [f"admission: namespace {name} enforces {policy_for(policies, name).enforce} over {count} pod "
             f"template(s) ({policy_for(policies, name).declared_by})" for name, count in sorted(used.items())]
    if minor > pss.MAX_MINOR:
        notes.append(f"admission: Kubernetes {kubernetes_version} is newer than the policy the evaluator knows "
                     f"(v1.{pss.MAX_MINOR}); pods were evaluated at v1.{pss.MAX_MINOR}")
    return problems, notes
