"""The training pipelines without a platform: the compiled IR of every registered model (components, inputs,
order of the steps, the gate before publish, placement), the committed IR current, the step helpers, the
local slots with the real publish code, the retrain receiver's decisions and the cluster bootstrap against
a stand-in KFP API. Runs on the platform (kfp.local against real MLflow, Redis, Prometheus) are in
tests/local/test_pipelines_e2e.py."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from contracts import model_registry
from contracts.pipelines import (
    DEPLOY_CREDENTIALS_DIR,
    DEPLOY_SECRET_DEFAULT,
    PARAMETERS,
    STEPS,
    cron_to_kfp,
    pipeline_name,
    retrain_rule_groups,
)
from local.pipeline_runner import RunReport, StepRecord, _steps, format_report, plain, run_exit_status
from ml.model_plugin import load_plugin
from ml.pipelines import definition, steps
from ml.pipelines.kfp_api import bootstrap, ir_for_cluster, run_on_cluster, version_name
from ml.pipelines.retrain import Receiver
from stacks.bom import load_bom


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("ir")
    return {n: list(yaml.safe_load_all(definition.compile_ir(n, out / f"{n}.yaml").read_text()))
            for n in model_registry.names()}


def test_every_registered_model_has_a_pipeline(compiled):
    assert sorted(compiled) == sorted(model_registry.names())
    for name, (ir, _platform) in compiled.items():
        assert ir["pipelineInfo"]["name"] == pipeline_name(name)


def test_components_and_their_image(compiled):
    image = load_bom().images["model-server"].ref
    for ir, _platform in compiled.values():
        executors = ir["deploymentSpec"]["executors"]
        assert sorted(e.removeprefix("exec-") for e in executors) == sorted(STEPS)
        for executor in executors.values():
            container = executor["container"]
            assert container["image"] == image
            assert "pip install" not in " ".join(container["command"])  # kfp comes with the image
            assert any("ml.pipelines import steps" in part for part in container["command"])


def test_inputs_are_the_documented_parameters(compiled):
    for ir, _platform in compiled.values():
        assert set(ir["root"]["inputDefinitions"]["parameters"]) == set(PARAMETERS)


def test_step_order_and_the_gate_before_publish(compiled):
    for ir, _platform in compiled.values():
        assert definition.task_order(ir) == list(STEPS)
        root = ir["root"]["dag"]["tasks"]
        condition = next(t for t in root.values() if "triggerPolicy" in t)
        assert "gate" in condition["dependentTasks"]
        assert "pipelinechannel--gate-Output" in condition["triggerPolicy"]["condition"]
        inner = ir["components"][condition["componentRef"]["name"]]["dag"]["tasks"]
        assert list(inner) == ["publish"]  # nothing is published outside the gate's branch
        assert "publish" not in root


def test_every_step_is_uncached_placed_and_non_root(compiled):
    for ir, platform in compiled.values():
        for task in [*ir["root"]["dag"]["tasks"].values()]:
            if "cachingOptions" in task:
                assert task["cachingOptions"].get("enableCache", False) is False
        executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        for executor in executors.values():
            assert executor["nodeSelector"]["labels"] == {"mlplatform.io/node-role": "general"}
            assert executor["securityContext"]["runAsNonRoot"] is True
        for name in ("exec-register", "exec-publish"):
            assert executors[name]["secretAsEnv"][0]["secretName"] == definition.MLFLOW_SECRET


def test_only_the_publish_step_mounts_the_deploy_credentials(compiled):
    """Least privilege: the deploy repository's Secret (named by the run's `deploy_secret`, the stack's
    workloads.gitops.credentialsSecret) is a read-only volume of the publish step's pod and of no other step."""
    for ir, platform in compiled.values():
        executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        assert [n for n, e in executors.items() if "secretAsVolume" in e] == ["exec-publish"]
        (volume,) = executors["exec-publish"]["secretAsVolume"]
        assert volume["mountPath"] == DEPLOY_CREDENTIALS_DIR and volume["optional"] is True
        assert volume["secretNameParameter"] == {"componentInputParameter": "pipelinechannel--deploy_secret"}
        assert ir["root"]["inputDefinitions"]["parameters"]["deploy_secret"]["defaultValue"] == DEPLOY_SECRET_DEFAULT
        assert ir["root"]["inputDefinitions"]["parameters"]["deploy"]["defaultValue"] == ""


def test_committed_ir_is_current(compiled, tmp_path):
    for name in model_registry.names():
        fresh = definition.compile_ir(name, tmp_path / f"{name}.yaml").read_text()
        committed = definition.committed_ir(name)
        assert committed.is_file() and committed.read_text() == fresh, \
            f"{committed} is stale: run `mlplat pipeline compile --in-place`"


