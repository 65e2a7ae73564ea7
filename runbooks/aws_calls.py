"""Step factories for runbooks made of single AWS API calls.

`aws_call` turns "call service.Operation with these parameters, then check this" into a `Step`
whose dry run prints the exact call; `aws_read` is the read-only (diagnosis) twin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore import xform_name

from runbooks.context import RunContext
from runbooks.engine import Step, StepFailed

Params = Callable[[RunContext], dict[str, Any]]
Check = Callable[[RunContext, dict[str, Any]], None]


def describe_call(service: str, operation: str, params: dict[str, Any]) -> str:
    shown = " ".join(f"{k}={v}" for k, v in params.items())
    return f"{service}:{operation} {shown}".rstrip()


def aws_call(name: str, service: str, operation: str, params: Params, verify: Check, rollback: str,
             target: Callable[[RunContext], str], precondition: Callable[[RunContext], None] = lambda ctx: None,
             ) -> Step:
    def action(ctx: RunContext) -> dict[str, Any]:
        response = getattr(ctx.aws(service), xform_name(operation))(**params(ctx))
        response.pop("ResponseMetadata", None)
        ctx.state[operation] = response
        return {"call": f"{service}:{operation}", "_response": response}

    return Step(name, target, precondition=precondition,
                plan=lambda ctx: [describe_call(service, operation, params(ctx))],
                action=action, verify=verify, rollback=rollback)


def aws_read(name: str, target: Callable[[RunContext], str], read: Callable[[RunContext], dict[str, Any]],
             check: Check = lambda ctx, r: None) -> Step:
    return Step(name, target, precondition=lambda ctx: None, plan=lambda ctx: [], action=read, verify=check,
                rollback="nothing changed (read-only)", read_only=True)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)
