"""The training pipeline's publish step writes the deploy tree (ml/delivery/gitops.py), on the cluster and locally.

The step runs in a pod (or, locally, a `kfp.local` process) that has no stack file: what the tree's renderer
needs travels as one run parameter, `deploy`, a JSON document made from the stack by `deploy_parameter`
(stacks/delivery.py; infra/workloads/pipelines.py for the cluster, local/pipeline_runs.py for the local platform): the
repository, branch, folder, promotion mode, environment, models bucket and each enabled model's serving
settings. An empty parameter means the stack delivers no tree from the pipeline (GitOps off, or no
credentials configured).

Credentials on the cluster: the Secret `workloads.gitops.credentialsSecret` (made out of band, in the
pipelines' namespace) is mounted read-only into the publish step's pod only, at `CREDENTIALS_DIR`. Its keys:
`username` and `password` (an HTTPS token that may push to the deploy repository and nothing else), or
`ssh-privatekey` and `known_hosts` (a deploy key; the host key is checked, never accepted blindly).
`credentials_env` turns them into environment variables of git for this one process: nothing is written to
git's global configuration and nothing outlives the step's temporary directory.
"""

from __future__ import annotations

import json
import shlex
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from contracts.deploy_tree import ModelRelease
from contracts.pipelines import DEPLOY_CREDENTIALS_DIR
from ml.delivery.gitops import DeployTarget, GitOpsError, Outcome, Release, branch_versions, publish_release
from ml.training import card

CREDENTIALS_DIR = DEPLOY_CREDENTIALS_DIR
HTTPS_KEYS = ("username", "password")
SSH_KEYS = ("ssh-privatekey", "known_hosts")
_TARGET_KEYS = ("repoUrl", "branch", "path", "promotion", "environment", "bucket", "models")


@dataclass(frozen=True)
class Deploy:
    """A parsed `deploy` parameter."""

    target: DeployTarget
    models: list[ModelRelease]
    credentials_secret: str | None  # the Secret the step's pod should have mounted (None: the local platform)


