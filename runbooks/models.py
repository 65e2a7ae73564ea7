"""Model runbooks: roll back the champion, promote a canary.

The MLflow registry alias `champion` is the source of truth for what serves. Locally the champion slot
is republished and the MLServer process reloads the model, which re-resolves `models:/<name>@champion`
(MLServer swaps in the new instance before it unloads the old one, so requests keep succeeding during
the switch): ml/training/follow.py. The rollback checks that the model server answers before it moves
the alias, and a repeated run after a failed serving step does not move the alias again: it finds the
alias ahead of what is served and only makes serving follow. On the
cluster the Seldon Models `<name>-champion` / `<name>-challenger` serve whatever their S3 slot holds:
a version is published to the slot (ml/training/publish.py) and the Model is touched so
Seldon reloads it; the Seldon Experiment's weights decide the traffic split. Where Argo CD owns the Models
(GitOps) the slot's version is written into the deploy tree instead of patching the Model, and the local
platform commits to its deploy repository before serving follows (runbooks/deploy_tree.py).
"""

from __future__ import annotations

from typing import Any

from contracts import model_registry
from contracts.cluster import SELDON_NAMESPACE
from contracts.model_slots import artifact_model_settings, artifact_uri, version_uri
from ml.delivery import gitops
from ml.training.follow import FollowError, Serving, follow_champion, served_version, server_ready, slot_version
from ml.training.publish import MARKER, PublishError, check_bucket, publish, read_marker
from runbooks import deploy_tree
from runbooks.context import RunContext
from runbooks.engine import Runbook, Step, StepFailed

CHAMPION, CHALLENGER = "champion", "challenger"


def experiment_name(model: str) -> str:
    return f"{model}-experiment"


def _model(ctx: RunContext) -> str:
    return ctx.param("model", model_registry.names()[0])  # default: the first registered model


# ---- publishing a registry version to a Seldon slot (cluster environments) -------------------------

def _models_bucket(ctx: RunContext) -> str:
    """The stack output `buckets.models` when given (--outputs), else the name the naming code derives."""
    given = (ctx.stack_outputs.get("buckets") or {}).get("models")
    if given:
        return str(given)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return ctx.stack.bucket_name("models", ctx.account_id)
    except (BotoCoreError, ClientError) as exc:
        raise StepFailed(f"cannot derive the models bucket name ({exc}); pass --outputs with buckets.models") from exc


def _publish_ready(ctx: RunContext) -> None:
    """Precondition of the cluster publishing steps: Kubernetes access, a reference model, the bucket."""
    if ctx.kube is None:
        raise StepFailed("no Kubernetes access (--kube cluster)")
    try:
        artifact_model_settings(_model(ctx))
    except ValueError as exc:
        raise StepFailed(f"{exc} (the Seldon slots serve the reference models only)") from exc
    ctx.state["bucket"] = _models_bucket(ctx)
    try:
        check_bucket(ctx.aws("s3"), ctx.state["bucket"])
    except PublishError as exc:
        raise StepFailed(str(exc)) from exc


def _deploy(ctx: RunContext) -> deploy_tree.Deploy | None:
    """The deploy tree that owns this model's Models (GitOps), found once per run."""
    if "deploy" not in ctx.state:
        ctx.state["deploy"] = deploy_tree.deploy_of(ctx, _model(ctx), ctx.state.get("bucket"))
    return ctx.state["deploy"]


def _publish_plan(ctx: RunContext, slot: str, version: int, *, rollback: bool = False) -> list[str]:
    model = _model(ctx)
    uri = artifact_uri(ctx.state["bucket"], model, slot)
    publish_line = (f"s3: publish models:/{model}/{version} to {uri} (artifact files + model-settings.json; delete "
                    f"objects v{version} lacks; {MARKER} last), unless the slot already holds v{version}")
    deploy = _deploy(ctx)
    if deploy is not None:  # the tree's champion folder holds the explainer's Model too: it follows
        return [f"s3: stage models:/{model}/{version} at {version_uri(ctx.state['bucket'], model, str(version))} "
                "(written once; the tree's Model reads it)",
                deploy_tree.plan_line(ctx, deploy, model, slot, version, rollback=rollback),
                f"{publish_line}; once the deploy branch names v{version} (after the review where there is one)"]
    return [publish_line, f"kubernetes: patch Model {SELDON_NAMESPACE}/{model}-{slot} spec.parameters "
                          f"registry-version={version} (Seldon reloads the slot)",
            *[f"kubernetes: patch Model {SELDON_NAMESPACE}/{explainer} the same way (it explains the champion)"
              for explainer in filter(None, [_explainer(model, slot)])]]


