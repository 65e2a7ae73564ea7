"""The order of a promotion on a GitOps stack (ml/delivery/promotion.py), for each promotion mode: on `pullRequest`
nothing that changes what serves or what the registry calls champion moves before the review is merged; a
simulated merge, then `follow`, moves them. The effects are fakes sharing one event log; no subprocess here."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from contracts import deploy_tree
from contracts.deploy_tree import ModelRelease
from contracts.model_slots import version_prefix, version_uri
from ml.delivery import cluster_rollout, promotion
from ml.delivery.gitops import COMMIT, PULL_REQUEST, Outcome
from ml.delivery.promotion import PromotionError, Steps, follow, promote
from ml.delivery.rollout import RolloutError

BUCKET = "models-bucket"


@dataclass
class FakeRepo:
    """A deploy repository with its deploy branch and review branches; `merge` is the reviewer's click."""

    mode: str
    main: dict[str, dict[str, str]] = field(default_factory=dict)
    proposals: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)

    def write(self, model: str, version: str, slot: str) -> Outcome:
        tree = {m: dict(s) for m, s in self.main.items()}
        tree.setdefault(model, {})[slot] = version
        if self.mode == COMMIT:
            self.main = tree
            return Outcome(True, "main", "c1", (), f"{model} v{version} -> {slot}: committed to main")
        branch = f"promote/prod/{model}-v{version}"
        self.proposals[branch] = tree
        return Outcome(True, branch, "c2", (), f"{model} v{version} -> {slot}: proposed on branch {branch}")

    def merge(self, branch: str) -> None:
        self.main = self.proposals.pop(branch)


@dataclass
class World:
    """The registry alias, the mutable champion slot and the immutable prefixes, with every effect logged."""

    repo: FakeRepo
    alias: dict[str, str] = field(default_factory=dict)
    slot: dict[str, str] = field(default_factory=dict)
    staged: set[tuple[str, str]] = field(default_factory=set)
    log: list[str] = field(default_factory=list)
    refuse_stage: bool = False

    def steps(self) -> Steps:
        def stage(model: str, version: str) -> str:
            if self.refuse_stage:
                raise PromotionError(f"{model} v{version} was not staged, nothing moved: lacks an approval")
            self.log.append(f"stage {model} {version}")
            self.staged.add((model, version))
            return version_uri(BUCKET, model, version)

        def write_tree(model: str, version: str, slot: str) -> Outcome:
            self.log.append(f"tree {model} {slot} {version}")
            return self.repo.write(model, version, slot)

        def publish_slot(model: str, version: str) -> str:
            assert (model, version) in self.staged, "a slot follows a staged version only"
            self.log.append(f"slot {model} {version}")
            self.slot[model] = version
            return f"s3://{BUCKET}/{model}/champion/"

        def set_alias(model: str, version: str) -> None:
            self.log.append(f"alias {model} {version}")
            self.alias[model] = version

        return Steps("main", stage, write_tree, lambda: self.repo.main, self.alias.get, self.slot.get,
                     publish_slot, set_alias)

    def served(self, model: str) -> str | None:
        """What the cluster serves: the storageUri Argo CD applies from the deploy branch."""
        versions = self.repo.main.get(model)
        if not versions:
            return None
        obj = deploy_tree.objects("prod", BUCKET, [ModelRelease(model, 1, versions=versions)])
        uri = obj[f"prod/{model}/model-champion.yaml"]["spec"]["storageUri"]
        return uri.rstrip("/").rsplit("/", 1)[-1]


def _world(mode: str) -> World:
    w = World(FakeRepo(mode, main={"fraud": {"champion": "1"}}), alias={"fraud": "1"}, slot={"fraud": "1"},
              staged={("fraud", "1")})
    return w


def test_commit_mode_stages_then_commits_then_the_slot_and_alias_follow():
    w = _world(COMMIT)
    lines = promote(w.steps(), "fraud", "2")
    assert w.log == ["stage fraud 2", "tree fraud champion 2", "slot fraud 2", "alias fraud 2"]
    assert (w.served("fraud"), w.alias["fraud"], w.slot["fraud"]) == ("2", "2", "2")
    assert lines[0] == f"staged {version_uri(BUCKET, 'fraud', '2')}" and "committed to main" in lines[1]
    assert lines[2] == "fraud: slot s3://models-bucket/fraud/champion/ -> v2; champion v1 -> v2"


