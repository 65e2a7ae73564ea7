"""Reference models on the cluster (infra/workloads/models_cluster.py): Seldon Models and Experiments from
config, artifact storage in the models bucket through IRSA, and the Feast apply Job."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from contracts import deploy_tree, model_registry
from infra.offline.synth import Synthesis, read_stack_config, synthesize
from infra.workloads.models_cluster import (
    RCLONE_SECRET,
    artifact_model_settings,
    artifact_uri,
    definitions_py,
    rclone_config,
)
from stacks.bom import load_bom
from stacks.config import load_stack_file, stack_file
from stacks.delivery import model_releases

REPO = Path(__file__).resolve().parents[2]
MODEL = "kubernetes:mlops.seldon.io/v1alpha1:Model"
EXPERIMENT = "kubernetes:mlops.seldon.io/v1alpha1:Experiment"
APPSET = "kubernetes:argoproj.io/v1alpha1:ApplicationSet"
JOB = "kubernetes:batch/v1:Job"
MODELS = ("fraud", "sentiment", "recommendation")


def _bucket(s: Synthesis, purpose: str) -> str:
    return s.one("aws:s3/bucket:Bucket", f"data-storage-{purpose}").inputs["bucket"]


def _by_name(s: Synthesis, type_: str) -> dict[str, dict]:
    return {r.inputs["metadata"]["name"]: r.inputs for r in s.of_type(type_)}


def test_argo_cd_owns_the_model_deployments(synth, env):
    """With GitOps on (every shipped stack) the program declares no Model or Experiment: the ApplicationSet
    makes one Application per enabled model, and the tree holds what the program used to declare
    (tests/infra/test_deploy_tree.py)."""
    s = synth(env)
    assert s.of_type(MODEL) == [] and s.of_type(EXPERIMENT) == []
    appset = s.one(APPSET, "gitops-applicationset").inputs
    elements = appset["spec"]["generators"][0]["list"]["elements"]
    assert [(e["model"], e["environment"]) for e in elements] == [(m, env) for m in MODELS]


def test_prod_server_bound_is_the_stack_file(synth):
    server = next(r.inputs["values"]["mlserver"] for r in synth("prod").of_type("kubernetes:helm.sh/v3:Release")
                  if r.inputs.get("chart") == "seldon-core-v2-servers")
    assert server["maxReplicas"] == 10  # prod's fraud maxReplicas bounds the Server's autoscaling


def test_without_gitops_the_program_declares_the_tree_objects(partial):
    """GitOps off: the same objects from the same renderer, labelled managed-by pulumi, after the CRDs,
    the Servers and the storage access."""
    s = partial["no-gitops"]
    cfg = load_stack_file(stack_file("dev"))
    tree = deploy_tree.objects("dev", _bucket(s, "models"), model_releases(cfg), managed_by="pulumi")
    declared = {r.inputs["metadata"]["name"]: r.inputs for r in [*s.of_type(MODEL), *s.of_type(EXPERIMENT)]}
    assert {o["metadata"]["name"]: o for o in tree.values()} == {
        n: {k: v for k, v in o.items() if k != "__defaults"} for n, o in declared.items()}
    assert s.of_type(APPSET) == []
    model = s.one(MODEL, "model-fraud-champion")
    deps = " ".join(model.dependencies)
    assert "seldon-core-v2-crds" in deps and "seldon-core-v2-servers" in deps
    assert "rclone-s3" in deps and "seldon-agent-binding" in deps
    exp = s.one(EXPERIMENT, "experiment-fraud-experiment")
    assert any(d.endswith("::model-fraud-champion") for d in exp.dependencies)
    assert any(d.endswith("::model-fraud-challenger") for d in exp.dependencies)


def test_rclone_secret_uses_irsa_and_the_agent_may_read_only_it(synth):
    s = synth("prod")
    secret = s.one("kubernetes:core/v1:Secret", "rclone-s3").inputs
    assert secret["metadata"] == {**secret["metadata"], "name": RCLONE_SECRET, "namespace": "seldon"}
    conf = json.loads(rclone_config("eu-west-1"))
    assert conf["name"] == "s3" and conf["type"] == "s3"
    # Seldon parses parameters as map[string]string; env_auth makes rclone use the IRSA web identity.
    assert conf["parameters"]["env_auth"] == "true" and all(isinstance(v, str) for v in conf["parameters"].values())
    assert not {"access_key_id", "secret_access_key"} & set(conf["parameters"])
    role = s.one("kubernetes:rbac.authorization.k8s.io/v1:Role", "seldon-agent-role").inputs
    secret_rules = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert len(secret_rules) == 1 and RCLONE_SECRET in secret_rules[0]["resourceNames"]
    assert secret_rules[0]["verbs"] == ["get"]
    binding = s.one("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "seldon-agent-binding").inputs
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "model-server", "namespace": "seldon"}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_feast_apply_job_is_restricted_and_sized(synth, env):
    s = synth(env)
    job = s.one(JOB, "feast-apply").inputs
    assert job["metadata"]["namespace"] == "feast"
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "feast" and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] >= 1000
    (c,) = pod["containers"]
    assert c["command"] == ["feast", "-c", "/feast", "apply"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"] == {"drop": ["ALL"]}
    assert set(c["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"cpu", "memory"} <= set(c["resources"]["limits"])
    # The model-server image (workloads package + the BOM's Feast) at the BOM's tag.
    assert c["image"].endswith(f"/model-server:{load_bom().images['model-server'].tag}")
    sources = pod["volumes"][0]["projected"]["sources"]
    assert [src["configMap"]["name"] for src in sources] == ["feast-repo", "feast-definitions"]
    assert job["spec"]["activeDeadlineSeconds"] > 0 and job["spec"]["backoffLimit"] >= 1
    definitions = s.one("kubernetes:core/v1:ConfigMap", "feast-definitions").inputs["data"]["definitions.py"]
    assert "['fraud', 'recommendation']" in definitions  # sentiment has no Feast features
    assert f"s3://{_bucket(s, 'feast')}/offline" in definitions


@pytest.fixture(scope="module")
def partial() -> dict[str, Synthesis]:
    base = read_stack_config(REPO / "stacks" / "Pulumi.dev.yaml")
    models = dict(base["mlplatform:models"])
    models["fraud"] = {**models["fraud"], "enabled": False}
    workloads = dict(base.get("mlplatform:workloads") or {})
    off = {**workloads, "seldon": {"enabled": False}, "feast": {"enabled": False}}
    no_gitops = {**workloads, "gitops": {"enabled": False}}
    return {"no-fraud": synthesize("dev", {**base, "mlplatform:models": models}),
            "no-seldon-feast": synthesize("dev", {**base, "mlplatform:workloads": off}),
            "no-gitops": synthesize("dev", {**base, "mlplatform:workloads": no_gitops})}


def test_disabled_model_is_absent(partial):
    s = partial["no-fraud"]
    elements = s.one(APPSET, "gitops-applicationset").inputs["spec"]["generators"][0]["list"]["elements"]
    assert [e["model"] for e in elements] == ["sentiment", "recommendation"]
    definitions = s.one("kubernetes:core/v1:ConfigMap", "feast-definitions").inputs["data"]["definitions.py"]
    assert "['recommendation']" in definitions


def test_without_seldon_and_feast_nothing_is_declared(partial):
    s = partial["no-seldon-feast"]
    feast_jobs = [j for j in s.of_type(JOB) if "ReferenceModels" in j.urn]  # the pipelines' bootstrap Job stays
    assert s.of_type(MODEL) == [] and s.of_type(EXPERIMENT) == [] and feast_jobs == []
    assert s.of_type(APPSET) == []  # no Seldon, nothing for Argo CD to deliver: it is not installed
    assert s.one("mlplatform:workloads:ReferenceModels").name == "models"


def test_artifact_uri_rejects_bad_input():
    assert artifact_uri("b", "fraud", "challenger") == "s3://b/fraud/challenger/"
    with pytest.raises(ValueError, match="slot 'canary'"):
        artifact_uri("b", "fraud", "canary")
    with pytest.raises(ValueError, match="bare bucket name"):
        artifact_uri("s3://b", "fraud", "champion")


@pytest.mark.integration
@pytest.mark.skipif(not (REPO / ".venv-ml" / "bin" / "feast").exists(), reason="needs the ML environment (.venv-ml)")
def test_generated_definitions_apply_with_the_real_feast_cli(tmp_path):
    """The Job's repository file, against a local registry: every view registered, sources moved."""
    repo = tmp_path / "repo"
    repo.mkdir()
    offline = tmp_path / "offline"
    with_features = {s.name: s.features.module for s in model_registry.specs() if s.features is not None}
    assert list(with_features) == ["fraud", "recommendation"]
    (repo / "definitions.py").write_text(definitions_py(with_features, f"{offline}/"))
    (repo / "feature_store.yaml").write_text(
        "project: mlplat\nprovider: local\n"
        f"registry: {{registry_type: file, path: {tmp_path / 'registry.db'}}}\n"
        f"online_store: {{type: sqlite, path: {tmp_path / 'online.db'}}}\n"
        "offline_store: {type: file}\nentity_key_serialization_version: 3\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "FEAST_USAGE": "False", "PYTHONDONTWRITEBYTECODE": "1"}
    feast = REPO / ".venv-ml" / "bin" / "feast"
    done = subprocess.run([str(feast), "-c", str(repo), "apply"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    probe = ("import json,sys; from feast import FeatureStore; s=FeatureStore(repo_path=sys.argv[1]); "
             "print(json.dumps({'views': sorted(v.name for v in s.list_feature_views()), "
             "'paths': sorted(d.path for d in s.list_data_sources() if getattr(d, 'path', None))}))")
    python = REPO / ".venv-ml" / "bin" / "python"
    out = subprocess.run([str(python), "-c", probe, str(repo)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["views"] == ["book_features", "card_features", "device_features", "reader_recent_books"]
    assert got["paths"] and all(p.startswith(f"{offline}/fraud/") or p.startswith(f"{offline}/recommendation/")
                                for p in got["paths"])


def test_definitions_name_a_plugin_models_features_module():
    """Built-in layout: names only (the deployed form); a plugin's module elsewhere: an explicit map."""
    built_in = definitions_py({"fraud": "ml.models.fraud.features"}, "s3://b/offline")
    assert "MODELS = ['fraud']" in built_in and 'import_module(f"ml.models.{_model}.features")' in built_in
    plugin = definitions_py({"fraud": "ml.models.fraud.features", "toy": "toy_pkg.features"}, "s3://b/offline/")
    assert "MODELS = {'fraud': 'ml.models.fraud.features', 'toy': 'toy_pkg.features'}" in plugin
    assert "import_module(MODELS[_model])" in plugin and "OFFLINE_ROOT = 's3://b/offline'" in plugin
    compile(plugin, "definitions.py", "exec")


def test_published_model_settings_name_our_runtime():
    assert artifact_model_settings("fraud") == {"implementation": "ml.models.fraud.runtime.FraudRuntime",
                                                "max_batch_size": 1, "max_batch_time": 0}  # batching off
    with pytest.raises(ValueError, match="unknown reference model 'bare-onnx'"):
        artifact_model_settings("bare-onnx")


@pytest.mark.integration
@pytest.mark.skipif(not (REPO / ".venv-ml" / "bin" / "python").exists(), reason="needs the ML environment (.venv-ml)")
def test_mlserver_loads_published_settings_from_the_copied_folder(tmp_path):
    """MLServer 1.7.1 reads the published model-settings.json with the artifact folder as its URI."""
    folder = tmp_path / "fraud-champion_1"
    folder.mkdir()
    (folder / "model-settings.json").write_text(json.dumps(artifact_model_settings("recommendation")))
    probe = ("import sys; from mlserver.repository.load import load_model_settings; "
             "m = load_model_settings(sys.argv[1]); print(m.implementation_, m.parameters.uri)")
    out = subprocess.run([str(REPO / ".venv-ml" / "bin" / "python"), "-c", probe, str(folder / "model-settings.json")],
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    implementation, uri = out.stdout.split()
    assert implementation == "ml.models.recommendation.runtime.RecommendationRuntime"
    assert Path(uri) == folder
