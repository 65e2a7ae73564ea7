"""The data registry: a git repository whose datasets DVC versions, with named remotes for their objects.

Layout: `datasets/<name>/` is the working copy of a dataset (ignored by git), `datasets/<name>.dvc` its
DVC pointer (committed: the content hash, size and file count), `.dvc/config` the remotes. A version is
the commit that changed a pointer; its objects live in DVC's cache and, once pushed, in the remotes. So
nothing `add` replaces is lost: every earlier version stays in git history and in the cache.

DVC runs from its own environment (`.venv-dvc`, `scripts/bootstrap.sh dvc`): its S3 plugin's aiobotocore
pins botocore below the ML environment's boto3, and DVC's hydra dependency would move the ML environment's
antlr4 runtime below what moto's generated parsers need. Nothing here imports DVC; it runs its command line.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from contracts.errors import UserError
from ml.datasets.content import DatasetVersion, describe

REPO_ROOT = Path(__file__).resolve().parents[2]
DVC_VENV_ENV = "MLPLAT_DVC_VENV"
REGISTRY_ENV = "MLPLAT_DATA_REGISTRY"
DATASETS_DIR = "datasets"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
HASH_PREFIX = re.compile(r"^[0-9a-f]{6,32}$")
COMMAND_TIMEOUT_S = 600
DEFAULT_AUTHOR = {"GIT_AUTHOR_NAME": "mlplat data", "GIT_AUTHOR_EMAIL": "mlplat-data@localhost",
                  "GIT_COMMITTER_NAME": "mlplat data", "GIT_COMMITTER_EMAIL": "mlplat-data@localhost"}


class RegistryError(UserError):
    """Bad input for the data registry: not a registry, an unknown version, a bad name or path."""


def dvc_executable() -> Path:
    """`dvc` of the DVC environment (`$MLPLAT_DVC_VENV`, else .venv-dvc beside the checkout)."""
    venv = Path(os.environ.get(DVC_VENV_ENV) or REPO_ROOT / ".venv-dvc")
    exe = venv / "bin" / "dvc"
    if not exe.is_file():
        raise RegistryError(f"the data registry needs DVC, and {exe} does not exist: create its environment with "
                            "`scripts/bootstrap.sh dvc`")
    return exe


def default_registry(state_dir: Path) -> Path:
    """$MLPLAT_DATA_REGISTRY, else `data-registry` in the local platform's state directory."""
    return Path(os.environ.get(REGISTRY_ENV) or state_dir / "data-registry").expanduser().resolve()


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise RegistryError(f"dataset name {name!r} is not valid: lower-case letters, digits, '.', '_' or '-', "
                            "starting with a letter or digit (at most 63 characters)")
    return name