def test_pull_request_mode_moves_nothing_that_serves_or_is_called_champion_before_the_merge():
    w = _world(PULL_REQUEST)
    lines = promote(w.steps(), "fraud", "2")
    # Only the staging (no Model reads the new prefix) and the review branch happened.
    assert w.log == ["stage fraud 2", "tree fraud champion 2"]
    assert (w.served("fraud"), w.alias["fraud"], w.slot["fraud"]) == ("1", "1", "1")
    assert "proposed on branch promote/prod/fraud-v2" in lines[1]
    assert "stay as they are until that branch is merged" in lines[2]
    # A follow-up run before the merge (CI on another event, an operator) still moves nothing.
    assert follow(w.steps()) == ["fraud: champion already v1 (the deploy branch)"]
    assert w.log == ["stage fraud 2", "tree fraud champion 2"]
    # The reviewer merges: the merge alone switches what serves; follow then moves the slot and the alias.
    w.repo.merge("promote/prod/fraud-v2")
    assert w.served("fraud") == "2" and w.alias["fraud"] == "1"
    assert follow(w.steps()) == ["fraud: slot s3://models-bucket/fraud/champion/ -> v2; champion v1 -> v2"]
    assert w.log[2:] == ["slot fraud 2", "alias fraud 2"]
    assert (w.alias["fraud"], w.slot["fraud"]) == ("2", "2")
    # Idempotent: nothing left to move.
    assert follow(w.steps()) == ["fraud: champion already v2 (the deploy branch)"] and len(w.log) == 4


def test_follow_repairs_a_lagging_slot_and_follows_a_rollback_commit_down():
    w = _world(COMMIT)
    w.alias["fraud"] = "2"  # a previous follow stopped after the alias: the slot still lags
    w.repo.main = {"fraud": {"champion": "2"}, "sentiment": {"champion": "4"}}
    w.staged |= {("fraud", "2"), ("sentiment", "4")}
    assert follow(w.steps(), ["fraud"]) == ["fraud: slot s3://models-bucket/fraud/champion/ -> v2"]
    assert "sentiment" not in w.alias  # not asked for
    w.repo.main = {"fraud": {"champion": "1"}}  # a rollback committed straight to the branch
    assert follow(w.steps()) == ["fraud: slot s3://models-bucket/fraud/champion/ -> v1; champion v2 -> v1"]


def test_a_challenger_release_never_touches_the_champion_alias_or_slot():
    w = _world(COMMIT)
    promote(w.steps(), "fraud", "3", slot="challenger")
    assert w.log == ["stage fraud 3", "tree fraud challenger 3"]
    assert w.repo.main == {"fraud": {"champion": "1", "challenger": "3"}}


def test_a_refused_stage_writes_no_tree():
    w = _world(PULL_REQUEST)
    w.refuse_stage = True
    with pytest.raises(PromotionError, match="was not staged, nothing moved"):
        promote(w.steps(), "fraud", "2")
    assert w.log == [] and not w.repo.proposals


@pytest.mark.parametrize("mode", [COMMIT, PULL_REQUEST])
def test_the_cluster_rollouts_promotion_keeps_the_order(mode: str, monkeypatch: pytest.MonkeyPatch):
    """The rollout Job's promote callable is the same sequence (ml/delivery/cluster_rollout.py)."""
    w = _world(mode)
    monkeypatch.setattr(promotion, "cluster_steps", lambda *args, **kwargs: w.steps())
    lines = cluster_rollout.cluster_promotion("{}", "http://mlflow", "gatesAndApproval", s3_client=None)("fraud", "2")
    assert w.alias["fraud"] == ("2" if mode == COMMIT else "1")
    assert any("promote/prod/fraud-v2" in line for line in lines) == (mode == PULL_REQUEST)
    w.refuse_stage = True
    with pytest.raises(RolloutError, match="promotion of fraud v3: fraud v3 was not staged"):
        cluster_rollout.cluster_promotion("{}", "u", "gates", s3_client=None)("fraud", "3")


def test_version_prefixes_are_per_version_and_checked():
    assert version_prefix("fraud", "12") == "fraud/versions/12/"
    assert version_uri("b", "fraud", "3") == "s3://b/fraud/versions/3/"
    for bad in ("0", "v1", "01", ""):
        with pytest.raises(ValueError, match="registry version number"):
            version_prefix("fraud", bad)
    with pytest.raises(ValueError, match="bare bucket name"):
        version_uri("s3://b", "fraud", "1")


def test_the_follow_command_names_missing_settings(capsys: pytest.CaptureFixture[str]):
    assert promotion.main(["follow"], env={}) == 1
    assert "--deploy ($MLPLAT_DEPLOY) and --tracking-uri ($MLFLOW_TRACKING_URI) are required" in capsys.readouterr().err