def _explainer(model: str, slot: str) -> str | None:
    """The Seldon Model that explains the champion (it loads the champion slot's explainer/ folder), if any."""
    return model_registry.get(model).explainer_name if slot == CHAMPION else None


def _served_by(ctx: RunContext, slot: str) -> str | None:
    """The version the slot's Model (and the champion's explainer) is told to serve: the deploy tree's
    (GitOps) or the live Models' (None when they disagree)."""
    assert ctx.kube is not None
    model = _model(ctx)
    deploy = _deploy(ctx)
    if deploy is not None:
        return deploy_tree.tree_version(deploy, model, slot)
    versions = {ctx.kube.model_version(SELDON_NAMESPACE, name)
                for name in [f"{model}-{slot}", *filter(None, [_explainer(model, slot)])]}
    return versions.pop() if len(versions) == 1 else None


def _publish_to_slot(ctx: RunContext, slot: str, version: int, *, rollback: bool = False) -> dict[str, Any]:
    """Publish `version` to the slot and make its Model follow: the deploy tree names it (GitOps; a rollback
    commits straight to the branch) or the Model (and the champion's explainer) is touched. A no-op when both
    already show `version`."""
    assert ctx.kube is not None
    model, bucket, want = _model(ctx), ctx.state["bucket"], str(version)
    resource = f"{model}-{slot}"
    touch = [resource, *filter(None, [_explainer(model, slot)])]
    s3 = ctx.aws("s3")
    marker = read_marker(bucket, model, slot, s3_client=s3)
    if (marker or {}).get("version") == want and _served_by(ctx, slot) == want:
        return {"slot": artifact_uri(bucket, model, slot), "version": want, "unchanged": "already published"}
    deploy = _deploy(ctx)
    if deploy is not None:
        return deploy_tree.publish_through_tree(ctx, deploy, model, bucket, slot, want, rollback=rollback,
                                                publish_slot=lambda: _publish(ctx, slot, want))
    result = _publish(ctx, slot, want)
    done = {"slot": result.uri, "version": want, "files": len(result.uploaded), "deleted_old": len(result.deleted)}
    for name in touch:
        ctx.kube.touch_model(SELDON_NAMESPACE, name, want)
    return {**done, "touched": ", ".join(f"{SELDON_NAMESPACE}/{name}" for name in touch)}


def _publish(ctx: RunContext, slot: str, want: str) -> Any:
    try:
        return publish(_model(ctx), want, slot, ctx.state["bucket"], tracking_uri=ctx.mlflow.tracking_uri,
                       s3_client=ctx.aws("s3"), actor=ctx.actor, promotion=ctx.stack.cfg.governance.promotion)
    except PublishError as exc:
        raise StepFailed(str(exc)) from exc


def _verify_slot(ctx: RunContext, slot: str, version: int) -> None:
    assert ctx.kube is not None
    model, bucket, want = _model(ctx), ctx.state["bucket"], str(version)
    if _deploy(ctx) is not None and ctx.state.get("proposed", {}).get(slot):
        return  # a branch for review: the deploy branch, and then the slot, change when it is merged
    marker = read_marker(bucket, model, slot, s3_client=ctx.aws("s3"))
    if (marker or {}).get("version") != want:
        raise StepFailed(f"{artifact_uri(bucket, model, slot)}{MARKER} shows {marker}, expected v{want}")
    if _deploy(ctx) is not None:
        recorded = _served_by(ctx, slot)
        if recorded != want:
            raise StepFailed(f"the deploy tree gives {model}-{slot} v{recorded}, expected v{want}")
        return
    touched = ctx.kube.model_version(SELDON_NAMESPACE, f"{model}-{slot}")
    if touched != want:
        raise StepFailed(f"Model {SELDON_NAMESPACE}/{model}-{slot} registry-version is {touched}, expected {want}")


