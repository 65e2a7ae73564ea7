"""Smoke test of a real cluster, run by .github/workflows/e2e.yml after `pulumi up` (ML environment:
`.venv-ml/bin/python scripts/e2e_smoke.py --plan build/e2e/plan.json`), with kubectl and helm on PATH and
the stack's kubeconfig in KUBECONFIG.

1. every node Ready (waits up to --wait-minutes);
2. every Helm release the plan declares is deployed (`helm list -A`);
3. one inference per registered model through the Seldon mesh (the inference ingress: envoy on
   `seldon-mesh`), with the model's own smoke request built from generated sample data;
4. one training-pipeline run of the first model through the Kubeflow Pipelines API.
Prints one line per check and exits 1 on the first failure of each kind (all kinds are tried).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from contracts import model_registry
from local.smoke import build_request
from ml.common.plugin import load_plugin

SELDON_NAMESPACE = "seldon"
KFP_NAMESPACE = "kubeflow"


def _json(*command: str) -> dict:
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout or "{}")


def nodes_ready(wait_minutes: float) -> str | None:
    deadline = time.monotonic() + wait_minutes * 60
    while True:
        items = _json("kubectl", "get", "nodes", "-o", "json").get("items", [])
        not_ready = [n["metadata"]["name"] for n in items if not any(
            c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))]
        if items and not not_ready:
            return None
        if time.monotonic() > deadline:
            return f"nodes not Ready: {not_ready or 'no nodes'}"
        time.sleep(15)


def releases_deployed(plan: dict) -> str | None:
    wanted = {s["newState"]["inputs"]["name"] for s in plan["steps"]
              if s["newState"]["type"] == "kubernetes:helm.sh/v3:Release"}
    listed = json.loads(subprocess.run(["helm", "list", "-A", "-a", "-o", "json"], check=True,
                                       capture_output=True, text=True).stdout)
    status = {r["name"]: r["status"] for r in listed}
    bad = {name: status.get(name, "missing") for name in wanted if status.get(name) != "deployed"}
    return f"releases not deployed: {bad}" if bad else None


@contextlib.contextmanager
def port_forward(namespace: str, service: str, local: int, remote: int) -> Iterator[str]:
    proc = subprocess.Popen(["kubectl", "port-forward", "-n", namespace, f"svc/{service}", f"{local}:{remote}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(5)
        yield f"http://127.0.0.1:{local}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def infer(base: str, model: str, body: dict) -> str | None:
    target = f"{model}-champion"
    request = urllib.request.Request(f"{base}/v2/models/{target}/infer", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Seldon-Model": target})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            outputs = json.loads(response.read()).get("outputs")
    except OSError as exc:
        return f"{model}: {exc}"
    return None if outputs else f"{model}: no outputs in the response"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plan", type=Path, required=True, help="`mlplat synth --stack dev --out` of the stack")
    p.add_argument("--wait-minutes", type=float, default=15)
    args = p.parse_args(argv)
    failures: list[str] = []

    def record(what: str, problem: str | None) -> None:
        print(f"{'ok  ' if problem is None else 'FAIL'} {what}{'' if problem is None else ': ' + problem}")
        if problem:
            failures.append(problem)

    record("nodes Ready", nodes_ready(args.wait_minutes))
    record("every release deployed", releases_deployed(json.loads(args.plan.read_text())))
    models = [s.name for s in model_registry.specs()]
    with tempfile.TemporaryDirectory() as tmp, port_forward(SELDON_NAMESPACE, "seldon-mesh", 9000, 80) as base:
        for model in models:
            data = Path(tmp) / model
            load_plugin(model).generate_sample(data)
            record(f"inference {model}", infer(base, model, build_request(model, data, True, None)))
    with port_forward(KFP_NAMESPACE, "ml-pipeline", 8888, 8888) as kfp:
        run = subprocess.run([sys.executable, "-m", "mlplat", "pipeline", "run", models[0], "--host", kfp],
                             capture_output=True, text=True)
        record(f"training pipeline {models[0]}", None if run.returncode == 0 else run.stderr.strip()[-500:])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
