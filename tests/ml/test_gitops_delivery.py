"""Promotion as a git change (ml/delivery/gitops.py) against real git repositories in a temporary directory:
commits on the branch (dev, staging), a pull-request branch (prod), idempotence, and named errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from contracts import deploy_tree
from ml.delivery import gitops
from ml.delivery.gitops import DeployTarget, GitOpsError, Release
from stacks.config import load_stack_file, stack_file
from stacks.delivery import model_releases

pytestmark = pytest.mark.integration  # runs the git command line

BUCKET = "mlplatform-dev-models-123456789012-eu-west-1"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def commits(repo: Path, ref: str = "main") -> list[str]:
    return git(repo, "log", "--format=%H", ref).splitlines()


def show(repo: Path, ref: str, path: str) -> dict:
    return yaml.safe_load(git(repo, "show", f"{ref}:{path}"))


@pytest.fixture
def dev(tmp_path: Path):
    cfg = load_stack_file(stack_file("dev"))
    repo = gitops.local_repository(tmp_path / "state")
    return cfg, repo, gitops.target_for(cfg, location=str(repo), bucket=BUCKET)


def test_first_release_commits_the_whole_tree_with_card_and_gates(dev):
    cfg, repo, target = dev
    out = gitops.publish_release(cfg, target, Release("fraud", "3", card="# Model card: fraud v3\n\nauc 0.99",
                                                      gates="pass: auc=0.99 >= 0.95"))
    assert out.changed and out.branch == "main" and commits(repo) == [out.commit]
    files = git(repo, "ls-tree", "-r", "--name-only", "main").splitlines()
    expected = deploy_tree.render("dev", BUCKET, model_releases(cfg, {"fraud": {"champion": "3"}}))
    assert sorted(files) == sorted(f"deploy/{p}" for p in expected)
    for rel, text in expected.items():
        assert git(repo, "show", f"main:deploy/{rel}") == text.rstrip("\n")
    message = git(repo, "log", "-1", "--format=%B", "main")
    assert message.startswith("deploy(dev): fraud v3 -> champion")
    assert "pass: auc=0.99 >= 0.95" in message and "# Model card: fraud v3" in message


def test_same_version_twice_makes_no_commit_and_a_new_one_changes_one_file(dev):
    cfg, repo, target = dev
    first = gitops.publish_release(cfg, target, Release("fraud", "3"))
    again = gitops.publish_release(cfg, target, Release("fraud", "3"))
    assert not again.changed and commits(repo) == [first.commit] and again.commit == first.commit
    nxt = gitops.publish_release(cfg, target, Release("fraud", "4", slot="challenger"))
    assert nxt.changed and nxt.files == ("deploy/dev/fraud/model-challenger.yaml",)
    # The champion's version stays as released; the bucket comes from the tree now.
    champion = show(repo, "main", "deploy/dev/fraud/model-champion.yaml")
    assert champion["spec"]["parameters"] == [{"name": "registry-version", "value": "3"}]
    later = gitops.publish_release(cfg, gitops.target_for(cfg, location=str(repo)), Release("sentiment", "1"))
    assert later.changed and show(repo, "main", "deploy/dev/sentiment/model-champion.yaml")["spec"][
        "storageUri"] == f"s3://{BUCKET}/sentiment/versions/1/"


def test_prod_proposes_a_branch_and_leaves_the_branch_argo_cd_follows(tmp_path: Path):
    cfg = load_stack_file(stack_file("prod"))
    repo = gitops.local_repository(tmp_path / "state")
    target = gitops.target_for(cfg, location=str(repo), bucket="prod-models")
    base = gitops.publish_release(cfg, DeployTarget(str(repo), "main", "deploy", gitops.COMMIT, "prod", "prod-models"),
                                  Release("fraud", "1"))
    out = gitops.publish_release(cfg, target, Release("fraud", "2", gates="pass"))
    assert out.changed and out.branch == "promote/prod/fraud-v2"
    assert commits(repo) == [base.commit]  # main untouched until someone merges
    assert commits(repo, out.branch) == [out.commit, base.commit]
    assert show(repo, out.branch, "deploy/prod/fraud/model-champion.yaml")["spec"]["parameters"][0]["value"] == "2"
    again = gitops.publish_release(cfg, target, Release("fraud", "2", gates="pass"))
    assert not again.changed and commits(repo, out.branch) == [out.commit, base.commit]
    assert "review and merge" in out.message


def test_a_working_clone_is_changed_in_place_and_must_be_clean(dev, tmp_path: Path):
    cfg, bare, _ = dev
    gitops.publish_release(cfg, gitops.target_for(cfg, location=str(bare), bucket=BUCKET), Release("fraud", "1"))
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True)
    target = gitops.target_for(cfg, location=str(clone))
    out = gitops.publish_release(cfg, target, Release("fraud", "2"))
    assert out.changed and git(clone, "rev-parse", "HEAD") == out.commit
    (clone / "deploy" / "dev" / "fraud" / "note.txt").write_text("local edit")
    with pytest.raises(GitOpsError, match="uncommitted changes"):
        gitops.publish_release(cfg, target, Release("fraud", "3"))
    (clone / "deploy" / "dev" / "fraud" / "note.txt").unlink()
    git(clone, "switch", "-q", "-c", "other")
    with pytest.raises(GitOpsError, match="is on branch 'other', not 'main'"):
        gitops.publish_release(cfg, target, Release("fraud", "3"))


def test_missing_repository_bad_model_and_first_release_without_bucket_are_named(dev, tmp_path: Path):
    cfg, repo, target = dev
    with pytest.raises(GitOpsError, match=r"does not exist .*mlplat local up"):
        gitops.publish_release(cfg, gitops.target_for(cfg, location=str(tmp_path / "nowhere")), Release("fraud", "1"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(GitOpsError, match="is not a git repository"):
        gitops.publish_release(cfg, gitops.target_for(cfg, location=str(tmp_path / "plain")), Release("fraud", "1"))
    with pytest.raises(GitOpsError, match="names no models bucket yet"):
        gitops.publish_release(cfg, gitops.target_for(cfg, location=str(repo)), Release("fraud", "1"))
    with pytest.raises(GitOpsError, match="model 'nope' is not enabled"):
        gitops.publish_release(cfg, target, Release("nope", "1"))
    with pytest.raises(GitOpsError, match="registry version number"):
        gitops.publish_release(cfg, target, Release("fraud", "v1"))


def test_model_promote_command_commits_the_card_and_gates(monkeypatch, tmp_path: Path, capsys):
    """`mlplat model promote` wiring: the card and gates of the registry version go into the commit message."""
    import argparse
    import json
    from types import SimpleNamespace

    from ml.cli import model as model_cli

    state = tmp_path / "state"
    repo = gitops.local_repository(state)
    found = SimpleNamespace(tracking_uri="http://registry", platform=SimpleNamespace(state_dir=state))
    card = {"gates": {"passed": True, "summary": "auc=0.99 >= 0.95 (pass)"}}
    monkeypatch.setattr(model_cli, "registry", lambda command, explicit: found)
    monkeypatch.setattr(model_cli, "_client", lambda uri: object())
    monkeypatch.setattr(model_cli.card, "load", lambda client, name, version: card)
    monkeypatch.setattr(model_cli.card, "render_markdown", lambda doc: "# Model card: fraud v5")
    args = argparse.Namespace(name="fraud", version="5", stack_file=Path(stack_file("dev")), slot="champion",
                              repo=None, bucket=BUCKET, tracking_uri=None, no_stage=False)
    assert model_cli.run_promote(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["changed"] and out["branch"] == "main" and out["repository"] == str(repo)
    message = git(repo, "log", "-1", "--format=%B", "main")
    assert "passed: auc=0.99 >= 0.95 (pass)" in message and "# Model card: fraud v5" in message
    assert model_cli.run_promote(args) == 0 and not json.loads(capsys.readouterr().out)["changed"]


def test_model_promote_against_the_stacks_repository_stages_and_leaves_the_alias_to_the_merge(monkeypatch, capsys):
    """Off the local platform, `mlplat model promote` is the ordered promotion (ml/delivery/promotion.py): in prod the
    version is staged and proposed; the champion slot and alias are not touched."""
    import argparse
    import json
    from types import SimpleNamespace

    from ml.cli import model as model_cli
    from ml.delivery import promotion
    from ml.delivery.gitops import Outcome

    log: list[str] = []
    monkeypatch.setattr(model_cli, "registry", lambda command, explicit: SimpleNamespace(
        tracking_uri="http://registry", platform=None))
    monkeypatch.setattr(model_cli, "_client", lambda uri: object())
    monkeypatch.setattr(model_cli.card, "load", lambda client, name, version: {"gates": {"passed": True}})

    def steps(cfg, location, bucket, uri, actor):
        log.append(f"{cfg.environment} {location} {bucket} {actor}")
        return promotion.Steps(
            "main", lambda m, v: log.append(f"stage {m} {v}") or f"s3://b/{m}/versions/{v}/",
            lambda m, v, s: log.append(f"tree {m} {v} {s}") or Outcome(True, f"promote/prod/{m}-v{v}", "c", (), "p"),
            lambda: {}, lambda m: "4", lambda m: "4", lambda m, v: log.append("slot") or "",
            lambda m, v: log.append("alias"))

    monkeypatch.setattr(promotion, "operator_steps", steps)
    args = argparse.Namespace(name="fraud", version="5", stack_file=Path(stack_file("prod")), slot="champion",
                              repo=None, bucket=None, tracking_uri=None, no_stage=False)
    assert model_cli.run_promote(args) == 0
    assert log == ["prod None None mlplat model promote", "stage fraud 5", "tree fraud 5 champion"]
    doc = json.loads(capsys.readouterr().out)
    assert doc["steps"][0] == "staged s3://b/fraud/versions/5/" and "until that branch is merged" in doc["steps"][2]


def test_model_follow_moves_slot_and_alias_to_the_deploy_branch_and_names_a_failure(monkeypatch, capsys):
    """`mlplat model follow`: what the deploy branch names becomes the champion slot and alias; an error is named."""
    import argparse
    import json
    from types import SimpleNamespace

    from ml.cli import model as model_cli
    from ml.delivery import promotion

    moved: list[str] = []
    monkeypatch.setattr(model_cli, "registry", lambda command, explicit: SimpleNamespace(
        tracking_uri="http://registry", platform=None))
    monkeypatch.setattr(promotion, "operator_steps", lambda cfg, location, bucket, uri, actor: promotion.Steps(
        "main", lambda m, v: "", lambda m, v, s: None, lambda: {"fraud": {"champion": "5"}, "sentiment": {}},
        lambda m: "4", lambda m: "4", lambda m, v: moved.append(f"slot {m} {v}") or f"s3://b/{m}/champion/",
        lambda m, v: moved.append(f"alias {m} {v}")))
    args = argparse.Namespace(stack_file=Path(stack_file("prod")), repo=None, bucket=None, tracking_uri=None,
                              models=[])
    assert model_cli.run_follow(args) == 0
    assert moved == ["slot fraud 5", "alias fraud 5"]
    assert json.loads(capsys.readouterr().out) == {"followed": ["fraud: slot s3://b/fraud/champion/ -> v5; "
                                                                "champion v4 -> v5"]}

    def no_bucket(*args: object) -> promotion.Steps:
        raise promotion.PromotionError("the deploy tree of prod names no models bucket yet: pass --bucket")

    monkeypatch.setattr(promotion, "operator_steps", no_bucket)
    assert model_cli.run_follow(args) == 1
    assert "mlplat model follow: the deploy tree of prod names no models bucket yet" in capsys.readouterr().err
