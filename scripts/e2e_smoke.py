"""Smoke test of a real cluster, run by .github/workflows/e2e.yml after `pulumi up`, with kubectl and helm on
PATH and the stack's kubeconfig in KUBECONFIG (standard library only):

    python scripts/e2e_smoke.py --plan build/e2e/plan.json --requests build/e2e/requests.json

1. every node Ready (waits up to --wait-minutes);
2. every Helm release the plan (`mlplat synth --out`) declares is deployed (`helm list -A`);
3. one inference per model through the Seldon mesh (envoy on `seldon-mesh`, the inference ingress), with the
   model's own smoke request (`scripts/e2e_ml.py requests` writes them, in the ML environment);
4. one training-pipeline run of the first model through the Kubeflow Pipelines API, waited for
   (`scripts/e2e_ml.py train`, in the ML environment).
Prints one line per check, tries every check, exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SELDON_NAMESPACE = "seldon"
KFP_NAMESPACE = "kubeflow"
RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"


def _json(*command: str) -> Any:
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout or "{}")


def nodes_ready(wait_seconds: float, poll_seconds: float = 15) -> str | None:
    deadline = time.monotonic() + wait_seconds
    while True:
        items = _json("kubectl", "get", "nodes", "-o", "json").get("items", [])
        not_ready = [n["metadata"]["name"] for n in items if not any(
            c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))]
        if items and not not_ready:
            return None
        if time.monotonic() > deadline:
            return f"nodes not Ready: {', '.join(not_ready) or 'no nodes'}"
        time.sleep(poll_seconds)


def releases_deployed(plan: dict[str, Any]) -> str | None:
    wanted = sorted(s["newState"]["inputs"]["name"] for s in plan["steps"] if s["newState"]["type"] == RELEASE_TYPE)
    status = {r["name"]: r["status"] for r in _json("helm", "list", "-A", "-a", "-o", "json")}
    bad = {name: status.get(name, "missing") for name in wanted if status.get(name) != "deployed"}
    return f"releases not deployed: {bad}" if bad else None


@contextlib.contextmanager
def port_forward(namespace: str, service: str, local: int, remote: int, wait_seconds: float = 30) -> Iterator[str]:
    """`kubectl port-forward` to a Service, open once the local port accepts connections."""
    proc = subprocess.Popen(["kubectl", "port-forward", "-n", namespace, f"svc/{service}", f"{local}:{remote}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", local), timeout=1):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"port-forward to {namespace}/{service} did not open 127.0.0.1:{local}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{local}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def infer(base: str, model: str, body: dict[str, Any]) -> str | None:
    """One V2 request to the model's champion through the mesh (routed by the Seldon-Model header)."""
    target = f"{model}-champion"
    request = urllib.request.Request(f"{base}/v2/models/{target}/infer", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Seldon-Model": target})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            outputs = json.loads(response.read()).get("outputs")
    except (OSError, ValueError) as exc:
        return f"{model}: {exc}"
    return None if outputs else f"{model}: no outputs in the response"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plan", type=Path, required=True, help="`mlplat synth --stack dev --out` of the stack")
    p.add_argument("--requests", type=Path, required=True, help="model -> V2 request body (scripts/e2e_ml.py)")
    p.add_argument("--ml-python", default=".venv-ml/bin/python", help="Python of the ML environment (training run)")
    p.add_argument("--wait-minutes", type=float, default=15)
    p.add_argument("--mesh-port", type=int, default=9000)
    p.add_argument("--kfp-port", type=int, default=8888)
    args = p.parse_args(argv)
    failures: list[str] = []

    def record(what: str, problem: str | None) -> None:
        print(f"{'ok  ' if problem is None else 'FAIL'} {what}{'' if problem is None else ': ' + problem}", flush=True)
        if problem:
            failures.append(problem)

    record("nodes Ready", nodes_ready(args.wait_minutes * 60))
    record("every release deployed", releases_deployed(json.loads(args.plan.read_text())))
    requests = json.loads(args.requests.read_text())
    try:
        with port_forward(SELDON_NAMESPACE, "seldon-mesh", args.mesh_port, 80) as base:
            for model, body in requests.items():
                record(f"inference {model}", infer(base, model, body))
        with port_forward(KFP_NAMESPACE, "ml-pipeline", args.kfp_port, 8888) as kfp:
            model = next(iter(requests))
            run = subprocess.run([args.ml_python, str(Path(__file__).with_name("e2e_ml.py")), "train", model,
                                  "--host", kfp], capture_output=True, text=True)
            record(f"training pipeline {model}", None if run.returncode == 0 else
                   (run.stdout + run.stderr).strip()[-500:])
    except RuntimeError as exc:
        record("port-forward", str(exc))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
