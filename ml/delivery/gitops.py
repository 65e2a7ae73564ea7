"""Promotion is a git change: publishing a version writes the deploy tree (contracts/deploy_tree.py) of the
stack's environment into the deploy repository, with the `git` command line.

- `commit` (dev, staging): one commit on the configured branch, which Argo CD follows.
- `pullRequest` (prod): a branch `promote/<environment>/<model>-v<version>` from the configured branch, with
  the same commit; someone reviews and merges it (the manual approval). Opening the pull request itself is
  the git host's API and left to CI: the branch is what this module makes.

The commit message carries the model card and the gate results. Rendering is deterministic, so publishing
the same version twice changes no file and makes no commit (nor a second branch). The repository is a
`location`: a local path (a bare repository, as `mlplat local up` creates under the platform's state
directory, or a working clone) or a URL git can clone and push to (the stack's `workloads.gitops.repoUrl`,
with credentials from git's own configuration). A bare repository or URL is cloned into a temporary
directory and pushed back; a working clone is changed in place and must be clean and on the branch.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from contracts import deploy_tree
from contracts.deploy_tree import ModelRelease
from contracts.local_platform import DEPLOY_REPO
from contracts.model_slots import SLOTS
from stacks.delivery import model_releases
from stacks.schema import PlatformConfig

COMMIT = "commit"
PULL_REQUEST = "pullRequest"
LOCAL_REPO = DEPLOY_REPO  # under the local platform's state directory
AUTHOR = ("mlplat", "mlplat@localhost")


class GitOpsError(RuntimeError):
    """The deploy repository cannot take the change; the message names what is wrong and how to fix it."""


@dataclass(frozen=True)
class DeployTarget:
    """Where the tree of one environment goes."""

    location: str
    branch: str
    path: str  # the tree's folder inside the repository
    promotion: str  # COMMIT | PULL_REQUEST
    environment: str
    bucket: str | None = None  # the models bucket; None: the one the tree already names
    git_env: Mapping[str, str] = field(default_factory=dict)  # credentials for clone and push (tree_publish.py)


@dataclass(frozen=True)
class Release:
    """A version published to a slot, and what the commit message says about it."""

    model: str
    version: str
    slot: str = "champion"
    card: str = ""  # the model card (Markdown)
    gates: str = ""  # the gate results, one line or more
    actor: str = "mlplat"


@dataclass(frozen=True)
class Outcome:
    changed: bool
    branch: str  # where the commit is (the configured branch, or the pull-request branch)
    commit: str  # the head of `branch` after the call
    files: tuple[str, ...]  # paths changed, relative to the repository
    message: str  # one line for people


def target_for(cfg: PlatformConfig, location: str | None = None, bucket: str | None = None) -> DeployTarget:
    """The stack's deploy target: its `workloads.gitops` settings, `location` instead of the repository URL."""
    g = cfg.workloads.gitops
    return DeployTarget(location or g.repo_url, g.branch, g.path, g.promotion, cfg.environment, bucket)


def local_repository(state_dir: Path, branch: str = "main") -> Path:
    """The local platform's deploy repository (bare), created empty when missing."""
    repo = state_dir / LOCAL_REPO
    if not (repo / "HEAD").is_file():
        repo.mkdir(parents=True, exist_ok=True)
        _git(["init", "--quiet", "--bare", f"--initial-branch={branch}", str(repo)])
    return repo


# A push that loses a race with another publication (pipelines of several models run at once) starts again
# from the new head of the branch, this many times.
PUSH_ATTEMPTS = 4


def _git(args: list[str], cwd: Path | None = None, extra_env: Mapping[str, str] | None = None) -> str:
    env = {**os.environ, **(extra_env or {}), "GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": AUTHOR[0],
           "GIT_AUTHOR_EMAIL": AUTHOR[1], "GIT_COMMITTER_NAME": AUTHOR[0], "GIT_COMMITTER_EMAIL": AUTHOR[1]}
    try:
        done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as exc:
        raise GitOpsError("the `git` command is not installed (apt-get install git)") from exc
    if done.returncode != 0:
        detail = done.stderr.strip() or done.stdout.strip()
        raise GitOpsError(f"git {' '.join(args[:2])} failed in {cwd or '.'}: {detail}")
    return done.stdout.strip()


def _is_remote(location: str) -> bool:
    return "://" in location or (location.startswith("git@") and ":" in location)


def _has_branch(cwd: Path, ref: str) -> bool:
    return subprocess.run(["git", "rev-parse", "--verify", "--quiet", ref], cwd=cwd, capture_output=True,
                          timeout=60).returncode == 0


