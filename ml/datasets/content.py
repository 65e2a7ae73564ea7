"""Content addresses of dataset versions, in DVC's layout, and reading a version back by them.

DVC 3 names a file by the MD5 of its bytes and a directory by the MD5 of its manifest (the JSON list of
`{"md5", "relpath"}` entries sorted by path) with the suffix `.dir`; its cache and every remote keep an
object at `files/md5/<first two hex digits>/<the other thirty>`. `mlplat data add` lets DVC write them;
this module computes the same hashes (tests compare them with what `dvc add` writes) and reads a version
back from a remote with object reads only: a training pod needs `s3:GetObject` on the remote's prefix, not
DVC, git or a bucket listing. Every object read is checked against its name before it is used.

A version's address as one string (the pipeline's `data_uri`) is the URI of its manifest object,
`<remote>/files/md5/ab/<30 hex>.dir`: the remote is everything before `/files/md5/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from contracts.errors import UserError

OBJECTS_DIR = "files/md5"  # DVC 3's object layout in a cache or remote
DIR_SUFFIX = ".dir"
# Directories DVC never takes into a dataset (its own metadata, git's).
SKIPPED_DIRS = frozenset({".git", ".dvc"})
CONTENT_URI = re.compile(r"^(?P<remote>.+)/files/md5/(?P<head>[0-9a-f]{2})/(?P<tail>[0-9a-f]{30})\.dir$")
CHUNK = 1 << 20


class ContentError(UserError):
    """A version that cannot be read back as addressed: missing object, wrong bytes, bad manifest."""


@dataclass(frozen=True)
class DatasetVersion:
    """One version of a dataset: its content hash and where its objects are."""

    name: str
    md5: str  # the manifest's MD5, without DVC's `.dir` suffix (32 hex digits: MLflow's digest column fits it)
    location: str  # the remote the objects are read from (a directory or s3://bucket/prefix)
    files: int = 0
    bytes: int = 0
    rev: str = ""  # the data registry's git commit that recorded it ("" when no registry holds it)
    registry: str = ""  # the registry's directory
    created: str = ""
    message: str = ""
    content_addressed: bool = True  # False: `location` is the plain directory (or prefix) the files came from
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """How `--data-version` names it: NAME@<commit> (the content hash where no registry holds it)."""
        return f"{self.name}@{self.rev[:10]}" if self.rev else f"{self.name}@{self.md5}"

    @property
    def uri(self) -> str:
        """The address of its manifest object (the one string that names this exact content), or the plain
        location of a version no remote holds."""
        return content_uri(self.location, self.md5) if self.content_addressed else self.location

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("extra")
        return {**doc, "ref": self.ref, "uri": self.uri, **self.extra}


def file_md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def dataset_files(root: Path) -> list[Path]:
    """The regular files of a dataset directory, recursively, in DVC's manifest order (by relative path)."""
    if not root.is_dir():
        raise ContentError(f"{root} is not a directory")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]
        found += [Path(dirpath) / f for f in filenames if (Path(dirpath) / f).is_file()]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def manifest(root: Path) -> list[dict[str, str]]:
    """The directory's manifest as DVC writes it: one {"md5", "relpath"} per file, sorted by path."""
    return [{"md5": file_md5(p), "relpath": p.relative_to(root).as_posix()} for p in dataset_files(root)]


def manifest_bytes(entries: list[dict[str, str]]) -> bytes:
    return json.dumps(sorted(entries, key=lambda e: e["relpath"]), sort_keys=True).encode("utf-8")


def manifest_md5(entries: list[dict[str, str]]) -> str:
    return hashlib.md5(manifest_bytes(entries), usedforsecurity=False).hexdigest()


def describe(root: Path, name: str) -> DatasetVersion:
    """The content hash of a directory no registry holds: its location is the directory itself."""
    files = dataset_files(root)
    entries = [{"md5": file_md5(p), "relpath": p.relative_to(root).as_posix()} for p in files]
    return DatasetVersion(name=name, md5=manifest_md5(entries), location=str(root.resolve()), files=len(files),
                          bytes=sum(p.stat().st_size for p in files), content_addressed=False)


