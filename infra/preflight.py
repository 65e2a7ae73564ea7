"""Preflight: what a stack needs from its AWS account and region, asked with read-only calls before the
first `pulumi up`, so that a missing add-on version, an instance type a zone does not offer, an engine
version the region lacks or a quota below the stack's size fails in seconds instead of half-way
through an up.

Every call is a Describe/List/Get (EKS DescribeAddonVersions, EC2 DescribeInstanceTypeOfferings,
DescribeInstanceTypes, DescribeVpcs, DescribeAddresses, RDS DescribeOrderableDBInstanceOptions and
DescribeDBEngineVersions, ElastiCache
DescribeCacheEngineVersions, MSK ListKafkaVersions, Service Quotas GetServiceQuota). The clients are
passed in (`Clients`), so the tests drive them with botocore's Stubber.

Quota codes (Service Quotas console, "Amazon Elastic Compute Cloud (Amazon EC2)" and "Amazon Virtual
Private Cloud (Amazon VPC)"): L-1216C47A running On-Demand Standard (A, C, D, H, I, M, R, T, Z)
vCPUs, L-DB2E81BA G and VT, L-417A185B P, L-34B43A08 Standard Spot vCPUs, L-3819A6DF G and VT Spot,
L-7212CCBC P Spot, L-0263D0A3 EC2-VPC Elastic IPs, L-FE5A380F NAT gateways per Availability Zone,
L-F678F1CE VPCs per Region. vCPU quotas are compared with the node groups' maximum size, not with
what already runs in the account (EC2 reports that usage only as CloudWatch metrics).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from stacks.bom import Bom
from stacks.schema import PlatformConfig

ON_DEMAND_QUOTAS = {"standard": "L-1216C47A", "g": "L-DB2E81BA", "p": "L-417A185B"}
SPOT_QUOTAS = {"standard": "L-34B43A08", "g": "L-3819A6DF", "p": "L-7212CCBC"}
ELASTIC_IPS, NAT_PER_AZ, VPCS = "L-0263D0A3", "L-FE5A380F", "L-F678F1CE"
# The cluster's upgrade policy is STANDARD: at the end of standard support EKS upgrades the control plane
# itself (EKS User Guide, view-upgrade-policy.md), and the stack's pinned version becomes a downgrade that
# the next `pulumi up` cannot apply. Warn this long before, so the upgrade runbook runs first.
SUPPORT_MARGIN = timedelta(days=90)


@dataclass(frozen=True)
class Check:
    area: str
    subject: str
    wanted: str
    found: str
    ok: bool


@dataclass(frozen=True)
class Clients:
    eks: Any
    ec2: Any
    rds: Any
    elasticache: Any
    kafka: Any
    quotas: Any

    @classmethod
    def for_region(cls, region: str, profile: str | None = None) -> Clients:
        import boto3  # only `mlplat preflight` needs it, and only with credentials

        session = boto3.Session(region_name=region, profile_name=profile)
        return cls(*(session.client(name) for name in ("eks", "ec2", "rds", "elasticache", "kafka",
                                                        "service-quotas")))


def instance_family(instance_type: str) -> str:
    """The vCPU quota an instance type counts against: `g` (G and VT), `p`, or `standard`."""
    family = instance_type.split(".")[0]
    if family.startswith(("g", "vt")):
        return "g"
    if family.startswith("p"):
        return "p"
    return "standard"


def addon_checks(cfg: PlatformConfig, bom: Bom, kubernetes_version: str, eks: Any) -> list[Check]:
    checks = []
    for name, version in bom.addons_for(kubernetes_version).items():
        offered: set[str] = set()
        for page in eks.get_paginator("describe_addon_versions").paginate(
                addonName=name, kubernetesVersion=kubernetes_version):
            for addon in page.get("addons", []):
                offered |= {v["addonVersion"] for v in addon.get("addonVersions", [])}
        checks.append(Check("eks add-on", f"{name} on Kubernetes {kubernetes_version}", version,
                            "offered" if version in offered else f"not offered ({len(offered)} versions are)",
                            version in offered))
    return checks


def version_checks(kubernetes_version: str, eks: Any, today: date) -> list[Check]:
    versions = eks.describe_cluster_versions(clusterVersions=[kubernetes_version]).get("clusterVersions", [])
    if not versions:
        return [Check("eks version", f"Kubernetes {kubernetes_version}", "offered", "not offered", False)]
    end = versions[0].get("endOfStandardSupportDate")
    if end is None:
        return [Check("eks version", f"Kubernetes {kubernetes_version}", "standard support", "no end date", True)]
    end_day = end.date() if hasattr(end, "date") else end
    return [Check("eks version", f"Kubernetes {kubernetes_version}",
                  f"standard support past {today + SUPPORT_MARGIN}", f"ends {end_day}",
                  end_day > today + SUPPORT_MARGIN)]


def offering_checks(cfg: PlatformConfig, ec2: Any) -> list[Check]:
    zones = list(cfg.network.availability_zones)
    types = sorted({t for g in cfg.node_groups.values() for t in g.instance_types})
    offered: set[tuple[str, str]] = set()
    for page in ec2.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": types}, {"Name": "location", "Values": zones}]):
        offered |= {(o["InstanceType"], o["Location"]) for o in page.get("InstanceTypeOfferings", [])}
    checks = []
    for t in types:
        missing = [z for z in zones if (t, z) not in offered]
        checks.append(Check("instance type", t, f"offered in {', '.join(zones)}",
                            f"not in {', '.join(missing)}" if missing else "offered", not missing))
    return checks


def _matches(version: str, pinned: str) -> bool:
    """`16` pins the major (any 16.x), `7.1` any 7.1.x, `3.8.x` any 3.8 patch, an exact version itself."""
    pinned = pinned.removesuffix(".x")
    return version == pinned or version.startswith(pinned + ".")


def engine_checks(bom: Bom, clients: Clients) -> list[Check]:
    engines = bom.engines
    postgres: list[dict[str, Any]] = []
    for page in clients.rds.get_paginator("describe_db_engine_versions").paginate(Engine="postgres"):
        postgres += page.get("DBEngineVersions", [])
    pg = [v for v in postgres if _matches(v["EngineVersion"], engines["postgres"])
          and v.get("DBParameterGroupFamily") == engines["postgresParameterFamily"]]
    redis: list[dict[str, Any]] = []
    for page in clients.elasticache.get_paginator("describe_cache_engine_versions").paginate(Engine="redis"):
        redis += page.get("CacheEngineVersions", [])
    rd = [v for v in redis if _matches(v["EngineVersion"], engines["redis"])
          and v.get("CacheParameterGroupFamily") == engines["redisParameterFamily"]]
    kafka = [v for v in clients.kafka.list_kafka_versions().get("KafkaVersions", [])
             if v.get("Version") == engines["kafka"] and v.get("Status") == "ACTIVE"]
    return [
        Check("engine", "RDS postgres", f"{engines['postgres']} ({engines['postgresParameterFamily']})",
              ", ".join(v["EngineVersion"] for v in pg[-3:]) or "none available", bool(pg)),
        Check("engine", "ElastiCache redis", f"{engines['redis']} ({engines['redisParameterFamily']})",
              ", ".join(v["EngineVersion"] for v in rd[-3:]) or "none available", bool(rd)),
        Check("engine", "MSK Kafka", engines["kafka"], "ACTIVE" if kafka else "not offered", bool(kafka)),
    ]


def database_class_checks(cfg: PlatformConfig, bom: Bom, rds: Any) -> list[Check]:
    """The RDS instance class can be ordered with the pinned PostgreSQL major, gp3 storage (and Multi-AZ where
    the stack asks for it) in every zone of the stack's subnet group."""
    db = cfg.database
    zones: set[str] = set()
    for page in rds.get_paginator("describe_orderable_db_instance_options").paginate(
            Engine="postgres", DBInstanceClass=db.instance_class, Vpc=True):
        for option in page.get("OrderableDBInstanceOptions", []):
            engine_ok = _matches(option.get("EngineVersion", ""), bom.engines["postgres"])
            if engine_ok and option.get("StorageType") == "gp3" and (option.get("MultiAZCapable") or not db.multi_az):
                zones |= {z["Name"] for z in option.get("AvailabilityZones", [])}
    wanted = list(cfg.network.availability_zones)
    missing = [z for z in wanted if z not in zones]
    return [Check("instance type", f"RDS {db.instance_class}", f"orderable in {', '.join(wanted)}",
                  f"not in {', '.join(missing)}" if missing else "orderable", not missing)]


