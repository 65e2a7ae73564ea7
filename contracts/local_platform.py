"""Where the embedded platform runs: the record `mlplat local up` writes and every other command reads.

`up` writes `<state>/platform.json` when it starts (phase `starting`) and again when it finishes (`up`),
is interrupted (`interrupted`) or fails (`failed`); `down` marks it `down`. The record holds the state
directory, the host, every port and the models, so `mlplat model ...`, `mlplat runbook run ... --env local`,
`mlplat pipeline run --local` and `mlplat local status|chaos` reach the platform that actually runs,
on the ports it was started with, without the user repeating flags. The state directory is `--state-dir`,
else `$MLPLAT_LOCAL_DIR`, else `.local/` in the repository.

Standard library only: the ML commands (which may not import `local/`) read it too.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_ENV = "MLPLAT_LOCAL_DIR"
PLATFORM_FILE = "platform.json"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STATE_DIR = REPO_ROOT / ".local"
SLOTS_DIR = "model-slots"  # the local models bucket (ml/training/directory_bucket.py) lives under it
DEPLOY_REPO = "deploy.git"  # the deploy repository (bare) that stands in for the cluster's, under the state dir
DEPLOY_STACK = REPO_ROOT / "stacks" / "Pulumi.dev.yaml"  # the environment whose tree the local platform applies
PHASES = ("starting", "up", "interrupted", "failed", "down")


def state_dir(explicit: str | Path | None = None) -> Path:
    """The platform's state directory: `explicit`, else $MLPLAT_LOCAL_DIR, else .local/ in the repository."""
    raw = explicit or os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR
    return Path(raw).expanduser().resolve()


@dataclass(frozen=True)
class PlatformRecord:
    state_dir: Path
    host: str
    ports: dict[str, int]
    models: tuple[str, ...]
    services: tuple[str, ...]  # what this `up` starts (in start order)
    phase: str = "starting"
    updated: float = field(default_factory=time.time)

    def url(self, port_name: str) -> str:
        return f"http://{self.host}:{self.ports[port_name]}"

    @property
    def tracking_uri(self) -> str:
        return self.url("mlflow")

    @property
    def serving_url(self) -> str:
        return self.url("http")

    @property
    def slot_dir(self) -> Path:
        return self.state_dir / SLOTS_DIR

    def describe(self) -> str:
        """One line naming the platform a command works against."""
        return (f"local platform in {self.state_dir} (MLflow {self.tracking_uri}, "
                f"MLServer {self.serving_url})")


def write(record: PlatformRecord) -> Path:
    if record.phase not in PHASES:
        raise ValueError(f"unknown platform phase {record.phase!r}; expected one of {', '.join(PHASES)}")
    path = record.state_dir / PLATFORM_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {**asdict(record), "state_dir": str(record.state_dir), "models": list(record.models),
           "services": list(record.services), "updated": time.time()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)  # atomic: a concurrent reader never sees half a record
    return path


def read(state: str | Path | None = None) -> PlatformRecord | None:
    """The record in the state directory, or None when `up` never ran there (or the file is unreadable)."""
    path = state_dir(state) / PLATFORM_FILE
    try:
        doc = json.loads(path.read_text())
        return PlatformRecord(state_dir=Path(doc["state_dir"]), host=str(doc["host"]),
                              ports={k: int(v) for k, v in doc["ports"].items()}, models=tuple(doc["models"]),
                              services=tuple(doc["services"]), phase=str(doc["phase"]),
                              updated=float(doc.get("updated", 0.0)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def answers(url: str, timeout_s: float = 3.0) -> bool:
    """True when an HTTP GET of `url` gets a 2xx answer within `timeout_s`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class PlatformNotFound(RuntimeError):
    """No running local platform where the command looked; the message says where and what to do."""


def find_running(state: str | Path | None = None, timeout_s: float = 3.0) -> PlatformRecord:
    """The platform recorded in the state directory whose MLflow answers; raise PlatformNotFound otherwise."""
    where = state_dir(state)
    record = read(where)
    if record is None:
        raise PlatformNotFound(f"no local platform in {where} (start one with `mlplat local up`, or set "
                               f"{STATE_ENV} to the state directory of the one that runs)")
    if record.phase == "down":
        raise PlatformNotFound(f"the local platform in {where} was stopped (`mlplat local down`); start it with "
                               "`mlplat local up`")
    if not answers(f"{record.tracking_uri}/health", timeout_s):
        raise PlatformNotFound(f"the local platform in {where} is not running: its MLflow at {record.tracking_uri} "
                               "does not answer; `mlplat local status` shows what is down, `mlplat local up` "
                               "restarts it")
    return record


@dataclass(frozen=True)
class Registry:
    """The MLflow a command uses, the line that says so, and the local platform when it is that one's."""

    tracking_uri: str
    source: str
    platform: PlatformRecord | None = None


def registry_for(explicit: str | None, state: str | Path | None = None) -> Registry:
    """An explicit URI, else $MLFLOW_TRACKING_URI, else the running local platform's MLflow server. A URI that
    is the recorded platform's own still counts as that platform (serving then follows what changes).
    Raises PlatformNotFound when nothing applies."""
    given = explicit or os.environ.get("MLFLOW_TRACKING_URI")
    if given:
        record = read(state)
        if record is not None and given.rstrip("/") == record.tracking_uri:
            return Registry(given, record.describe(), record)
        how = "--tracking-uri" if explicit else "MLFLOW_TRACKING_URI"
        return Registry(given, f"MLflow {given} ({how})")
    record = find_running(state)
    return Registry(record.tracking_uri, record.describe(), record)
