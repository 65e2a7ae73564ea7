"""Reachability: every flow the platform depends on (`flows`) evaluated under the declared NetworkPolicies
with the semantics of the engine that enforces them, and a finding when policies exist but nothing enforces
them.

The engine modelled is the Amazon VPC CNI's network policy agent (EKS user guide "Limit Pod traffic with
Kubernetes network policies", awsdocs/amazon-eks-user-guide `latest/ug/networking/cni-network-policy.adoc`
and `cni-network-policy-configure.adoc`): enabled by the `vpc-cni` add-on's configuration
`enableNetworkPolicy: "true"`; the policies are resolved by the network policy controller on the EKS
control plane (aws/amazon-network-policy-controller-k8s `pkg/resolvers/endpoints.go`) into eBPF filters
on each pod's host-side veth:

- egress is filtered before kube-proxy's DNAT: a flow to a Service is seen with the ClusterIP and the
  Service's port. A `to` peer with pod/namespace selectors also admits the ClusterIP of every non-headless
  Service in a selected namespace whose selector the peer's podSelector matches, with the policy port
  translated to the Service's port; an `ipBlock` peer (or a rule without `to`) admits only addresses in
  its CIDR on the literal port numbers (named ports are dropped; a rule with only named ports is skipped);
- ingress is filtered after DNAT: the destination pod's container port and the caller's address; named
  ports resolve through the selected pods' container ports, except in rules without `from` (dropped);
- traffic from the EKS control plane (admission and conversion webhooks, aggregated APIs) comes from its
  network interfaces in the cluster's subnets, not from a pod: only `ipBlock` peers or a rule without
  `from` admit it;
- pods on the host network are not filtered;
- the user guide requires every Service's port to equal its container port.

When the cluster sets no service CIDR, EKS takes 10.100.0.0/16 or 172.20.0.0/16 (EKS API reference,
`KubernetesNetworkConfigRequest.serviceIpv4Cidr`); a ClusterIP flow must be allowed for both.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from infra.conformance import flows as flow_model
from infra.conformance.flows import CONTROL_PLANE, INTERNET, NODE, VPC_SERVICE, Flow
from infra.conformance.model import KubeObject, Problem
from infra.conformance.plan import Plan
from infra.conformance.selectors import Index, PodTemplate, matches

ADDON_TYPE = "aws:eks/addon:Addon"
EKS_DEFAULT_SERVICE_CIDRS = ("10.100.0.0/16", "172.20.0.0/16")
PUBLIC_SAMPLE = "52.94.0.10"  # an address outside every private range (AWS public endpoints)


@dataclass(frozen=True)
class Engine:
    name: str
    detail: str


@dataclass(frozen=True)
class Network:
    """Representative addresses of each place a flow starts or ends."""

    pods: str  # pods, nodes and the control plane's interfaces: the cluster's (private) subnets
    vpc_services: str  # data services: isolated subnets
    cluster_ips: tuple[str, ...]

    def place(self, name: str) -> tuple[str, ...]:
        return {CONTROL_PLANE: (self.pods,), NODE: (self.pods,), VPC_SERVICE: (self.vpc_services,),
                INTERNET: (PUBLIC_SAMPLE,)}[name]


def _sample(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr, strict=False)[10])


def network_of(plan: Plan) -> Network:
    subnets = plan.of_type("aws:ec2/subnet:Subnet")
    tier = {str((s.get("tags") or {}).get("Tier")): str(s.get("cidrBlock")) for s in subnets if s.get("cidrBlock")}
    vpc = next((str(v["cidrBlock"]) for v in plan.of_type("aws:ec2/vpc:Vpc") if v.get("cidrBlock")), "10.0.0.0/16")
    cluster = next(iter(plan.of_type("aws:eks/cluster:Cluster")), {})
    service_cidr = ((cluster.get("kubernetesNetworkConfig") or {}).get("serviceIpv4Cidr"))
    cidrs = (service_cidr,) if service_cidr else EKS_DEFAULT_SERVICE_CIDRS
    return Network(pods=_sample(tier.get("private", vpc)), vpc_services=_sample(tier.get("isolated", vpc)),
                   cluster_ips=tuple(_sample(c) for c in cidrs))


def engine_of(plan: Plan) -> Engine | None:
    """The VPC CNI add-on with network policy enabled (its configuration values, EKS user guide)."""
    for addon in plan.of_type(ADDON_TYPE):
        if addon.get("addonName") != "vpc-cni":
            continue
        try:
            config = json.loads(str(addon.get("configurationValues") or "{}"))
        except ValueError:
            config = {}
        if str(config.get("enableNetworkPolicy", "")).lower() == "true":
            return Engine("vpc-cni", f"vpc-cni {addon.get('addonVersion')} with enableNetworkPolicy")
    return None


# ---------------------------------------------------------------- policy semantics

@dataclass(frozen=True)
class Side:
    """The policies that isolate one pod in one direction."""

    policies: tuple[KubeObject, ...]

    @property
    def names(self) -> str:
        return ", ".join(p.namespace + "/" + p.name for p in self.policies)


def _types(spec: dict[str, Any]) -> set[str]:
    if spec.get("policyTypes"):
        return set(spec["policyTypes"])
    return {"Ingress", *(["Egress"] if spec.get("egress") else [])}


def isolating(idx: Index, pod: PodTemplate, direction: str) -> Side | None:
    if pod.spec.get("hostNetwork"):
        return None  # the agent filters pod interfaces only
    found = tuple(p for p in idx.of_kind("NetworkPolicy", pod.namespace)
                  if direction in _types(p.manifest.get("spec") or {})
                  and matches((p.manifest.get("spec") or {}).get("podSelector"), pod.labels))
    return Side(found) if found else None


def _numeric(ports: list[dict[str, Any]] | None, protocol: str, port: int) -> bool | None:
    """Rules on addresses: literal numbers only. None: the rule is skipped (only named ports)."""
    if not ports:
        return True
    usable = [p for p in ports if not isinstance(p.get("port"), str)]
    if not usable:
        return None
    return any(_in_range(p, protocol, port, p.get("port")) for p in usable)


def _in_range(rule_port: dict[str, Any], protocol: str, port: int, number: Any) -> bool:
    if str(rule_port.get("protocol") or "TCP") != protocol:
        return False
    if number is None:
        return True
    end = rule_port.get("endPort") or number
    return int(number) <= port <= int(end)


def _on_pod(ports: list[dict[str, Any]] | None, pod: PodTemplate, protocol: str, port: int) -> bool:
    """Rules on selected pods: named ports through the pod's container ports."""
    if not ports:
        return True
    for p in ports:
        number = p.get("port")
        if isinstance(number, str):
            number = flow_model.container_port(pod, number)
            if number is None:
                continue
        if _in_range(p, protocol, port, number):
            return True
    return False


