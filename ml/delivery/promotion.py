"""The order of a champion promotion on a GitOps stack, the same for the pipeline's publish step, a cluster rollout
that passed, and the post-merge follow-up (docs/DELIVERY.md, "What moves when").

What the cluster serves is the deploy tree on the deploy branch: a released slot's Model reads the version's
immutable prefix `s3://<bucket>/<model>/versions/<version>/` (contracts/deploy_tree.py), so changing that branch is
the only switch. The registry alias `champion` and the mutable champion slot `s3://<bucket>/<model>/champion/`
(read by the runbooks, the local platform and people) *follow* the branch; they never lead it:

1. stage: the version's immutable prefix is written (after the promotion-policy check); nothing reads it yet;
2. tree: the version goes into the tree: a commit on the deploy branch (`commit`: dev, staging), or a branch for
   review (`pullRequest`: prod), which leaves the branch, and so serving, as it was;
3. follow: only for a model whose champion the deploy branch now names: the champion slot is published and the
   alias moved to that version. For a proposal this step runs after the merge: `python -m ml.delivery.promotion
   follow` (the deploy repository's CI on merge, or by hand), which reads the branch and moves every model whose
   alias or slot lags it; running it again changes nothing.

The effects are callables (`Steps`), so the order is tested without git, S3 or MLflow (tests/ml/test_promotion.py);
`cluster_steps` binds them to the real ones.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml.delivery import gitops, tree_publish
from ml.delivery.gitops import GitOpsError, Outcome
from stacks.delivery import deploy_parameter
from stacks.schema import PlatformConfig

CHAMPION = "champion"
DEPLOY_ENV = "MLPLAT_DEPLOY"
TRACKING_ENV = "MLFLOW_TRACKING_URI"
POLICY_ENV = "MLPLAT_PROMOTION_POLICY"
SLOT_DIR_ENV = "MLPLAT_SLOT_DIR"


class PromotionError(RuntimeError):
    """A promotion step failed; the message says what moved and what did not."""


@dataclass(frozen=True)
class Steps:
    """The effects of a promotion, in the terms of one model and one version."""

    deploy_branch: str
    stage: Callable[[str, str], str]  # model, version -> the immutable prefix's URI (written if missing)
    write_tree: Callable[[str, str, str], Outcome]  # model, version, slot -> the tree change (commit or review branch)
    deployed: Callable[[], Mapping[str, Mapping[str, str]]]  # model -> slot -> version on the deploy branch
    alias: Callable[[str], str | None]  # model -> the version the registry calls champion
    slot_version: Callable[[str], str | None]  # model -> the version the champion slot holds
    publish_slot: Callable[[str, str], str]  # model, version -> the champion slot's URI
    set_alias: Callable[[str, str], None]  # model, version


def promote(steps: Steps, model: str, version: str, slot: str = CHAMPION) -> list[str]:
    """Stage `version`, write it into the tree's `slot`, and, for the champion, make the alias and the slot follow
    only if the deploy branch now names it (never for a change that waits for review)."""
    version = str(version)
    lines = [f"staged {steps.stage(model, version)}"]
    outcome = steps.write_tree(model, version, slot)
    lines.append(outcome.message)
    if slot != CHAMPION:
        return lines  # the registry's `champion` and the champion slot are not the challenger's concern
    if outcome.branch != steps.deploy_branch:
        return [*lines, f"{model}: the {CHAMPION} alias and slot stay as they are until that branch is merged; "
                        f"then run `python -m ml.delivery.promotion follow` (the deploy repository's CI on merge)"]
    return lines + follow(steps, [model])


def follow(steps: Steps, models: list[str] | None = None) -> list[str]:
    """Make the champion slot and the `champion` alias name what the deploy branch names, for `models` (all the
    branch's models when None). The slot first: the alias says a version serves once its slot holds it too."""
    lines = []
    for model, slots in sorted(steps.deployed().items()):
        want = slots.get(CHAMPION)
        if want is None or (models is not None and model not in models):
            continue
        moved = []
        if steps.slot_version(model) != want:
            moved.append(f"slot {steps.publish_slot(model, want)} -> v{want}")
        before = steps.alias(model)
        if before != want:
            steps.set_alias(model, want)
            moved.append(f"{CHAMPION} v{before or '-'} -> v{want}")
        lines.append(f"{model}: " + ("; ".join(moved) if moved else f"{CHAMPION} already v{want} (the deploy branch)"))
    return lines


def cluster_steps(deploy_text: str, tracking_uri: str, policy: str, s3_client: Any, actor: str,
                  secret_dir: Path | None = None) -> Steps:
    """The real effects: S3 (or a directory bucket), the deploy repository with the mounted credentials, MLflow."""
    # MLflow and the slot publisher are needed only when something is promoted (the rollout's analysis, the
    # pipeline's other steps and this module's import need neither).
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from ml.training.publish import PublishError, publish, publish_version, read_marker

    deploy = tree_publish.parse_parameter(deploy_text)
    bucket = deploy.target.bucket
    if not bucket:
        raise PromotionError("the deploy settings name no models bucket: no version can be staged or published")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    creds: dict[str, Any] = {} if secret_dir is None else {"secret_dir": secret_dir}

    def stage(model: str, version: str) -> str:
        try:
            return publish_version(model, version, bucket, tracking_uri=tracking_uri, s3_client=s3_client,
                                   actor=actor, promotion=policy)
        except PublishError as exc:
            raise PromotionError(f"{model} v{version} was not staged, nothing moved: {exc}") from exc

    def write_tree(model: str, version: str, slot: str) -> Outcome:
        try:
            return tree_publish.write_release(deploy_text, client, model, version, actor=actor, slot=slot, **creds)
        except GitOpsError as exc:
            raise PromotionError(f"{model} v{version} is staged but the deploy tree was not written (nothing "
                                 f"serves it, the alias did not move): {exc}") from exc

    def alias(model: str) -> str | None:
        try:
            return str(client.get_model_version_by_alias(model, CHAMPION).version)
        except MlflowException:
            return None

    def slot_version(model: str) -> str | None:
        return (read_marker(bucket, model, CHAMPION, s3_client=s3_client) or {}).get("version")

    def publish_slot(model: str, version: str) -> str:
        try:
            return publish(model, version, CHAMPION, bucket, tracking_uri=tracking_uri, s3_client=s3_client,
                           actor=actor, promotion=policy).uri
        except PublishError as exc:
            raise PromotionError(f"the deploy branch serves {model} v{version} but its {CHAMPION} slot could not "
                                 f"follow: {exc}") from exc

    return Steps(deploy.target.branch, stage, write_tree,
                 lambda: tree_publish.recorded(deploy, **creds), alias, slot_version, publish_slot,
                 lambda model, version: client.set_registered_model_alias(model, CHAMPION, version))


def operator_steps(cfg: PlatformConfig, location: str | None, bucket: str | None, tracking_uri: str,
                   actor: str) -> Steps:
    """The effects for a person or CI (`mlplat model promote`, `mlplat model follow`): the stack's repository (or
    `location`) with git's own credentials, S3 with the caller's identity, the stack's promotion policy."""
    location = location or cfg.workloads.gitops.repo_url
    if not bucket:
        bucket = gitops.branch_bucket(gitops.target_for(cfg, location=location))
    if not bucket:
        raise PromotionError(f"the deploy tree of {cfg.environment} names no models bucket yet: pass --bucket "
                             "(stack output buckets.models)")
    deploy = deploy_parameter(cfg, bucket, location=location)
    return cluster_steps(deploy, tracking_uri, cfg.governance.promotion, s3_for(None, deploy), actor)


def s3_for(slot_dir: Path | None, deploy_text: str) -> Any:
    """The slots' storage: a directory bucket (the local platform's slots) or S3 with the process' identity."""
    if slot_dir is None:
        import boto3  # the pod's or the operator's identity

        return boto3.client("s3")
    from ml.training.directory_bucket import DirectoryBucket

    s3 = DirectoryBucket(slot_dir)
    bucket = tree_publish.parse_parameter(deploy_text).target.bucket
    if bucket:
        s3.create_bucket(Bucket=bucket)
    return s3


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """`python -m ml.delivery.promotion follow [MODEL ...]`: after a deploy-tree change was merged, move the champion
    slot and alias of each model to the version the deploy branch names. Exit 0 when everything follows it."""
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(prog="python -m ml.delivery.promotion", description=main.__doc__)
    p.add_argument("command", choices=["follow"])
    p.add_argument("models", nargs="*", help="only these models (default: every model of the tree)")
    p.add_argument("--deploy", default=env.get(DEPLOY_ENV), help=f"the deploy settings JSON (default ${DEPLOY_ENV}, "
                   "as the rollout Job and the pipeline get it: stacks/delivery.py deploy_parameter)")
    p.add_argument("--tracking-uri", default=env.get(TRACKING_ENV))
    p.add_argument("--policy", default=env.get(POLICY_ENV, "gatesAndApproval"),
                   help="the stack's governance.promotion (default gatesAndApproval, the strictest)")
    p.add_argument("--slot-dir", type=Path, default=Path(env[SLOT_DIR_ENV]) if env.get(SLOT_DIR_ENV) else None)
    p.add_argument("--actor", default="mlplat promotion follow")
    args = p.parse_args(argv)
    if not args.deploy or not args.tracking_uri:
        print(f"--deploy (${DEPLOY_ENV}) and --tracking-uri (${TRACKING_ENV}) are required", file=sys.stderr)
        return 1
    try:
        steps = cluster_steps(args.deploy, args.tracking_uri, args.policy, s3_for(args.slot_dir, args.deploy),
                              args.actor)
        for line in follow(steps, args.models or None):
            print(line, flush=True)
    except (PromotionError, GitOpsError) as exc:
        print(f"promotion follow: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
