"""`mlplat preflight` offline: every AWS call answered by botocore's Stubber (no credentials, no network),
in the order the checks make them, with responses validated against the services' own models."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from infra import preflight
from infra.cli import preflight as preflight_cli
from stacks.bom import load_bom
from stacks.config import load_stack_file, stack_file

TODAY = date(2026, 12, 7)
VCPUS = {"m6i.large": 2, "m6i.xlarge": 4, "m5.xlarge": 4, "c6i.xlarge": 4, "c5.xlarge": 4, "m6i.2xlarge": 8,
         "c6i.2xlarge": 8, "c7i.2xlarge": 8, "g5.xlarge": 4, "g6.xlarge": 4}


@dataclass
class Account:
    """What the stubbed account answers; each test changes one thing."""

    missing_addon_version: str | None = None
    unoffered: set[tuple[str, str]] = field(default_factory=set)
    standard_vcpus: float = 1000.0
    elastic_ips: float = 5.0
    addresses_in_use: int = 0
    kafka_status: str = "ACTIVE"
    deny_quotas: bool = False
    db_zones: tuple[str, ...] = ("eu-west-1a", "eu-west-1b", "eu-west-1c")
    end_of_standard_support: datetime = datetime(2100, 1, 1, tzinfo=UTC)  # far: the command uses the real date


def _client(service: str) -> Any:
    return boto3.client(service, region_name="eu-west-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def stubbed(account: Account, stack: str = "prod") -> tuple[preflight.Clients, list[Stubber]]:
    cfg = load_stack_file(stack_file(stack))
    bom = load_bom()
    version = cfg.cluster.kubernetes_version or bom.kubernetes.default
    clients = preflight.Clients(*(_client(s) for s in ("eks", "ec2", "rds", "elasticache", "kafka",
                                                        "service-quotas")))
    stubs = {name: Stubber(getattr(clients, name)) for name in ("eks", "ec2", "rds", "elasticache", "kafka",
                                                                 "quotas")}
    for name, pinned in bom.addons_for(version).items():
        offered = "v0.0.1-eksbuild.1" if name == account.missing_addon_version else pinned
        stubs["eks"].add_response("describe_addon_versions", {"addons": [{
            "addonName": name, "addonVersions": [{"addonVersion": offered}]}]},
            {"addonName": name, "kubernetesVersion": version})
    stubs["eks"].add_response("describe_cluster_versions", {"clusterVersions": [
        {"clusterVersion": version, "endOfStandardSupportDate": account.end_of_standard_support}]},
        {"clusterVersions": [version]})
    zones = list(cfg.network.availability_zones)
    types = sorted({t for g in cfg.node_groups.values() for t in g.instance_types})
    stubs["ec2"].add_response("describe_instance_type_offerings", {"InstanceTypeOfferings": [
        {"InstanceType": t, "LocationType": "availability-zone", "Location": z}
        for t in types for z in zones if (t, z) not in account.unoffered]}, {
        "LocationType": "availability-zone",
        "Filters": [{"Name": "instance-type", "Values": types}, {"Name": "location", "Values": zones}]})
    stubs["rds"].add_response("describe_orderable_db_instance_options", {"OrderableDBInstanceOptions": [
        {"Engine": "postgres", "EngineVersion": "16.10", "DBInstanceClass": cfg.database.instance_class,
         "StorageType": "gp3", "MultiAZCapable": True, "AvailabilityZones": [{"Name": z} for z in account.db_zones]},
        {"Engine": "postgres", "EngineVersion": "15.14", "DBInstanceClass": cfg.database.instance_class,
         "StorageType": "gp3", "MultiAZCapable": True, "AvailabilityZones": [{"Name": "eu-west-1c"}]}]},
        {"Engine": "postgres", "DBInstanceClass": cfg.database.instance_class, "Vpc": True})
    stubs["rds"].add_response("describe_db_engine_versions", {"DBEngineVersions": [
        {"Engine": "postgres", "EngineVersion": v, "DBParameterGroupFamily": f}
        for v, f in (("15.14", "postgres15"), ("16.9", "postgres16"), ("16.10", "postgres16"))]},
        {"Engine": "postgres"})
    stubs["elasticache"].add_response("describe_cache_engine_versions", {"CacheEngineVersions": [
        {"Engine": "redis", "EngineVersion": "7.1", "CacheParameterGroupFamily": "redis7"}]}, {"Engine": "redis"})
    stubs["kafka"].add_response("list_kafka_versions", {"KafkaVersions": [
        {"Version": "3.8.x", "Status": account.kafka_status}]}, {})
    stubs["ec2"].add_response("describe_instance_types", {"InstanceTypes": [
        {"InstanceType": t, "VCpuInfo": {"DefaultVCpus": VCPUS[t]}} for t in types]}, {"InstanceTypes": types})
    quota_codes = sorted({(g.capacity_type, preflight.instance_family(max(g.instance_types, key=VCPUS.get)))
                          for g in cfg.node_groups.values()})
    for capacity, family in quota_codes:
        code = (preflight.ON_DEMAND_QUOTAS if capacity == "ON_DEMAND" else preflight.SPOT_QUOTAS)[family]
        if account.deny_quotas:
            stubs["quotas"].add_client_error("get_service_quota", "AccessDeniedException", "not authorized")
            break
        value = account.standard_vcpus if family == "standard" else 64.0
        stubs["quotas"].add_response("get_service_quota", {"Quota": {"QuotaCode": code, "Value": value}},
                                     {"ServiceCode": "ec2", "QuotaCode": code})
    if not account.deny_quotas:
        stubs["ec2"].add_response("describe_addresses", {"Addresses": [
            {"PublicIp": f"198.51.100.{i}"} for i in range(account.addresses_in_use)]}, {})
        for service, code, value in (("ec2", preflight.ELASTIC_IPS, account.elastic_ips),
                                     ("vpc", preflight.NAT_PER_AZ, 5.0), ("vpc", preflight.VPCS, 5.0)):
            stubs["quotas"].add_response("get_service_quota", {"Quota": {"QuotaCode": code, "Value": value}},
                                         {"ServiceCode": service, "QuotaCode": code})
            if code == preflight.NAT_PER_AZ:
                stubs["ec2"].add_response("describe_vpcs", {"Vpcs": [{"VpcId": "vpc-0default"}]}, {})
    for stub in stubs.values():
        stub.activate()
    return clients, list(stubs.values())


def _run(account: Account, stack: str = "prod") -> list[preflight.Check]:
    clients, stubs = stubbed(account, stack)
    cfg = load_stack_file(stack_file(stack))
    bom = load_bom()
    checks = preflight.run(cfg, bom, cfg.cluster.kubernetes_version or bom.kubernetes.default, clients,
                           today=TODAY)
    for stub in stubs:
        stub.assert_no_pending_responses()
    return checks


def _failed(checks: list[preflight.Check]) -> list[tuple[str, str, str]]:
    return [(c.area, c.subject, c.found) for c in checks if not c.ok]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_an_account_that_fits_passes_every_check(stack):
    checks = _run(Account(), stack)
    assert _failed(checks) == []
    areas = {c.area for c in checks}
    assert areas == {"eks add-on", "eks version", "instance type", "engine", "quota"}
    assert preflight.shortfalls(checks) == 0


def test_pinned_add_on_version_missing_in_the_region_fails():
    failed = _failed(_run(Account(missing_addon_version="coredns")))
    assert failed == [("eks add-on", "coredns on Kubernetes 1.34", "not offered (1 versions are)")]


def test_kubernetes_version_near_the_end_of_standard_support_fails():
    failed = _failed(_run(Account(end_of_standard_support=datetime(2027, 2, 1, tzinfo=UTC))))
    assert failed == [("eks version", "Kubernetes 1.34", "ends 2027-02-01")]


def test_instance_type_not_offered_in_one_zone_fails():
    failed = _failed(_run(Account(unoffered={("g6.xlarge", "eu-west-1c")})))
    assert failed == [("instance type", "g6.xlarge", "not in eu-west-1c")]


def test_database_class_not_orderable_in_a_zone_fails():
    """Only the 16.x option counts: the 15.x one in eu-west-1c does not make up for it."""
    failed = _failed(_run(Account(db_zones=("eu-west-1a", "eu-west-1b"))))
    assert failed == [("instance type", "RDS db.r6g.xlarge", "not in eu-west-1c")]


def test_vcpu_and_elastic_ip_quotas_below_the_stack_fail():
    failed = _failed(_run(Account(standard_vcpus=100.0, elastic_ips=4.0, addresses_in_use=2)))
    assert failed == [("quota", "on_demand vCPUs, standard instances (L-1216C47A)", "100"),
                      ("quota", "Elastic IPs (L-0263D0A3)", "4")]


def test_vcpu_needs_count_every_group_at_its_maximum_on_its_largest_type():
    cfg = load_stack_file(stack_file("prod"))
    assert preflight.vcpu_needs(cfg, VCPUS) == {("ON_DEMAND", "standard"): 6 * 2 + 12 * 8 + 30 * 8,
                                                 ("ON_DEMAND", "g"): 4 * 4}


def test_inactive_kafka_version_fails():
    assert _failed(_run(Account(kafka_status="DEPRECATED"))) == [("engine", "MSK Kafka", "not offered")]


def test_a_denied_call_is_a_failed_row_not_a_crash():
    failed = _failed(_run(Account(deny_quotas=True)))
    assert len(failed) == 1 and failed[0][:2] == ("quota", "(AWS call failed)") and "AccessDenied" in failed[0][2]


def test_command_prints_the_table_and_exits_1_on_a_shortfall(monkeypatch, capsys):
    clients, _ = stubbed(Account(unoffered={("c7i.2xlarge", "eu-west-1a")}))
    monkeypatch.setattr(preflight.Clients, "for_region", classmethod(lambda cls, region, profile=None: clients))
    code = preflight_cli._preflight(argparse.Namespace(stack="prod", profile=None))
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  instance type  c7i.2xlarge" in out and "not in eu-west-1a" in out
    assert out.rstrip().endswith("1 shortfall(s)")


def test_without_credentials_the_command_exits_2_before_any_check(monkeypatch, tmp_path, capsys):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookup from a test
    code = preflight_cli._preflight(argparse.Namespace(stack="dev", profile=None))
    assert code == 2 and "Unable to locate credentials" in capsys.readouterr().err
