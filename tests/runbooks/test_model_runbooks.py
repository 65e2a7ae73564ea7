"""Model runbooks against a real MLflow server (SQLite backend, 127.0.0.1) whose versions carry artifact
files, publishing to a real moto S3 server; the Seldon Models and Experiment through the injectable
InMemoryKubeOps (no Kubernetes API server here). The stacks deliver with GitOps, so a slot's version is a
change of the deploy tree in a real git repository (a bare one in a temporary directory), never a Model patch;
one test turns GitOps off to cover the Model patch."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ml.delivery import gitops
from ml.training.publish import read_marker
from runbooks.context import RunContext
from runbooks.engine import AuditLog, run
from runbooks.kube import InMemoryKubeOps
from runbooks.models import CANARY_PROMOTION, ROLLBACK
from stacks.config import load_stack_file, stack_file
from stacks.context import StackContext

EXPERIMENT = ("seldon", "fraud-experiment")
BUCKET = "mlplat-test-models"


@pytest.fixture
def registry(mlflow_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[MlflowClient, str]:
    """Reference model `fraud` (the slots serve reference models only), registered afresh with three
    versions whose artifact holds `version.txt` = the version; champion = 3, challenger = 3. Each version
    passed its gates and was approved (staging and prod require it before a slot may serve it)."""
    client = MlflowClient(tracking_uri=mlflow_url)
    name = "fraud"
    with contextlib.suppress(MlflowException):
        client.delete_registered_model(name)  # the server lives for the module
    client.create_registered_model(name)
    for i in range(3):
        run_ = client.create_run("0")
        folder = tmp_path_factory.mktemp("artifact")
        (folder / "version.txt").write_text(str(i + 1))
        client.log_artifacts(run_.info.run_id, str(folder), artifact_path="model")
        client.create_model_version(name, source=f"{run_.info.artifact_uri}/model", run_id=run_.info.run_id,
                                    tags={"gate.passed": "true", "approval.status": "approved"})
    client.set_registered_model_alias(name, "champion", "3")
    client.set_registered_model_alias(name, "challenger", "3")
    return client, name


@pytest.fixture
def s3(aws_env: str):
    """The models bucket in moto, reached the way the runbooks reach it (region of the stacks)."""
    import boto3

    client = boto3.client("s3", region_name="eu-west-1")
    for bucket in (BUCKET, StackContext(load_stack_file(stack_file("prod"))).bucket_name("models", "123456789012")):
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return client


OUTPUTS = {"buckets": {"models": BUCKET}}


@pytest.fixture
def deploy_repo(tmp_path: Path) -> Path:
    """The deploy repository the runbooks write (a bare repository, as the cluster's would be cloned)."""
    return gitops.local_repository(tmp_path / "deploy-state")


def _tree(repo: Path, env: str) -> dict[str, dict[str, str]]:
    """model -> slot -> version on the deploy branch (what Argo CD applies)."""
    cfg = load_stack_file(stack_file(env))
    return gitops.branch_versions(gitops.target_for(cfg, location=str(repo)))


def _git(repo: Path, *args: str) -> str:
    import subprocess

    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def _kube(name: str) -> InMemoryKubeOps:
    return InMemoryKubeOps(experiments={("seldon", f"{name}-experiment"): {f"{name}-champion": 90,
                                                                           f"{name}-challenger": 10}},
                           models={("seldon", f"{name}-champion"), ("seldon", f"{name}-challenger"),
                                   ("seldon", f"{name}-explainer")})


def _slot_file(s3, bucket: str, name: str, slot: str) -> str:
    return s3.get_object(Bucket=bucket, Key=f"{name}/{slot}/version.txt")["Body"].read().decode()


def test_rollback_dry_run_changes_nothing(registry, mlflow_url, s3, tmp_path, deploy_repo):
    client, name = registry
    out = io.StringIO()
    kube = _kube(name)
    ctx = RunContext(env="prod", tracking_uri=mlflow_url, kube=kube,
                     params={"model": name, "deploy_repo": str(deploy_repo)}, stack_outputs=OUTPUTS)
    report = run(ROLLBACK, ctx, execute=False, audit=AuditLog(tmp_path / "audit"), out=out)
    assert report.ok, out.getvalue()
    assert f"mlflow: set alias {name}@champion v3 -> v2" in out.getvalue()
    assert f"s3: publish models:/{name}/2 to s3://{BUCKET}/{name}/champion/" in out.getvalue()
    # prod reviews promotions, but a rollback is the emergency path: a commit straight to the branch.
    assert (f"git: {name} v2 -> champion in deploy/prod/{name}/ of {deploy_repo} (commit to main; Argo CD applies it)"
            in out.getvalue())
    assert client.get_model_version_by_alias(name, "champion").version == "3"
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    assert not [c for c in kube.calls if c[0] in ("touch_model", "set_experiment_weights")]


def test_rollback_moves_champion_and_traffic(registry, mlflow_url, s3, tmp_path, deploy_repo):
    client, name = registry
    kube = _kube(name)
    # No --outputs: the bucket name comes from the naming code and the (moto) account id.
    derived = StackContext(load_stack_file(stack_file("prod"))).bucket_name("models", "123456789012")
    ctx = RunContext(env="prod", tracking_uri=mlflow_url, kube=kube,
                     params={"model": name, "deploy_repo": str(deploy_repo)}, actor="oncall")
    out = io.StringIO()
    report = run(ROLLBACK, ctx, execute=True, audit=AuditLog(tmp_path / "audit"), out=out)
    assert report.ok, out.getvalue()
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    assert kube.experiments[("seldon", f"{name}-experiment")] == {f"{name}-champion": 100, f"{name}-challenger": 0}
    assert len((tmp_path / "audit").read_text().splitlines()) == 2
    # The champion slot holds v2's files and marker; the deploy branch (prod: no review for a rollback) names v2
    # for Argo CD, and no Model was patched (self-heal would undo it): only the Experiment's weights, which Argo CD
    # ignores.
    assert _slot_file(s3, derived, name, "champion") == "2"
    assert read_marker(derived, name, "champion", s3_client=s3)["version"] == "2"
    assert _tree(deploy_repo, "prod") == {name: {"champion": "2"}}
    assert _git(deploy_repo, "branch", "--format=%(refname:short)").splitlines() == ["main"]
    assert "oncall (runbook rollback)" in _git(deploy_repo, "log", "-1", "--format=%B", "main")
    assert [c[0] for c in kube.calls if c[0] in ("touch_model", "set_experiment_weights")] == \
        ["set_experiment_weights"]


def test_a_rollback_starts_from_what_the_deploy_branch_serves(registry, mlflow_url, s3, tmp_path, deploy_repo):
    """After a merge and before `follow`, the alias lags the deploy branch: the rollback's target is the version before
    the one that serves, not the one before the lagging alias."""
    client, name = registry
    client.set_registered_model_alias(name, "champion", "2")  # the merge of v3 was not followed yet
    cfg = load_stack_file(stack_file("prod"))
    gitops.publish_release(cfg, gitops.target_for(cfg, location=str(deploy_repo), bucket=BUCKET),
                           gitops.Release(name, "3"))
    _git(deploy_repo, "branch", "-f", "main", f"promote/prod/{name}-v3")  # merged
    ctx = RunContext(env="prod", tracking_uri=mlflow_url, kube=_kube(name),
                     params={"model": name, "deploy_repo": str(deploy_repo)}, stack_outputs=OUTPUTS)
    out = io.StringIO()
    assert run(ROLLBACK, ctx, execute=False, audit=AuditLog(tmp_path / "audit"), out=out).ok, out.getvalue()
    assert f"mlflow: set alias {name}@champion v3 -> v2" in out.getvalue()


def test_rollback_to_explicit_version_and_refusals(registry, mlflow_url, s3, tmp_path, deploy_repo):
    client, name = registry
    ctx = RunContext(env="prod", tracking_uri=mlflow_url, kube=_kube(name), params={"model": name, "to_version": "9"},
                     stack_outputs=OUTPUTS)
    out = io.StringIO()
    assert not run(ROLLBACK, ctx, execute=True, audit=AuditLog(tmp_path / "a"), out=out).ok
    assert "has no version 9" in out.getvalue()
    client.set_registered_model_alias(name, "champion", "1")
    out = io.StringIO()
    ctx = RunContext(env="prod", tracking_uri=mlflow_url, kube=_kube(name),
                     params={"model": name, "deploy_repo": str(deploy_repo)}, stack_outputs=OUTPUTS)
    assert not run(ROLLBACK, ctx, execute=True, audit=AuditLog(tmp_path / "a"), out=out).ok
    assert "the oldest version: nothing to roll back to" in out.getvalue()


def test_rollback_on_the_cluster_refuses_before_changing_anything(registry, mlflow_url, s3, tmp_path):
    client, name = registry
    cases = [
        ({"buckets": {"models": "no-such-bucket"}}, _kube(name), "models bucket 'no-such-bucket' does not exist"),
        (OUTPUTS, None, "no Kubernetes access (--kube cluster)"),
    ]
    for outputs, kube, message in cases:
        out = io.StringIO()
        ctx = RunContext(env="prod", tracking_uri=mlflow_url, kube=kube, params={"model": name}, stack_outputs=outputs)
        report = run(ROLLBACK, ctx, execute=True, audit=AuditLog(tmp_path / "a"), out=out)
        assert not report.ok and report.steps[0].status == "precondition-failed", out.getvalue()
        assert message in out.getvalue()
    out = io.StringIO()
    ctx = RunContext(env="prod", tracking_uri=mlflow_url, kube=_kube(name), params={"model": "my-model"},
                     stack_outputs=OUTPUTS)
    assert not run(ROLLBACK, ctx, execute=True, audit=AuditLog(tmp_path / "a"), out=out).ok
    assert "unknown reference model 'my-model'" in out.getvalue()
    assert client.get_model_version_by_alias(name, "champion").version == "3"
    assert not (tmp_path / "a").exists()


def test_canary_promotion_shifts_weights_then_promotes(registry, mlflow_url, s3, tmp_path, deploy_repo):
    client, name = registry
    client.set_registered_model_alias(name, "champion", "2")
    kube = _kube(name)
    ctx = RunContext(env="staging", tracking_uri=mlflow_url, kube=kube,
                     params={"model": name, "challenger_weight": "25", "deploy_repo": str(deploy_repo)},
                     stack_outputs=OUTPUTS)
    out = io.StringIO()
    report = run(CANARY_PROMOTION, ctx, execute=True, audit=AuditLog(tmp_path / "a"), out=out)
    assert report.ok, out.getvalue()
    assert kube.experiments[("seldon", f"{name}-experiment")] == {f"{name}-champion": 75, f"{name}-challenger": 25}
    assert client.get_model_version_by_alias(name, "champion").version == "3"
    # The challenger slot got v3 before traffic moved; after promotion the champion slot got v3 too, each named by
    # a commit of the deploy tree (staging: commits), the weights by an Experiment patch.
    for slot in ("challenger", "champion"):
        assert _slot_file(s3, BUCKET, name, slot) == "3"
        assert read_marker(BUCKET, name, slot, s3_client=s3)["version"] == "3"
    assert _tree(deploy_repo, "staging") == {name: {"challenger": "3", "champion": "3"}}
    assert len(_git(deploy_repo, "log", "--format=%H", "main").splitlines()) == 2
    order = [(c[0], c[1][1]) for c in kube.calls if c[0] in ("touch_model", "set_experiment_weights")]
    assert order == [("set_experiment_weights", f"{name}-experiment")]
    assert len((tmp_path / "a").read_text().splitlines()) == 4


def test_canary_promotion_plan_rerun_and_refusal(registry, mlflow_url, s3, tmp_path, deploy_repo):
    client, name = registry
    client.set_registered_model_alias(name, "champion", "2")
    out = io.StringIO()
    kube = _kube(name)
    params = {"model": name, "deploy_repo": str(deploy_repo)}
    ctx = RunContext(env="prod", tracking_uri=mlflow_url, kube=kube, params=params, stack_outputs=OUTPUTS)
    assert run(CANARY_PROMOTION, ctx, execute=False, audit=AuditLog(tmp_path / "a"), out=out).ok, out.getvalue()
    assert f"s3: publish models:/{name}/3 to s3://{BUCKET}/{name}/challenger/" in out.getvalue()
    assert f"s3: publish models:/{name}/3 to s3://{BUCKET}/{name}/champion/" in out.getvalue()
    assert "(branch for review against main; Argo CD applies it)" in out.getvalue()
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0 and kube.calls == []
    # prod: the challenger's version is proposed for review; traffic does not move to it before the merge.
    ctx = RunContext(env="prod", tracking_uri=mlflow_url, kube=kube, params={**params, "challenger_weight": "10"},
                     stack_outputs=OUTPUTS)
    out = io.StringIO()
    report = run(CANARY_PROMOTION, ctx, execute=True, audit=AuditLog(tmp_path / "a"), out=out)
    assert not report.ok and report.steps[1].status == "precondition-failed", out.getvalue()
    assert "is proposed on a branch for review, not deployed: merge it" in out.getvalue()
    assert kube.calls == [] and _tree(deploy_repo, "prod") == {}
    _git(deploy_repo, "branch", "-f", "main", f"promote/prod/{name}-v3")  # the reviewer merges it
    # Canary steps are repeated (10, 50, 100): a slot that already holds the version is left alone.
    for weight in ("10", "50"):
        ctx = RunContext(env="prod", tracking_uri=mlflow_url, kube=kube, params={**params, "challenger_weight": weight},
                         stack_outputs=OUTPUTS)
        out = io.StringIO()
        assert run(CANARY_PROMOTION, ctx, execute=True, audit=AuditLog(tmp_path / "a"), out=out).ok, out.getvalue()
    assert "unchanged=already published" in out.getvalue()
    assert [c[0] for c in kube.calls if c[0] in ("touch_model", "set_experiment_weights")] == \
        ["set_experiment_weights", "set_experiment_weights"]
    # The champion's change waits for its own review (the branch of v3 already proposes it), and so do the
    # registry's `champion` and the champion slot: nothing says v3 is champion before the merge.
    assert _tree(deploy_repo, "prod") == {name: {"challenger": "3"}}
    assert f"branch promote/prod/{name}-v3 already proposes it" in out.getvalue()
    assert "becomes champion once the deploy branch names it" in out.getvalue()
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    assert read_marker(BUCKET, name, "champion", s3_client=s3) is None
    # Staged before the review: the immutable prefix the proposed Model reads.
    assert _git(deploy_repo, "show", f"promote/prod/{name}-v3:deploy/prod/{name}/model-champion.yaml").count(
        f"s3://{BUCKET}/{name}/versions/3/") == 1
    assert s3.get_object(Bucket=BUCKET, Key=f"{name}/versions/3/PUBLISHED.json")["Body"].read()
    _git(deploy_repo, "branch", "-f", "main", f"promote/prod/{name}-v3")  # the reviewer merges the champion's change
    ctx = RunContext(env="prod", tracking_uri=mlflow_url, kube=kube, params={**params, "challenger_weight": "100"},
                     stack_outputs=OUTPUTS)
    out = io.StringIO()
    assert run(CANARY_PROMOTION, ctx, execute=True, audit=AuditLog(tmp_path / "a"), out=out).ok, out.getvalue()
    assert client.get_model_version_by_alias(name, "champion").version == "3"
    assert read_marker(BUCKET, name, "champion", s3_client=s3)["version"] == "3"
    assert _tree(deploy_repo, "prod") == {name: {"challenger": "3", "champion": "3"}}
    out = io.StringIO()
    ctx = RunContext(env="prod", tracking_uri=mlflow_url, kube=None, params={"model": name}, stack_outputs=OUTPUTS)
    assert not run(CANARY_PROMOTION, ctx, execute=True, audit=AuditLog(tmp_path / "b"), out=out).ok
    assert "no Kubernetes access (--kube cluster)" in out.getvalue() and not (tmp_path / "b").exists()


def test_canary_promotion_on_prod_refuses_an_unapproved_challenger(registry, mlflow_url, s3, tmp_path):
    """prod's promotion policy is gatesAndApproval: an unapproved version never reaches a Seldon slot."""
    client, name = registry
    client.delete_model_version_tag(name, "3", "approval.status")
    kube = _kube(name)
    out = io.StringIO()
    ctx = RunContext(env="prod", tracking_uri=mlflow_url, kube=kube, params={"model": name}, stack_outputs=OUTPUTS)
    report = run(CANARY_PROMOTION, ctx, execute=True, audit=AuditLog(tmp_path / "audit"), out=out)
    assert not report.ok
    assert "it lacks a recorded approval (`mlplat model approve" in out.getvalue()
    assert read_marker(BUCKET, name, "challenger", s3_client=s3) is None  # nothing was published


def test_without_gitops_the_rollback_patches_the_model(registry, mlflow_url, s3, tmp_path):
    """A stack with `workloads.gitops.enabled: false`: the program owns the Models, the runbook touches them."""
    _, name = registry
    cfg = load_stack_file(stack_file("staging"))
    off = cfg.model_copy(update={"workloads": cfg.workloads.model_copy(update={
        "gitops": cfg.workloads.gitops.model_copy(update={"enabled": False})})})
    kube = _kube(name)
    ctx = RunContext(env="staging", tracking_uri=mlflow_url, kube=kube, params={"model": name}, stack_outputs=OUTPUTS)
    ctx.__dict__["stack"] = StackContext(off)  # the cached stack, as loaded from such a stack file
    out = io.StringIO()
    assert run(ROLLBACK, ctx, execute=True, audit=AuditLog(tmp_path / "a"), out=out).ok, out.getvalue()
    assert kube.model_version("seldon", f"{name}-champion") == "2"
    # fraud's explainer explains the champion: its Model reloads the same version before traffic moves.
    order = [(c[0], c[1][1]) for c in kube.calls if c[0] in ("touch_model", "set_experiment_weights")]
    assert order == [("touch_model", f"{name}-champion"), ("touch_model", f"{name}-explainer"),
                     ("set_experiment_weights", f"{name}-experiment")]
    assert kube.model_version("seldon", f"{name}-explainer") == "2"
