"""A fourth model added as a plugin, without touching any file of the repository.

A throwaway package (`toyplug`: spec, plugin, MLServer runtime; a threshold on one number) is written
to a temporary directory, put on PYTHONPATH and registered with `MLPLAT_MODEL_PLUGINS=toyplug.spec`.
Then, through the product's own commands in subprocesses:
- `mlplat local up --models toy` generates its sample data, trains it, registers it in MLflow,
  promotes it on its sample-data floor, serves it from a real MLServer process and smoke-tests it with
  the request its spec declares; a prediction over HTTP follows, then `mlplat local down`;
- `mlplat synth --stack dev` (re-executed in the IaC environment, under mocks) gives it an Application of
  the deploy tree (Argo CD applies its Seldon Models and Experiment), sizes the MLServer Server with its
  replicas and resources, and lists it in the model-quality dashboard, next to the built-in models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from contracts import model_registry

pytestmark = [pytest.mark.integration, pytest.mark.ml]

REPO = Path(__file__).resolve().parents[2]

TOY = {
    "__init__.py": "",
    "spec.py": '''
        from contracts.models import ModelSpec, Resources, Serving

        SPEC = ModelSpec(
            name="toy",
            description="A throwaway test model.",
            intended_use="Tests only: says whether a number is above a learned threshold.",
            runtime="toyplug.runtime.ToyRuntime",
            plugin="toyplug.plugin.ToyPlugin",
            quality_gates={"accuracy": 0.99},
            sample_gates={"accuracy": 0.8},
            serving=Serving(min_replicas=1, max_replicas=3,
                            resources=Resources(cpu_request="100m", cpu_limit="500m",
                                                memory_request="64Mi", memory_limit="128Mi")),
            smoke_request={"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [2.5]}]},
        )
    ''',
    "plugin.py": '''
        import csv
        import json
        import random
        from pathlib import Path

        from ml.training.outputs import TrainOutput, write_metadata
        from ml.model_plugin import ModelPlugin

        FILE = "toy.csv"


        def _rows(path):
            with open(path) as f:
                return [(float(r["x"]), int(r["y"])) for r in csv.DictReader(f)]


        def _accuracy(threshold, rows):
            return sum((x > threshold) == bool(y) for x, y in rows) / len(rows)


        class ToyPlugin(ModelPlugin):
            def generate_sample(self, out_dir, seed=0):
                rng = random.Random(seed)
                Path(out_dir).mkdir(parents=True, exist_ok=True)
                with open(Path(out_dir) / FILE, "w") as f:
                    f.write("x,y\\n")
                    for _ in range(40):
                        y = rng.random() < 0.5
                        f.write(f"{rng.gauss(2.0 if y else -2.0, 1.0):.4f},{int(y)}\\n")

            def check_data(self, data_dir):
                return f"{len(_rows(Path(data_dir) / FILE))} rows"

            def train(self, data_dir, out_dir, *, params=None, seed=0, quick=False):
                rows = _rows(Path(data_dir) / FILE)
                fit, held_out = rows[::2], rows[1::2]
                means = [sum(x for x, y in fit if y == c) / max(1, sum(1 for _, y in fit if y == c)) for c in (0, 1)]
                threshold = sum(means) / 2
                metrics = {"accuracy": _accuracy(threshold, held_out)}
                out_dir = Path(out_dir)
                (out_dir / "model.json").write_text(json.dumps({"threshold": threshold}))
                write_metadata(out_dir, self.name, metrics, {"threshold": threshold})
                return TrainOutput(self.name, out_dir, {"threshold": threshold}, metrics, {"rows": len(rows)})

            def evaluate(self, model_dir, data_file, *, seed=0):
                threshold = json.loads((Path(model_dir) / "model.json").read_text())["threshold"]
                return {"accuracy": _accuracy(threshold, _rows(data_file))}

            def sample_requests(self, data_dir, model_dir, n=200, seed=0):
                return [{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [x]}]}
                        for x, _ in _rows(Path(data_dir) / FILE)[:n]]
    ''',
    "runtime.py": '''
        import json

        import numpy as np

        from ml.serving.runtime_base import ReferenceRuntime, tensor


        class ToyRuntime(ReferenceRuntime):
            def load_artifact(self, model_dir, extra):
                self.threshold = json.loads((model_dir / "model.json").read_text())["threshold"]

            async def infer(self, request):
                x = self.numeric(self.inputs(request, ("x",))["x"])
                self.batch_size({"x": x})
                return self.response(request, [tensor("label", (x > self.threshold).astype(np.int64))])
    ''',
}


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("plugins")
    (root / "toyplug").mkdir()
    for name, text in TOY.items():
        (root / "toyplug" / name).write_text(textwrap.dedent(text).lstrip())
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLFLOW_TRACKING"))}
    return {**env, "PYTHONPATH": path, model_registry.PLUGINS_ENV: "toyplug.spec"}


def _mlplat(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlplat", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def plugin_platform(plugin_env, platform_starter, tmp_path_factory):
    """`local up` of the plugin model alone (no Prometheus), with the plugin on the path."""
    extra = {k: plugin_env[k] for k in ("PYTHONPATH", model_registry.PLUGINS_ENV)}
    argv = [sys.executable, "-m", "mlplat", "local", "up", "--models", "toy", "--no-prometheus"]
    with platform_starter(tmp_path_factory.mktemp("plugin-state"), argv, extra_env=extra) as platform:
        yield platform


def test_plugin_model_is_trained_registered_and_served_locally(plugin_platform):
    up = plugin_platform["up"]
    assert up.returncode == 0, f"local up failed:\n{up.stdout[-4000:]}\n{up.stderr[-4000:]}"
    summary = json.loads((plugin_platform["state"] / "summary.json").read_text())
    [toy] = summary["models"]
    assert toy["name"] == "toy" and toy["trained"] and toy["alias"] == "champion", toy
    assert toy["gate_metrics"] == ["accuracy"] and toy["metrics"]["accuracy"] >= 0.8
    smoke = summary["smoke"]["toy"]
    assert smoke["ok"] and smoke["request"]["inputs"][0]["data"] == [2.5], smoke  # the spec's request
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [-3.0, 3.0]}]})
    req = urllib.request.Request(f"{plugin_platform['http']}/v2/models/toy/infer", data=body.encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        answer = json.loads(resp.read())
    assert answer["model_name"] == "toy" and answer["outputs"][0]["data"] == [0, 1]


def test_plugin_model_is_declared_on_the_cluster(plugin_env, tmp_path):
    plan_file = tmp_path / "dev.json"
    synth = _mlplat(plugin_env, "synth", "--stack", "dev", "--out", str(plan_file), timeout=300)
    assert synth.returncode == 0, synth.stdout[-3000:] + synth.stderr[-3000:]
    states = [s["newState"] for s in json.loads(plan_file.read_text())["steps"]]

    def named(kind: str) -> dict[str, dict]:
        return {s["inputs"]["metadata"]["name"]: s["inputs"] for s in states
                if s["type"] == f"kubernetes:mlops.seldon.io/v1alpha1:{kind}"}

    # Argo CD delivers the Seldon Models and Experiment (contracts/deploy_tree.py): one Application per model.
    assert named("Model") == {} and named("Experiment") == {}
    (appset,) = [s["inputs"] for s in states if s["type"] == "kubernetes:argoproj.io/v1alpha1:ApplicationSet"]
    elements = appset["spec"]["generators"][0]["list"]["elements"]
    assert {"model": "toy", "environment": "dev", "path": "deploy/dev/toy"} in elements
    assert {e["model"] for e in elements} == {*model_registry.names(), "toy"}  # the built-in ones as before

    releases = {s["inputs"]["name"]: s["inputs"] for s in states if s["type"] == "kubernetes:helm.sh/v3:Release"}
    mlserver = releases["seldon-core-v2-servers"]["values"]["mlserver"]
    assert mlserver["maxReplicas"] == 3  # sized by the largest enabled model
    assert mlserver["podSpec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}
    dashboards = {k: v for s in states if s["type"] == "kubernetes:core/v1:ConfigMap"
                  for k, v in (s["inputs"].get("data") or {}).items() if k == "model-quality.json"}
    variable = next(v for v in json.loads(dashboards["model-quality.json"])["templating"]["list"]
                    if v["name"] == "model")
    assert variable["query"].split(",") == [*model_registry.names(), "toy"]
