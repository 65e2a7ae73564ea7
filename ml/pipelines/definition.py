"""The training pipeline of every registered model, written with the KFP SDK v2.

`build(spec)` makes the `@dsl.pipeline` of one model from its spec; `for_model(name)` adds the placement
its plugin asks for (no model is named here: `names()` iterates contracts/model_registry.py). Eight
lightweight components, each a thin call into ml/pipelines/steps.py, run in the model-server image at
the BOM's version (`IMAGE`, the Dockerfile's own tag; the cluster's bootstrap points it at the stack's
ECR repository):

    prepare-data -> read-features -> validate-data -> train -> evaluate -> register -> gate -> publish
                                                                                    (only if gate passed)

`data_uri` is `sample` (the model's generated sample), a directory or s3:// prefix, or a dataset version's
content address (ml/datasets/content.py: the step reads it with object reads only); `register` records the
content hash of what `prepare-data` read as the run's MLflow dataset input and in the model card.

`compile_ir(name, path)` writes the IR YAML the cluster uploads and the local platform runs
(`kfp.local`, subprocess runner): the same file, so both run the same pipeline. The committed copies,
`<model package>/training_pipeline.yaml`, are checked against a fresh compile by the tests.
"""

# No `from __future__ import annotations`: the KFP SDK reads the components' annotations as types.

from pathlib import Path
from typing import Any, NamedTuple

from kfp import compiler, dsl, kubernetes
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from contracts import model_registry
from contracts.cluster import GPU_TAINT_KEY, NODE_ROLE_LABEL
from contracts.models import ModelSpec
from contracts.pipelines import (
    DEPLOY_CREDENTIALS_DIR,
    DEPLOY_SECRET_DEFAULT,
    IR_FILE,
    SAMPLE_DATA,
    STEPS,
    ir_path,
    pipeline_name,
)
from ml.model_plugin import load_plugin
from stacks.bom import load_bom

IMAGE = load_bom().images["model-server"].ref
# Every step: the model-server image, its Python (kfp is in the image: no pip install at run time).
component = dsl.component(base_image=IMAGE, install_kfp_package=False)
# Requests and limits of a step's pod (the train step gets more; the cluster's quota and node sizes
# are in docs/WORKLOADS.md).
STEP_RESOURCES = {"cpu_request": "250m", "cpu_limit": "1", "memory_request": "512Mi", "memory_limit": "2Gi"}
TRAIN_RESOURCES = {"cpu_request": "1", "cpu_limit": "2", "memory_request": "2Gi", "memory_limit": "8Gi"}
STEP_TIMEOUT_S = 3600
# The MLflow credentials of the steps that write to the registry, from a Secret in the pipelines' namespace
# (infra/workloads/pipelines.py); optional, so a tracking server without authentication needs none.
MLFLOW_SECRET = "mlflow-credentials"
MLFLOW_ENV = {"username": "MLFLOW_TRACKING_USERNAME", "password": "MLFLOW_TRACKING_PASSWORD"}
RUN_AS = 10001  # the image's user
# The deploy repository's credentials (ml/delivery/tree_publish.py), mounted into the publish step only. The
# Secret's name is a run parameter (the stack's workloads.gitops.credentialsSecret); optional, so a stack that
# gives the pipeline no credentials runs the step without them (it then writes no tree: `deploy` is empty).


# Each component imports inside its body: KFP ships a component's source alone to the step's pod.
@component
def prepare_data(name: str, data_uri: str, seed: int, offline_uri: str, data: Output[Dataset]) -> str:
    from ml.pipelines import steps

    return steps.prepare_data(name, data_uri, seed, offline_uri, data.path)


@component
def read_features(name: str, data: Input[Dataset], feast_repo: str, offline_uri: str,
                  features: Output[Dataset]) -> str:
    from ml.pipelines import steps

    return steps.read_features(name, data.path, feast_repo, offline_uri, features.path)


@component
def validate_data(name: str, data: Input[Dataset], report: Output[Artifact]) -> str:
    from ml.pipelines import steps

    return steps.validate_data(name, data.path, report.path)