def _version_of(ctx: RunContext, alias: str) -> int:
    from mlflow.exceptions import MlflowException

    try:
        return int(ctx.mlflow.get_model_version_by_alias(_model(ctx), alias).version)
    except MlflowException as exc:
        raise StepFailed(f"{_model(ctx)}@{alias} is not set in the registry ({ctx.mlflow.tracking_uri})") from exc


def _local_serving(ctx: RunContext) -> Serving:
    if not ctx.serving_url or ctx.slot_dir is None:
        raise StepFailed("no local platform: its inference endpoint and model slots are unknown "
                         "(`mlplat local status`; start it with `mlplat local up`)")
    return Serving(ctx.slot_dir, ctx.serving_url)


def _serving_url(ctx: RunContext) -> str:
    if not ctx.serving_url:
        raise StepFailed("no inference endpoint: is the local platform up? (`mlplat local status`)")
    return ctx.serving_url


def _local_served(ctx: RunContext) -> str | None:
    try:
        return served_version(_serving_url(ctx), _model(ctx))
    except FollowError as exc:
        raise StepFailed(str(exc)) from exc


def _inspect(ctx: RunContext) -> dict[str, Any]:
    current = _version_of(ctx, CHAMPION)
    versions = sorted(int(v.version) for v in ctx.mlflow.search_model_versions(f"name='{_model(ctx)}'"))
    wanted = ctx.params.get("to_version")
    if wanted is not None and int(wanted) not in versions:
        raise StepFailed(f"{_model(ctx)} has no version {wanted}; versions: {versions}")
    deploy = _deploy(ctx) if ctx.env != "local" else None
    if deploy is not None:
        # What serves is what the deploy branch names; the alias follows it after a merge and may lag meanwhile.
        served = deploy_tree.tree_version(deploy, _model(ctx), CHAMPION)
        current = int(served) if served is not None else current
    if ctx.env == "local":
        # An earlier run moved the alias and then failed to make serving follow: finish that rollback
        # instead of moving the alias a second time.
        served = _local_served(ctx)
        if served is not None and served != str(current) and (wanted is None or int(wanted) == current):
            ctx.state.update(model=_model(ctx), from_version=int(served), to_version=current, resumed=True)
            return {"model": _model(ctx), "champion": current, "served": int(served), "target": current,
                    "versions": versions, "note": "the alias is already moved; only serving follows"}
    if wanted is not None:
        target = int(wanted)
        if target not in versions:
            raise StepFailed(f"{_model(ctx)} has no version {target}; versions: {versions}")
    else:
        older = [v for v in versions if v < current]
        if not older:
            raise StepFailed(f"{_model(ctx)}@champion is v{current}, the oldest version: nothing to roll back to")
        target = older[-1]
    if target == current:
        raise StepFailed(f"{_model(ctx)}@champion already is v{target}")
    ctx.state.update(model=_model(ctx), from_version=current, to_version=target)
    return {"model": _model(ctx), "champion": current, "target": target, "versions": versions}


def _move_alias(ctx: RunContext) -> dict[str, Any]:
    if _version_of(ctx, CHAMPION) == ctx.state["to_version"]:
        return {"champion": ctx.state["to_version"], "unchanged": "already there"}
    ctx.mlflow.set_registered_model_alias(ctx.state["model"], CHAMPION, str(ctx.state["to_version"]))
    return {"champion": ctx.state["to_version"]}


def _verify_alias(ctx: RunContext, result: dict[str, Any]) -> None:
    if _version_of(ctx, CHAMPION) != ctx.state["to_version"]:
        raise StepFailed("the champion alias did not move")


def _reload_serving(ctx: RunContext) -> dict[str, Any]:
    model = ctx.state["model"]
    if ctx.env == "local":
        tree = []
        deploy = _deploy(ctx)
        if deploy is not None:  # the tree first: a later `mlplat local apply` must not bring the old version back
            tree = [deploy_tree.write_slot(ctx, deploy, model, CHAMPION, ctx.state["to_version"],
                                           rollback=True).message]
        try:
            done = tree + follow_champion(ctx.mlflow, model, _local_serving(ctx), actor=ctx.actor)
        except FollowError as exc:
            raise StepFailed(f"{exc}. The champion alias is v{ctx.state['to_version']}; run the runbook again: it "
                             "does not move the alias a second time, it only makes serving follow") from exc
        return {"serving": "; ".join(done) or "already serving the champion"}
    assert ctx.kube is not None  # the precondition checked it
    published = _publish_to_slot(ctx, CHAMPION, ctx.state["to_version"], rollback=True)
    ctx.kube.set_experiment_weights(SELDON_NAMESPACE, experiment_name(model),
                                    {f"{model}-{CHAMPION}": 100, f"{model}-{CHALLENGER}": 0})
    return {**published, "experiment": experiment_name(model), "weights": "champion 100 / challenger 0"}


