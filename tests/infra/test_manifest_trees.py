"""The BOM's manifest trees (Kubeflow Pipelines' kustomize tree): from the repository's tag archive or
the mirror, accepted only with the reviewed tree digest (infra/conformance/manifests.py).

The "repository" is a real HTTP server on 127.0.0.1 serving a tag archive in GitHub's layout (the whole
repository under `<repo>-<tag>/`), built from the mirror's tree plus files outside the pinned path.
"""

from __future__ import annotations

import io
import os
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infra.conformance.charts import ChartSourceError, ChartStore
from infra.conformance.manifests import (
    ManifestPin,
    TreeStore,
    load_tree_digests,
    manifest_pins,
    tree_digest,
    tree_files,
    write_tree,
)
from stacks.bom import load_bom

ROOT = Path(__file__).resolve().parents[2]
MIRROR = Path(os.environ.get("MLPLAT_CHART_MIRROR") or ROOT.parent / "shared" / "charts")
PIN = next(p for p in manifest_pins() if p.key == "kubeflow-pipelines")


@pytest.fixture(scope="module")
def tree() -> dict[str, bytes]:
    archive = MIRROR / PIN.archive
    assert archive.is_file(), f"the mirror {MIRROR} lacks {PIN.archive} (MLPLAT_CHART_MIRROR)"
    return tree_files(archive, PIN.prefix)


def _tag_archive(files: dict[str, bytes], pin: ManifestPin) -> bytes:
    """The forge's tag archive: the whole repository, the tree among other folders."""
    top = pin.prefix.split("/", 1)[0] + "/"
    everything = {top + "README.md": b"kubeflow pipelines\n", top + "backend/Makefile": b"all:\n",
                  **{pin.prefix + path: content for path, content in files.items()}}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, content in everything.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        link = tarfile.TarInfo(pin.prefix + "link-outside")
        link.type, link.linkname = tarfile.SYMTYPE, "../../README.md"
        tar.addfile(link)
    return raw.getvalue()


class _Forge:
    """Serves one body at the pin's archive URL path (404 elsewhere); counts requests."""

    def __init__(self) -> None:
        self.body = b""
        self.requests: list[str] = []
        forge = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                forge.requests.append(self.path)
                if not self.path.endswith(f"/archive/refs/tags/{PIN.version}.tar.gz"):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(forge.body)))
                self.end_headers()
                self.wfile.write(forge.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def pin(self) -> ManifestPin:
        return ManifestPin(PIN.key, f"http://127.0.0.1:{self.server.server_port}/kubeflow/pipelines", PIN.path,
                           PIN.version)


@pytest.fixture
def forge() -> Iterator[_Forge]:
    f = _Forge()
    f.thread.start()
    try:
        yield f
    finally:
        f.server.shutdown()
        f.server.server_close()


def test_every_bom_manifest_tree_has_a_reviewed_tree_digest_and_the_mirror_matches_it(tree) -> None:
    digests = load_tree_digests()
    assert {p.archive for p in manifest_pins()} <= set(digests)
    assert [p.key for p in manifest_pins()] == list(load_bom().manifests)
    assert tree_digest(tree) in digests[PIN.archive] and len(tree) == 290
    assert PIN.prefix == "pipelines-2.17.0/manifests/kustomize/"  # GitHub's layout: <repo>-<tag>/<path>/
    assert PIN.url == "https://github.com/kubeflow/pipelines/archive/refs/tags/2.17.0.tar.gz"


def test_pull_takes_the_tree_from_the_tag_archive_and_caches_it(tree, forge, tmp_path) -> None:
    forge.body = _tag_archive(tree, forge.pin)
    charts = ChartStore(cache=tmp_path / "cache", mirror=None, online=True)
    got, errors = TreeStore(charts).pull_all([forge.pin])
    assert errors == [] and forge.requests == [f"/kubeflow/pipelines/archive/refs/tags/{PIN.version}.tar.gz"]
    cached = got[PIN.archive]
    assert cached == tmp_path / "cache" / PIN.archive and charts.sources[PIN.archive].startswith("repository http")
    assert tree_files(cached, PIN.prefix) == tree  # only the pinned tree: no README, no symlink
    with tarfile.open(cached) as tar:
        assert all(m.name.startswith(PIN.prefix) and m.isfile() for m in tar.getmembers())
    # Offline afterwards, the conformance check reads the cache and asks nobody.
    offline = ChartStore(cache=tmp_path / "cache", mirror=None, online=False)
    assert TreeStore(offline).get(PIN) == cached and offline.sources[PIN.archive] == "cache"
    assert TreeStore(offline).tree(PIN) == tree  # what the conformance check reads: the checked files
    assert len(forge.requests) == 1


def test_a_changed_file_in_the_tag_archive_is_refused_and_nothing_is_cached(tree, forge, tmp_path) -> None:
    changed = dict(tree)
    path = next(p for p in sorted(changed) if p.endswith("kustomization.yaml"))
    changed[path] = changed[path] + b"\n# tampered\n"
    forge.body = _tag_archive(changed, forge.pin)
    charts = ChartStore(cache=tmp_path / "cache", mirror=None, online=True)
    with pytest.raises(ChartSourceError, match="is not a reviewed digest"):
        TreeStore(charts).get(forge.pin, repository_first=True)
    assert not (tmp_path / "cache" / PIN.archive).exists()
    forge.body = b"<html>not a tarball</html>"
    with pytest.raises(ChartSourceError, match="not a tarball"):
        TreeStore(charts).get(forge.pin, repository_first=True)


def test_an_unreachable_repository_falls_back_to_the_mirror(tree, forge, tmp_path) -> None:
    pin = forge.pin
    forge.server.shutdown()
    forge.server.server_close()  # the port refuses connections now
    charts = ChartStore(cache=tmp_path / "cache", mirror=MIRROR, online=True)
    assert tree_files(TreeStore(charts).get(pin, repository_first=True), PIN.prefix) == tree
    assert charts.sources[PIN.archive] == f"mirror {MIRROR}"
    # Without mirror, cache or repository: one error that names every source tried.
    empty = ChartStore(cache=tmp_path / "empty", mirror=None, online=True)
    with pytest.raises(ChartSourceError) as caught:
        TreeStore(empty).get(pin)
    assert "no mirror given" in str(caught.value) and pin.url in str(caught.value)


def test_a_foreign_file_in_the_cache_is_replaced_and_the_cache_file_is_reproducible(tree, tmp_path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / PIN.archive).write_bytes(b"stale")
    charts = ChartStore(cache=cache, mirror=MIRROR, online=False)
    path = TreeStore(charts).get(PIN)
    assert tree_files(path, PIN.prefix) == tree and charts.sources[PIN.archive] == f"mirror {MIRROR}"
    again = tmp_path / "again.tar.gz"
    write_tree(tree, PIN.prefix, again)
    assert again.read_bytes() == path.read_bytes()
