"""The persisted state of a running or finished experiment: one JSON file per model.

The controller (`mlplat experiment ab|bandit`, in a terminal, under `local up` or as a Deployment)
rewrites `<state dir>/experiments/<model>.json` after every round; `mlplat experiment status` reads it
from any other process. Writes are atomic (a temporary file renamed over the old one), so a reader never
sees half a round. Nothing here is needed to resume: the counts come from the feedback store and the
posteriors are recomputed from them, so a restarted controller continues where the old one stopped.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("ab", "bandit")
STATUSES = ("running", "decided", "stopped", "failed")
HISTORY = 200  # rounds of weights kept in the file
SUBDIR = "experiments"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ExperimentNotFound(LookupError):
    """No experiment state for this model; the message names the file looked for."""

    user_error = True


@dataclass
class ExperimentState:
    model: str
    kind: str  # ab | bandit
    variants: dict[str, str]  # splitter variant -> registry version
    metric: str
    started_at: float
    status: str = "running"
    updated_at: float = field(default_factory=time.time)
    rounds: int = 0
    weights: dict[str, int] = field(default_factory=dict)
    counts: dict[str, dict[str, float]] = field(default_factory=dict)  # variant -> served/outcomes/successes/rate
    settings: dict[str, Any] = field(default_factory=dict)  # the plan (A/B) or floor/interval (bandit)
    posteriors: dict[str, dict[str, float]] = field(default_factory=dict)  # bandit: alpha/beta/mean/p_best
    decision: dict[str, Any] | None = None  # A/B: verdict, reason, test statistics
    mlflow_run_id: str | None = None
    promotion: dict[str, Any] | None = None
    controller: dict[str, Any] = field(default_factory=dict)  # pid, host, metrics URL, splitter
    history: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"experiment kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.status not in STATUSES:
            raise ValueError(f"experiment status must be one of {', '.join(STATUSES)}, got {self.status!r}")

    def record_round(self, weights: dict[str, int], now: float | None = None) -> None:
        self.rounds += 1
        self.updated_at = time.time() if now is None else now
        self.weights = dict(weights)
        self.history = [*self.history, {"at": self.updated_at, "weights": dict(weights)}][-HISTORY:]


def path_for(state_dir: Path, model: str) -> Path:
    if not _NAME.match(model):
        raise ValueError(f"model name {model!r} is not a plain name (letters, digits, . _ -)")
    return Path(state_dir) / SUBDIR / f"{model}.json"


def save(state: ExperimentState, state_dir: Path) -> Path:
    path = path_for(state_dir, state.model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(state), indent=1, sort_keys=True))
    tmp.replace(path)
    return path


def load(state_dir: Path, model: str) -> ExperimentState:
    path = path_for(state_dir, model)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExperimentNotFound(
            f"no experiment for {model}: {path} does not exist (start one with `mlplat experiment ab {model} ...` "
            f"or `mlplat experiment bandit {model} ...`)") from None
    except ValueError as exc:
        raise ExperimentNotFound(f"the experiment state {path} is not valid JSON: {exc}") from None
    return ExperimentState(**doc)