def _quota(quotas: Any, service: str, code: str) -> float:
    return float(quotas.get_service_quota(ServiceCode=service, QuotaCode=code)["Quota"]["Value"])


def vcpu_needs(cfg: PlatformConfig, vcpus: dict[str, int]) -> dict[tuple[str, str], int]:
    """(capacity type, quota family) -> vCPUs at every group's maximum size on its largest instance type."""
    needs: dict[tuple[str, str], int] = defaultdict(int)
    for group in cfg.node_groups.values():
        largest = max(group.instance_types, key=lambda t: vcpus[t])
        needs[(group.capacity_type, instance_family(largest))] += group.max_size * vcpus[largest]
    return dict(needs)


def quota_checks(cfg: PlatformConfig, clients: Clients) -> list[Check]:
    types = sorted({t for g in cfg.node_groups.values() for t in g.instance_types})
    vcpus = {t["InstanceType"]: int(t["VCpuInfo"]["DefaultVCpus"])
             for t in clients.ec2.describe_instance_types(InstanceTypes=types)["InstanceTypes"]}
    checks = []
    for (capacity, family), need in sorted(vcpu_needs(cfg, vcpus).items()):
        code = (ON_DEMAND_QUOTAS if capacity == "ON_DEMAND" else SPOT_QUOTAS)[family]
        have = _quota(clients.quotas, "ec2", code)
        checks.append(Check("quota", f"{capacity.lower()} vCPUs, {family} instances ({code})", f">= {need}",
                            f"{have:g}", have >= need))
    zones = len(cfg.network.availability_zones)
    nats = zones if cfg.network.nat_gateways == "perAz" else 1
    eips_used = len(clients.ec2.describe_addresses().get("Addresses", []))
    have = _quota(clients.quotas, "ec2", ELASTIC_IPS)
    checks.append(Check("quota", f"Elastic IPs ({ELASTIC_IPS})", f">= {eips_used} in use + {nats} NAT",
                        f"{have:g}", have >= eips_used + nats))
    have = _quota(clients.quotas, "vpc", NAT_PER_AZ)
    checks.append(Check("quota", f"NAT gateways per zone ({NAT_PER_AZ})", ">= 1 more per zone", f"{have:g}",
                        have >= 1))
    vpcs_used = sum(len(p.get("Vpcs", [])) for p in clients.ec2.get_paginator("describe_vpcs").paginate())
    have = _quota(clients.quotas, "vpc", VPCS)
    checks.append(Check("quota", f"VPCs per region ({VPCS})", f">= {vpcs_used} in use + 1", f"{have:g}",
                        have >= vpcs_used + 1))
    return checks


