"""Isolation and resilience helpers: default-deny NetworkPolicies with explicit allows,
PodDisruptionBudgets and zone topology spread for replicated workloads.

Every workload namespace gets `default-deny` (ingress and egress) plus the allows it needs:
DNS, traffic inside the namespace, scraping from `monitoring`, and egress to named ports outside
the cluster (AWS data services, the API server). The AWS data services live in isolated subnets,
so their egress is allowed by port to the VPC CIDR only.

The engine is the VPC CNI's network policy agent (infra/aws/addons.py), which filters a pod's egress
before kube-proxy translates a Service address: a call to another namespace's Service must be allowed
with a namespace peer (`PeerEgressRule`), which the controller resolves to the Services' cluster IPs as
well as the pods; an `ipBlock` of the VPC never contains a cluster IP. Calls from the EKS control plane
(admission webhooks) come from its network interfaces in the VPC, never from a pod (`CidrIngressRule`).
`mlplat conform` checks every flow the platform depends on against these rules (reachability).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.workloads.kube import labels

MONITORING_NAMESPACE = "monitoring"
ZONE_KEY = "topology.kubernetes.io/zone"
# Well-known ports the platform's pods reach outside the cluster.
PORT_HTTPS = 443
PORT_POSTGRES = 5432
PORT_REDIS = 6379
PORT_KAFKA_IAM = 9098
PORT_KAFKA_SCRAM = 9096
ANYWHERE = "0.0.0.0/0"


@dataclass(frozen=True)
class EgressRule:
    """Egress to `cidr` on TCP `ports` (the VPC CIDR for data services, anywhere for AWS APIs)."""

    cidr: str
    ports: Sequence[int]


@dataclass(frozen=True)
class PeerEgressRule:
    """Egress to pods (and their Services) in the named namespaces (every namespace when empty) on TCP
    container `ports` (all ports when empty)."""

    namespaces: Sequence[str] = ()
    ports: Sequence[int] = ()


@dataclass(frozen=True)
class CidrIngressRule:
    """Ingress from addresses in `cidr` on TCP `ports`: callers that are not pods (the EKS control plane)."""

    cidr: str
    ports: Sequence[int]


@dataclass(frozen=True)
class IngressRule:
    """Ingress from pods of other namespaces (by name) on TCP `ports` (all ports when empty)."""

    namespaces: Sequence[str]
    ports: Sequence[int] = ()


@dataclass(frozen=True)
class NamespacePolicy:
    namespace: str
    ingress: Sequence[IngressRule | CidrIngressRule] = ()
    egress: Sequence[EgressRule | PeerEgressRule] = ()
    # Whether pods may be scraped by Prometheus in `monitoring` (on any port).
    scraped: bool = True
    extra_labels: Mapping[str, str] = field(default_factory=dict)


def _ns_selector(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def _ports(ports: Sequence[int]) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def network_policies(policy: NamespacePolicy, parent: pulumi.Resource,
                     depends_on: list[pulumi.Resource] | None = None) -> list[k8s.networking.v1.NetworkPolicy]:
    """default-deny + allow-dns + allow-same-namespace + allow-monitoring + the policy's explicit allows."""
    ns = policy.namespace
    opts = pulumi.ResourceOptions(parent=parent, depends_on=depends_on or [])

    def make(name: str, spec: dict[str, Any]) -> k8s.networking.v1.NetworkPolicy:
        return k8s.networking.v1.NetworkPolicy(
            f"netpol-{ns}-{name}", metadata={"name": name, "namespace": ns, "labels": labels("isolation")},
            spec=spec, opts=opts)

    made = [
        make("default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        make("allow-dns", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
            "to": [{**_ns_selector("kube-system"), "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}),
        make("allow-same-namespace", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                                      "ingress": [{"from": [{"podSelector": {}}]}],
                                      "egress": [{"to": [{"podSelector": {}}]}]}),
    ]
    ingress = [_ingress(rule) for rule in policy.ingress]
    if policy.scraped and ns != MONITORING_NAMESPACE:
        ingress.append({"from": [_ns_selector(MONITORING_NAMESPACE)]})
    if ingress:
        made.append(make("allow-ingress", {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": ingress}))
    if policy.egress:
        made.append(make("allow-egress", {"podSelector": {}, "policyTypes": ["Egress"],
                                          "egress": [_egress(r) for r in policy.egress]}))
    return made


def _with_ports(rule: dict[str, Any], ports: Sequence[int]) -> dict[str, Any]:
    return {**rule, "ports": _ports(ports)} if ports else rule


def _ingress(rule: IngressRule | CidrIngressRule) -> dict[str, Any]:
    if isinstance(rule, CidrIngressRule):
        return _with_ports({"from": [{"ipBlock": {"cidr": rule.cidr}}]}, rule.ports)
    return _with_ports({"from": [_ns_selector(n) for n in rule.namespaces]}, rule.ports)


def _egress(rule: EgressRule | PeerEgressRule) -> dict[str, Any]:
    if isinstance(rule, PeerEgressRule):
        peers = [_ns_selector(n) for n in rule.namespaces] or [{"namespaceSelector": {}}]
        return _with_ports({"to": peers}, rule.ports)
    return {"to": [{"ipBlock": {"cidr": rule.cidr}}], "ports": _ports(rule.ports)}


def pod_disruption_budget(name: str, namespace_name: str, selector: Mapping[str, str], replicas: int,
                          parent: pulumi.Resource,
                          depends_on: list[pulumi.Resource] | None = None) -> k8s.policy.v1.PodDisruptionBudget | None:
    """At most one pod of a replicated workload down at a time; none for a single replica (a PDB
    with one replica and maxUnavailable 0 would block node drains forever)."""
    if replicas < 2:
        return None
    return k8s.policy.v1.PodDisruptionBudget(
        f"pdb-{name}",
        metadata={"name": name, "namespace": namespace_name, "labels": labels(name)},
        spec={"maxUnavailable": 1, "selector": {"matchLabels": dict(selector)}},
        opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on or []),
    )


def zone_spread(selector: Mapping[str, str]) -> list[dict[str, Any]]:
    """Spread replicas over zones (soft: a zone outage must not block rescheduling)."""
    return [{"maxSkew": 1, "topologyKey": ZONE_KEY, "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": dict(selector)}}]