def _serving_precondition(ctx: RunContext) -> None:
    if ctx.env != "local":
        _publish_ready(ctx)
        return
    try:
        server_ready(_serving_url(ctx))
    except FollowError as exc:
        raise StepFailed(str(exc)) from exc


def _verify_serving(ctx: RunContext, result: dict[str, Any]) -> None:
    model, want = ctx.state["model"], str(ctx.state["to_version"])
    if ctx.env != "local":
        assert ctx.kube is not None
        weights = ctx.kube.experiment_weights(SELDON_NAMESPACE, experiment_name(model))
        if weights.get(f"{model}-{CHAMPION}") != 100:
            raise StepFailed(f"experiment weights are {weights}")
        _verify_slot(ctx, CHAMPION, ctx.state["to_version"])
        return
    deploy = _deploy(ctx)
    if deploy is not None and deploy_tree.tree_version(deploy, model, CHAMPION) != want:
        raise StepFailed(f"the deploy tree does not give {model}-champion v{want}")
    ctx.wait_for(f"MLServer to serve {model} v{want}", lambda: _local_served(ctx) == want, timeout_s=60, poll_s=0.5)
    held = slot_version(_local_serving(ctx).slot_dir, model)
    if held != want:
        raise StepFailed(f"the champion slot of {model} holds v{held}, expected v{want}")


def _serving_plan(ctx: RunContext) -> list[str]:
    model = ctx.state["model"]
    if ctx.env == "local":
        deploy = _deploy(ctx)
        tree = [] if deploy is None else [deploy_tree.plan_line(ctx, deploy, model, CHAMPION, ctx.state["to_version"],
                                                                rollback=True)]
        return [*tree, f"publish models:/{model}/{ctx.state['to_version']} to the champion slot under {ctx.slot_dir}",
                f"POST {ctx.serving_url}/v2/repository/models/{model}/load (reload resolves @champion)"]
    return [*_publish_plan(ctx, CHAMPION, ctx.state["to_version"], rollback=True),
            f"kubernetes: patch Experiment {SELDON_NAMESPACE}/{experiment_name(model)} weights "
            f"{model}-champion=100 {model}-challenger=0"]


ROLLBACK = Runbook(
    name="model-rollback",
    title="Roll a model back to its previous champion version",
    services=("mlflow", "serving"),
    steps=[
        # The cluster checks run first, so that nothing changes when publishing could not follow.
        Step("find the current champion and the version to return to", _model, precondition=_serving_precondition,
             plan=lambda ctx: [], action=_inspect, verify=lambda ctx, r: None, rollback="nothing changed",
             read_only=True),
        Step("move the champion alias back", _model, precondition=_serving_precondition,
             plan=lambda ctx: [f"mlflow: set alias {ctx.state['model']}@champion "
                               f"v{ctx.state['from_version']} -> v{ctx.state['to_version']}"],
             action=_move_alias, verify=_verify_alias,
             rollback="set the champion alias back to the version printed in step 1"),
        Step("make serving follow the alias", _model, precondition=_serving_precondition, plan=_serving_plan,
             action=_reload_serving, verify=_verify_serving,
             rollback="move the alias forward again and repeat this step"),
    ],
)


def _canary_weights(ctx: RunContext) -> dict[str, int]:
    weight = int(ctx.param("challenger_weight", "10"))
    if not 0 <= weight <= 100:
        raise StepFailed(f"challenger_weight must be 0..100, got {weight}")
    return {f"{_model(ctx)}-{CHAMPION}": 100 - weight, f"{_model(ctx)}-{CHALLENGER}": weight}


def _require_kube(ctx: RunContext) -> None:
    if ctx.kube is None:
        raise StepFailed("no Kubernetes access (--kube cluster)")


def _challenger_ready(ctx: RunContext) -> None:
    _publish_ready(ctx)
    ctx.state["challenger_version"] = _version_of(ctx, CHALLENGER)


