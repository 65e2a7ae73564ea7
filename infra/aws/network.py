"""VPC over the configured availability zones with public, private and isolated subnet tiers.

- public: load balancers and NAT gateways (no public IPs assigned on launch);
- private: EKS nodes and pods, egress through NAT (one per AZ in prod, a single one in dev);
- isolated: data services (Redis, MSK, RDS) with no route to the internet at all.
Flow logs go to CloudWatch; S3 traffic stays on the gateway endpoint; interface endpoints are
created for the services the config lists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from stacks.context import StackContext


@dataclass(frozen=True, kw_only=True)
class NetworkArgs:
    """Inputs of `Network`: the layout comes from the stack's `network` config."""

    ctx: StackContext


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    vpc_cidr: str
    availability_zones: list[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    isolated_subnet_ids: list[pulumi.Output[str]]
    nat_gateway_count: int

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:network:Network", name, None, opts)
        ctx = args.ctx
        net = ctx.cfg.network
        self._ctx = ctx
        self._child = pulumi.ResourceOptions(parent=self)
        self.vpc_cidr = str(net.vpc_cidr)
        self.availability_zones = list(net.availability_zones)

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=self.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=ctx.tags(ctx.name("vpc")),
            opts=self._child,
        )
        self.vpc_id = vpc.id
        # CIS 5.4: the default security group allows nothing.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg", vpc_id=vpc.id, ingress=[], egress=[],
            tags=ctx.tags(ctx.name("default-deny")), opts=self._child,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=ctx.tags(ctx.name("igw")), opts=self._child)

        cluster_tag = {f"kubernetes.io/cluster/{ctx.cluster_name}": "shared"}
        public = self._subnets(name, vpc, "public", net.public_subnet_cidrs,
                               {**cluster_tag, "kubernetes.io/role/elb": "1"})
        private = self._subnets(name, vpc, "private", net.private_subnet_cidrs,
                                {**cluster_tag, "kubernetes.io/role/internal-elb": "1"})
        isolated = self._subnets(name, vpc, "isolated", net.isolated_subnet_cidrs, {})
        self.public_subnet_ids = [s.id for s in public]
        self.private_subnet_ids = [s.id for s in private]
        self.isolated_subnet_ids = [s.id for s in isolated]

        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt", vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
            tags=ctx.tags(ctx.name("public")), opts=self._child,
        )
        self._associate(name, "public", public, [public_rt] * len(public))

        nats = self._nat_gateways(name, public, per_az=net.nat_gateways == "perAz")
        self.nat_gateway_count = len(nats)
        private_rts = [
            aws.ec2.RouteTable(
                f"{name}-private-rt-{az}", vpc_id=vpc.id,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nats[i % len(nats)].id)],
                tags=ctx.tags(ctx.name("private", az)), opts=self._child,
            )
            for i, az in enumerate(self.availability_zones)
        ]
        self._associate(name, "private", private, private_rts)
        # No routes beyond the VPC: data services cannot reach or be reached from the internet.
        isolated_rt = aws.ec2.RouteTable(
            f"{name}-isolated-rt", vpc_id=vpc.id, tags=ctx.tags(ctx.name("isolated")), opts=self._child
        )
        self._associate(name, "isolated", isolated, [isolated_rt] * len(isolated))

        aws.ec2.VpcEndpoint(
            f"{name}-s3-endpoint", vpc_id=vpc.id, service_name=f"com.amazonaws.{ctx.cfg.region}.s3",
            vpc_endpoint_type="Gateway", route_table_ids=[rt.id for rt in [*private_rts, isolated_rt]],
            tags=ctx.tags(ctx.name("s3")), opts=self._child,
        )
        self._interface_endpoints(name, vpc)
        if net.flow_logs.enabled:
            self._flow_logs(name, vpc)

        self.register_outputs({
            "vpcId": self.vpc_id,
            "publicSubnetIds": self.public_subnet_ids,
            "privateSubnetIds": self.private_subnet_ids,
            "isolatedSubnetIds": self.isolated_subnet_ids,
        })

    def _subnets(
        self, name: str, vpc: aws.ec2.Vpc, tier: str, cidrs: list, extra_tags: dict[str, str]
    ) -> list[aws.ec2.Subnet]:
        return [
            aws.ec2.Subnet(
                f"{name}-{tier}-{az}",
                vpc_id=vpc.id,
                cidr_block=str(cidr),
                availability_zone=az,
                map_public_ip_on_launch=False,
                tags=self._ctx.tags(self._ctx.name(tier, az), Tier=tier, **extra_tags),
                opts=self._child,
            )
            for az, cidr in zip(self.availability_zones, cidrs, strict=True)
        ]

    def _associate(self, name: str, tier: str, subnets: list[aws.ec2.Subnet], tables: list) -> None:
        for az, subnet, table in zip(self.availability_zones, subnets, tables, strict=True):
            aws.ec2.RouteTableAssociation(
                f"{name}-{tier}-rta-{az}", subnet_id=subnet.id, route_table_id=table.id, opts=self._child
            )

    def _nat_gateways(self, name: str, public: list[aws.ec2.Subnet], per_az: bool) -> list[aws.ec2.NatGateway]:
        zones = self.availability_zones if per_az else self.availability_zones[:1]
        nats = []
        for az, subnet in zip(zones, public, strict=False):
            eip = aws.ec2.Eip(f"{name}-nat-eip-{az}", domain="vpc",
                              tags=self._ctx.tags(self._ctx.name("nat", az)), opts=self._child)
            nats.append(aws.ec2.NatGateway(
                f"{name}-nat-{az}", allocation_id=eip.id, subnet_id=subnet.id,
                tags=self._ctx.tags(self._ctx.name("nat", az)), opts=self._child,
            ))
        return nats

    def _interface_endpoints(self, name: str, vpc: aws.ec2.Vpc) -> None:
        services = self._ctx.cfg.network.interface_endpoints
        if not services:
            return
        sg = aws.ec2.SecurityGroup(
            f"{name}-endpoints-sg", vpc_id=vpc.id, description="HTTPS from inside the VPC to interface endpoints",
            ingress=[aws.ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=443, to_port=443,
                                                      cidr_blocks=[self.vpc_cidr], description="HTTPS from VPC")],
            tags=self._ctx.tags(self._ctx.name("endpoints")), opts=self._child,
        )
        for service in services:
            aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}-endpoint", vpc_id=vpc.id,
                service_name=f"com.amazonaws.{self._ctx.cfg.region}.{service}", vpc_endpoint_type="Interface",
                private_dns_enabled=True, subnet_ids=self.private_subnet_ids, security_group_ids=[sg.id],
                tags=self._ctx.tags(self._ctx.name(service)), opts=self._child,
            )

    def _flow_logs(self, name: str, vpc: aws.ec2.Vpc) -> None:
        ctx = self._ctx
        group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs", name=f"/aws/vpc/{ctx.prefix}/flow-logs",
            retention_in_days=ctx.cfg.network.flow_logs.retention_days,
            tags=ctx.tags(ctx.name("flow-logs")), opts=self._child,
        )
        role = aws.iam.Role(
            f"{name}-flow-logs-role",
            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                "Action": "sts:AssumeRole"}]}),
            tags=ctx.tags(ctx.name("flow-logs")), opts=self._child,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-flow-logs-policy", role=role.id,
            policy=group.arn.apply(lambda arn: json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                "Resource": [arn, f"{arn}:*"]}]})),
            opts=self._child,
        )
        aws.ec2.FlowLog(
            f"{name}-flow-log", vpc_id=vpc.id, traffic_type="ALL", log_destination_type="cloud-watch-logs",
            log_destination=group.arn, iam_role_arn=role.arn, max_aggregation_interval=60,
            tags=ctx.tags(ctx.name("flow-log")),
            # Delivery uses the role from the first minute: its policy exists before the flow log.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