def _in_cidr(address: str, block: dict[str, Any]) -> bool:
    addr = ipaddress.ip_address(address)
    if addr not in ipaddress.ip_network(str(block.get("cidr")), strict=False):
        return False
    return not any(addr in ipaddress.ip_network(str(e), strict=False) for e in block.get("except") or [])


def _peer_namespaces(idx: Index, peer: dict[str, Any], own: str) -> set[str]:
    if "namespaceSelector" not in peer:
        return {own}
    return {ns for ns, labels in idx.namespaces.items() if matches(peer.get("namespaceSelector"), labels)}


def _peer_selects_pod(idx: Index, peer: dict[str, Any], own: str, pod: PodTemplate) -> bool:
    return pod.namespace in _peer_namespaces(idx, peer, own) and matches(peer.get("podSelector"), pod.labels)


def _service_port_of(flow: Flow, rule_port: dict[str, Any]) -> int | None:
    """The Service port the controller derives from a policy port (its own number, targetPort or name)."""
    sp = flow.target.service_port or {}
    value = rule_port.get("port")
    if value is None:
        return flow.port
    if value in (sp.get("port"), sp.get("targetPort"), sp.get("name")) or value == flow.target.container_port:
        return int(sp.get("port") or flow.port)
    return None


def _egress_allows(idx: Index, pol: KubeObject, flow: Flow, address: str, through_cluster_ip: bool) -> bool:
    for rule in (pol.manifest.get("spec") or {}).get("egress") or []:
        ports, peers = rule.get("ports"), rule.get("to")
        if not peers:
            if _numeric(ports, flow.protocol, flow.port):
                return True
            continue
        for peer in peers:
            if peer.get("ipBlock"):
                if _in_cidr(address, peer["ipBlock"]) and _numeric(ports, flow.protocol, flow.port):
                    return True
                continue
            target = flow.target
            if through_cluster_ip and target.service is not None:
                selector = (target.service.manifest.get("spec") or {}).get("selector") or {}
                if target.service.namespace in _peer_namespaces(idx, peer, pol.namespace) and \
                        matches(peer.get("podSelector"), selector) and \
                        (not ports or any(_service_port_of(flow, p) == flow.port and
                                          str(p.get("protocol") or "TCP") == flow.protocol for p in ports)):
                    return True
            elif not through_cluster_ip:
                for pod in target.pods:
                    if _peer_selects_pod(idx, peer, pol.namespace, pod) and \
                            _on_pod(ports, pod, flow.protocol, int(target.container_port or flow.port)):
                        return True
    return False


