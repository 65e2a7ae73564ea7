"""Contracts between the AWS layer and the workload layer.

The data-services components fill `DataServices`; the workload components read it. Service-account
names live in contracts/cluster.py, because the IRSA trust policy (AWS layer), the Kubernetes
ServiceAccount (workload layer) and the runbooks must agree on them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from contracts.cluster import WORKLOAD_IDENTITIES, WorkloadIdentity

__all__ = ["WORKLOAD_IDENTITIES", "DataServices", "WorkloadIdentity"]


@dataclass
class RedisEndpoint:
    host: pulumi.Output[str]
    port: int
    auth_token: pulumi.Output[str]  # secret
    tls: bool = True


@dataclass
class KafkaEndpoint:
    bootstrap_brokers_iam: pulumi.Output[str]  # host:9098,... (SASL/IAM over TLS): our own clients
    cluster_arn: pulumi.Output[str]
    bootstrap_brokers_scram: pulumi.Output[str]  # host:9096,... (SASL/SCRAM-SHA-512 over TLS): Seldon
    scram_username: str
    scram_password: pulumi.Output[str]  # secret
    topics: list[str] = field(default_factory=list)


@dataclass
class DatabaseEndpoint:
    host: pulumi.Output[str]
    port: int
    database: str
    username: str
    password: pulumi.Output[str]  # secret


@dataclass
class DataServices:
    """Everything the workloads need from the AWS data layer."""

    redis: RedisEndpoint
    kafka: KafkaEndpoint
    database: DatabaseEndpoint
    buckets: dict[str, pulumi.Output[str]]  # "mlflow" | "feast" | "models" -> bucket name
    role_arns: dict[str, pulumi.Output[str]]  # WORKLOAD_IDENTITIES key -> IRSA role ARN
