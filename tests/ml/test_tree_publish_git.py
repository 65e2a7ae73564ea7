"""The training pipeline's publish step writes the deploy tree, against real git repositories in a temporary
directory and a registry in SQLite (no MLflow server): the commit with the model card, the slot and alias that
move with it, a push that loses a race with another publication, and a model outside the stack; on a stack that
reviews promotions (prod), nothing but the staged version and the review branch before the merge."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from contracts.local_platform import DEPLOY_STACK
from ml.delivery import gitops, tree_publish
from ml.pipelines import steps
from ml.training import card
from ml.training.directory_bucket import LOCAL_BUCKET
from stacks.config import load_stack_file
from stacks.delivery import deploy_parameter

pytestmark = pytest.mark.integration  # runs the git command line


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def registry(tmp_path: Path):
    """`fraud` v1 with an artifact and a model card, in a SQLite registry."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(exp)
    art = tmp_path / "art"
    art.mkdir()
    (art / "model.json").write_text("{}")
    client.log_artifacts(run.info.run_id, str(art), "model")
    card.log_card(client, run.info.run_id, {
        "model": {"name": "fraud", "version": "1", "description": "Fraud detection.", "run_id": run.info.run_id,
                  "created": "2026-12-07T04:00:00+00:00"},
        "intended_use": "Scoring card transactions.", "limitations": [],
        "data": {"directory": "sample", "sources": [], "rows": {"train": 10}}, "features": ["amount"],
        "training": {"params": {"seed": 0}},
        "evaluation": {"protocol": "held-out split", "metrics": {"auc": 0.99}, "segments": {}},
        "gates": {"passed": True, "summary": "auc 0.99 >= 0.95"},
        "promotion": {"policy": "gates", "champion_at_registration": None, "pending_approval": False}})
    client.set_terminated(run.info.run_id)
    client.create_registered_model("fraud")
    client.create_model_version("fraud", f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                                tags={"gate.passed": "true"})
    return client, uri


def test_the_publish_step_commits_the_version_with_its_card_after_the_slot(registry, tmp_path: Path):
    client, uri = registry
    repo = gitops.local_repository(tmp_path / "state")
    deploy = deploy_parameter(load_stack_file(DEPLOY_STACK), LOCAL_BUCKET, location=str(repo))
    slots = tmp_path / "slots"
    line = steps.publish("fraud", "1", "gates", uri, "", str(slots), "", "", "schedule", deploy)
    assert "fraud v1 -> champion (dev): committed to main" in line, line
    assert str(client.get_model_version_by_alias("fraud", "champion").version) == "1"
    assert (slots / LOCAL_BUCKET / "fraud" / "champion" / "PUBLISHED.json").is_file()
    assert gitops.branch_versions(tree_publish.parse_parameter(deploy).target) == {"fraud": {"champion": "1"}}
    message = git(repo, "log", "-1", "--format=%B", "main")
    assert "Published by pipeline/schedule" in message and "passed: auc 0.99 >= 0.95" in message
    # A rerun of the step changes nothing in git.
    again = steps.publish("fraud", "1", "gates", uri, "", str(slots), "", "", "schedule", deploy)
    assert "main already deploys it, nothing to commit" in again
    assert len(git(repo, "log", "--format=%H", "main").splitlines()) == 1


def test_a_model_the_stack_does_not_enable_gets_no_tree_change(registry, tmp_path: Path):
    _, uri = registry
    repo = gitops.local_repository(tmp_path / "state")
    cfg = load_stack_file(DEPLOY_STACK)
    without = cfg.model_copy(update={"models": cfg.models.model_copy(update={
        "fraud": cfg.models["fraud"].model_copy(update={"enabled": False})})})
    deploy = deploy_parameter(without, LOCAL_BUCKET, location=str(repo))
    line = steps.publish("fraud", "1", "gates", uri, "", str(tmp_path / "slots"), "", "", "manual", deploy)
    assert "fraud is not enabled in the deploy tree's stack: no tree change" in line
    assert git(repo, "for-each-ref") == ""


