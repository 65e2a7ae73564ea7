"""The consistency check of the local platform: registry, model slots and model server tell one story.

For each model the platform serves it reads, live, three things: the registry alias that decides what
serves (`champion`, or `challenger` while no version passed its gates), the version the champion slot
holds (`PUBLISHED.json` under `<state>/model-slots/`) and the version the running MLServer reports in its
model metadata (`GET /v2/models/<name>`, after `POST /v2/repository/index` lists the models it has).
They agree when the served version equals the alias and the slot holds the champion (no champion: no
slot is expected). `mlplat local status` prints the table and exits 1 on a mismatch.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ml.training.follow import FollowError, served_version, slot_version
from ml.training.tracking import CHALLENGER, CHAMPION

# A status check must answer in seconds: the MLflow client's own retries (minutes) are off here.
CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


@dataclass
class Agreement:
    model: str
    alias: str | None  # the alias that decides what serves: champion, else challenger
    alias_version: str | None
    slot_version: str | None
    served_version: str | None
    server_state: str | None = None  # as MLServer's repository index reports it (READY, LOADING, ...)
    error: str = ""

    @property
    def ok(self) -> bool:
        if self.error or self.alias_version is None:
            return False
        slot_expected = self.alias_version if self.alias == CHAMPION else None
        return self.served_version == self.alias_version and self.slot_version == slot_expected

    def line(self) -> str:
        """`<model>: champion alias v2, slot v2, served v1` (what a mismatch report names)."""
        def v(x: str | None) -> str:
            return f"v{x}" if x else "none"

        text = (f"{self.model}: {self.alias or 'no'} alias {v(self.alias_version)}, slot {v(self.slot_version)}, "
                f"served {v(self.served_version)}")
        return f"{text} ({self.error})" if self.error else text

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _alias(client: Any, model: str) -> tuple[str | None, str | None]:
    from mlflow.exceptions import MlflowException

    for alias in (CHAMPION, CHALLENGER):
        try:
            return alias, str(client.get_model_version_by_alias(model, alias).version)
        except MlflowException:
            continue
    return None, None


def repository_index(serving_url: str, timeout_s: float = 5.0) -> dict[str, str]:
    """Model name -> state, as MLServer's model repository index reports it."""
    request = urllib.request.Request(f"{serving_url.rstrip('/')}/v2/repository/index", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as resp:
        return {str(m.get("name")): str(m.get("state", "")) for m in json.loads(resp.read())}


def check(tracking_uri: str, serving_url: str, slot_dir: Path, models: tuple[str, ...]) -> list[Agreement]:
    """One Agreement per model, read from the running services (nothing from files written at `up`)."""
    for key, value in CLIENT_ENV.items():
        os.environ.setdefault(key, value)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        index: dict[str, str] | None = repository_index(serving_url)
        server_error = ""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        index, server_error = None, f"model server at {serving_url} does not answer: {exc}"
    out = []
    for model in models:
        row = Agreement(model, None, None, slot_version(slot_dir, model), None)
        try:
            row.alias, row.alias_version = _alias(client, model)
        except Exception as exc:  # MLflow down or refusing: reported in the row, the check goes on
            row.error = f"registry at {tracking_uri}: {type(exc).__name__}: {str(exc)[:200]}"
        if index is None:
            row.error = row.error or server_error
        else:
            row.server_state = index.get(model)
            try:
                row.served_version = served_version(serving_url, model)
            except FollowError as exc:
                row.error = row.error or str(exc)
        if not row.error and row.alias_version is None:
            row.error = "no champion or challenger alias in the registry"
        out.append(row)
    return out
