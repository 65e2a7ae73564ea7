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


MAVEN_CENTRAL = "https://repo1.maven.org/maven2/"
_CHECKSUM = re.compile(r"^(?:sha1:[0-9a-f]{40}|sha256:[0-9a-f]{64})$")


class Jar(_Strict):
    """A Java library an image of ours downloads at build time, and the checksum its build checks first."""

    url: str
    checksum: str | None
    """`<algorithm>:<hex digest>`: `sha256:` a reviewed digest, `sha1:` the checksum Maven Central publishes
    beside the file (`<file>.sha1`). None: none could be obtained to pin; the build then checks the `.sha1`
    published beside the file at build time (Maven Central only), which proves the transfer only."""

    @field_validator("url")
    @classmethod
    def _https_jar(cls, v: str) -> str:
        if not re.fullmatch(r"https://\S+\.jar", v):
            raise ValueError(f"jar url must be an https URL of a .jar file, got {v!r}")
        return v

    @field_validator("checksum")
    @classmethod
    def _checksum(cls, v: str | None) -> str | None:
        if v is not None and not _CHECKSUM.match(v):
            raise ValueError(f"jar checksum must be sha1:<40 lower-case hex> or sha256:<64 lower-case hex> or null, "
                             f"got {v!r}")
        return v

    @model_validator(mode="after")
    def _maven_layout(self) -> Jar:
        if self.url.startswith(MAVEN_CENTRAL):
            parts = self.url.removeprefix(MAVEN_CENTRAL).split("/")
            rest = parts[-1].removeprefix(f"{parts[-3]}-{parts[-2]}") if len(parts) >= 4 else parts[-1]
            if rest == parts[-1] or not (rest == ".jar" or rest.startswith("-")):
                raise ValueError(f"jar url {self.url!r} is not Maven's <group>/<artifact>/<version>/"
                                 "<artifact>-<version>[-<classifier>].jar")
            if parts[-2].endswith("-SNAPSHOT"):
                raise ValueError(f"jar url {self.url!r} is a snapshot: pin a release")
        elif self.checksum is None:
            raise ValueError(f"jar {self.url!r} is not on Maven Central, which publishes a .sha1 to check against: "
                             "pin its checksum")
        return self

    @property
    def file(self) -> str:
        return self.url.rsplit("/", 1)[1]

    @property
    def algorithm(self) -> str | None:
        return self.checksum.split(":", 1)[0] if self.checksum else None

    @property
    def digest(self) -> str | None:
        return self.checksum.split(":", 1)[1] if self.checksum else None

    @property
    def maven_dir(self) -> str | None:
        """`<group path>/<artifact>/<version>` under Maven Central's root; None for a file elsewhere."""
        if not self.url.startswith(MAVEN_CENTRAL):
            return None
        return self.url.removeprefix(MAVEN_CENTRAL).rsplit("/", 1)[0]

    @property
    def version(self) -> str | None:
        """The Maven version; None for a file elsewhere."""
        return self.maven_dir.rsplit("/", 1)[1] if self.maven_dir else None


class TrustBundle(_Strict):
    """A CA bundle an image of ours downloads at build time (stacks/pinned_files.py), checked before use."""

    url: str
    checksum: str | None
    """`sha256:<hex>` of the reviewed file: a file with another digest stops the image build. None: no digest has
    been recorded yet; the build takes the file its HTTPS origin serves (PEM certificates only) and prints the
    digest, for a maintainer to check and record."""

    @field_validator("url")
    @classmethod
    def _https_pem(cls, v: str) -> str:
        if not re.fullmatch(r"https://[^\s/]+/\S+\.pem", v):
            raise ValueError(f"trust bundle url must be an https URL of a .pem file, got {v!r}")
        return v

    @field_validator("checksum")
    @classmethod
    def _sha256(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"sha256:[0-9a-f]{64}", v):
            raise ValueError(f"trust bundle checksum must be sha256:<64 lower-case hex> or null, got {v!r}")
        return v

    @property
    def digest(self) -> str | None:
        return self.checksum.removeprefix("sha256:") if self.checksum else None


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
    # Python environments beside the ML one (tools and jobs that cannot share it): environment -> package ->
    # version, each equal to the pins of requirements/<environment>.txt (checked by a test).
    python_tools: dict[str, dict[str, str]] = Field(default_factory=dict, alias="pythonTools")
    # Java libraries our images download at build time: image (docker/<image>/Dockerfile) -> name -> jar.
    jars: dict[str, dict[str, Jar]] = Field(default_factory=dict)
    # CA bundles our images carry (downloaded at image build, checked against the checksum): name -> bundle.
    trust_bundles: dict[str, TrustBundle] = Field(default_factory=dict, alias="trustBundles")

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
