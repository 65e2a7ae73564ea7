"""`mlplat data init|add|push|pull|status|versions`: the versioned datasets of the data registry.

    mlplat data init [--registry DIR] [--remote NAME=URL ...] [--default NAME] [--endpoint-url URL]
    mlplat data add PATH [--name NAME] [-m MESSAGE] [--push] [--remote NAME]
    mlplat data push [--remote NAME]
    mlplat data pull REF [--out DIR] [--remote NAME]
    mlplat data status [--remote NAME]
    mlplat data versions [NAME] [--json]

The registry is `--registry`, else $MLPLAT_DATA_REGISTRY, else `data-registry` in the local platform's
state directory ($MLPLAT_LOCAL_DIR or .local/), whose default remote is `dvc-remote` beside it; `add`
creates that default registry when it does not exist. REF is NAME (its newest version), NAME@REV (a
registry commit or a content-hash prefix) or a content-hash prefix. `pull --out DIR` writes the version
into DIR by content address, as a training pod reads it; without `--out` DVC restores the registry's
working copy of the dataset.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from contracts import local_platform
from ml.datasets.content import DatasetVersion, materialize
from ml.datasets.registry import DataRegistry, RegistryError, default_registry
from ml.datasets.session import default_name, local_remote, open_or_create


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="versioned datasets (git + DVC): add, push, pull, status, versions")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser, remote: bool = True) -> None:
        p.add_argument("--registry", type=Path, help="the data registry (default $MLPLAT_DATA_REGISTRY, else "
                                                     "<state dir>/data-registry)")
        if remote:
            p.add_argument("--remote", help="remote name (default: the registry's default remote)")

    init = sub.add_parser("init", help="create a data registry with its remotes")
    common(init, remote=False)
    init.add_argument("--remote", action="append", default=[], metavar="NAME=URL",
                      help="a remote: a directory or s3://bucket/prefix (default: local=dvc-remote beside the "
                           "registry)")
    init.add_argument("--default", help="the default remote (default: the first)")
    init.add_argument("--endpoint-url", help="S3 endpoint of the s3:// remotes (an S3-compatible store)")
    init.set_defaults(func=run_init)

    add = sub.add_parser("add", help="record a directory as the newest version of a dataset")
    add.add_argument("path", type=Path)
    add.add_argument("--name", help="dataset name (default: the directory's name)")
    add.add_argument("-m", "--message", default="", help="commit message of the version")
    add.add_argument("--push", action="store_true", help="then upload its objects to the remote")
    common(add)
    add.set_defaults(func=run_add)

    push = sub.add_parser("push", help="upload every version's objects the remote lacks")
    common(push)
    push.set_defaults(func=run_push)

    pull = sub.add_parser("pull", help="a version's files from the remote")
    pull.add_argument("ref", help="NAME, NAME@REV or a content-hash prefix")
    pull.add_argument("--out", type=Path, help="write the version here (an empty directory), by content address")
    common(pull)
    pull.set_defaults(func=run_pull)

    status = sub.add_parser("status", help="working copies vs their versions; objects the remote lacks")
    common(status)
    status.set_defaults(func=run_status)

    versions = sub.add_parser("versions", help="every version of every dataset (or of NAME), newest first")
    versions.add_argument("name", nargs="?")
    versions.add_argument("--json", action="store_true")
    common(versions, remote=False)
    versions.set_defaults(func=run_versions)


def _root(args: argparse.Namespace) -> Path:
    return Path(args.registry).expanduser().resolve() if args.registry else default_registry(
        local_platform.state_dir())


def _emit(doc: Any) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True, default=str))


def run_init(args: argparse.Namespace) -> int:
    remotes: dict[str, str] = {}
    for spec in args.remote or [f"local={local_remote(_root(args))}"]:
        name, sep, url = spec.partition("=")
        if not sep or not name or not url:
            raise RegistryError(f"--remote {spec!r}: expected NAME=URL")
        remotes[name] = url
    default = args.default or next(iter(remotes))
    registry = DataRegistry.init(_root(args), remotes, default)
    if args.endpoint_url:
        for name, url in remotes.items():
            if url.startswith("s3://"):
                registry.set_remote(name, url, default=name == default, endpoint_url=args.endpoint_url)
    urls, chosen = registry.remotes()
    _emit({"registry": str(registry.root), "remotes": urls, "default": chosen})
    return 0


def run_add(args: argparse.Namespace) -> int:
    if not args.path.exists():  # before the default registry is created for it
        raise RegistryError(f"{args.path} does not exist")
    registry = open_or_create(args.registry, local_platform.state_dir())
    name = args.name or default_name(args.path)
    version, new = registry.add(args.path, name, args.message)
    doc: dict[str, Any] = {"version": version.as_dict(), "new": new}
    if args.push:
        doc["push"] = registry.push(args.remote)
    _emit(doc)
    return 0


def run_push(args: argparse.Namespace) -> int:
    registry = DataRegistry(_root(args))
    name, url = registry.remote_url(args.remote)
    print(registry.push(name) or "nothing to push")
    print(f"remote {name}: {url}", file=sys.stderr)
    return 0


def run_pull(args: argparse.Namespace) -> int:
    registry = DataRegistry(_root(args))
    version = registry.resolve(args.ref, args.remote)
    if args.out is not None:
        files = materialize(version.location, version.md5, args.out)
        _emit({"version": version.as_dict(), "out": str(args.out), "files": len(files)})
        return 0
    print(registry.pull(version, args.remote) or f"{version.ref}: up to date")
    return 0


def run_status(args: argparse.Namespace) -> int:
    doc = DataRegistry(_root(args)).status(args.remote)
    _emit(doc)
    clean = not doc["workspace"] and not doc["remote_missing"] and not doc["uncommitted"]
    return 0 if clean else 1


def run_versions(args: argparse.Namespace) -> int:
    registry = DataRegistry(_root(args))
    if args.name is not None and args.name not in registry.names():
        raise RegistryError(f"the registry {registry.root} has no dataset {args.name!r} (it has: "
                            f"{', '.join(registry.names()) or 'none'})")
    versions = registry.versions(args.name)
    if args.json:
        _emit([v.as_dict() for v in versions])
        return 0
    print(table(versions, registry.root))
    return 0


def table(versions: list[DatasetVersion], root: Path) -> str:
    """The versions as a table: ref, date, content hash, files, bytes, message."""
    if not versions:
        return f"no dataset versions in {root} yet (`mlplat data add DIR`)"
    rows = [("ref", "created", "md5", "files", "bytes", "message")]
    rows += [(v.ref, v.created[:19], v.md5, str(v.files), str(v.bytes), v.message[:60]) for v in versions]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows]
    return "\n".join([f"registry {root}", *lines])