def _challenger_served(ctx: RunContext) -> None:
    """Traffic moves only to a challenger whose Model serves the version: with GitOps, once the deploy branch
    names it (in prod after the pull request is merged)."""
    _require_kube(ctx)
    if ctx.state.get("proposed", {}).get(CHALLENGER):
        raise StepFailed(f"{_model(ctx)}-challenger v{ctx.state['challenger_version']} is proposed on a branch for "
                         "review, not deployed: merge it, then run this runbook again (traffic stays as it is)")


def _shift(ctx: RunContext) -> dict[str, Any]:
    assert ctx.kube is not None
    weights = _canary_weights(ctx)
    ctx.kube.set_experiment_weights(SELDON_NAMESPACE, experiment_name(_model(ctx)), weights)
    return {"weights": weights}


def _verify_shift(ctx: RunContext, result: dict[str, Any]) -> None:
    assert ctx.kube is not None
    if ctx.kube.experiment_weights(SELDON_NAMESPACE, experiment_name(_model(ctx))) != result["weights"]:
        raise StepFailed("experiment weights did not change")


def _promote(ctx: RunContext) -> dict[str, Any]:
    challenger = _version_of(ctx, CHALLENGER)
    ctx.state["previous_champion"] = _version_of(ctx, CHAMPION)
    deploy = _deploy(ctx)
    if (deploy is not None and deploy.target.promotion == gitops.PULL_REQUEST
            and deploy_tree.tree_version(deploy, _model(ctx), CHAMPION) != str(challenger)):
        # The registry follows the deploy branch: `champion` names a version once its review is merged.
        ctx.state["alias_deferred"] = True
        return {"champion": ctx.state["previous_champion"],
                "deferred": f"v{challenger} becomes champion once the deploy branch names it (the review merged): "
                            "run this runbook again then, or `mlplat model follow`"}
    ctx.mlflow.set_registered_model_alias(_model(ctx), CHAMPION, str(challenger))
    return {"champion": challenger, "previous": ctx.state["previous_champion"]}


def _verify_promote(ctx: RunContext, result: dict[str, Any]) -> None:
    if ctx.state.get("alias_deferred"):
        return
    if _version_of(ctx, CHAMPION) != _version_of(ctx, CHALLENGER):
        raise StepFailed("champion does not point at the challenger")


CANARY_PROMOTION = Runbook(
    name="canary-promotion",
    title="Shift traffic to the challenger, then promote it to champion",
    envs=("dev", "staging", "prod"),
    steps=[
        Step("publish the challenger version to its Seldon slot", _model, precondition=_challenger_ready,
             plan=lambda ctx: _publish_plan(ctx, CHALLENGER, ctx.state["challenger_version"]),
             action=lambda ctx: _publish_to_slot(ctx, CHALLENGER, ctx.state["challenger_version"]),
             verify=lambda ctx, r: _verify_slot(ctx, CHALLENGER, ctx.state["challenger_version"]),
             rollback="publish the previous challenger version the same way (its PUBLISHED.json was replaced), "
                      "or leave the challenger's weight at 0"),
        Step("shift canary traffic to the challenger", _model, precondition=_challenger_served,
             plan=lambda ctx: [f"kubernetes: patch Experiment {SELDON_NAMESPACE}/{experiment_name(_model(ctx))} "
                               f"weights {_canary_weights(ctx)}"],
             action=_shift, verify=_verify_shift,
             rollback="run again with --param challenger_weight=0"),
        Step("promote the challenger to champion", _model, precondition=lambda ctx: None,
             plan=lambda ctx: [f"mlflow: set alias {_model(ctx)}@champion -> the version of @challenger (where "
                               "the stack reviews promotions: once the deploy branch names it)"],
             action=_promote, verify=_verify_promote,
             rollback="runbook model-rollback moves champion back to the previous version"),
        Step("publish the new champion to its Seldon slot", _model, precondition=_challenger_ready,
             plan=lambda ctx: _publish_plan(ctx, CHAMPION, ctx.state["challenger_version"]),
             action=lambda ctx: _publish_to_slot(ctx, CHAMPION, ctx.state["challenger_version"]),
             verify=lambda ctx, r: _verify_slot(ctx, CHAMPION, ctx.state["challenger_version"]),
             rollback="runbook model-rollback publishes the previous champion version back to the slot"),
    ],
)
