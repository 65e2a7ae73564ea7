"""Typed access to the bill of materials (stacks/bom.yaml).

Loaded once per process; every version the platform deploys is read from here.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

BOM_PATH = Path(__file__).with_name("bom.yaml")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Platform(_Strict):
    name: str
    version: str

    @field_validator("version")
    @classmethod
    def _semver(cls, v: str) -> str:
        if not _SEMVER.match(v):
            raise ValueError(f"platform.version {v!r} is not semver (MAJOR.MINOR.PATCH)")
        return v


class KubernetesVersions(_Strict):
    default: str
    supported: list[str]


class Chart(_Strict):
    repository: str
    chart: str
    version: str

    @field_validator("version")
    @classmethod
    def _exact(cls, v: str) -> str:
        # cert-manager publishes its charts with a `v` prefix (cert-manager-v1.21.1.tgz): the version is exact.
        if not _SEMVER.match(v.removeprefix("v")):
            raise ValueError(f"chart version {v!r} must be an exact version, not a range")
        return v


class Image(_Strict):
    repository: str
    tag: str

    @field_validator("tag")
    @classmethod
    def _pinned(cls, v: str) -> str:
        if v in {"", "latest"}:
            raise ValueError("image tags must be pinned (not empty or 'latest')")
        return v

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


class Manifests(_Strict):
    """A kustomize tree pinned to a release tag of its git repository."""

    repository: str
    path: str
    version: str

    @field_validator("version")
    @classmethod
    def _exact(cls, v: str) -> str:
        if not _SEMVER.match(v):
            raise ValueError(f"manifests version {v!r} must be an exact release tag, not a branch or range")
        return v

    def url(self, subpath: str) -> str:
        """A kustomize remote target: `<repository>/<path>/<subpath>?ref=<version>`."""
        return f"{self.repository}/{self.path}/{subpath.strip('/')}?ref={self.version}"


class FlinkJar(_Strict):
    """A Java library the streaming-features job image downloads at build time."""

    url: str
    sha256: str | None  # the reviewed digest; None: none could be obtained (the build checks Maven's .sha1)

    @field_validator("url")
    @classmethod
    def _https_jar(cls, v: str) -> str:
        if not re.fullmatch(r"https://\S+\.jar", v):
            raise ValueError(f"jar url must be an https URL of a .jar file, got {v!r}")
        return v

    @field_validator("sha256")
    @classmethod
    def _digest(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[0-9a-f]{64}", v):
            raise ValueError(f"jar sha256 must be 64 lower-case hex digits or null, got {v!r}")
        return v

    @property
    def file(self) -> str:
        return self.url.rsplit("/", 1)[1]


class Jar(_Strict):
    """A Java library an image of ours downloads at build time (Maven Central coordinates)."""

    group: str
    artifact: str
    version: str
    sha1: str  # the checksum Maven Central publishes beside the file (`<file>.sha1`)

    @field_validator("sha1")
    @classmethod
    def _sha1(cls, v: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{40}", v):
            raise ValueError(f"jar sha1 must be 40 lower-case hex digits, got {v!r}")
        return v

    @field_validator("version")
    @classmethod
    def _exact(cls, v: str) -> str:
        if not re.fullmatch(r"\d+\.\d+\.\d+", v):
            raise ValueError(f"jar version must be exact (x.y.z), got {v!r}")
        return v

    @property
    def file(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    @property
    def url(self) -> str:
        return (f"https://repo1.maven.org/maven2/{self.group.replace('.', '/')}/{self.artifact}/{self.version}/"
                f"{self.file}")


class Bom(_Strict):
    platform: Platform
    kubernetes: KubernetesVersions
    eks_addons: dict[str, dict[str, str]] = Field(alias="eksAddons")
    engines: dict[str, str]
    charts: dict[str, Chart]
    manifests: dict[str, Manifests] = Field(default_factory=dict)
    images: dict[str, Image]
    cluster_autoscaler_image_tags: dict[str, str] = Field(alias="clusterAutoscalerImageTags")
    python: dict[str, str]
    # Python environments of tools beside the ML one: environment -> package -> version, each equal to the
    # pins of requirements/<environment>.txt (checked by a test).
    python_tools: dict[str, dict[str, str]] = Field(default_factory=dict, alias="pythonTools")
    flink_jars: dict[str, FlinkJar] = Field(default_factory=dict, alias="flinkJars")
    jars: dict[str, Jar] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _every_supported_version_is_complete(self) -> Bom:
        k8s = self.kubernetes
        if k8s.default not in k8s.supported:
            raise ValueError(f"kubernetes.default {k8s.default} is not in kubernetes.supported")
        for v in k8s.supported:
            if v not in self.eks_addons:
                raise ValueError(f"eksAddons has no entry for supported Kubernetes {v}")
            if v not in self.cluster_autoscaler_image_tags:
                raise ValueError(f"clusterAutoscalerImageTags has no entry for supported Kubernetes {v}")
        return self

    def addons_for(self, kubernetes_version: str) -> dict[str, str]:
        return dict(self.eks_addons[kubernetes_version])

    def chart(self, name: str) -> Chart:
        return self.charts[name]


@cache
def load_bom(path: Path = BOM_PATH) -> Bom:
    return Bom.model_validate(yaml.safe_load(path.read_text()))