@component
def train(name: str, data: Input[Dataset], seed: int, quick: bool, model_artifact: Output[Model],
          summary: Output[Artifact]) -> str:
    from ml.pipelines import steps

    return steps.train(name, data.path, seed, quick, model_artifact.path, summary.path)["summary"]


@component
def evaluate(name: str, model_artifact: Input[Model], summary: Input[Artifact], held_out: Output[Metrics]) -> str:
    import json

    from ml.pipelines import steps

    metrics = steps.evaluate(name, model_artifact.path, summary.path)["metrics"]
    for key, value in metrics.items():
        held_out.log_metric(key, value)
    return json.dumps(metrics, sort_keys=True)


@component
def register(name: str, model_artifact: Input[Model], summary: Input[Artifact], report: Input[Artifact],
             data: Input[Dataset], source: Input[Dataset], gates: str, data_uri: str, promotion: str,
             tracking_uri: str, trigger: str, version_tags: str, run_label: str
             ) -> NamedTuple("Registered", [("version", str), ("run_id", str), ("gates", str), ("gates_source", str)]):
    from ml.pipelines import steps

    r = steps.register(name, model_artifact.path, summary.path, report.path, data.path, gates, data_uri, promotion,
                       tracking_uri, trigger, version_tags, run_label=run_label, source_dir=source.path)
    return (r["version"], r["run_id"], r["gates"], r["gates_source"])


@component
def gate(name: str, metrics: str, gates: str, gates_source: str) -> bool:
    from ml.pipelines import steps

    return steps.gate(name, metrics, gates, gates_source)["passed"]


@component
def publish(name: str, version: str, promotion: str, tracking_uri: str, slot_bucket: str, slot_dir: str,
            serving_url: str, seldon_namespace: str, trigger: str, deploy: str) -> str:
    from ml.pipelines import steps

    return steps.publish(name, version, promotion, tracking_uri, slot_bucket, slot_dir, serving_url,
                         seldon_namespace, trigger, deploy)


def _place(task: Any, *, gpu: bool = False, resources: dict[str, str] = STEP_RESOURCES, mlflow: bool = False) -> Any:
    """Node group, resources, no cache (a run must train again), timeout and a non-root user."""
    task.set_caching_options(False)
    task.set_cpu_request(resources["cpu_request"]).set_cpu_limit(resources["cpu_limit"])
    task.set_memory_request(resources["memory_request"]).set_memory_limit(resources["memory_limit"])
    kubernetes.add_node_selector(task, NODE_ROLE_LABEL, "gpu" if gpu else "general")
    if gpu:
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
        kubernetes.add_toleration(task, key=GPU_TAINT_KEY, operator="Exists", effect="NoSchedule")
    kubernetes.set_timeout(task, STEP_TIMEOUT_S)
    kubernetes.set_security_context(task, run_as_user=RUN_AS, run_as_group=RUN_AS, run_as_non_root=True)
    if mlflow:
        kubernetes.use_secret_as_env(task, MLFLOW_SECRET, MLFLOW_ENV, optional=True)
    return task