def test_a_push_that_loses_a_race_is_redone_on_the_new_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Several models' pipelines publish at once: the second push is rejected and made again, keeping both."""
    cfg = load_stack_file(DEPLOY_STACK)
    repo = gitops.local_repository(tmp_path / "state")
    target = gitops.target_for(cfg, location=str(repo), bucket=LOCAL_BUCKET)
    gitops.publish_release(cfg, target, gitops.Release("fraud", "1"))
    real_write = gitops._write
    raced: list[str] = []

    def write_after_another_publication(root: Path, files, environment: str) -> None:
        if not raced:  # while this clone is being changed, another publication lands on the branch
            raced.append("")
            raced[0] = gitops.publish_release(cfg, target, gitops.Release("sentiment", "4")).commit
        real_write(root, files, environment)

    monkeypatch.setattr(gitops, "_write", write_after_another_publication)
    out = gitops.publish_release(cfg, target, gitops.Release("fraud", "2"))
    assert out.changed and git(repo, "rev-parse", "main~1") == raced[0]
    assert gitops.branch_versions(target) == {"fraud": {"champion": "2"}, "sentiment": {"champion": "4"}}


def test_a_local_approval_commits_the_tree_before_serving_moves(registry, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch):
    """`mlplat model approve` on the local platform: the tree first, so `mlplat local apply` keeps the promotion."""
    from types import SimpleNamespace

    from contracts.local_platform import Registry
    from ml.cli import model as model_cli
    from ml.training.follow import Serving

    client, uri = registry
    state = tmp_path / "state"
    repo = gitops.local_repository(state)
    moved: list[str] = []

    def fake_promote(client_, name, version, serving, actor):  # the model server is not running here
        moved.append(git(repo, "rev-parse", "main"))  # the commit exists before serving moves
        return [f"champion -> v{version}"]

    monkeypatch.setattr(model_cli, "promote", fake_promote)
    found = Registry(uri, "test registry", platform=SimpleNamespace(state_dir=state))
    move = model_cli._tree_then_serving(found, client, "fraud", Serving(tmp_path / "slots", "http://127.0.0.1:9"),
                                        "alice")
    lines = move("1")
    assert lines[0].startswith("fraud v1 -> champion (dev): committed to main") and lines[1] == "champion -> v1"
    assert moved and "Published by alice" in git(repo, "log", "-1", "--format=%B", "main")


def test_a_prod_promotion_moves_slot_and_alias_only_after_the_review_is_merged(registry, tmp_path: Path):
    """prod (`pullRequest`, `gatesAndApproval`) against a real repository, directory bucket and registry: before the
    merge only the version's immutable prefix and the review branch exist; the merge is the switch; `follow` then
    publishes the champion slot and moves the alias."""
    from mlflow.exceptions import MlflowException

    from contracts.governance import GATES_AND_APPROVAL, AuditLog
    from ml.delivery import promotion
    from ml.training.approval import approve
    from stacks.config import stack_file

    client, uri = registry
    approve(client, "fraud", "1", "alice", "card reviewed", promote=False, env="prod",
            audit=AuditLog(tmp_path / "audit.jsonl"))
    repo = gitops.local_repository(tmp_path / "state")
    deploy = deploy_parameter(load_stack_file(stack_file("prod")), LOCAL_BUCKET, location=str(repo))
    slots = tmp_path / "slots" / LOCAL_BUCKET / "fraud"
    steps_ = promotion.cluster_steps(deploy, uri, GATES_AND_APPROVAL, promotion.s3_for(tmp_path / "slots", deploy),
                                     "pipeline/schedule")
    lines = promotion.promote(steps_, "fraud", "1")
    assert "proposed on branch promote/prod/fraud-v1" in lines[1], lines
    assert (slots / "versions" / "1" / "PUBLISHED.json").is_file()  # staged: no Model reads it yet
    assert not (slots / "champion").exists()
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias("fraud", "champion")
    assert git(repo, "for-each-ref", "--format=%(refname:short)") == "promote/prod/fraud-v1"  # main: untouched
    model = git(repo, "show", "promote/prod/fraud-v1:deploy/prod/fraud/model-champion.yaml")
    assert f'storageUri: "s3://{LOCAL_BUCKET}/fraud/versions/1/"' in model
    assert promotion.follow(steps_) == []  # the deploy branch names nothing yet: nothing follows
    git(repo, "branch", "-f", "main", "promote/prod/fraud-v1")  # the reviewer merges
    assert promotion.follow(steps_) == [f"fraud: slot s3://{LOCAL_BUCKET}/fraud/champion/ -> v1; champion v- -> v1"]
    assert str(client.get_model_version_by_alias("fraud", "champion").version) == "1"
    assert '"version": "1"' in (slots / "champion" / "PUBLISHED.json").read_text()
    assert promotion.follow(steps_) == ["fraud: champion already v1 (the deploy branch)"]


