"""Executable runbook steps: precondition -> action -> verification, dry-run by default, audited.

A runbook is a markdown document in `runbooks/` paired with a list of `Step`s. A dry run checks
each step's precondition against the live system and prints exactly what the step would call or
change; read-only (diagnosis) steps run for real because they change nothing. `--execute` runs
the actions, appends one JSON line per action to the audit log, and verifies each one; a failed
verification stops the run and prints the step's rollback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

# One entry per executed action and its verification; `mlplat model approve` writes the same file.
from contracts.governance import AuditLog as AuditLog


class StepFailed(RuntimeError):
    """A precondition or a verification did not hold; the message says what was found."""


class Context(Protocol):
    env: str
    actor: str
    state: dict[str, Any]  # values a step hands to later steps (e.g. the version rolled back from)


@dataclass(frozen=True)
class Step:
    name: str
    target: Callable[[Any], str]  # what the step acts on, e.g. a resource id (for the audit log)
    precondition: Callable[[Any], None]  # raises StepFailed
    plan: Callable[[Any], list[str]]  # exactly what the action would call or change
    action: Callable[[Any], dict[str, Any]]
    verify: Callable[[Any, dict[str, Any]], None]  # raises StepFailed
    rollback: str
    read_only: bool = False  # diagnosis steps: safe to run in a dry run


@dataclass(frozen=True)
class Runbook:
    name: str
    title: str
    steps: list[Step]
    envs: tuple[str, ...] = ("local", "dev", "staging", "prod")
    # Services its steps call (`mlflow`, `serving`, `prometheus`): checked once, in seconds, before any step,
    # so a dead one is named with its fix instead of failing a step after a client's retries.
    services: tuple[str, ...] = ()


@dataclass
class StepReport:
    step: str
    status: str  # planned | ok | failed | precondition-failed
    detail: list[str] = field(default_factory=list)


@dataclass
class RunReport:
    runbook: str
    executed: bool
    steps: list[StepReport]

    @property
    def ok(self) -> bool:
        return all(s.status in ("planned", "ok") for s in self.steps)


def run(runbook: Runbook, ctx: Context, execute: bool, audit: AuditLog, out: TextIO) -> RunReport:
    mode = "EXECUTE" if execute else "DRY RUN (nothing is changed; pass --execute to apply)"
    print(f"runbook {runbook.name} on {ctx.env}: {mode}", file=out)
    reports: list[StepReport] = []
    for i, step in enumerate(runbook.steps, 1):
        header = f"[{i}/{len(runbook.steps)}] {step.name}"
        try:
            target = step.target(ctx)
            step.precondition(ctx)
        except StepFailed as exc:
            print(f"{header}: precondition failed: {exc}", file=out)
            reports.append(StepReport(step.name, "precondition-failed", [str(exc)]))
            break
        if not execute and not step.read_only:
            lines = step.plan(ctx)
            print(f"{header}: would run against {target}:", file=out)
            for line in lines:
                print(f"    - {line}", file=out)
            reports.append(StepReport(step.name, "planned", lines))
            continue
        started = time.perf_counter()
        try:
            result = step.action(ctx)
            step.verify(ctx, result)
        except Exception as exc:
            if execute and not step.read_only:
                audit.record(actor=ctx.actor, env=ctx.env, runbook=runbook.name, step=step.name, target=target,
                             result="failed", error=str(exc))
            print(f"{header}: FAILED: {exc}", file=out)
            print(f"    rollback: {step.rollback}", file=out)
            reports.append(StepReport(step.name, "failed", [str(exc)]))
            break
        elapsed = time.perf_counter() - started
        if not step.read_only:
            audit.record(actor=ctx.actor, env=ctx.env, runbook=runbook.name, step=step.name, target=target,
                         result="ok", details=result, seconds=round(elapsed, 3))
        summary = ", ".join(f"{k}={v}" for k, v in result.items() if not k.startswith("_"))
        print(f"{header}: ok ({elapsed:.2f}s) {summary}", file=out)
        reports.append(StepReport(step.name, "ok", [summary]))
    report = RunReport(runbook.name, execute, reports)
    print("result: " + ("ok" if report.ok else "stopped"), file=out)
    return report