def _as_template(text: str, name: str) -> str:
    """An IR with its model's name and description replaced by placeholders."""
    spec = model_registry.get(name)
    text = text.replace(pipeline_name(name), "<model>-training").replace(f"constant: {name}\n", "constant: <model>\n")
    lines = [line for line in text.splitlines() if not line.startswith("# Description:")]
    ir = list(yaml.safe_load_all("\n".join(lines)))
    assert ir[0]["pipelineInfo"]["description"].startswith(spec.description)
    ir[0]["pipelineInfo"]["description"] = "<description>"
    return yaml.safe_dump_all(ir, sort_keys=True)


def test_committed_irs_are_one_definition_parameterised_by_the_spec():
    """The committed IR files are compiled from one definition: once each model's name and description are
    taken out, the files of models placed alike (GPU or not) are the same document."""
    by_placement: dict[bool, set[str]] = {}
    for name in model_registry.names():
        gpu = load_plugin(name).train_on_gpu
        by_placement.setdefault(gpu, set()).add(_as_template(definition.committed_ir(name).read_text(), name))
    assert all(len(templates) == 1 for templates in by_placement.values()), sorted(by_placement)
    other = definition.build(replace(model_registry.get(model_registry.names()[0]), name="other",
                                     description="Another model."))
    assert other.name == "other-training" and other.description.startswith("Another model.")


def test_gates_come_from_the_run_or_the_platform_rule():
    name = model_registry.names()[0]
    spec = model_registry.get(name)
    assert steps.resolve_gates(name, '{"auc": 0.5}', "sample") == ({"auc": 0.5}, "the run's gates")
    assert steps.resolve_gates(name, "", "sample") == (dict(spec.sample_gates), "sample-data floors")
    assert steps.resolve_gates(name, "", "/data") == (dict(spec.quality_gates), "schema default gates")
    passed = steps.gate(name, json.dumps({k: v + 0.01 for k, v in spec.quality_gates.items()}),
                        json.dumps(dict(spec.quality_gates)))
    failed = steps.gate(name, json.dumps({k: v - 0.01 for k, v in spec.quality_gates.items()}),
                        json.dumps(dict(spec.quality_gates)))
    assert passed["passed"] is True and failed["passed"] is False and "FAIL" in failed["summary"]


def test_journal_and_report(tmp_path, monkeypatch):
    journal = tmp_path / "journal.jsonl"
    monkeypatch.setenv(steps.JOURNAL_ENV, str(journal))
    steps.gate("x", '{"m": 1.0}', '{"m": 2.0}')
    record = json.loads(journal.read_text())
    assert record["step"] == "gate" and record["status"] == "ok" and record["passed"] is False
    rows = _steps([record], failed=False)
    assert [r.step for r in rows] == list(STEPS)
    assert rows[-1].status == "skipped"  # publish, after a failing gate
    report = RunReport("x", "x-training", "SUCCEEDED", 1.0, "ir", "log", rows, version="4", gates_passed=False)
    lines = format_report(report)
    assert any(line.strip().startswith("publish") and "skipped" in line for line in lines)
    # The run completed, but nothing was published: said first, and the exit status is not success.
    assert lines[-1].strip().startswith("x-training: NOT PUBLISHED in 1.0s (the run completed, but the quality "
                                        "gates stopped publication: v4 is registered as challenger")
    assert run_exit_status(report) == 3
    published = RunReport("x", "x-training", "SUCCEEDED", 1.0, "ir", "log", _steps(
        [{"step": s, "status": "ok"} for s in STEPS], failed=False), published=True, gates_passed=True)
    assert format_report(published)[-1].strip() == "x-training: SUCCEEDED in 1.0s"
    assert run_exit_status(published) == 0
    failed = RunReport("x", "x-training", "FAILED", 1.0, "ir", "log", rows, error="\x1b[91mboom\x1b[0m")
    assert run_exit_status(failed) == 1 and "\x1b" not in format_report(failed)[-1]
    assert plain("task \x1b[96m'register'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m") == \
        "task 'register' finished with status FAILURE"
    assert StepRecord("a", "ok").seconds == 0.0


