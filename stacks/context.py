"""What every component needs to know about its stack: config, BOM, naming and tags.

Built once by the composition root and passed to each component, so naming and tagging have one
implementation. Pure Python (no pulumi import): the runbooks and the local mode reuse the naming.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stacks.bom import Bom, load_bom
from stacks.schema import PlatformConfig

MANAGED_BY = "pulumi"


@dataclass(frozen=True)
class StackContext:
    cfg: PlatformConfig
    bom: Bom = field(default_factory=load_bom)
    project: str = "mlplatform"

    @property
    def env(self) -> str:
        return str(self.cfg.environment)

    @property
    def prefix(self) -> str:
        """Prefix of every physical AWS name: unique per environment within an account."""
        return f"{self.project}-{self.env}"

    def name(self, *parts: str) -> str:
        return "-".join([self.prefix, *parts])

    @property
    def kubernetes_version(self) -> str:
        return self.cfg.cluster.kubernetes_version or self.bom.kubernetes.default

    @property
    def cluster_name(self) -> str:
        return self.name("eks")

    @property
    def protect(self) -> bool:
        """Whether stateful resources get `protect` and `retain_on_delete`."""
        return self.cfg.protect_stateful_resources

    @property
    def default_tags(self) -> dict[str, str]:
        """Tags on every AWS resource (provider default tags and explicit tags alike)."""
        return {
            **self.cfg.tags,
            "Environment": self.env,
            "Platform": self.bom.platform.name,
            "PlatformVersion": self.bom.platform.version,
            "ManagedBy": MANAGED_BY,
        }

    def tags(self, name: str, **extra: str) -> dict[str, str]:
        return {**self.default_tags, "Name": name, **extra}

    # Physical names that the runbooks look up too (they cannot import pulumi): one definition each.
    @property
    def redis_group_id(self) -> str:
        return self.name("feast")

    @property
    def redis_secret_name(self) -> str:
        return f"{self.prefix}/redis/feast"

    @property
    def database_identifier(self) -> str:
        return self.name("mlflow")

    @property
    def database_secret_name(self) -> str:
        return f"{self.prefix}/postgres/mlflow"

    @property
    def kafka_cluster_name(self) -> str:
        return self.name("kafka")

    def bucket_name(self, purpose: str, account_id: str) -> str:
        """Globally unique, deterministic bucket name (<= 63 characters)."""
        name = f"{self.prefix}-{purpose}-{account_id}-{self.cfg.region}"
        if len(name) > 63:
            raise ValueError(f"bucket name {name!r} exceeds 63 characters; shorten the project or purpose")
        return name