def test_the_publish_step_on_a_gitops_cluster_proposes_without_moving(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path):
    """The step's cluster path goes through ml/delivery/promotion.py (fakes for git, S3 and MLflow)."""
    from ml.delivery import promotion
    from ml.delivery.gitops import Outcome
    from stacks.config import stack_file

    log: list[str] = []

    def fake_steps(deploy: str, uri: str, policy: str, s3: object, actor: str) -> promotion.Steps:
        log.append(f"steps {tree_publish.parse_parameter(deploy).target.promotion} {actor}")
        return promotion.Steps(
            "main", lambda m, v: log.append(f"stage {m} {v}") or "s3://b/fraud/versions/2/",
            lambda m, v, s: log.append(f"tree {m} {v}") or Outcome(True, f"promote/prod/{m}-v{v}", "c", (), "proposed"),
            lambda: {}, lambda m: "1", lambda m: "1", lambda m, v: log.append("slot") or "",
            lambda m, v: log.append("alias"))

    monkeypatch.setattr(promotion, "cluster_steps", fake_steps)
    monkeypatch.setattr(promotion, "s3_for", lambda slot_dir, deploy: object())
    monkeypatch.setenv("MLPLAT_PIPELINE_JOURNAL", str(tmp_path / "journal.jsonl"))
    deploy = deploy_parameter(load_stack_file(stack_file("prod")), "b")
    line = steps.publish("fraud", "2", "gates", "http://127.0.0.1:9", "b", "", "", "", "schedule", deploy)
    assert log == ["steps pullRequest pipeline/schedule", "stage fraud 2", "tree fraud 2"], log
    assert "until that branch is merged" in line


def test_a_local_approval_against_a_reviewed_tree_serves_nothing_before_the_merge(registry, tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch):
    """Where the local platform's stack wanted review, the approval's promotion is a proposal: serving, the slot and
    the alias stay until it is merged (then `mlplat local apply`)."""
    from types import SimpleNamespace

    from contracts import local_platform
    from contracts.local_platform import Registry
    from ml.cli import model as model_cli
    from ml.training.follow import Serving
    from stacks.config import stack_file

    client, uri = registry
    state = tmp_path / "state"
    repo = gitops.local_repository(state)
    moved: list[str] = []
    monkeypatch.setattr(model_cli, "promote", lambda *args, **kwargs: moved.append("serving") or [])
    monkeypatch.setattr(local_platform, "DEPLOY_STACK", stack_file("prod"))
    found = Registry(uri, "test registry", platform=SimpleNamespace(state_dir=state))
    move = model_cli._tree_then_serving(found, client, "fraud", Serving(tmp_path / "slots", "http://127.0.0.1:9"),
                                        "alice")
    lines = move("1")
    assert lines == [lines[0]] and "proposed on branch promote/prod/fraud-v1" in lines[0], lines
    assert moved == [] and git(repo, "for-each-ref", "--format=%(refname:short)") == "promote/prod/fraud-v1"