def parse_parameter(text: str) -> Deploy:
    """A `deploy` parameter; GitOpsError naming what is missing or malformed."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GitOpsError(f"the `deploy` pipeline parameter is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise GitOpsError("the `deploy` pipeline parameter must be a JSON object")
    missing = [k for k in _TARGET_KEYS if k not in doc]
    if missing:
        raise GitOpsError(f"the `deploy` pipeline parameter lacks {', '.join(missing)} (made by "
                          "stacks/delivery.py deploy_parameter)")
    try:
        models = [ModelRelease(name=str(m["name"]), replicas=int(m["replicas"]),
                               champion_weight=int(m["championWeight"]), challenger_weight=int(m["challengerWeight"]),
                               explainer=m.get("explainer"))  # a model's explainer follows its champion
                  for m in doc["models"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise GitOpsError(f"a model of the `deploy` pipeline parameter is malformed ({exc!r}): each needs name, "
                          "replicas, championWeight, challengerWeight") from exc
    target = DeployTarget(str(doc["repoUrl"]), str(doc["branch"]), str(doc["path"]), str(doc["promotion"]),
                          str(doc["environment"]), str(doc["bucket"]) or None)
    return Deploy(target, models, doc.get("credentialsSecret") or None)


def covers(deploy: str, model: str) -> bool:
    """Whether the tree of a `deploy` parameter has a folder for `model` (it is enabled in that stack)."""
    return any(m.name == model for m in parse_parameter(deploy).models)


def credentials_env(secret_dir: Path, repo_url: str, scratch: Path) -> dict[str, str]:
    """git's environment for the mounted Secret in `secret_dir` ({} when nothing is mounted there). Files that
    must not be world-readable (the credential store, the SSH key) are written under `scratch`, mode 0600."""
    present = {p.name for p in secret_dir.iterdir() if p.is_file()} if secret_dir.is_dir() else set()
    if not present:
        return {}
    if set(HTTPS_KEYS) <= present:
        parts = urlsplit(repo_url)
        if parts.scheme != "https" or not parts.hostname:
            raise GitOpsError(f"the deploy credentials hold {' and '.join(HTTPS_KEYS)} (HTTPS) but the repository "
                              f"{repo_url!r} is not an https:// URL")
        user, token = ((secret_dir / k).read_text().strip() for k in HTTPS_KEYS)
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        store = scratch / "git-credentials"
        store.touch(mode=0o600)
        store.write_text(f"https://{quote(user, safe='')}:{quote(token, safe='')}@{host}\n")
        return _config({"credential.helper": f"store --file={store}"})
    if SSH_KEYS[0] in present:
        if SSH_KEYS[1] not in present:
            raise GitOpsError(f"the deploy credentials hold {SSH_KEYS[0]} but no {SSH_KEYS[1]}: add the git host's "
                              "key (`ssh-keyscan HOST`, checked by hand) so that the host is verified")
        key = scratch / "id_deploy"
        key.touch(mode=0o600)
        key.write_text((secret_dir / SSH_KEYS[0]).read_text().rstrip("\n") + "\n")
        command = ["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
                   "-o", f"UserKnownHostsFile={secret_dir / SSH_KEYS[1]}"]
        return {"GIT_SSH_COMMAND": shlex.join(command)}
    raise GitOpsError(f"the deploy credentials in {secret_dir} hold {sorted(present)}: expected "
                      f"{' and '.join(HTTPS_KEYS)} (HTTPS token) or {' and '.join(SSH_KEYS)} (deploy key)")


def _config(values: dict[str, str]) -> dict[str, str]:
    """git configuration through the environment (GIT_CONFIG_COUNT, git 2.31+): this process only."""
    env = {"GIT_CONFIG_COUNT": str(len(values))}
    for i, (key, value) in enumerate(values.items()):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    return env


def release_message(doc: Mapping[str, Any]) -> str:
    """The gate line of the commit message from a model card document (ml/training/card.py)."""
    gates = doc.get("gates") or {}
    return f"{'passed' if gates.get('passed') else 'FAILED'}: {gates.get('summary', '')}"


def write_release(deploy: str, client: Any, model: str, version: str, actor: str,
                  secret_dir: Path = Path(CREDENTIALS_DIR), slot: str = "champion") -> Outcome:
    """Publish `model` v`version` to `slot` of the tree that `deploy` describes, with the version's model card
    and gate results (from the registry `client`) in the commit message."""
    try:
        doc = card.load(client, model, version)
    except LookupError as exc:
        raise GitOpsError(f"cannot write the deploy tree: {exc}") from exc
    return write(parse_parameter(deploy), Release(model, str(version), slot, card=card.render_markdown(doc),
                                                  gates=release_message(doc), actor=actor), secret_dir=secret_dir)


def write(deploy: Deploy, release: Release, *, secret_dir: Path = Path(CREDENTIALS_DIR),
          promotion: str | None = None) -> Outcome:
    """`release` into the tree, with the mounted credentials (when the parameter names a Secret, they must be
    there); `promotion` overrides the stack's (a rollback commits straight to the branch: docs/DELIVERY.md)."""
    with tempfile.TemporaryDirectory(prefix="mlplat-deploy-credentials-") as scratch:
        env = credentials_env(secret_dir, deploy.target.location, Path(scratch))
        if deploy.credentials_secret and not env:
            raise GitOpsError(f"the deploy repository's credentials are not mounted at {secret_dir}: create the Secret "
                              f"{deploy.credentials_secret!r} (keys {' and '.join(HTTPS_KEYS)}, or "
                              f"{' and '.join(SSH_KEYS)}; docs/DELIVERY.md)")
        target = replace(deploy.target, git_env=env, promotion=promotion or deploy.target.promotion)
        return publish_release(deploy.models, target, release)


def recorded(deploy: Deploy, *, secret_dir: Path = Path(CREDENTIALS_DIR)) -> dict[str, dict[str, str]]:
    """model -> slot -> version on the deploy branch (what Argo CD applies), with the same credentials."""
    with tempfile.TemporaryDirectory(prefix="mlplat-deploy-credentials-") as scratch:
        env = credentials_env(secret_dir, deploy.target.location, Path(scratch))
        return branch_versions(replace(deploy.target, git_env=env))