@contextmanager
def _checkout(target: DeployTarget) -> Iterator[tuple[Path, bool]]:
    """A working tree on the target branch: (path, whether changes must be pushed back to `location`)."""
    location = target.location
    if not _is_remote(location):
        path = Path(location)
        if not path.exists():
            raise GitOpsError(f"deploy repository {path} does not exist (`mlplat local up` creates the local one; "
                              "or pass the path of a clone of `workloads.gitops.repoUrl`)")
        try:
            bare = _git(["rev-parse", "--is-bare-repository"], cwd=path) == "true"
        except GitOpsError as exc:
            raise GitOpsError(f"{path} is not a git repository") from exc
        if not bare:
            dirty = _git(["status", "--porcelain"], cwd=path)
            if dirty:
                raise GitOpsError(f"deploy repository {path} has uncommitted changes; commit or stash them first:\n"
                                  f"{dirty}")
            current = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd=path)
            if _has_branch(path, "HEAD") and current != target.branch:
                raise GitOpsError(f"deploy repository {path} is on branch {current!r}, not {target.branch!r}: "
                                  f"`git -C {path} switch {target.branch}`")
            yield path, False
            return
    with tempfile.TemporaryDirectory(prefix="mlplat-deploy-") as tmp:
        clone = Path(tmp) / "repo"
        _git(["clone", "--quiet", "--no-tags", location, str(clone)], extra_env=target.git_env)
        if _has_branch(clone, f"origin/{target.branch}"):
            _git(["checkout", "--quiet", "-B", target.branch, f"origin/{target.branch}"], cwd=clone)
        else:  # an empty repository: the first release creates the branch
            _git(["checkout", "--quiet", "--orphan", target.branch], cwd=clone)
        yield clone, True


def released_versions(tree_root: Path, environment: str) -> dict[str, dict[str, str]]:
    """model -> slot -> version, as the environment's tree in a checkout records them."""
    out: dict[str, dict[str, str]] = {}
    env_dir = tree_root / environment
    if not env_dir.is_dir():
        return out
    for model_dir in sorted(p for p in env_dir.iterdir() if p.is_dir()):
        for slot in SLOTS:
            file = model_dir / deploy_tree.model_file(slot)
            if not file.is_file():
                continue
            spec = (yaml.safe_load(file.read_text()) or {}).get("spec") or {}
            version = next((p.get("value") for p in spec.get("parameters") or []
                            if p.get("name") == deploy_tree.VERSION_PARAMETER), None)
            if version is not None:
                out.setdefault(model_dir.name, {})[slot] = str(version)
    return out


def branch_versions(target: DeployTarget) -> dict[str, dict[str, str]]:
    """model -> slot -> version, as the target's branch records them ({} before the first release)."""
    with _checkout(target) as (work, _):
        return released_versions(work / target.path, target.environment)


def branch_bucket(target: DeployTarget) -> str | None:
    """The models bucket the target branch's tree names (None before the first release)."""
    with _checkout(target) as (work, _):
        return _tree_bucket(work / target.path, target.environment)


def _tree_bucket(tree_root: Path, environment: str) -> str | None:
    for file in sorted((tree_root / environment).glob(f"*/{deploy_tree.model_file('champion')}")):
        uri = ((yaml.safe_load(file.read_text()) or {}).get("spec") or {}).get("storageUri", "")
        if uri.startswith("s3://"):
            return uri[len("s3://"):].split("/", 1)[0]
    return None


Models = PlatformConfig | Sequence[ModelRelease]  # a stack, or its models' serving settings (tree_publish.py)


def _releases(cfg: Models, versions: Mapping[str, Mapping[str, str]]) -> list[ModelRelease]:
    if isinstance(cfg, PlatformConfig):
        return model_releases(cfg, versions)
    return [ModelRelease(name=m.name, replicas=m.replicas, champion_weight=m.champion_weight,
                         challenger_weight=m.challenger_weight, versions=dict(versions.get(m.name, {}))) for m in cfg]


def render_release(cfg: Models, target: DeployTarget, tree_root: Path, release: Release) -> dict[str, str]:
    """The environment's files after `release`: the tree's recorded versions with this one applied."""
    names = [r.name for r in _releases(cfg, {})]
    if release.model not in names:
        raise GitOpsError(f"model {release.model!r} is not enabled in the {target.environment} stack "
                          f"(enabled: {', '.join(names) or 'none'})")
    versions = released_versions(tree_root, target.environment)
    versions.setdefault(release.model, {})[release.slot] = str(release.version)
    bucket = target.bucket or _tree_bucket(tree_root, target.environment)
    if not bucket:
        raise GitOpsError(f"the deploy tree of {target.environment} names no models bucket yet: pass the bucket "
                          "(stack output buckets.models) for the first release")
    try:
        return deploy_tree.render(target.environment, bucket, _releases(cfg, versions))
    except deploy_tree.DeployTreeError as exc:
        raise GitOpsError(str(exc)) from exc


