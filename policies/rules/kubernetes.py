"""Kubernetes workloads, Helm releases and per-namespace guard rails."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from policies.rules.base import (
    PlanResource,
    StackInfo,
    UnknownAtPreview,
    as_list,
    as_mapping,
    get_path,
    is_unknown,
    per_resource,
    raw,
    resource_rule,
    stack_rule,
    truthy,
)

# type -> path of the pod spec inside the resource's props
POD_SPEC_PATHS = {
    "kubernetes:core/v1:Pod": "spec",
    "kubernetes:apps/v1:Deployment": "spec.template.spec",
    "kubernetes:apps/v1:StatefulSet": "spec.template.spec",
    "kubernetes:apps/v1:DaemonSet": "spec.template.spec",
    "kubernetes:apps/v1:ReplicaSet": "spec.template.spec",
    "kubernetes:batch/v1:Job": "spec.template.spec",
    "kubernetes:batch/v1:CronJob": "spec.jobTemplate.spec.template.spec",
}
WORKLOADS = tuple(POD_SPEC_PATHS)
REPLICATED = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet")
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
NAMESPACE = "kubernetes:core/v1:Namespace"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")


def _pod_spec(type_: str, props: Mapping[str, Any]) -> Mapping[str, Any]:
    return as_mapping(get_path(props, POD_SPEC_PATHS[type_]))


def _containers(pod: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for key in ("initContainers", "containers"):
        for c in as_list(pod.get(key)):
            yield as_mapping(c)


@resource_rule(
    "k8s-resources-requests-limits", WORKLOADS, area="Kubernetes", severity="medium",
    description="Every container declares CPU and memory requests and limits.",
    remediation="Set `resources.requests` and `resources.limits` (workloads read them from typed config).",
)
def k8s_requests_limits(type_: str, props: Mapping[str, Any], _c: Mapping[str, Any],
                        _s: StackInfo) -> Iterable[str]:
    for c in _containers(_pod_spec(type_, props)):
        res = as_mapping(c.get("resources"))
        missing = [f"{kind}.{r}" for kind in ("requests", "limits") for r in ("cpu", "memory")
                   if not as_mapping(res.get(kind)).get(r)]
        if missing:
            yield f"container {c.get('name', '?')} lacks {', '.join(missing)}"


@resource_rule(
    "k8s-run-as-non-root", WORKLOADS, area="Kubernetes", severity="high",
    description="Containers run as a non-root user.",
    remediation="Set `securityContext.runAsNonRoot: true` (and a non-zero runAsUser) on the pod or each container.",
)
def k8s_non_root(type_: str, props: Mapping[str, Any], _c: Mapping[str, Any], _s: StackInfo) -> Iterable[str]:
    pod = _pod_spec(type_, props)
    pod_ctx = as_mapping(pod.get("securityContext"))
    for c in _containers(pod):
        ctx = {**pod_ctx, **as_mapping(c.get("securityContext"))}
        if ctx.get("runAsUser") is not None and int(ctx["runAsUser"]) == 0:
            yield f"container {c.get('name', '?')} runs as UID 0"
        elif not truthy(ctx.get("runAsNonRoot")) and not ctx.get("runAsUser"):
            yield f"container {c.get('name', '?')} does not set runAsNonRoot"


@resource_rule(
    "k8s-no-privilege-escalation", WORKLOADS, area="Kubernetes", severity="high",
    description="No privileged containers, no privilege escalation, no host network/PID/IPC.",
    remediation="Set `allowPrivilegeEscalation: false`, drop `privileged`, and do not share host namespaces.",
)
def k8s_no_privilege(type_: str, props: Mapping[str, Any], _c: Mapping[str, Any], _s: StackInfo) -> Iterable[str]:
    pod = _pod_spec(type_, props)
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if truthy(pod.get(key)):
            yield f"pod sets {key}"
    for c in _containers(pod):
        ctx = as_mapping(c.get("securityContext"))
        if truthy(ctx.get("privileged")):
            yield f"container {c.get('name', '?')} is privileged"
        if ctx.get("allowPrivilegeEscalation") is None or truthy(ctx.get("allowPrivilegeEscalation")):
            yield f"container {c.get('name', '?')} does not set allowPrivilegeEscalation: false"


def image_problem(image: str) -> str | None:
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image} has no tag"
    if last.rsplit(":", 1)[1] == "latest":
        return f"image {image} uses :latest"
    return None


IMAGE_KEYS = ("image", "tag", "repository")


def _value_images(values: Any, path: str = "values") -> Iterator[tuple[str, str]]:
    """(path, problem) for `image: x:latest` strings and `{repository, tag: latest}` maps in Helm values.

    Values unknown at preview (endpoints, ARNs) are skipped unless they are where an image goes."""
    values = raw(values)
    if isinstance(values, Mapping):
        if "repository" in values and "tag" in values and is_unknown(values["tag"]):
            raise UnknownAtPreview(f"{path}.tag")
        if "repository" in values and str(values.get("tag", "")) == "latest":
            yield path, f"{values['repository']}:latest"
        for k, v in values.items():
            if is_unknown(v):
                if k in IMAGE_KEYS:
                    raise UnknownAtPreview(f"{path}.{k}")
            elif k == "image" and isinstance(v, str) and (p := image_problem(v)) and ":latest" in p:
                yield f"{path}.{k}", p
            else:
                yield from _value_images(v, f"{path}.{k}")
    elif isinstance(values, Sequence) and not isinstance(values, str):
        for i, v in enumerate(values):
            if is_unknown(v):
                continue
            yield from _value_images(v, f"{path}[{i}]")


@resource_rule(
    "k8s-image-pinned", [*WORKLOADS, HELM_RELEASE], area="Kubernetes", severity="high",
    description="Images are pinned: an explicit tag or digest, never `:latest` (also inside Helm values).",
    remediation="Reference images from stacks/bom.yaml `images` with their exact tag.",
    decided="update",
    preview_guard="The model-server image lives in the ECR repository the stack creates, so its reference is unknown "
                  "until `up`; its tag is the BOM's (exact versions, tests/infra/test_bom_and_docs.py), the "
                  "repository's tags are immutable, and every pull request runs this rule on the offline plan "
                  "(`mlplat policy --stack ENV`).",
)
def k8s_image_pinned(type_: str, props: Mapping[str, Any], _c: Mapping[str, Any], _s: StackInfo) -> Iterable[str]:
    if type_ == HELM_RELEASE:
        for path, problem in _value_images(as_mapping(props.get("values"))):
            yield f"{path}: {problem}"
        return
    for c in _containers(_pod_spec(type_, props)):
        image = str(c.get("image") or "")
        if not image:
            yield f"container {c.get('name', '?')} has no image"
        elif problem := image_problem(image):
            yield problem


SERVICE = "kubernetes:core/v1:Service"
LB_SCHEME = "service.beta.kubernetes.io/aws-load-balancer-scheme"


@resource_rule(
    "k8s-load-balancer-internal", [SERVICE], area="Kubernetes", severity="high",
    description="A LoadBalancer Service (e.g. the Kubeflow Pipelines UI) is an internal load balancer whose source "
                "ranges do not include the internet.",
    remediation=f"Annotate it `{LB_SCHEME}: internal` and set `loadBalancerSourceRanges` to the VPC CIDR; "
                "people reach internal UIs through the VPC or `kubectl port-forward`.",
)
def k8s_load_balancer_internal(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any],
                               _s: StackInfo) -> Iterable[str]:
    if get_path(props, "spec.type") != "LoadBalancer":
        return
    scheme = as_mapping(get_path(props, "metadata.annotations")).get(LB_SCHEME)
    if scheme != "internal":
        yield f"a LoadBalancer Service with {LB_SCHEME} {scheme or '(unset: internet-facing)'}"
    open_ranges = [str(c) for c in as_list(get_path(props, "spec.loadBalancerSourceRanges"))
                   if str(c) in ("0.0.0.0/0", "::/0")]
    if open_ranges or not as_list(get_path(props, "spec.loadBalancerSourceRanges")):
        yield f"loadBalancerSourceRanges admit the internet ({', '.join(open_ranges) or 'unset'})"


@resource_rule(
    "helm-chart-pinned", [HELM_RELEASE], area="Kubernetes", severity="high",
    description="Helm releases pin an exact chart version from an HTTPS or OCI repository.",
    remediation="Take chart, repository and version from stacks/bom.yaml `charts` (`load_bom().charts[name]`).",
)
def helm_chart_pinned(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any], _s: StackInfo) -> Iterable[str]:
    version = str(props.get("version") or "")
    if not EXACT_VERSION.match(version):
        yield f"chart version {version or '(none)'} is not an exact version"
    if truthy(props.get("devel")):
        yield "devel: true admits pre-release charts"
    repo = str(get_path(props, "repositoryOpts.repo") or "")
    chart = str(props.get("chart") or "")
    source = repo or chart
    if not source.startswith(("https://", "oci://")):
        yield f"chart source {source or '(none)'} is not an https:// or oci:// repository"


def _namespace(r: PlanResource) -> str:
    return str(get_path(r.props, "metadata.namespace") or "default")


def _labels_match(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    match = as_mapping(selector.get("matchLabels"))
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


@stack_rule(
    "k8s-pdb-for-replicated", area="Kubernetes", severity="medium",
    description="Every Deployment or StatefulSet with two or more replicas has a PodDisruptionBudget selecting it.",
    remediation="Add a policy/v1 PodDisruptionBudget with the workload's pod labels (minAvailable: 1).",
)
def k8s_pdb_for_replicated(resources: Sequence[PlanResource], _c: Mapping[str, Any],
                           _s: StackInfo) -> Iterable[tuple[str, str]]:
    pdbs = [r for r in resources if r.type == PDB]

    def check(w: PlanResource) -> Iterable[str]:
        replicas = get_path(w.props, "spec.replicas")
        if replicas is None or int(replicas) < 2:
            return
        labels = as_mapping(get_path(w.props, "spec.template.metadata.labels"))
        if not any(_namespace(p) == _namespace(w) and _labels_match(as_mapping(get_path(p.props, "spec.selector")),
                                                                    labels) for p in pdbs):
            yield f"{replicas} replicas in namespace {_namespace(w)} but no PodDisruptionBudget selects them"

    yield from per_resource([r for r in resources if r.type in REPLICATED], check)


@stack_rule(
    "k8s-networkpolicy-per-namespace", area="Kubernetes", severity="medium",
    description="Every namespace the stack creates has at least one NetworkPolicy (default deny plus allows).",
    remediation="Declare the namespace's NetworkPolicies next to it (infra/workloads/ helpers add a default-deny).",
)
def k8s_networkpolicy_per_namespace(resources: Sequence[PlanResource], _c: Mapping[str, Any],
                                    _s: StackInfo) -> Iterable[tuple[str, str]]:
    covered = {_namespace(r) for r in resources if r.type == NETWORK_POLICY}
    policy_deps = {d for r in resources if r.type == NETWORK_POLICY for d in r.dependencies}

    def check(ns: PlanResource) -> Iterable[str]:
        name = get_path(ns.props, "metadata.name")
        if name not in covered and ns.urn not in policy_deps:
            yield f"namespace {name or ns.name} has no NetworkPolicy"

    yield from per_resource([r for r in resources if r.type == NAMESPACE], check)
