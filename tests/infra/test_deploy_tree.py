"""The deploy tree renderer (contracts/deploy_tree.py): the objects Argo CD applies are the ones the Pulumi
program declared before it took the model deployments over, field for field, for every stack; rendering
is deterministic, and bad input is named."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from contracts import deploy_tree
from contracts.deploy_tree import DeployTreeError, ModelRelease
from stacks.config import load_stack_file, stack_file
from stacks.delivery import model_releases

# The Seldon Models and Experiments of the golden plans of dev, staging and prod as the program declared
# them before Argo CD owned them (taken from tests/golden/<env>.json at that commit), with the bucket name
# the mocks give the models bucket.
BEFORE = json.loads((Path(__file__).parent / "fixtures" / "pulumi_models_before_gitops.json").read_text())
ENVS = ("dev", "staging", "prod")


def _numbers_as_ints(obj):
    """Plans record integers as floats (wire format)."""
    if isinstance(obj, dict):
        return {k: _numbers_as_ints(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_numbers_as_ints(v) for v in obj]
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    return obj


def _sorted(objects):
    return sorted(objects, key=lambda o: (o["kind"], o["metadata"]["name"]))


@pytest.mark.parametrize("env", ENVS)
def test_tree_is_what_the_program_declared_before(env):
    cfg = load_stack_file(stack_file(env))
    before = [_numbers_as_ints(o) for o in BEFORE[env]["objects"]]
    assert before, "the fixture holds the objects of the plan"
    bucket = BEFORE[env]["bucket"]
    as_pulumi = deploy_tree.objects(env, bucket, model_releases(cfg), managed_by="pulumi")
    # The explainer came after the fixture; it is the champion's Model on the slot's explainer/ folder.
    explainer = as_pulumi.pop(f"{env}/fraud/model-explainer.yaml")
    champion = as_pulumi[f"{env}/fraud/model-champion.yaml"]
    assert explainer["metadata"]["name"] == "fraud-explainer"
    assert explainer["metadata"]["labels"]["mlplatform.io/model"] == "fraud"
    assert explainer["spec"] == {**champion["spec"], "storageUri": f"s3://{bucket}/fraud/champion/explainer/"}
    assert _sorted(as_pulumi.values()) == _sorted(before)
    # Argo CD's copy differs in the managed-by label only.
    as_argocd = deploy_tree.objects(env, bucket, model_releases(cfg))
    as_argocd.pop(f"{env}/fraud/model-explainer.yaml")
    relabelled = copy.deepcopy(before)
    for obj in relabelled:
        obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "argocd"
    assert _sorted(as_argocd.values()) == _sorted(relabelled)


def test_layout_one_folder_per_model_and_environment():
    cfg = load_stack_file(stack_file("prod"))
    files = deploy_tree.render("prod", "bucket-a", model_releases(cfg))
    assert sorted(files) == sorted([f"prod/{m}/{f}" for m in ("fraud", "sentiment", "recommendation")
                                    for f in ("model-champion.yaml", "model-challenger.yaml", "experiment.yaml")]
                                   + ["prod/fraud/model-explainer.yaml"])
    assert deploy_tree.model_dir("prod", "fraud") == "prod/fraud"


def test_files_parse_back_to_the_objects():
    releases = [ModelRelease("fraud", 2, 95, 5, {"champion": "7", "challenger": "8"}),
                ModelRelease("sentiment", 1)]
    files = deploy_tree.render("staging", "models-bucket", releases)
    objects = deploy_tree.objects("staging", "models-bucket", releases)
    assert {path: yaml.safe_load(text) for path, text in files.items()} == objects
    champion = objects["staging/fraud/model-champion.yaml"]
    assert champion["spec"]["parameters"] == [{"name": "registry-version", "value": "7"}]
    # A released slot reads its version's immutable prefix (only a change of the tree changes what loads); a slot
    # with no release yet reads the slot prefix.
    assert champion["spec"]["storageUri"] == "s3://models-bucket/fraud/versions/7/"
    assert objects["staging/fraud/model-challenger.yaml"]["spec"]["storageUri"] == "s3://models-bucket/fraud/versions/8/"
    assert "parameters" not in objects["staging/sentiment/model-champion.yaml"]["spec"]
    assert objects["staging/sentiment/model-champion.yaml"]["spec"]["storageUri"] == \
        "s3://models-bucket/sentiment/champion/"
    experiment = objects["staging/fraud/experiment.yaml"]
    assert experiment["spec"]["candidates"] == [{"name": "fraud-champion", "weight": 95},
                                                {"name": "fraud-challenger", "weight": 5}]


def test_rendering_is_deterministic_and_independent_of_input_order():
    a = [ModelRelease("fraud", 2, 90, 10, {"champion": "3"}), ModelRelease("recommendation", 1)]
    first = deploy_tree.render("dev", "b", a)
    assert deploy_tree.render("dev", "b", a) == first
    assert deploy_tree.render("dev", "b", list(reversed(a))) == first
    assert list(first) == sorted(first)
    # A string that YAML would read as a number or a boolean stays a string.
    text = deploy_tree.to_yaml({"a": "1", "b": "true", "c": "no", "d": [], "e": {}})
    assert yaml.safe_load(text) == {"a": "1", "b": "true", "c": "no", "d": [], "e": {}}


@pytest.mark.parametrize(("release", "bucket", "message"), [
    (ModelRelease("Fraud", 1), "b", "model 'Fraud' is not a lower-case DNS label"),
    (ModelRelease("fraud", -1), "b", "fraud: replicas must be an integer 0..100"),
    (ModelRelease("fraud", 1, 101, 0), "b", "fraud: champion_weight must be an integer 0..100"),
    (ModelRelease("fraud", 1, versions={"canary": "1"}), "b", "unknown slot 'canary'"),
    (ModelRelease("fraud", 1, versions={"champion": "v1"}), "b", "champion version must be a registry version"),
    (ModelRelease("fraud", 1), "s3://b", "models bucket must be a bare bucket name"),
])
def test_bad_input_is_named(release, bucket, message):
    with pytest.raises(DeployTreeError, match=message.replace("(", r"\(").replace(".", r"\.")):
        deploy_tree.objects("dev", bucket, [release])


def test_a_model_twice_and_a_bad_environment_are_refused():
    with pytest.raises(DeployTreeError, match="listed twice"):
        deploy_tree.objects("dev", "b", [ModelRelease("fraud", 1), ModelRelease("fraud", 2)])
    with pytest.raises(DeployTreeError, match="environment 'Prod/x'"):
        deploy_tree.objects("Prod/x", "b", [ModelRelease("fraud", 1)])


def test_the_explainer_follows_the_champions_release():
    release = ModelRelease("fraud", 2, versions={"champion": "7", "challenger": "8"}, explainer="fraud-explainer")
    obj = deploy_tree.objects("dev", "bucket-a", [release])["dev/fraud/model-explainer.yaml"]
    # A new champion version changes the explainer's Model too, so Seldon reloads both.
    assert obj["spec"]["parameters"] == [{"name": deploy_tree.VERSION_PARAMETER, "value": "7"}]
    assert obj["spec"]["storageUri"] == "s3://bucket-a/fraud/versions/7/explainer/"
    with pytest.raises(DeployTreeError, match="explainer 'Fraud_Explainer' is not a lower-case DNS label"):
        deploy_tree.objects("dev", "bucket-a", [ModelRelease("fraud", 1, explainer="Fraud_Explainer")])
