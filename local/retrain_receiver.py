"""The local platform's drift-retrain receiver: ml/pipelines/retrain.py's `Receiver`, starting kfp.local runs.

    python -m local.retrain_receiver --arguments <state>/pipelines/retrain.json --root <state>/pipelines/root \
        --logs <state>/pipelines --port PORT --state-dir <state>

When a model's drift alert fires, its pipeline runs in a child process (local/pipeline_runner.py) with the
arguments `local up` wrote and the trigger `drift`, and the receiver waits for it: the decision it lists
at `GET /decisions` says how the run ended.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from local.pipeline_runner import collect
from local.pipeline_runner import start as start_run
from ml.pipelines.retrain import Starter, add_receiver_arguments, serve_receiver


def local_starter(arguments_path: Path, root: Path, logs: Path) -> Starter:
    """Run the model's pipeline with kfp.local (a child process) and wait for it: the decision says how it ended."""
    def start(model: str) -> dict[str, Any]:
        arguments = json.loads(arguments_path.read_text())[model]
        stamp = time.strftime("%Y%m%d-%H%M%S")
        report_path, log_path = logs / f"{model}-drift-{stamp}.report.json", logs / f"{model}-drift-{stamp}.log"
        proc = start_run(model, {**arguments, "trigger": "drift"}, root=root, log_path=log_path,
                         report_path=report_path)
        report = collect(model, proc, report_path, log_path)
        outcome = (f"v{report.version} {'published as champion' if report.published else 'not published'}"
                   if report.version else report.error)
        return {"decision": "run finished" if report.status == "SUCCEEDED" else "run failed",
                "detail": f"{report.pipeline} {report.outcome} in {report.seconds:.1f}s: {outcome}",
                "run": report.as_dict()}

    return start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m local.retrain_receiver", description=__doc__.split("\n\n")[0])
    p.add_argument("--arguments", type=Path, required=True, help="model -> pipeline arguments (JSON)")
    p.add_argument("--root", type=Path, required=True, help="kfp.local pipeline root")
    p.add_argument("--logs", type=Path, required=True, help="where run logs go")
    add_receiver_arguments(p)
    args = p.parse_args(argv)
    return serve_receiver(local_starter(args.arguments, args.root, args.logs), args, "retrain (local)")


if __name__ == "__main__":
    raise SystemExit(main())
