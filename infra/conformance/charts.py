"""Chart archives of the BOM's pinned charts: from the chart repository (HTTPS index or OCI) or a
mirror directory, checked against the reviewed digests in `chart-digests.yaml`, cached under
`.cache/charts/` (git-ignored). The chart files never go into the repository.

Order: `mlplat charts pull` asks the repository first and falls back to the mirror; the conformance
check takes the cache, then the mirror, then the repository, so that it needs no network when a
mirror is at hand. A file from a repository is checked against the repository index's digest as well.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
BOM = REPO_ROOT / "stacks" / "bom.yaml"
DIGESTS = Path(__file__).with_name("chart-digests.yaml")
CACHE = REPO_ROOT / ".cache" / "charts"
MIRROR_ENV = "MLPLAT_CHART_MIRROR"
HOW_TO = (
    "Get the pinned charts with `mlplat charts pull` on a machine that reaches the chart repositories, or "
    f"point at a mirror directory of the .tgz files with `--mirror DIR` or {MIRROR_ENV}=DIR (a checkout with "
    "../shared beside it has one in ../shared/charts)."
)


class ChartSourceError(Exception):
    """A pinned chart could not be had from any source."""


@dataclass(frozen=True)
class ChartPin:
    key: str
    repository: str
    chart: str
    version: str

    @property
    def archive(self) -> str:
        return f"{self.chart}-{self.version}.tgz"


def pins(bom: Path = BOM) -> list[ChartPin]:
    charts = (yaml.safe_load(bom.read_text()) or {}).get("charts") or {}
    return [ChartPin(key, str(c["repository"]), str(c["chart"]), str(c["version"])) for key, c in charts.items()]


def load_digests(path: Path = DIGESTS, section: str = "charts") -> dict[str, set[str]]:
    """Reviewed sha256 values by archive name: `charts` (file digests) or `trees` (manifests.py)."""
    data = (yaml.safe_load(path.read_text()) or {}).get(section) if path.exists() else {}
    return {name: {str(d).removeprefix("sha256:") for d in (v if isinstance(v, list) else [v])}
            for name, v in (data or {}).items()}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def mirror_from_env() -> Path | None:
    value = os.environ.get(MIRROR_ENV, "").strip()
    return Path(value) if value else None


class ChartStore:
    def __init__(self, cache: Path = CACHE, mirror: Path | None = None, online: bool = True,
                 digests: dict[str, set[str]] | None = None) -> None:
        self.cache = cache
        self.mirror = mirror
        self.online = online
        self.digests = load_digests() if digests is None else digests
        self.sources: dict[str, str] = {}  # archive -> where it came from

    # ------------------------------------------------------------ sources
    def _accept(self, archive: str, path: Path, origin: str, index_digest: str | None = None) -> str:
        digest = sha256(path)
        if index_digest and digest != index_digest.removeprefix("sha256:"):
            raise ChartSourceError(f"{archive} from {origin}: sha256 {digest} differs from the repository "
                                   f"index's {index_digest}")
        wanted = self.digests.get(archive)
        if not wanted:
            raise ChartSourceError(f"{archive}: no reviewed digest in {DIGESTS.name} (got {digest} from {origin}); "
                                   "review the chart and record it there")
        if digest not in wanted:
            raise ChartSourceError(f"{archive} from {origin}: sha256 {digest} is not a reviewed digest "
                                   f"({', '.join(sorted(wanted))}) in {DIGESTS.name}")
        return digest

    def _from_cache(self, pin: ChartPin) -> Path | None:
        path = self.cache / pin.archive
        if path.is_file():
            try:
                self._accept(pin.archive, path, "cache")
            except ChartSourceError:
                return None  # a stale or foreign file: fetched again
            self.sources[pin.archive] = "cache"
            return path
        return None

    def _store(self, pin: ChartPin, src: Path, origin: str, index_digest: str | None = None) -> Path:
        self._accept(pin.archive, src, origin, index_digest)
        self.cache.mkdir(parents=True, exist_ok=True)
        target = self.cache / pin.archive
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(target)
        self.sources[pin.archive] = origin
        return target

    def _from_mirror(self, pin: ChartPin) -> Path:
        if self.mirror is None:
            raise ChartSourceError("no mirror given")
        src = self.mirror / pin.archive
        if not src.is_file():
            raise ChartSourceError(f"{pin.archive} is not in the mirror {self.mirror}")
        return self._store(pin, src, f"mirror {self.mirror}")

    def _from_repository(self, pin: ChartPin) -> Path:
        if not self.online:
            raise ChartSourceError("repositories not asked (offline)")
        from helm_python import registry
        from helm_python.errors import HelmError

        with tempfile.TemporaryDirectory() as tmp:
            try:
                if pin.repository.startswith("oci://"):
                    registry.pull(f"{pin.repository.rstrip('/')}/{pin.chart}", version=pin.version, destination=tmp)
                    index_digest = None
                else:
                    index = registry.repo_index(pin.repository)
                    entry = next((e for e in (index.get("entries") or {}).get(pin.chart) or []
                                  if str(e.get("version")) == pin.version), None)
                    if entry is None:
                        raise ChartSourceError(f"{pin.chart} {pin.version} is not in the index of {pin.repository}")
                    index_digest = entry.get("digest")
                    registry.pull(pin.chart, repo_url=pin.repository, version=pin.version, destination=tmp)
            except HelmError as exc:
                raise ChartSourceError(f"{pin.repository}: {str(exc).splitlines()[0]}") from exc
            src = Path(tmp) / pin.archive
            if not src.is_file():
                found = sorted(p.name for p in Path(tmp).iterdir())
                raise ChartSourceError(f"{pin.repository}: expected {pin.archive}, got {found}")
            return self._store(pin, src, pin.repository, index_digest)

    # ------------------------------------------------------------ entry points
    def get(self, pin: ChartPin, repository_first: bool = False) -> Path:
        if not repository_first and (cached := self._from_cache(pin)) is not None:
            return cached
        order = [self._from_repository, self._from_mirror] if repository_first else \
            [self._from_mirror, self._from_repository]
        errors = []
        for source in order:
            try:
                return source(pin)
            except ChartSourceError as exc:
                errors.append(str(exc))
        raise ChartSourceError(f"chart {pin.archive} is not available ({'; '.join(errors)}). {HOW_TO}")

    def path(self, chart: str, version: str, repository: str = "") -> Path:
        return self.get(ChartPin(chart, repository, chart, version))

    def pull_all(self, chart_pins: list[ChartPin]) -> tuple[dict[str, Path], list[str]]:
        got, errors = {}, []
        for pin in chart_pins:
            try:
                got[pin.archive] = self.get(pin, repository_first=True)
            except ChartSourceError as exc:
                errors.append(str(exc).replace(f" {HOW_TO}", ""))
        return got, errors
