"""VPC and security-group rules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from contracts.guardrails import open_cidrs
from policies.rules.base import PlanResource, StackInfo, as_list, as_mapping, resource_rule, stack_rule, truthy

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
DEFAULT_SG = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
SUBNET = "aws:ec2/subnet:Subnet"
VPC = "aws:ec2/vpc:Vpc"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"


def _port_range(rule: Mapping[str, Any], protocol_key: str) -> tuple[int, int]:
    if str(rule.get(protocol_key, "")) in ("-1", "all"):
        return 0, 65535
    low = rule.get("fromPort")
    high = rule.get("toPort", low)
    return (int(low) if low is not None else 0), (int(high) if high is not None else 65535)


def _open_ingress(rule: Mapping[str, Any], cidrs: Sequence[str], protocol_key: str,
                  allowed_ports: Sequence[int]) -> str | None:
    open_ = open_cidrs(cidrs)
    if not open_:
        return None
    low, high = _port_range(rule, protocol_key)
    if low == high and low in allowed_ports and str(rule.get(protocol_key, "tcp")) in ("tcp", "6"):
        return None
    ports = str(low) if low == high else f"{low}-{high}"
    return f"ingress from {', '.join(open_)} on port {ports}"


@resource_rule(
    "sg-no-public-ingress", [SECURITY_GROUP, SG_RULE, SG_INGRESS_RULE], area="Network", severity="critical",
    description="No security group admits 0.0.0.0/0 or ::/0, except HTTPS (443) to a public load balancer.",
    remediation="Restrict the rule to the VPC CIDR or a referenced security group; publish services through "
                "the AWS Load Balancer Controller on 443.",
    config={"allowedPublicPorts": {"type": "array", "items": {"type": "integer"}, "default": [443],
                                   "description": "TCP ports that may be open to the internet."}},
)
def sg_no_public_ingress(type_: str, props: Mapping[str, Any], config: Mapping[str, Any],
                         _s: StackInfo) -> Iterable[str]:
    allowed = [int(p) for p in config["allowedPublicPorts"]]
    if type_ == SECURITY_GROUP:
        for rule in (as_mapping(r) for r in as_list(props.get("ingress"))):
            cidrs = [*as_list(rule.get("cidrBlocks")), *as_list(rule.get("ipv6CidrBlocks"))]
            if msg := _open_ingress(rule, cidrs, "protocol", allowed):
                yield msg
    elif type_ == SG_RULE:
        if props.get("type") == "ingress":
            cidrs = [*as_list(props.get("cidrBlocks")), *as_list(props.get("ipv6CidrBlocks"))]
            if msg := _open_ingress(props, cidrs, "protocol", allowed):
                yield msg
    else:
        cidrs = [c for c in (props.get("cidrIpv4"), props.get("cidrIpv6")) if c]
        if msg := _open_ingress(props, cidrs, "ipProtocol", allowed):
            yield msg


@resource_rule(
    "default-sg-closed", [DEFAULT_SG], area="Network", severity="medium",
    description="The VPC's default security group has no rules, so nothing can fall back on it.",
    remediation="Manage the default security group with empty `ingress` and `egress` (infra/aws/network.py).",
)
def default_sg_closed(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any], _s: StackInfo) -> Iterable[str]:
    if as_list(props.get("ingress")) or as_list(props.get("egress")):
        yield "the default security group has ingress or egress rules"


@resource_rule(
    "subnet-no-auto-public-ip", [SUBNET], area="Network", severity="medium",
    description="No subnet assigns public IPs on launch; only load balancers and NAT gateways are public.",
    remediation="Set `mapPublicIpOnLaunch: false`.",
)
def subnet_no_auto_public_ip(_t: str, props: Mapping[str, Any], _c: Mapping[str, Any],
                             _s: StackInfo) -> Iterable[str]:
    if truthy(props.get("mapPublicIpOnLaunch")):
        yield "mapPublicIpOnLaunch is true"


@stack_rule(
    "vpc-flow-logs", area="Network", severity="medium",
    description="Every VPC has a flow log capturing ALL traffic.",
    remediation="Enable `mlplatform:network.flowLogs.enabled` (trafficType ALL).",
)
def vpc_flow_logs(resources: Sequence[PlanResource], _c: Mapping[str, Any],
                  _s: StackInfo) -> Iterable[tuple[str, str]]:
    logs = [r for r in resources if r.type == FLOW_LOG and r.props.get("trafficType") == "ALL"]
    for vpc in (r for r in resources if r.type == VPC):
        if not any(vpc.urn in log.dependencies for log in logs):
            yield vpc.urn, "no flow log with trafficType ALL references this VPC"