def test_local_slot_holds_exactly_one_version_with_the_real_publish_code(tmp_path):
    """ml/training/publish.py on the local slots: upload, stale-file removal, marker, read-back."""
    from mlflow import MlflowClient

    from ml.training.directory_bucket import LOCAL_BUCKET, DirectoryBucket
    from ml.training.publish import publish as publish_slot
    from ml.training.publish import read_marker

    name = model_registry.names()[0]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())
    versions = []
    for files in ({"model.json": "{}", "old.bin": "x"}, {"model.json": '{"v": 2}'}):
        run = client.create_run(exp)
        art = tmp_path / f"art-{len(versions)}"
        art.mkdir()
        for fname, text in files.items():
            (art / fname).write_text(text)
        client.log_artifacts(run.info.run_id, str(art), "model")
        client.set_terminated(run.info.run_id)
        with contextlib.suppress(Exception):  # exists after the first version
            client.create_registered_model(name)
        mv = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                                         tags={"gate.passed": "true"})
        versions.append(mv.version)
    slots = DirectoryBucket(tmp_path / "slots")
    slots.create_bucket(Bucket=LOCAL_BUCKET)
    for version in versions:
        result = publish_slot(name, version, "champion", LOCAL_BUCKET, tracking_uri=uri, s3_client=slots)
    folder = tmp_path / "slots" / LOCAL_BUCKET / name / "champion"
    explained = model_registry.get(name).explainer is not None  # its explainer's copy: explainer/
    assert sorted(p.name for p in folder.iterdir()) == ["PUBLISHED.json", *(["explainer"] if explained else []),
                                                        "model-settings.json", "model.json"]
    assert result.deleted == (("explainer/old.bin",) if explained else ()) + ("old.bin",)
    assert read_marker(LOCAL_BUCKET, name, "champion", s3_client=slots)["version"] == str(versions[-1])


def test_retrain_receiver_starts_one_run_per_model_and_cools_down(monkeypatch):
    started: list[str] = []

    def starter(model: str) -> dict:
        started.append(model)
        time.sleep(0.2)
        return {"decision": "run finished", "detail": "ok"}

    name = model_registry.names()[0]
    alert = {"labels": {"alertname": "MLPlatRetrainOnDrift", "action": "retrain", "model": name},
             "status": "firing"}
    fresh = Receiver(starter, cooldown_s=60)  # just started: the versions it starts with get the cool-down too
    try:
        assert fresh.submit([alert]) == 0
        assert "receiver started less than 60 s ago" in fresh.decisions[-1]["detail"]
    finally:
        fresh.close()
    receiver = Receiver(starter, cooldown_s=60, since=time.time() - 61)
    try:
        assert receiver.submit([alert, alert]) == 1  # the second: a run of this model is going
        assert receiver.submit([{**alert, "labels": {**alert["labels"], "action": "rollback"}}]) == 0
        assert receiver.submit([{**alert, "status": "resolved"}]) == 0
        assert receiver.submit([{**alert, "labels": {**alert["labels"], "model": "nosuchmodel"}}]) == 0
        deadline = time.monotonic() + 10
        while not any(d.get("decision") == "run finished" for d in receiver.decisions):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert receiver.submit([alert]) == 0  # cooling down
        assert started == [name]
        assert [d["decision"] for d in receiver.decisions].count("ignored") == 2
        assert "retrained less than 60 s ago" in receiver.decisions[-1]["detail"]
        monkeypatch.setenv("MLPLAT_AUTO_RETRAIN", "off")
        receiver.cooldown_s = 0
        assert receiver.submit([alert]) == 1
        deadline = time.monotonic() + 10
        while not any(d.get("decision") == "disabled" for d in receiver.decisions):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert started == [name]
    finally:
        receiver.close()


def test_retrain_rules_name_the_registered_model():
    groups = retrain_rule_groups(["m1"], "https://x/")
    rule = groups[0]["rules"][0]
    assert rule["labels"]["model"] == "m1" and rule["labels"]["action"] == "retrain"
    assert 'model=~"m1([-_].*)?"' in rule["expr"]
    assert cron_to_kfp("0 3 * * 1") == "0 0 3 * * 1"
    with pytest.raises(ValueError):
        cron_to_kfp("@daily")


