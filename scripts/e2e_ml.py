"""The ML-environment steps of .github/workflows/e2e.yml (run with .venv-ml/bin/python, PYTHONPATH=.):

    requests OUT                    each registered model's smoke request as {model: V2 body}, for
                                    scripts/e2e_smoke.py: built, as `mlplat local up` builds it, from
                                    sample data the model generates and an artifact fitted on it here
                                    (`quick`, as `mlplat bench` does); the body's form follows the
                                    model's code and features, which the cluster's image shares
    train MODEL --host URL          one run of the model's training pipeline on the cluster's Kubeflow
                                    Pipelines, waited for; exit 0 only if it SUCCEEDED
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import kfp

from contracts import model_registry
from local.smoke import build_request
from ml.model_plugin import load_plugin
from ml.pipelines.kfp_api import run_on_cluster


def write_requests(out: Path) -> dict[str, dict]:
    bodies = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in model_registry.specs():
            plugin, data, model_dir = load_plugin(spec.name), Path(tmp) / spec.name, Path(tmp) / f"{spec.name}-model"
            plugin.generate_sample(data)
            plugin.train(data, model_dir, quick=True)
            # online_store=True: on the cluster the runtime reads the model's features from ElastiCache.
            bodies[spec.name] = build_request(spec.name, data, True, model_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(bodies))
    return bodies


def train(host: str, model: str, timeout_s: int) -> str:
    started = run_on_cluster(host, model, {}, trigger="e2e")
    run = kfp.Client(host=host).wait_for_run_completion(started["run_id"], timeout=timeout_s)
    return str(getattr(run, "state", "UNKNOWN"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="action", required=True)
    r = sub.add_parser("requests")
    r.add_argument("out", type=Path)
    t = sub.add_parser("train")
    t.add_argument("model")
    t.add_argument("--host", required=True)
    t.add_argument("--timeout", type=int, default=3600)
    args = p.parse_args(argv)
    if args.action == "requests":
        print(f"wrote smoke requests of {', '.join(write_requests(args.out))} to {args.out}")
        return 0
    state = train(args.host, args.model, args.timeout)
    print(f"training pipeline of {args.model}: {state}")
    return 0 if state == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