class DataRegistry:
    """An existing registry at `root` (`DataRegistry.init` makes one)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        if not (self.root / ".git").exists() or not (self.root / ".dvc").is_dir():
            raise RegistryError(f"{self.root} is not a data registry (a git repository with DVC initialised): create "
                                f"one with `mlplat data init --registry {self.root}`")

    # ---- creating ---------------------------------------------------------------------------------------

    @classmethod
    def init(cls, root: Path, remotes: dict[str, str], default: str) -> DataRegistry:
        """A new registry at `root` (absent or empty) with the named remotes, `default` the default one."""
        root = Path(root).resolve()
        if root.exists() and any(root.iterdir()):
            raise RegistryError(f"{root} exists and is not empty: a registry is created in a new directory")
        if default not in remotes:
            raise RegistryError(f"default remote {default!r} is not among the remotes {sorted(remotes)}")
        root.mkdir(parents=True, exist_ok=True)
        _run(["git", "init", "-q", "-b", "main"], root)
        _run([str(dvc_executable()), "init", "-q"], root)
        (root / DATASETS_DIR).mkdir()
        (root / DATASETS_DIR / ".gitkeep").touch()
        registry = cls(root)
        for name, url in remotes.items():
            registry.set_remote(name, url, default=name == default, commit=False)
        registry._commit(["."], "data registry: created")
        return registry

    def set_remote(self, name: str, url: str, *, default: bool = False, endpoint_url: str | None = None,
                   commit: bool = True) -> None:
        """Add (or repoint) remote `name`; a directory URL is made absolute and created."""
        check_name(name)
        if not url.startswith("s3://"):
            if "://" in url:
                raise RegistryError(f"remote URL {url!r}: use a directory or s3://bucket/prefix")
            url = str(Path(url).expanduser().resolve())
            Path(url).mkdir(parents=True, exist_ok=True)
        dvc = str(dvc_executable())
        _run([dvc, "remote", "add", "--force", *(["--default"] if default else []), name, url], self.root)
        if endpoint_url:
            _run([dvc, "remote", "modify", name, "endpointurl", endpoint_url], self.root)
        if commit:
            self._commit([".dvc/config"], f"data registry: remote {name} -> {url}")

    def remotes(self) -> tuple[dict[str, str], str | None]:
        """(name -> URL, the default remote's name) from `.dvc/config` (and `config.local` over it)."""
        parser = configparser.ConfigParser()
        parser.read([self.root / ".dvc" / "config", self.root / ".dvc" / "config.local"])
        urls = {}
        for section in parser.sections():
            m = re.fullmatch(r"'?remote \"(.+)\"'?", section)
            if m and "url" in parser[section]:
                urls[m[1]] = parser[section]["url"]
        default = parser.get("core", "remote", fallback=None)
        return urls, default

    def remote_url(self, remote: str | None = None) -> tuple[str, str]:
        urls, default = self.remotes()
        name = remote or default
        if name is None:
            raise RegistryError(f"the registry {self.root} has no default remote: name one with --remote "
                                f"({', '.join(sorted(urls)) or 'none configured'})")
        if name not in urls:
            raise RegistryError(f"the registry {self.root} has no remote {name!r} (it has: "
                                f"{', '.join(sorted(urls)) or 'none'})")
        return name, urls[name]

    # ---- versions ---------------------------------------------------------------------------------------

    def add(self, source: Path, name: str, message: str = "") -> tuple[DatasetVersion, bool]:
        """Record the files of `source` (a directory) as the newest version of dataset `name`.

        Returns (the version, whether it is new): content equal to the newest version records nothing. The
        source is only read. The working copy is replaced only when it holds exactly the committed version,
        so changes made there by hand are never overwritten."""
        check_name(name)
        source = Path(source).expanduser()
        if not source.exists():
            raise RegistryError(f"{source} does not exist")
        if not source.is_dir():
            raise RegistryError(f"{source} is not a directory: a dataset is a directory of files")
        source = source.resolve()
        if source == self.root or self.root in source.parents:
            raise RegistryError(f"{source} is inside the registry {self.root}: add a directory from outside it")
        wanted = describe(source, name)
        if wanted.files == 0:
            raise RegistryError(f"{source} holds no files")
        latest = self.latest(name)
        if latest is not None and latest.md5 == wanted.md5:
            return latest, False
        work = self.root / DATASETS_DIR / name
        if work.exists():
            self._check_untouched(name, latest)
            shutil.rmtree(work)
        shutil.copytree(source, work, symlinks=False, ignore=shutil.ignore_patterns(".git", ".dvc"))
        pointer = f"{DATASETS_DIR}/{name}.dvc"
        _run([str(dvc_executable()), "add", "-q", f"{DATASETS_DIR}/{name}"], self.root)
        recorded = _pointer_md5(yaml.safe_load((self.root / pointer).read_text()), pointer)
        if recorded != wanted.md5:
            raise RegistryError(f"DVC recorded {recorded} for {name} but its files hash to {wanted.md5}: the "
                                "working copy changed while it was added; run the command again")
        self._commit([pointer, f"{DATASETS_DIR}/.gitignore"],
                     message or f"{name}: {wanted.files} file(s), {wanted.bytes} bytes from {source}")
        return self.latest(name) or wanted, True

    def _check_untouched(self, name: str, latest: DatasetVersion | None) -> None:
        work = self.root / DATASETS_DIR / name
        if latest is None:
            raise RegistryError(f"{work} exists but dataset {name} has no committed version: move it away first")
        current = describe(work, name)
        if current.md5 != latest.md5:
            raise RegistryError(f"the working copy {work} differs from {latest.ref} (changed by hand?): add those "
                                "changes from a copy outside the registry, or restore it with `mlplat data pull`")

    def names(self) -> list[str]:
        out = _run(["git", "log", "--format=", "--name-only", "--", f"{DATASETS_DIR}/*.dvc"], self.root)
        return sorted({Path(line).name.removesuffix(".dvc") for line in out.splitlines() if line.endswith(".dvc")})

    def versions(self, name: str | None = None) -> list[DatasetVersion]:
        """Every version (newest first per dataset) of `name`, or of every dataset."""
        if name is not None:
            check_name(name)
        names = [name] if name is not None else self.names()
        urls, default = self.remotes()
        location = urls.get(default or "", "")
        found: list[DatasetVersion] = []
        for dataset in names:
            pointer = f"{DATASETS_DIR}/{dataset}.dvc"
            log = _run(["git", "log", "--format=%H%x09%cI%x09%s", "--", pointer], self.root)
            for line in log.splitlines():
                rev, created, message = line.split("\t", 2)
                try:
                    text = _run(["git", "show", f"{rev}:{pointer}"], self.root)
                except RegistryError:
                    continue  # the commit deleted the pointer: not a version
                doc = yaml.safe_load(text)
                out = doc["outs"][0]
                found.append(DatasetVersion(name=dataset, md5=_pointer_md5(doc, pointer), location=location,
                                            files=int(out.get("nfiles", 1)), bytes=int(out.get("size", 0)), rev=rev,
                                            registry=str(self.root), created=created, message=message))
        return found

    def latest(self, name: str) -> DatasetVersion | None:
        versions = self.versions(name) if name in self.names() else []
        return versions[0] if versions else None

    def resolve(self, ref: str, remote: str | None = None) -> DatasetVersion:
        """The version `ref` names: NAME (its newest), NAME@REV (a commit, tag or branch of the registry,
        or a content-hash prefix), or a content-hash prefix alone; located in `remote` (default: the
        registry's default remote)."""
        name, _, rev = ref.partition("@")
        if not rev and HASH_PREFIX.match(name) and name not in self.names():
            name, rev = "", name
        candidates = self.versions(check_name(name) if name else None)
        if name and name not in self.names():
            raise RegistryError(f"the registry {self.root} has no dataset {name!r} (it has: "
                                f"{', '.join(self.names()) or 'none'}); `mlplat data versions` lists them")
        if not rev:
            chosen = candidates[:1]
        else:
            commit = self._commit_of(rev)
            chosen = [v for v in candidates if v.rev == commit] if commit else []
            if not chosen and HASH_PREFIX.match(rev):
                by_hash = {v.md5: v for v in candidates if v.md5.startswith(rev)}
                chosen = list(by_hash.values())
                if len(chosen) > 1:
                    raise RegistryError(f"{ref!r} matches {len(chosen)} versions: give more of the hash")
        if not chosen:
            raise RegistryError(f"unknown dataset version {ref!r} in {self.root}; `mlplat data versions` lists them")
        version = chosen[0]
        if remote is not None:
            _, url = self.remote_url(remote)
            version = DatasetVersion(**{**version.__dict__, "location": url})
        return version

    def _commit_of(self, rev: str) -> str | None:
        try:
            return _run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], self.root).strip()
        except RegistryError:
            return None

    # ---- remotes --------------------------------------------------------------------------------------

    def push(self, remote: str | None = None) -> str:
        """Upload every version's objects (all commits) that the remote does not have yet."""
        name, _ = self.remote_url(remote)
        return _run([str(dvc_executable()), "push", "--all-commits", "-r", name], self.root).strip()

    def pull(self, version: DatasetVersion, remote: str | None = None) -> str:
        """Restore the working copy of `version`'s dataset to that version (objects from the remote)."""
        name, _ = self.remote_url(remote)
        work = self.root / DATASETS_DIR / version.name
        latest = self.latest(version.name)
        if work.exists() and latest is not None and describe(work, version.name).md5 not in (
                latest.md5, version.md5):
            raise RegistryError(f"the working copy {work} has changes no version holds: add them first "
                                f"(`mlplat data add {work} --name {version.name}` from a copy) or move it away")
        pointer = f"{DATASETS_DIR}/{version.name}.dvc"
        # The pointer of that commit into the working tree (not committed), then DVC checks the data out.
        text = _run(["git", "show", f"{version.rev}:{pointer}"], self.root)
        (self.root / pointer).write_text(text)
        out = _run([str(dvc_executable()), "pull", "-r", name, "--force", pointer], self.root).strip()
        if version.rev != (latest.rev if latest else ""):
            _run(["git", "checkout", "--", pointer], self.root)  # the pointer back to the newest; data stays
        return out

    def status(self, remote: str | None = None) -> dict[str, Any]:
        """Working copies against their pointers, and which versions' objects the remote lacks."""
        name, url = self.remote_url(remote)
        dvc = str(dvc_executable())
        local = _run([dvc, "status", "--json"], self.root).strip() or "{}"
        cloud = _run([dvc, "status", "--cloud", "--all-commits", "-r", name, "--json"], self.root).strip() or "{}"
        git = _run(["git", "status", "--porcelain", "--", ".dvc", DATASETS_DIR], self.root)
        return {"registry": str(self.root), "remote": name, "url": url, "workspace": yaml.safe_load(local),
                "remote_missing": yaml.safe_load(cloud), "uncommitted": git.splitlines()}

    def _commit(self, paths: Sequence[str], message: str) -> None:
        _run(["git", "add", "--", *paths], self.root)
        staged = subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=self.root, check=False)
        if staged.returncode:
            _run(["git", "commit", "-q", "-m", message], self.root, env=_author(self.root))


def _pointer_md5(doc: Any, pointer: str) -> str:
    try:
        md5 = doc["outs"][0]["md5"]
    except (KeyError, IndexError, TypeError):
        raise RegistryError(f"{pointer} is not a DVC pointer file (no outs[0].md5)") from None
    return str(md5).removesuffix(".dir")


def _author(root: Path) -> dict[str, str]:
    """The user's git identity where one is configured, else a fixed one (a registry in a fresh machine)."""
    has = subprocess.run(["git", "config", "user.email"], cwd=root, capture_output=True, text=True, check=False)
    return {} if has.stdout.strip() else DEFAULT_AUTHOR


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                              env={**os.environ, **(env or {}), "DVC_NO_ANALYTICS": "1"}, check=False)
    except FileNotFoundError as exc:
        raise RegistryError(f"{argv[0]} is not installed: {exc}") from None
    if done.returncode:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise RegistryError(f"`{' '.join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv))}` "
                            f"failed in {cwd}: {' / '.join(detail[-3:]) or f'exit {done.returncode}'}")
    if done.stderr.strip():
        print(done.stderr.rstrip(), file=sys.stderr)
    return done.stdout