class FakeKfp:
    """The slice of kfp.Client the bootstrap uses, with state, as the KFP API keeps it."""

    def __init__(self) -> None:
        self.pipelines: dict[str, str] = {}
        self.versions: dict[str, list[SimpleNamespace]] = {}
        self.recurring: list[SimpleNamespace] = []
        self.runs: list[SimpleNamespace] = []
        self.uploaded: list[str] = []

    def create_experiment(self, name):
        return SimpleNamespace(experiment_id="e1")

    def get_pipeline_id(self, name):
        return self.pipelines.get(name)

    def upload_pipeline(self, path, pipeline_name, description=None):
        self.pipelines[pipeline_name] = f"p-{pipeline_name}"
        self.versions[f"p-{pipeline_name}"] = [SimpleNamespace(pipeline_version_id=f"v0-{pipeline_name}",
                                                               display_name=pipeline_name)]
        self.uploaded.append(Path(path).read_text())
        return SimpleNamespace(pipeline_id=f"p-{pipeline_name}")

    def upload_pipeline_version(self, path, pipeline_version_name, pipeline_id):
        version = SimpleNamespace(pipeline_version_id=f"v-{pipeline_version_name}", display_name=pipeline_version_name)
        self.versions[pipeline_id].append(version)
        self.uploaded.append(Path(path).read_text())
        return version

    def list_pipeline_versions(self, pipeline_id, page_size=10, filter=None, sort_by=""):
        versions = self.versions[pipeline_id]
        if filter:
            wanted = json.loads(filter)["predicates"][0]["string_value"]
            versions = [v for v in versions if v.display_name == wanted]
        elif sort_by:
            versions = list(reversed(versions))
        return SimpleNamespace(pipeline_versions=versions)

    def list_recurring_runs(self, experiment_id, page_size=10, filter=None):
        wanted = json.loads(filter)["predicates"][0]["string_value"]
        return SimpleNamespace(recurring_runs=[r for r in self.recurring if r.display_name == wanted])

    def delete_recurring_run(self, rid):
        self.recurring = [r for r in self.recurring if r.recurring_run_id != rid]

    def create_recurring_run(self, experiment_id, job_name, description=None, cron_expression=None, **kw):
        self.recurring.append(SimpleNamespace(recurring_run_id=f"rr{len(self.recurring)}", display_name=job_name,
                                              description=description, cron=cron_expression, **kw))

    def list_runs(self, experiment_id, page_size=10, filter=None):
        wanted = json.loads(filter)["predicates"][0]["string_value"]
        return SimpleNamespace(runs=[r for r in self.runs if r.display_name == wanted])

    def run_pipeline(self, experiment_id, job_name, params=None, pipeline_id=None, version_id=None, **kw):
        run = SimpleNamespace(run_id=f"run{len(self.runs)}", display_name=job_name, params=params,
                              version_id=version_id)
        self.runs.append(run)
        return run


def test_bootstrap_uploads_schedules_and_first_installs_once(tmp_path):
    names = model_registry.names()
    ir_dir = tmp_path / "ir"
    ir_dir.mkdir()
    for name in names:
        (ir_dir / f"{name}.yaml").write_text(definition.committed_ir(name).read_text())
    placeholder = load_bom().images["model-server"].ref
    config = {"image": f"1.dkr.ecr.eu-west-1.amazonaws.com/{placeholder}", "placeholderImage": placeholder,
              "pipelines": {n: {"schedule": "0 0 3 * * 1", "parameters": {"data_uri": "sample"}, "firstInstall": True}
                            for n in names}}
    api = FakeKfp()
    first = bootstrap(api, config, ir_dir)
    assert len(api.runs) == len(names) and all(r.params["trigger"] == "bootstrap" for r in api.runs)
    assert len(api.recurring) == len(names) and all(r.cron == "0 0 3 * * 1" for r in api.recurring)
    assert all(r.params["trigger"] == "schedule" for r in api.recurring)
    assert all(f"image: {config['image']}" in text and f"image: {placeholder}\n" not in text for text in api.uploaded)
    assert any("uploaded version" in line for line in first)
    # Idempotent: nothing new on a second run of the Job.
    again = bootstrap(api, config, ir_dir)
    assert len(api.runs) == len(names) and len(api.recurring) == len(names)
    assert all("ran before" in line or "unchanged" in line or "kept version" in line for line in again)
    # A changed schedule replaces the recurring run; a removed one deletes it.
    config["pipelines"][names[0]]["schedule"] = "0 0 4 * * *"
    config["pipelines"][names[1]]["schedule"] = None
    bootstrap(api, config, ir_dir)
    by_name = {r.display_name: r for r in api.recurring}
    assert by_name[f"{pipeline_name(names[0])}-schedule"].cron == "0 0 4 * * *"
    assert f"{pipeline_name(names[1])}-schedule" not in by_name
    # A model whose package ships no IR (a plugin): the Job compiles it from the image's code.
    (ir_dir / f"{names[2]}.yaml").unlink()
    api_plugin = FakeKfp()
    bootstrap(api_plugin, config, ir_dir)
    # (a new pipeline: its first upload, then the version named after the IR hash)
    assert len(api_plugin.uploaded) == 2 * len(names) and pipeline_name(names[2]) in api_plugin.pipelines
    # A drift run starts on the newest version.
    started = run_on_cluster("http://kfp", names[0], {"data_uri": "sample"}, trigger="drift", client=api)
    assert started["run"].startswith(f"{pipeline_name(names[0])}-drift-") and api.runs[-1].params["trigger"] == "drift"
    ir = (ir_dir / f"{names[0]}.yaml").read_text()
    assert version_name(names[0], ir_for_cluster(ir, placeholder, config["image"])).startswith(pipeline_name(names[0]))