def commit_message(target: DeployTarget, release: Release) -> str:
    head = f"deploy({target.environment}): {release.model} v{release.version} -> {release.slot}"
    body = [f"Published by {release.actor}; Argo CD applies "
            f"{target.path}/{deploy_tree.model_dir(target.environment, release.model)}/."]
    if release.gates:
        body += ["", "Quality gates:", release.gates.strip()]
    if release.card:
        body += ["", release.card.strip()]
    return "\n".join([head, "", *body]) + "\n"


def _write(root: Path, files: Mapping[str, str], environment: str) -> None:
    """The environment's folder holds exactly `files` (a model switched off loses its folder)."""
    env_dir = root / environment
    wanted = {root / rel for rel in files}
    if env_dir.is_dir():
        for existing in sorted(env_dir.rglob("*.yaml")):
            if existing not in wanted:
                existing.unlink()
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _tree_at(work: Path, ref: str, prefix: str) -> dict[str, str]:
    """The files under `prefix` at `ref`: path relative to the repository -> text."""
    listed = _git(["ls-tree", "-r", "--name-only", ref, "--", prefix], cwd=work).splitlines()
    return {path: _git(["show", f"{ref}:{path}"], cwd=work) for path in listed}


class _PushRejected(GitOpsError):
    """The branch moved on while this change was being made."""


def publish_release(cfg: Models, target: DeployTarget, release: Release) -> Outcome:
    """Write `release` into the deploy tree as a commit on the branch, or on a pull-request branch (prod).
    Idempotent: when the branch (or the pull-request branch) already holds these files, nothing is written.
    A push rejected because the branch moved (another publication) is redone on the new head."""
    if target.promotion not in (COMMIT, PULL_REQUEST):
        raise GitOpsError(f"promotion must be {COMMIT!r} or {PULL_REQUEST!r}, got {target.promotion!r}")
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        try:
            return _publish_once(cfg, target, release)
        except _PushRejected:
            if attempt == PUSH_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _push(work: Path, refspec: str, target: DeployTarget) -> None:
    try:
        _git(["push", "--quiet", "origin", refspec], cwd=work, extra_env=target.git_env)
    except GitOpsError as exc:
        text = str(exc)
        if "fetch first" in text or "non-fast-forward" in text or "failed to update ref" in text:
            raise _PushRejected(f"{target.branch} of {target.location} moved during the publication: {text}") from exc
        raise


def _publish_once(cfg: Models, target: DeployTarget, release: Release) -> Outcome:
    what = f"{release.model} v{release.version} -> {release.slot} ({target.environment})"
    with _checkout(target) as (work, push):
        files = render_release(cfg, target, work / target.path, release)
        prefix = f"{target.path}/{target.environment}"
        # git show drops the final newline of a file; compare without it.
        wanted = {f"{target.path}/{rel}": text.rstrip("\n") for rel, text in files.items()}
        if _has_branch(work, "HEAD") and _tree_at(work, "HEAD", prefix) == wanted:
            return Outcome(False, target.branch, _git(["rev-parse", "HEAD"], cwd=work), (),
                           f"{what}: {target.branch} already deploys it, nothing to commit")
        branch = target.branch
        if target.promotion == PULL_REQUEST:
            branch = f"promote/{target.environment}/{release.model}-v{release.version}"
            existing = f"origin/{branch}" if push else branch
            if _has_branch(work, existing) and _tree_at(work, existing, prefix) == wanted:
                return Outcome(False, branch, _git(["rev-parse", existing], cwd=work), (),
                               f"{what}: branch {branch} already proposes it")
            _git(["checkout", "--quiet", "-B", branch], cwd=work)  # from the head of the configured branch
        _write(work / target.path, files, target.environment)
        _git(["add", "-A", "--", target.path], cwd=work)
        changed = tuple(_git(["diff", "--cached", "--name-only"], cwd=work).splitlines())
        _git(["commit", "--quiet", "-m", commit_message(target, release)], cwd=work)
        head = _git(["rev-parse", "HEAD"], cwd=work)
        if push:
            # A pull-request branch is ours: proposing again replaces it.
            force = "+" if branch != target.branch else ""
            _push(work, f"{force}HEAD:refs/heads/{branch}", target)
        elif branch != target.branch:
            _git(["checkout", "--quiet", target.branch], cwd=work)
    if branch == target.branch:
        return Outcome(True, branch, head, changed, f"{what}: committed to {branch} ({head[:12]})")
    return Outcome(True, branch, head, changed, f"{what}: proposed on branch {branch} ({head[:12]}); review and "
                   f"merge it into {target.branch} (the approval)")
