"""The model runbooks on a GitOps stack: serving changes through the deploy tree, never by patching a Model.

Argo CD owns the Seldon Models of a stack with `workloads.gitops.enabled` and its self-heal undoes a patch; it
ignores only the Experiment's candidate weights. So the model runbooks (runbooks/models.py) and the automatic
rollback that runs them split their actions the same way everywhere:

- traffic (a canary stopped, the challenger's share): a patch of the Experiment's weights, at once;
- which version a slot serves (a champion rolled back, a challenger promoted): the slot's version in the deploy
  tree, written by ml/delivery/gitops.py; Argo CD applies it on the cluster, and on the local platform the
  runbook applies it itself right after the commit (as `mlplat local apply` would).

A rollback commits straight to the deploy branch even where promotions need a reviewed pull request (prod):
the target version passed the stack's promotion policy before (the slot publication refuses it otherwise), and
a rollback waiting for a review leaves the bad version serving. The commit names the actor, so the change is
reviewed after the fact. A promotion keeps the stack's mode.

Where the tree is: the receiver's environment `MLPLAT_DEPLOY` (the pipeline's `deploy` parameter, with the
credentials Secret mounted as in the publish step), else `--param deploy_repo=PATH_OR_URL`, else the stack's
`repoUrl` with git's own credentials; locally the platform's `<state>/deploy.git`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from contracts.local_platform import DEPLOY_REPO, DEPLOY_STACK
from contracts.model_slots import artifact_uri
from ml.delivery import gitops
from ml.delivery.tree_publish import Deploy, parse_parameter, recorded, write
from ml.training.directory_bucket import LOCAL_BUCKET
from ml.training.publish import PublishError, publish_version, read_marker
from runbooks.context import RunContext
from runbooks.engine import StepFailed
from stacks.config import load_stack_file
from stacks.delivery import deploy_parameter

DEPLOY_ENV = "MLPLAT_DEPLOY"


def deploy_of(ctx: RunContext, model: str, bucket: str | None = None) -> Deploy | None:
    """The deploy tree that decides what `model` serves in this run's environment; None: no tree (GitOps off,
    no local deploy repository, or a model the stack does not enable)."""
    if ctx.env == "local":
        repo = ctx.slot_dir.parent / DEPLOY_REPO if ctx.slot_dir is not None else None
        if repo is None or not (repo / "HEAD").is_file():
            return None
        deploy = parse_parameter(deploy_parameter(load_stack_file(DEPLOY_STACK), LOCAL_BUCKET, location=str(repo)))
    else:
        cfg = ctx.stack.cfg
        if not cfg.workloads.gitops.enabled:
            return None
        text = os.environ.get(DEPLOY_ENV)
        if not text:
            if bucket is None:
                raise StepFailed("the models bucket is needed to write the deploy tree")
            location = ctx.params.get("deploy_repo") or cfg.workloads.gitops.repo_url
            text = deploy_parameter(cfg, bucket, location=location)
        deploy = parse_parameter(text)
    return deploy if any(m.name == model for m in deploy.models) else None


def write_slot(ctx: RunContext, deploy: Deploy, model: str, slot: str, version: int | str, *,
               rollback: bool) -> gitops.Outcome:
    """`model` v`version` into `slot` of the tree: a direct commit for a rollback, else the stack's mode."""
    what = "rollback" if rollback else "promotion"
    release = gitops.Release(model, str(version), slot, actor=f"{ctx.actor} (runbook {what})",
                             gates="the version passed the stack's promotion policy when it was published to the slot")
    try:
        return write(deploy, release, promotion=gitops.COMMIT if rollback else None)
    except gitops.GitOpsError as exc:
        raise StepFailed(f"cannot write the deploy tree: {exc}") from exc


def tree_version(deploy: Deploy, model: str, slot: str) -> str | None:
    """The version the deploy branch gives `model`'s `slot`."""
    try:
        return recorded(deploy).get(model, {}).get(slot)
    except gitops.GitOpsError as exc:
        raise StepFailed(f"cannot read the deploy tree: {exc}") from exc


def plan_line(ctx: RunContext, deploy: Deploy, model: str, slot: str, version: int | str, *, rollback: bool) -> str:
    t = deploy.target
    mode = "commit to" if rollback or t.promotion == gitops.COMMIT else "branch for review against"
    then = "then applied here" if ctx.env == "local" else "Argo CD applies it"
    return (f"git: {model} v{version} -> {slot} in {t.path}/{t.environment}/{model}/ of {t.location} "
            f"({mode} {t.branch}; {then})")


def publish_through_tree(ctx: RunContext, deploy: Deploy, model: str, bucket: str, slot: str, want: str, *,
                         rollback: bool, publish_slot: Callable[[], Any]) -> dict[str, Any]:
    """A version into a slot on a GitOps stack: its immutable prefix (what the tree's Model reads) staged, the tree
    written, and the mutable slot (`publish_slot`) published only once the deploy branch names the version: a
    change proposed for review (prod) leaves the slot, like serving, as it was until it is merged
    (ml/delivery/promotion.py)."""
    s3 = ctx.aws("s3")
    try:
        staged = publish_version(model, want, bucket, tracking_uri=ctx.mlflow.tracking_uri, s3_client=s3,
                                 actor=ctx.actor, promotion=ctx.stack.cfg.governance.promotion)
    except PublishError as exc:
        raise StepFailed(str(exc)) from exc
    outcome = write_slot(ctx, deploy, model, slot, want, rollback=rollback)
    proposed = outcome.branch != deploy.target.branch
    ctx.state.setdefault("proposed", {})[slot] = proposed
    done: dict[str, Any] = {"staged": staged, "version": want, "deploy_tree": outcome.message}
    if proposed:
        return {**done, "slot": f"{artifact_uri(bucket, model, slot)} unchanged until the review is merged"}
    if (read_marker(bucket, model, slot, s3_client=s3) or {}).get("version") == want:
        return {**done, "slot": artifact_uri(bucket, model, slot)}
    result = publish_slot()
    return {**done, "slot": result.uri, "files": len(result.uploaded), "deleted_old": len(result.deleted)}
