"""Run a model's compiled pipeline on this machine with `kfp.local` (subprocess runner, no container engine).

The IR is the committed `training_pipeline.yaml` (what the cluster runs) unless another file is given;
each step runs in a Python subprocess of this environment (the model-server image's packages, from the
same lock file). The KFP output (every step's streamed log) goes to a log file; the run's steps, times
and summaries come from the journal the steps write (ml/pipelines/steps.py) and make a `RunReport`.

    python -m local.pipeline_runner NAME --args JSON --root DIR --log FILE --report FILE

is the form `mlplat local up` starts, one process per model, so that runs overlap.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contracts.pipelines import STEPS, pipeline_name
from ml.pipelines.definition import committed_ir, compile_ir
from ml.pipelines.steps import JOURNAL_ENV
from ml.serving.processes import PROMETHEUS_DIR_VARIABLES


@dataclass
class StepRecord:
    step: str
    status: str  # ok | failed | skipped | not run
    seconds: float = 0.0
    summary: str = ""


@dataclass
class RunReport:
    model: str
    pipeline: str
    status: str  # SUCCEEDED | FAILED
    seconds: float
    ir: str
    log: str
    steps: list[StepRecord] = field(default_factory=list)
    version: str | None = None
    published: bool = False
    gates_passed: bool | None = None
    artifact: str | None = None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def gated(self) -> bool:
        """The run completed, but the quality gates stopped publication: nothing new is served."""
        return self.status == "SUCCEEDED" and (
            self.gates_passed is False or any(s.step == "publish" and s.status == "skipped" for s in self.steps))

    @property
    def outcome(self) -> str:
        """What a person needs to know first: SUCCEEDED (published), NOT PUBLISHED (gates) or FAILED."""
        return "NOT PUBLISHED" if self.gated else self.status

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RunReport:
        steps = [StepRecord(**s) for s in doc.pop("steps", [])]
        return cls(**doc, steps=steps)


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def plain(text: str) -> str:
    """`text` without terminal colour codes (kfp.local colours its messages even when not on a terminal)."""
    return ANSI_ESCAPE.sub("", text)


def run_exit_status(report: RunReport) -> int:
    """0: published (or nothing to publish); 3: the gates stopped publication; 1: the run failed."""
    if report.status != "SUCCEEDED":
        return 1
    return 3 if report.gated else 0


def _steps(journal: list[dict[str, Any]], failed: bool) -> list[StepRecord]:
    done = {r["step"]: r for r in journal}
    out = []
    for step in STEPS:
        rec = done.get(step)
        if rec is not None:
            out.append(StepRecord(step, rec["status"], float(rec.get("seconds", 0.0)),
                                  plain(str(rec.get("summary", "")))))
        elif step == "publish" and done.get("gate", {}).get("passed") is False:
            out.append(StepRecord(step, "skipped", 0.0, "gates failed: the champion and its slot keep what they had"))
        else:
            out.append(StepRecord(step, "not run", 0.0, "an earlier step failed" if failed else ""))
    return out


def run(name: str, arguments: dict[str, Any], *, root: Path, log_path: Path, ir: Path | None = None) -> RunReport:
    """Run `name`'s pipeline with `arguments` (ml/pipelines/definition.py parameters) under `kfp.local`."""
    from kfp import components, local

    ir = ir or committed_ir(name)
    root.mkdir(parents=True, exist_ok=True)
    if not ir.is_file():  # a plugin package that ships no compiled IR: compile it from its code

        ir = compile_ir(name, root.parent / "ir" / f"{name}.yaml")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    error = ""
    with tempfile.NamedTemporaryFile("w+", prefix=f"mlplat-{name}-journal-", suffix=".jsonl", delete=False) as jf:
        journal_path = Path(jf.name)
    previous = os.environ.get(JOURNAL_ENV)
    os.environ[JOURNAL_ENV] = str(journal_path)
    try:
        with open(log_path, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            handler = logging.StreamHandler(log)
            logging.getLogger().addHandler(handler)
            logging.getLogger().setLevel(logging.INFO)
            try:
                with warnings.catch_warnings():
                    # The subprocess runner warns about any image name without "python" in it; ours is the
                    # model-server image, whose Python packages are this environment's (same lock file).
                    warnings.simplefilter("ignore", RuntimeWarning)
                    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root),
                               raise_on_error=True)
                    pipeline = components.load_component_from_file(str(ir))
                    pipeline(**arguments)
            except Exception as exc:  # the pipeline failed: the journal says which step and why
                text = plain(str(exc)).strip()
                error = text.splitlines()[0] if text else type(exc).__name__
            finally:
                logging.getLogger().removeHandler(handler)
        journal = [json.loads(line) for line in journal_path.read_text().splitlines() if line.strip()]
    finally:
        journal_path.unlink(missing_ok=True)
        if previous is None:
            os.environ.pop(JOURNAL_ENV, None)
        else:
            os.environ[JOURNAL_ENV] = previous
    failed = bool(error) or any(r["status"] != "ok" for r in journal)
    records = {r["step"]: r for r in journal}
    report = RunReport(
        model=name, pipeline=pipeline_name(name), status="FAILED" if failed else "SUCCEEDED",
        seconds=round(time.perf_counter() - started, 2), ir=str(ir), log=str(log_path), steps=_steps(journal, failed),
        version=records.get("register", {}).get("version"), published=records.get("publish", {}).get("status") == "ok",
        gates_passed=records.get("gate", {}).get("passed"), artifact=records.get("train", {}).get("artifact"),
        error=error if failed else "",
    )
    return report


