"""Accelerators: every GPU node group must be able to give a pod a GPU.

A node advertises `nvidia.com/gpu` only when it runs the NVIDIA driver (an accelerated AMI type) and a
device plugin registers the GPUs with the kubelet. Sources: Amazon EKS User Guide, ml-eks-optimized-ami.md
/ eks-optimized-ami.md (the AL2023 NVIDIA AMIs carry the driver and container toolkit; the NVIDIA
Kubernetes device plugin must be installed, e.g. as a DaemonSet; the Bottlerocket NVIDIA variants
include it), and the device plugin's chart (NVIDIA/k8s-device-plugin v0.20.0,
deployments/helm/nvidia-device-plugin: a DaemonSet whose default node affinity asks for node-feature-
discovery labels or `nvidia.com/gpu.present=true`). The DaemonSet must be able to land on the group's
nodes: match their labels (the group's plus those EKS sets) and tolerate their taints.
"""

from __future__ import annotations

from typing import Any

from infra.conformance.aws_graph import NODE_GROUP, AwsGraph, Node
from infra.conformance.model import KubeObject, Problem
from stacks.rules import GPU_FAMILIES

CHECK = "accelerators"
NVIDIA_AMI_TYPES = ("AL2023_x86_64_NVIDIA", "AL2023_ARM_64_NVIDIA", "AL2_x86_64_GPU")
BOTTLEROCKET_NVIDIA = ("BOTTLEROCKET_x86_64_NVIDIA", "BOTTLEROCKET_ARM_64_NVIDIA")
DEVICE_PLUGIN_IMAGES = ("k8s-device-plugin",)  # nvcr.io/nvidia/k8s-device-plugin, the chart's image
EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}


def is_gpu_group(group: Node) -> bool:
    types = [str(t) for t in group.inputs.get("instanceTypes") or []]
    return any(t.split(".")[0] in GPU_FAMILIES for t in types) or "NVIDIA" in str(group.inputs.get("amiType", ""))


def node_labels(group: Node) -> dict[str, str]:
    """The labels a node of the group carries: the group's own and those EKS and the kubelet set."""
    ami = str(group.inputs.get("amiType", ""))
    return {**{str(k): str(v) for k, v in (group.inputs.get("labels") or {}).items()},
            "eks.amazonaws.com/nodegroup": str(group.inputs.get("nodeGroupName", group.name)),
            "eks.amazonaws.com/capacityType": str(group.inputs.get("capacityType", "ON_DEMAND")),
            "kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64" if "ARM" in ami else "amd64"}


def _matches(expression: dict[str, Any], labels: dict[str, str]) -> bool:
    key, op, values = expression.get("key"), expression.get("operator"), list(expression.get("values") or [])
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False  # Gt/Lt on these labels: never satisfied by a name


def schedulable(pod: dict[str, Any], labels: dict[str, str], taints: list[dict[str, str]]) -> str | None:
    """Why a pod cannot land on a node with `labels` and `taints` (None: it can)."""
    for key, value in (pod.get("nodeSelector") or {}).items():
        if labels.get(key) != str(value):
            return f"nodeSelector {key}={value} does not match the group's nodes"
    required = (((pod.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    if terms and not any(all(_matches(e, labels) for e in t.get("matchExpressions") or []) for t in terms):
        return "its required node affinity matches none of the group's node labels"
    for taint in taints:
        if taint["effect"] == "PreferNoSchedule":
            continue
        if not any(_tolerates(t, taint) for t in pod.get("tolerations") or []):
            return f"it does not tolerate the group's taint {taint['key']}={taint['value']}:{taint['effect']}"
    return None


def _tolerates(toleration: dict[str, Any], taint: dict[str, str]) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint["effect"]:
        return False
    if not toleration.get("key"):
        return toleration.get("operator") == "Exists"
    if toleration["key"] != taint["key"]:
        return False
    return toleration.get("operator") == "Exists" or str(toleration.get("value", "")) == taint["value"]


def _device_plugins(objects: list[KubeObject]) -> list[KubeObject]:
    found = []
    for obj in objects:
        if obj.kind != "DaemonSet":
            continue
        containers = (((obj.manifest.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")
        if any(any(p in str(c.get("image", "")) for p in DEVICE_PLUGIN_IMAGES) for c in containers or []):
            found.append(obj)
    return found


def check(graph: AwsGraph, objects: list[KubeObject]) -> list[Problem]:
    problems: list[Problem] = []
    plugins = _device_plugins(objects)
    for group in filter(is_gpu_group, graph.of_type(NODE_GROUP)):
        ami = str(group.inputs.get("amiType", ""))
        if ami in BOTTLEROCKET_NVIDIA:
            continue  # the variant runs the device plugin itself
        if ami not in NVIDIA_AMI_TYPES:
            problems.append(Problem(CHECK, f"{group.ref} .amiType", f"GPU instance types on {ami or 'the default AMI'}"
                                    f", which has no NVIDIA driver: use one of {', '.join(NVIDIA_AMI_TYPES)}"))
            continue
        labels = node_labels(group)
        taints = [{"key": str(t.get("key")), "value": str(t.get("value", "")),
                   "effect": EFFECTS.get(str(t.get("effect")), str(t.get("effect")))}
                  for t in group.inputs.get("taints") or []]
        reasons = []
        for plugin in plugins:
            why = schedulable(plugin.manifest["spec"]["template"]["spec"], labels, taints)
            if why is None:
                break
            reasons.append(f"{plugin.ref}: {why}")
        else:
            detail = "; ".join(reasons) if reasons else "no NVIDIA device plugin DaemonSet is declared or rendered"
            problems.append(Problem(CHECK, f"{group.ref} .instanceTypes", "no pod can ever be given a GPU: nothing "
                                    f"advertises nvidia.com/gpu on these nodes ({detail})"))
    return problems
