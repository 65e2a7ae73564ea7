"""The plan's AWS resources in the order the engine creates them.

A resource is created only after everything it waits for, and the Python SDK decides what that is
before it sends `RegisterResource` (pulumi/pulumi, sdk/python/lib/pulumi, v3.272.0):

- `runtime/resource.py` `prepare_resource` first awaits the URNs of `depends_on`, then serializes
  the inputs (every Output it meets adds its resources as property dependencies), then awaits the
  parent's URN. A URN resolves when the engine answers `RegisterResource`, which for a custom
  resource is after the provider created it; so a resource waits for its dependencies and for its
  parent, and a parent component registers only after its own `depends_on`.
- `runtime/rpc.py` `_add_dependency` expands a local `ComponentResource` in `depends_on` into the
  custom resources below it (descending through child components, not into children of custom
  resources), as its `_childResources` stand when the dependency is resolved.

The recorded plan (`mlplat synth`) keeps exactly what the SDK sent: `dependencies` (expanded) and
`parent`. "Created before X" is therefore the closure of X over both edges.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
ADDON = "aws:eks/addon:Addon"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
ACCESS_ENTRY = "aws:eks/accessEntry:AccessEntry"
RELEASE = "kubernetes:helm.sh/v3:Release"
SUBNET = "aws:ec2/subnet:Subnet"


@dataclass
class Node:
    urn: str
    type: str
    inputs: dict[str, Any]
    dependencies: list[str]
    parent: str | None
    custom: bool
    ignore_changes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]

    @property
    def ref(self) -> str:
        """How a finding names the resource: its short type and logical name."""
        return f"{self.type.rsplit(':', 1)[-1]} {self.name}"


class AwsGraph:
    """Every resource of a preview-shaped plan, with the set each one waits for."""

    def __init__(self, states: dict[str, dict[str, Any]]) -> None:
        self.nodes = {urn: Node(urn, st["type"], dict(st.get("inputs") or {}),
                                list(st.get("dependencies") or []), st.get("parent") or None,
                                bool(st.get("custom")), list(st.get("ignoreChanges") or []))
                      for urn, st in states.items()}
        self._before: dict[str, frozenset[str]] = {}

    def of_type(self, type_: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.type == type_]

    def before(self, urn: str) -> frozenset[str]:
        """URNs of every resource that is created before `urn` starts (dependencies and parents, closed)."""
        if urn in self._before:
            return self._before[urn]
        seen: set[str] = set()
        node = self.nodes.get(urn)
        todo = list(node.dependencies) + ([node.parent] if node and node.parent else []) if node else []
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            if current in self._before:
                seen |= self._before[current]
                continue
            other = self.nodes.get(current)
            if other is not None:
                todo.extend(other.dependencies)
                if other.parent:
                    todo.append(other.parent)
        self._before[urn] = frozenset(seen)
        return self._before[urn]

    def created_before(self, first: str, then: str) -> bool:
        return first in self.before(then)

    def direct(self, node: Node, type_: str) -> list[Node]:
        """The resources of `type_` that `node` names among its own dependencies."""
        return [self.nodes[d] for d in node.dependencies if d in self.nodes and self.nodes[d].type == type_]

    def grants_of(self, role: Node) -> list[Node]:
        """Policy attachments and inline policies of `role` (they name it in their dependencies)."""
        return [n for n in self.nodes.values() if n.type in (ATTACHMENT, ROLE_POLICY) and role.urn in n.dependencies]

    def managed_policies(self, role: Node, before: str | None = None) -> set[str]:
        """Managed policy ARNs attached to `role`, only those attached before `before` when given."""
        return {str(a.inputs.get("policyArn")) for a in self.grants_of(role) if a.type == ATTACHMENT
                and (before is None or self.created_before(a.urn, before))}

    @cached_property
    def releases(self) -> list[Node]:
        return self.of_type(RELEASE)


def trusts_service(role: Node, principal: str) -> bool:
    """Whether the role's trust policy admits an AWS service principal (e.g. ec2.amazonaws.com)."""
    return principal in str(role.inputs.get("assumeRolePolicy", ""))


def is_irsa(role: Node) -> bool:
    return "AssumeRoleWithWebIdentity" in str(role.inputs.get("assumeRolePolicy", ""))


def decoded_user_data(template: Node) -> str | None:
    raw = template.inputs.get("userData")
    if raw in (None, ""):
        return None
    try:
        return base64.b64decode(str(raw), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return str(raw)