def format_report(report: RunReport, indent: str = "      ") -> list[str]:
    """The run as lines: one per step (status, seconds, summary), then the outcome."""
    lines = []
    for s in report.steps:
        mark = {"ok": "ok", "failed": "FAILED", "skipped": "skipped", "not run": "-"}[s.status]
        lines.append(f"{indent}{s.step:<14} {mark:<8} {s.seconds:6.1f}s  {s.summary}".rstrip())
    outcome = f"{report.pipeline}: {report.outcome} in {report.seconds:.1f}s"
    if report.status != "SUCCEEDED":
        outcome += f" ({plain(report.error) or 'a step failed'}; log {report.log})"
    elif report.gated:
        gate = next((s.summary for s in report.steps if s.step == "gate"), "")
        version = f"v{report.version} is registered as challenger, " if report.version else ""
        outcome += (f" (the run completed, but the quality gates stopped publication: {version}the champion and "
                    f"its slot are unchanged; {gate or 'see the gate step'})")
    lines.append(f"{indent}{outcome}")
    return lines


def start(name: str, arguments: dict[str, Any], *, root: Path, log_path: Path, report_path: Path,
          ir: Path | None = None, own_group: bool = False) -> subprocess.Popen[bytes]:
    """`run` in a child process (so several models' runs overlap); read its result with `collect`. With
    `own_group`, in a process group of its own, so the run and every step process kfp.local starts can be
    stopped together (local/pipeline_runs.py `stop`: an interrupted `local up`); without it, the run belongs
    to its caller's group (the drift-retrain receiver: `local down` stops the receiver and its runs)."""
    argv = [sys.executable, "-m", "local.pipeline_runner", name, "--args", json.dumps(arguments), "--root", str(root),
            "--log", str(log_path), "--report", str(report_path)]
    if ir is not None:
        argv += ["--ir", str(ir)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # Importing feast points prometheus_client at a temporary directory its importer deletes on exit
    # (ml/serving/processes.py): a child must not inherit the parent's.
    env = {k: v for k, v in os.environ.items() if k not in PROMETHEUS_DIR_VARIABLES}
    with open(log_path, "a") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=own_group)


def collect(name: str, proc: subprocess.Popen[bytes], report_path: Path, log_path: Path) -> RunReport:
    code = proc.wait()
    if report_path.is_file():
        return RunReport.from_dict(json.loads(report_path.read_text()))
    return RunReport(model=name, pipeline=pipeline_name(name), status="FAILED", seconds=0.0, ir="", log=str(log_path),
                     steps=_steps([], True), error=f"the runner exited with {code} before reporting")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m local.pipeline_runner", description=__doc__.splitlines()[0])
    p.add_argument("name")
    p.add_argument("--args", default="{}", help="pipeline arguments as a JSON object")
    p.add_argument("--root", type=Path, required=True, help="kfp.local pipeline root (step outputs)")
    p.add_argument("--log", type=Path, required=True)
    p.add_argument("--report", type=Path, required=True)
    p.add_argument("--ir", type=Path, default=None)
    args = p.parse_args(argv)
    report = run(args.name, json.loads(args.args), root=args.root, log_path=args.log, ir=args.ir)
    args.report.write_text(json.dumps(report.as_dict(), indent=1))
    return run_exit_status(report)


if __name__ == "__main__":
    raise SystemExit(main())