def object_key(md5: str, *, directory: bool = False) -> str:
    if not re.fullmatch(r"[0-9a-f]{32}", md5):
        raise ContentError(f"{md5!r} is not an MD5 content hash (32 hex digits)")
    return f"{OBJECTS_DIR}/{md5[:2]}/{md5[2:]}{DIR_SUFFIX if directory else ''}"


def content_uri(location: str, md5: str) -> str:
    return f"{location.rstrip('/')}/{object_key(md5, directory=True)}"


def parse_content_uri(uri: str) -> tuple[str, str] | None:
    """(remote, md5) of a manifest object's URI; None for any other data location."""
    m = CONTENT_URI.match(uri.rstrip("/"))
    return (m["remote"], m["head"] + m["tail"]) if m else None


class ObjectReader(Protocol):
    def read(self, key: str) -> bytes: ...


class DirectoryRemote:
    """A remote (or DVC cache) that is a directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def read(self, key: str) -> bytes:
        path = self.root / key
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ContentError(f"object {key} is not in the remote {self.root} (was the version pushed? "
                               "`mlplat data push`)") from None


class S3Remote:
    """A remote under s3://bucket/prefix, read with GetObject alone (the training pods' grant)."""

    def __init__(self, url: str, client: Any = None) -> None:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.url, self.bucket, self.prefix = url, bucket, prefix.strip("/")
        if client is None:
            import boto3  # the ML environment has it; only S3 remotes need it (start-up time of the others)

            client = boto3.client("s3")
        self.client = client

    def read(self, key: str) -> bytes:
        full = f"{self.prefix}/{key}" if self.prefix else key
        try:
            return self.client.get_object(Bucket=self.bucket, Key=full)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise ContentError(f"object s3://{self.bucket}/{full} is not in the remote {self.url} (was the version "
                               "pushed? `mlplat data push`)") from None


def reader_for(location: str, s3_client: Any = None) -> ObjectReader:
    if location.startswith("s3://"):
        return S3Remote(location, s3_client)
    if "://" in location:
        raise ContentError(f"unsupported remote {location!r}: a directory or s3://bucket/prefix")
    return DirectoryRemote(location)


def _checked(reader: ObjectReader, key: str, md5: str) -> bytes:
    data = reader.read(key)
    got = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if got != md5:
        raise ContentError(f"object {key} holds bytes with MD5 {got}, not {md5}: the remote is corrupt")
    return data


def read_manifest(location: str, md5: str, s3_client: Any = None) -> list[dict[str, str]]:
    """The manifest of version `md5` in the remote at `location`, checked against its hash."""
    reader = reader_for(location, s3_client)
    # A manifest object holds the JSON list whose canonical serialisation has this MD5.
    entries = json.loads(reader.read(object_key(md5, directory=True)))
    if not isinstance(entries, list) or not all(isinstance(e, dict) and {"md5", "relpath"} <= set(e)
                                                for e in entries):
        raise ContentError(f"{content_uri(location, md5)} is not a DVC directory manifest")
    plain = [{"md5": e["md5"], "relpath": e["relpath"]} for e in entries]
    if manifest_md5(plain) != md5:
        raise ContentError(f"the manifest at {content_uri(location, md5)} does not hash to {md5}: "
                           "the remote is corrupt")
    return plain


def materialize(location: str, md5: str, dst: Path, s3_client: Any = None) -> list[Path]:
    """Write version `md5` from the remote at `location` into `dst` (which must be empty or absent), every
    file checked against its MD5; a failure leaves `dst` without partial files."""
    if dst.exists() and any(dst.iterdir()):
        raise ContentError(f"{dst} is not empty: a version is written only into an empty directory")
    entries = read_manifest(location, md5, s3_client)
    reader = reader_for(location, s3_client)
    dst.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix=".mlplat-version-", dir=dst) as staging:
        for entry in entries:
            rel = Path(entry["relpath"])
            if rel.is_absolute() or ".." in rel.parts:
                raise ContentError(f"manifest {md5} names a path outside the dataset: {entry['relpath']!r}")
            target = Path(staging) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_checked(reader, object_key(entry["md5"]), entry["md5"]))
        for entry in entries:
            final = dst / entry["relpath"]
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(staging) / entry["relpath"], final)
            written.append(final)
    return written
