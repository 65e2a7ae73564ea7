"""Release trees of the BOM's `manifests` (kustomize trees pinned to a git tag, e.g. Kubeflow Pipelines):
from the repository's tag archive or a mirror, checked against a reviewed *tree* digest, cached as a
tarball under `.cache/charts/` beside the charts.

The forge's tag archive holds the whole repository and the mirror's file a `git archive` of the
subtree, so their bytes differ; what must not differ is the tree the overlay builds on. The reviewed
digest is therefore over content: sha256 of the sorted lines `<path>\\0<sha256 of the file>\\n`, one per
regular file under the pinned `path` (paths relative to it). For Kubeflow Pipelines 2.17.0 the mirror's
tarball and `git archive` of the upstream tag give the same value (docs/CONFORMANCE.md).

Order as for charts (infra/conformance/charts.py): `mlplat charts pull` asks the repository first and
falls back to the mirror; the conformance check takes the cache, then the mirror, then the repository.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml

from infra.conformance.charts import BOM, DIGESTS, ChartSourceError, ChartStore, load_digests

DOWNLOAD_TIMEOUT_S = 120


@dataclass(frozen=True)
class ManifestPin:
    key: str
    repository: str  # https://github.com/<owner>/<repo>
    path: str  # the tree inside the repository, e.g. manifests/kustomize
    version: str  # the git tag

    @property
    def archive(self) -> str:
        return f"{self.key}-manifests-{self.version}.tar.gz"

    @property
    def prefix(self) -> str:
        """The tree's folder in a tag archive: `<repo>-<tag without a leading v>/<path>/` (GitHub's layout)."""
        repo = self.repository.rstrip("/").rsplit("/", 1)[-1]
        return f"{repo}-{self.version.removeprefix('v')}/{self.path.strip('/')}/"

    @property
    def url(self) -> str:
        return f"{self.repository.rstrip('/')}/archive/refs/tags/{self.version}.tar.gz"


def manifest_pins(bom: Path = BOM) -> list[ManifestPin]:
    entries = (yaml.safe_load(bom.read_text()) or {}).get("manifests") or {}
    return [ManifestPin(key, str(m["repository"]), str(m["path"]), str(m["version"])) for key, m in entries.items()]


def load_tree_digests(path: Path = DIGESTS) -> dict[str, set[str]]:
    return load_digests(path, section="trees")


def tree_files(source: Path | IO[bytes], prefix: str) -> dict[str, bytes]:
    """Regular files under `prefix` in a (gzipped) tarball, by path relative to `prefix`."""
    files: dict[str, bytes] = {}
    kwargs = {"name": source} if isinstance(source, Path) else {"fileobj": source}
    with tarfile.open(**kwargs) as tar:
        for member in tar:
            if member.isfile() and member.name.startswith(prefix):
                data = tar.extractfile(member)
                if data is not None:
                    files[member.name[len(prefix):]] = data.read()
    return files


def tree_digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for path, content in sorted(files.items()):
        h.update(f"{path}\0{hashlib.sha256(content).hexdigest()}\n".encode())
    return h.hexdigest()


def write_tree(files: dict[str, bytes], prefix: str, target: Path) -> None:
    """A reproducible tarball of the tree (sorted, zero mtimes) with the tag archive's layout."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo(prefix + path)
            info.size, info.mode, info.mtime = len(content), 0o644, 0
            tar.addfile(info, io.BytesIO(content))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with tmp.open("wb") as out, gzip.GzipFile(filename="", fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    tmp.replace(target)


class TreeStore:
    """The BOM's manifest trees, with the cache, mirror and network settings of a ChartStore."""

    def __init__(self, charts: ChartStore, digests: dict[str, set[str]] | None = None) -> None:
        self.charts = charts
        self.digests = load_tree_digests() if digests is None else digests

    def _accept(self, pin: ManifestPin, files: dict[str, bytes], origin: str) -> None:
        if not files:
            raise ChartSourceError(f"{pin.archive} from {origin}: no files under {pin.prefix}")
        digest = tree_digest(files)
        wanted = self.digests.get(pin.archive)
        if not wanted:
            raise ChartSourceError(f"{pin.archive}: no reviewed tree digest in {DIGESTS.name} `trees` (got {digest} "
                                   f"from {origin}); review the tree and record it there")
        if digest not in wanted:
            raise ChartSourceError(f"{pin.archive} from {origin}: tree digest {digest} is not a reviewed digest "
                                   f"({', '.join(sorted(wanted))}) in {DIGESTS.name}")

    def _from_file(self, pin: ManifestPin, path: Path, origin: str) -> dict[str, bytes]:
        if not path.is_file():
            raise ChartSourceError(f"{pin.archive} is not in the {origin}")
        try:
            files = tree_files(path, pin.prefix)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ChartSourceError(f"{pin.archive} in the {origin}: not a readable tarball ({exc})") from exc
        self._accept(pin, files, f"{origin} {path.parent}")
        return files

    def _from_mirror(self, pin: ManifestPin) -> dict[str, bytes]:
        if self.charts.mirror is None:
            raise ChartSourceError("no mirror given")
        return self._from_file(pin, self.charts.mirror / pin.archive, "mirror")

    def _from_repository(self, pin: ManifestPin) -> dict[str, bytes]:
        if not self.charts.online:
            raise ChartSourceError("repositories not asked (offline)")
        with tempfile.TemporaryFile() as tmp:
            try:
                with urllib.request.urlopen(pin.url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
                    while block := resp.read(1 << 20):
                        tmp.write(block)
            except OSError as exc:  # URLError, HTTPError and timeouts are OSErrors
                raise ChartSourceError(f"{pin.url}: {exc}") from exc
            tmp.seek(0)
            try:
                files = tree_files(tmp, pin.prefix)
            except (tarfile.TarError, EOFError) as exc:
                raise ChartSourceError(f"{pin.url}: not a tarball ({exc})") from exc
        self._accept(pin, files, pin.url)
        return files

    def _fetch(self, pin: ManifestPin, repository_first: bool) -> tuple[Path, dict[str, bytes]]:
        cached = self.charts.cache / pin.archive
        if not repository_first:
            try:
                files = self._from_file(pin, cached, "cache")
                self.charts.sources[pin.archive] = "cache"
                return cached, files
            except ChartSourceError:
                pass  # missing, stale or foreign: fetched again
        sources = [(f"repository {pin.url}", self._from_repository),
                   (f"mirror {self.charts.mirror}", self._from_mirror)]
        if not repository_first:
            sources.reverse()
        errors = []
        for origin, fetch in sources:
            try:
                files = fetch(pin)
            except ChartSourceError as exc:
                errors.append(str(exc))
                continue
            write_tree(files, pin.prefix, cached)
            self.charts.sources[pin.archive] = origin
            return cached, files
        raise ChartSourceError(f"{pin.archive} is not available ({'; '.join(errors)})")

    def get(self, pin: ManifestPin, repository_first: bool = False) -> Path:
        """The cached tarball of the pin's tree, filled from the repository or the mirror if needed."""
        return self._fetch(pin, repository_first)[0]

    def tree(self, pin: ManifestPin) -> dict[str, bytes]:
        """The checked files of the pin's tree by path relative to its `path` (what kustomize.py reads)."""
        return self._fetch(pin, repository_first=False)[1]

    def pull_all(self, pins: list[ManifestPin]) -> tuple[dict[str, Path], list[str]]:
        got, errors = {}, []
        for pin in pins:
            try:
                got[pin.archive] = self.get(pin, repository_first=True)
            except ChartSourceError as exc:
                errors.append(str(exc))
        return got, errors


__all__ = ["ManifestPin", "TreeStore", "manifest_pins", "tree_digest", "tree_files", "write_tree"]
