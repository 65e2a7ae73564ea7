"""The deploy tree on the local platform: what Argo CD does on the cluster, `mlplat local apply` does here.

The local platform's deploy repository (`<state>/deploy.git`, created by `local up`) holds the same tree the
cluster's Argo CD follows (contracts/deploy_tree.py, written by ml/delivery/gitops.py). Applying it reads
the configured branch and, per model of the platform, the versions its slots record:

- champion: made the registry's `champion`, the champion slot and what the model server serves, through
  ml/training/follow.py's `promote` (nothing changes where all three already agree);
- challenger: served by the challenger's model server (local/rollout_runner.py `ensure_challenger`).

The Experiment's weights are not applied, as Argo CD ignores them: the splitter's weights belong to the
controllers (rollout, experiments). `release` is the git half of a promotion (the commit, with the model card
and the gate results), `apply` the deployment half; a rollout that passes calls both.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import local_platform
from local.challenger import ensure_challenger
from local.config import LocalConfig
from ml.delivery import gitops
from ml.training import card
from ml.training.directory_bucket import LOCAL_BUCKET
from ml.training.follow import Serving, champion_version, promote
from stacks.config import load_stack_file
from stacks.schema import PlatformConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STACK = local_platform.DEPLOY_STACK  # the environment the local platform stands in for


@dataclass(frozen=True)
class Applied:
    model: str
    slot: str
    version: str
    actions: tuple[str, ...]  # empty: already in effect


def target(cfg: LocalConfig, stack: PlatformConfig) -> gitops.DeployTarget:
    return gitops.target_for(stack, location=str(gitops.local_repository(cfg.state_dir)), bucket=LOCAL_BUCKET)


def tree_versions(cfg: LocalConfig, stack: PlatformConfig) -> dict[str, dict[str, str]]:
    """model -> slot -> version, as the deploy repository's branch records them ({} for an empty repository)."""
    t = target(cfg, stack)
    with tempfile.TemporaryDirectory(prefix="mlplat-apply-") as tmp:
        clone = Path(tmp) / "tree"
        done = subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", t.branch, t.location,
                               str(clone)], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            if "not found" in done.stderr or "empty repository" in done.stderr:
                return {}  # nothing released yet
            raise gitops.GitOpsError(f"cannot read the deploy repository {t.location}: {done.stderr.strip()}")
        return gitops.released_versions(clone / t.path, t.environment)


def check_releasable(cfg: LocalConfig, model: str, version: str) -> None:
    """Raise LookupError when `release` would refuse the version (no model card for the commit message)."""
    card.load(_client(cfg), model, version)


def release(cfg: LocalConfig, stack: PlatformConfig, model: str, version: str, slot: str = "champion",
            actor: str = "mlplat") -> gitops.Outcome:
    """The git change of a promotion: the deploy tree with `model` v`version` in `slot`, card and gates in the
    commit message (a pull-request branch where the stack wants review)."""
    client = _client(cfg)
    doc = card.load(client, model, version)
    gates = doc.get("gates") or {}
    return gitops.publish_release(stack, target(cfg, stack), gitops.Release(
        model, str(version), slot, card=card.render_markdown(doc),
        gates=f"{'passed' if gates.get('passed') else 'FAILED'}: {gates.get('summary', '')}", actor=actor))


def plan(cfg: LocalConfig, versions: dict[str, dict[str, str]], current: Callable[[str], str | None]
         ) -> list[tuple[str, str, str]]:
    """(model, slot, version) to apply: the tree's versions of this platform's models that differ from what
    serves (`current(model)`: the champion version now); the challenger slot is always (re)asserted."""
    out = []
    for model in cfg.models:
        slots = versions.get(model, {})
        if "champion" in slots and slots["champion"] != current(model):
            out.append((model, "champion", slots["champion"]))
        if "challenger" in slots and slots["challenger"] != slots.get("champion"):
            out.append((model, "challenger", slots["challenger"]))
    return out


def apply(cfg: LocalConfig, stack: PlatformConfig, say: Callable[[str], None] = print) -> list[Applied]:
    """Make the platform serve what the deploy tree says (champion and challenger slots)."""
    client = _client(cfg)
    serving = Serving(cfg.path(local_platform.SLOTS_DIR), cfg.url("http"))
    done = []
    for model, slot, version in plan(cfg, tree_versions(cfg, stack), lambda m: champion_version(client, m)):
        if slot == "champion":
            actions = tuple(promote(client, model, version, serving, actor="deploy-tree"))
        else:
            ensure_challenger(cfg, model, version, say)
            actions = (f"challenger server serves v{version}",)
        say(f"{model}: {slot} v{version}: {'; '.join(actions) or 'already in effect'}")
        done.append(Applied(model, slot, version, actions))
    return done


def stack_config(path: Path | None) -> PlatformConfig:
    return load_stack_file(path or DEFAULT_STACK)


def _client(cfg: LocalConfig) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=cfg.mlflow_url, registry_uri=cfg.mlflow_url)
