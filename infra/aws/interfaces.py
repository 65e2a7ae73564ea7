"""Contracts between the AWS layer and the workload layer.

The data-services components fill `DataServices`; the workload components read it. Service-account
names live here once, because the IRSA trust policy (AWS layer) and the Kubernetes ServiceAccount
(workload layer) must agree on them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi


@dataclass(frozen=True)
class WorkloadIdentity:
    namespace: str
    service_account: str


# name -> the Kubernetes service account its IRSA role trusts.
WORKLOAD_IDENTITIES: dict[str, WorkloadIdentity] = {
    "mlflow": WorkloadIdentity("mlflow", "mlflow"),
    "feast": WorkloadIdentity("feast", "feast"),
    "feast-ingestor": WorkloadIdentity("feast", "feast-stream-ingestor"),
    "model-serving": WorkloadIdentity("seldon", "model-server"),
    "training": WorkloadIdentity("ml-training", "training"),
    "cluster-autoscaler": WorkloadIdentity("kube-system", "cluster-autoscaler"),
    "aws-load-balancer-controller": WorkloadIdentity("kube-system", "aws-load-balancer-controller"),
}


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
