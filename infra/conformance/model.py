"""Shared data types: a Kubernetes object with its origin, and a problem found."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Kinds that are cluster-scoped in the Kubernetes API (custom kinds take their scope from the CRD).
CLUSTER_SCOPED = frozenset({
    "Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "StorageClass", "PriorityClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
    "APIService", "IngressClass", "CSIDriver", "CSINode", "RuntimeClass", "VolumeAttachment",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding", "FlowSchema", "PriorityLevelConfiguration", "DeviceClass",
})


@dataclass
class KubeObject:
    """One object that would reach the API server: rendered by a release or declared by the program."""

    manifest: dict[str, Any]
    origin: str  # "release <name>: <template>" or "plan"
    release: str | None = None  # the release that renders it (None: the program declares it)
    urn: str | None = None  # the plan resource (own object) or the release's URN
    derived: bool = False  # made by an operator from a custom resource (not applied by Pulumi/Helm)

    @property
    def kind(self) -> str:
        return str(self.manifest.get("kind", ""))

    @property
    def api_version(self) -> str:
        return str(self.manifest.get("apiVersion", ""))

    @property
    def group(self) -> str:
        return self.api_version.rsplit("/", 1)[0] if "/" in self.api_version else ""

    @property
    def name(self) -> str:
        return str((self.manifest.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str((self.manifest.get("metadata") or {}).get("namespace") or "")

    @property
    def labels(self) -> dict[str, str]:
        return dict((self.manifest.get("metadata") or {}).get("labels") or {})

    @property
    def ref(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {ns}{self.name}"

    @property
    def where(self) -> str:
        return f"{self.ref} ({self.origin})"


@dataclass(frozen=True)
class Problem:
    check: str  # render | schema | dead-key | wiring | ordering | scanner | admission
    subject: str  # the object, release or key
    message: str
    release: str | None = None  # the release it is counted against in the table (None: program)

    def __str__(self) -> str:
        return f"[{self.check}] {self.subject}: {self.message}"


@dataclass
class Notes:
    """Findings that are reported but do not fail the check."""

    items: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.items.append(text)