def build(spec: ModelSpec, *, train_on_gpu: bool = False) -> Any:
    """The `@dsl.pipeline` of one model: the one definition, parameterised by the model's spec (its name,
    description and feature source) and by where its `train` step runs. Every model's IR is compiled from
    here, so the committed files differ only in those values."""
    name, gpu = spec.name, train_on_gpu
    source = "its text source" if spec.features is None else "the Feast offline store (get_historical_features)"

    @dsl.pipeline(name=pipeline_name(name),
                  description=f"{spec.description} Training pipeline: data from {source}, data contract, training, "
                              "held-out evaluation, MLflow registration (challenger), quality gates, then champion "
                              "and the Seldon slot when the gates pass.")
    def training(data_uri: str = SAMPLE_DATA, seed: int = 0, offline_uri: str = "", feast_repo: str = "",
                 gates: str = "", promotion: str = "gates", tracking_uri: str = "", slot_bucket: str = "",
                 slot_dir: str = "", serving_url: str = "", seldon_namespace: str = "", trigger: str = "manual",
                 version_tags: str = "{}", quick: bool = False, deploy: str = "",
                 deploy_secret: str = DEPLOY_SECRET_DEFAULT) -> None:
        prep = _place(prepare_data(name=name, data_uri=data_uri, seed=seed, offline_uri=offline_uri))
        feats = _place(read_features(name=name, data=prep.outputs["data"], feast_repo=feast_repo,
                                     offline_uri=offline_uri))
        checked = _place(validate_data(name=name, data=feats.outputs["features"]))
        trained = _place(train(name=name, data=feats.outputs["features"], seed=seed, quick=quick).after(checked),
                         gpu=gpu, resources=TRAIN_RESOURCES)
        scored = _place(evaluate(name=name, model_artifact=trained.outputs["model_artifact"],
                                 summary=trained.outputs["summary"]))
        reg = _place(register(name=name, model_artifact=trained.outputs["model_artifact"],
                              summary=trained.outputs["summary"], report=checked.outputs["report"],
                              data=feats.outputs["features"], source=prep.outputs["data"], gates=gates,
                              data_uri=data_uri, promotion=promotion,
                              tracking_uri=tracking_uri, trigger=trigger, version_tags=version_tags,
                              run_label=dsl.PIPELINE_JOB_NAME_PLACEHOLDER).after(scored), mlflow=True)
        decision = _place(gate(name=name, metrics=scored.outputs["Output"], gates=reg.outputs["gates"],
                               gates_source=reg.outputs["gates_source"]))
        # One unnamed output: kfp.local 2.17 resolves `<task>-Output` in a condition, not named outputs.
        with dsl.If(decision.output == True, name="gates-passed"):  # noqa: E712 (a KFP condition)
            published = _place(publish(name=name, version=reg.outputs["version"], promotion=promotion,
                                       tracking_uri=tracking_uri, slot_bucket=slot_bucket, slot_dir=slot_dir,
                                       serving_url=serving_url, seldon_namespace=seldon_namespace, trigger=trigger,
                                       deploy=deploy), mlflow=True)
            kubernetes.use_secret_as_volume(published, secret_name=deploy_secret, mount_path=DEPLOY_CREDENTIALS_DIR,
                                            optional=True)

    return training


def names() -> tuple[str, ...]:
    return model_registry.names()


def for_model(name: str) -> Any:
    """The pipeline of registered model `name` (its spec, and its plugin's `train_on_gpu`)."""
    return build(model_registry.get(name), train_on_gpu=load_plugin(name).train_on_gpu)


def compile_ir(name: str, path: Path) -> Path:
    """Compile model `name`'s pipeline to IR YAML at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(for_model(name), str(path))
    return path


def committed_ir(name: str) -> Path:
    """Where the compiled IR of `name` is committed: `training_pipeline.yaml` beside its spec module."""
    module = next(m for m in model_registry.spec_modules() if model_registry.load_spec(m).name == name)
    return ir_path(module)


def task_order(ir: dict[str, Any]) -> list[str]:
    """The pipeline's task names in dependency order (for the IR checks and the docs)."""
    tasks: dict[str, list[str]] = {}

    def walk(dag: dict[str, Any], inherited: list[str]) -> None:
        for task_name, task in dag.get("tasks", {}).items():
            comp = ir["components"][task["componentRef"]["name"]]
            deps = [*inherited, *task.get("dependentTasks", [])]
            if "dag" in comp:  # a condition group: its tasks depend on what the group depends on
                walk(comp["dag"], deps)
                continue
            tasks[task_name] = deps

    walk(ir["root"]["dag"], [])
    order: list[str] = []
    while len(order) < len(tasks):
        ready = sorted(t for t, deps in tasks.items() if t not in order
                       and all(d in order or d not in tasks for d in deps))
        if not ready:
            raise ValueError(f"cycle among {sorted(set(tasks) - set(order))}")
        order.append(ready[0])
    return order


__all__ = ["IR_FILE", "STEPS", "build", "committed_ir", "compile_ir", "for_model", "names", "task_order"]