def _ingress_allows(idx: Index, pol: KubeObject, flow: Flow, pod: PodTemplate, source_address: str) -> bool:
    port = int(flow.target.container_port or flow.port)
    for rule in (pol.manifest.get("spec") or {}).get("ingress") or []:
        ports, peers = rule.get("ports"), rule.get("from")
        if not peers:
            if _numeric(ports, flow.protocol, port):
                return True
            continue
        for peer in peers:
            if peer.get("ipBlock"):
                if _in_cidr(source_address, peer["ipBlock"]) and _numeric(ports, flow.protocol, port):
                    return True
            elif flow.source is not None and not flow.source.spec.get("hostNetwork") and \
                    _peer_selects_pod(idx, peer, pol.namespace, flow.source) and _on_pod(ports, pod, flow.protocol,
                                                                                        port):
                return True
    return False


# ---------------------------------------------------------------- evaluation

def _destination_addresses(flow: Flow, net: Network) -> tuple[tuple[str, ...], bool]:
    """(addresses the caller's packets carry, whether they are ClusterIPs)."""
    target = flow.target
    if target.kind == "service":
        spec = target.service.manifest.get("spec") if target.service is not None else {}
        if (spec or {}).get("clusterIP") != "None":
            return net.cluster_ips, True
        return (net.pods,), False
    if target.kind == "pods":  # host-network pods have node addresses, in the same subnets
        return (net.pods,), False
    return net.place(target.place or INTERNET), False


def evaluate(idx: Index, flow: Flow, net: Network) -> list[str]:
    """Why the flow is blocked (empty: allowed)."""
    if flow.target.kind == "missing":
        return [f"{flow.target.label} is neither in the plan nor rendered by a release"]
    reasons = []
    label = f"{flow.target.label} ({flow.protocol} {flow.port})"
    if flow.source is not None and (side := isolating(idx, flow.source, "Egress")) is not None:
        addresses, cluster_ip = _destination_addresses(flow, net)
        for address in addresses:
            if not any(_egress_allows(idx, p, flow, address, cluster_ip) for p in side.policies):
                what = f"ClusterIP {address}" if cluster_ip else address
                reasons.append(f"egress of {flow.source_label} is isolated by [{side.names}] and no rule allows "
                               f"{what} port {flow.port} ({label})")
                break
    source_address = net.pods
    for pod in flow.target.pods:
        side = isolating(idx, pod, "Ingress")
        if side is not None and not any(_ingress_allows(idx, p, flow, pod, source_address) for p in side.policies):
            who = flow.source_label if flow.source is not None else \
                "the EKS control plane (its network interfaces in the cluster's subnets)" \
                if flow.origin == CONTROL_PLANE else f"the {flow.origin} (its addresses in the VPC)"
            reasons.append(f"ingress of {pod.owner.ref} is isolated by [{side.names}] and no rule admits {who} "
                           f"on container port {flow.target.container_port}")
            break
    target = flow.target
    if target.kind == "service" and target.service_port is not None and target.container_port is not None \
            and target.container_port != target.service_port.get("port") and reasons == [] and \
            flow.source is not None and isolating(idx, flow.source, "Egress"):  # filtered before DNAT
        name = target.service.ref if target.service else target.label
        reasons.append(f"{name} port {target.service_port.get('port')} targets container port "
                       f"{target.container_port}: the VPC CNI network policy agent requires a Service's port to "
                       "equal its container port")
    if target.kind == "service" and target.service_port is None:
        reasons.append(f"{target.label}: the Service has no port {flow.port}")
    return reasons


def check(plan: Plan, objects: Iterable[KubeObject]) -> list[Problem]:
    idx = Index(list(objects))
    policies = [p for p in idx.of_kind("NetworkPolicy") if not p.derived]
    if not policies:
        return []
    engine = engine_of(plan)
    if engine is None:
        spaces = sorted({p.namespace for p in policies})
        return [Problem("reachability", "NetworkPolicies",
                        f"{len(policies)} NetworkPolicies in {spaces} but nothing enforces them: the vpc-cni add-on "
                        "has no `enableNetworkPolicy: \"true\"` in its configuration values and no other policy "
                        "engine is installed")]
    net = network_of(plan)
    problems: dict[str, Problem] = {}
    for flow in flow_model.derive(idx):
        for reason in evaluate(idx, flow, net):
            subject = f"{flow.source_label} -> {flow.target.label}"
            problems.setdefault(subject + reason, Problem("reachability", subject, f"{reason}; needed by {flow.why}"))
    return list(problems.values())
