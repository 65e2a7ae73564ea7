"""What a runbook run works against: the stack's names, AWS clients, MLflow, Kubernetes, an actor.

Resource names come from the same naming code the Pulumi components use (`StackContext`), or from
`pulumi stack output --json` when the operator passes `--outputs FILE`; nobody types them by hand.
AWS endpoints follow boto3's standard resolution (`AWS_ENDPOINT_URL` points the runs at a moto
server in tests).
"""

from __future__ import annotations

import getpass
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from runbooks.engine import StepFailed
from runbooks.kube import KubeOps
from stacks.config import load_stack_file, stack_file
from stacks.context import StackContext


@dataclass
class RunContext:
    env: str
    stack_outputs: dict[str, Any] = field(default_factory=dict)
    actor: str = field(default_factory=lambda: os.environ.get("MLPLAT_ACTOR") or getpass.getuser())
    tracking_uri: str | None = None
    serving_url: str | None = None  # MLServer base URL (local platform)
    slot_dir: Path | None = None  # the local platform's model slots (<state>/model-slots)
    prometheus_url: str | None = None
    kube: KubeOps | None = None
    params: dict[str, str] = field(default_factory=dict)  # NAME=VALUE from --param
    state: dict[str, Any] = field(default_factory=dict)
    clients: dict[str, Any] = field(default_factory=dict)  # one boto3 client per service (tests may inject)

    @cached_property
    def stack(self) -> StackContext:
        if self.env == "local":
            raise RuntimeError("this runbook needs an AWS environment (--env dev|staging|prod)")
        return StackContext(load_stack_file(stack_file(self.env)))

    def output(self, key: str, default: str) -> str:
        """A stack output when the operator supplied them, else the name the naming code derives."""
        value = self.stack_outputs.get(key)
        return str(value) if value else default

    @cached_property
    def session(self) -> Any:
        import boto3

        return boto3.session.Session(region_name=self.stack.cfg.region)

    def aws(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = self.session.client(service)
        return self.clients[service]

    @cached_property
    def account_id(self) -> str:
        return self.aws("sts").get_caller_identity()["Account"]

    @cached_property
    def mlflow(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def wait_for(self, description: str, probe: Callable[[], bool], timeout_s: float, poll_s: float = 15) -> None:
        """Poll `probe` until it holds; `--param timeout_s=` / `poll_s=` override the step's defaults."""

        timeout_s = float(self.param("timeout_s", str(timeout_s)))
        poll_s = float(self.param("poll_s", str(poll_s)))
        deadline = time.monotonic() + timeout_s
        while not probe():
            if time.monotonic() > deadline:
                raise StepFailed(f"timed out after {timeout_s:.0f}s waiting for {description}")
            time.sleep(poll_s)

    def param(self, name: str, default: str | None = None) -> str:
        if name in self.params:
            return self.params[name]
        if default is None:
            raise StepFailed(f"this runbook needs --param {name}=VALUE")
        return default


def load_outputs(path: Path | None) -> dict[str, Any]:
    return json.loads(path.read_text()) if path else {}