def run(cfg: PlatformConfig, bom: Bom, kubernetes_version: str, clients: Clients,
        today: date | None = None) -> list[Check]:
    """Every check; an AWS error becomes a failed row naming the call, never a crash half-way."""
    out: list[Check] = []
    day = today or date.today()
    steps = (("eks add-on", lambda: addon_checks(cfg, bom, kubernetes_version, clients.eks)),
             ("eks version", lambda: version_checks(kubernetes_version, clients.eks, day)),
             ("instance type", lambda: offering_checks(cfg, clients.ec2)),
             ("instance type", lambda: database_class_checks(cfg, bom, clients.rds)),
             ("engine", lambda: engine_checks(bom, clients)),
             ("quota", lambda: quota_checks(cfg, clients)))
    for area, step in steps:
        try:
            out += step()
        except NoCredentialsError:
            raise  # nothing can be checked: the command says so instead of failing every row
        except (ClientError, BotoCoreError) as exc:
            out.append(Check(area, "(AWS call failed)", "an answer", str(exc), False))
    return out


def table(checks: Iterable[Check]) -> str:
    head = ("", "area", "subject", "wanted", "found")
    rows = [head] + [("ok" if c.ok else "FAIL", c.area, c.subject, c.wanted, c.found) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def shortfalls(checks: Iterable[Check]) -> int:
    return sum(1 for c in checks if not c.ok)
