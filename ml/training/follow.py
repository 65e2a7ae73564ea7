"""Serving follows the registry on the local platform: the `champion` alias, the champion slot and the
version MLServer serves are kept equal.

Three places say which version of a model serves: the registry alias `models:/<name>@champion`, the
local champion slot (`<state>/model-slots/local-models/<name>/champion/PUBLISHED.json`, the models
bucket's layout; ml/training/publish.py) and the version the running MLServer reports in its model
metadata (the runtime pins the alias when it loads). Every command that moves the alias on the local
platform goes through this module:

- `promote` moves `champion` to a version and makes the slot and the server follow; when the server
  cannot follow, the alias and the slot are put back, so the three still agree, and the error says so.
- `follow_champion` makes the slot and the server follow the alias as it is. It changes only what differs,
  so repeating it after a failure is safe.

Reading the server uses the V2 API MLServer implements: `GET /v2/models/<name>` (model metadata,
`versions`) and `POST /v2/repository/models/<name>/load` (a reload re-resolves the alias; MLServer
swaps the new instance in before it unloads the old one).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import model_registry
from contracts.model_slots import slot_prefix
from ml.training.directory_bucket import LOCAL_BUCKET, DirectoryBucket
from ml.training.publish import MARKER, PublishError
from ml.training.publish import publish as publish_slot
from ml.training.tracking import CHAMPION

RELOAD_TIMEOUT_S = 180.0


class FollowError(RuntimeError):
    """Serving could not follow the registry; the message names what differs and how to recover."""


@dataclass(frozen=True)
class Serving:
    """Where the local platform serves from: its slot directory and its MLServer base URL."""

    slot_dir: Path
    serving_url: str


def slot_version(slot_dir: Path, model: str) -> str | None:
    """The version the local champion slot holds (its PUBLISHED.json), or None when it holds none."""
    marker = Path(slot_dir) / LOCAL_BUCKET / slot_prefix(model, CHAMPION) / MARKER
    try:
        return str(json.loads(marker.read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def served_version(serving_url: str, model: str, timeout_s: float = 5.0) -> str | None:
    """The version MLServer reports for `model` (model metadata), or None when it does not serve it."""
    try:
        with urllib.request.urlopen(f"{serving_url.rstrip('/')}/v2/models/{model}", timeout=timeout_s) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as exc:
        raise FollowError(f"the model server at {serving_url} does not answer ({exc})") from exc
    versions = doc.get("versions") or []
    return str(versions[0]) if versions else (str(doc["version"]) if doc.get("version") else None)


def server_ready(serving_url: str, timeout_s: float = 5.0) -> None:
    """Raise FollowError unless MLServer answers its readiness endpoint."""
    try:
        with urllib.request.urlopen(f"{serving_url.rstrip('/')}/v2/health/ready", timeout=timeout_s) as resp:
            if resp.status == 200:
                return
    except (urllib.error.URLError, OSError) as exc:
        raise FollowError(f"the model server at {serving_url} does not answer ({exc}); nothing was changed. "
                          "`mlplat local status` shows what is down, `mlplat local up` restarts it") from exc
    raise FollowError(f"the model server at {serving_url} is not ready; nothing was changed")


def champion_version(client: Any, model: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, CHAMPION).version)
    except MlflowException:
        return None


def _publish(client: Any, model: str, version: str, slot_dir: Path, actor: str) -> None:
    from mlflow.exceptions import MlflowException

    bucket = DirectoryBucket(slot_dir)
    bucket.create_bucket(Bucket=LOCAL_BUCKET)
    try:
        publish_slot(model, version, CHAMPION, LOCAL_BUCKET, tracking_uri=client.tracking_uri, s3_client=bucket,
                     actor=actor)
    except (PublishError, MlflowException, OSError) as exc:  # OSError: a download or a write that failed
        raise FollowError(f"publishing {model} v{version} to the champion slot failed: {exc}") from exc


def _reload(serving_url: str, model: str, want: str, timeout_s: float) -> None:
    request = urllib.request.Request(f"{serving_url.rstrip('/')}/v2/repository/models/{model}/load", data=b"",
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            pass
    except urllib.error.HTTPError as exc:
        raise FollowError(f"MLServer at {serving_url} refused to reload {model}: {exc.code} "
                          f"{exc.read()[:300].decode(errors='replace')}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise FollowError(f"MLServer at {serving_url} did not reload {model}: {exc}") from exc
    deadline = time.monotonic() + 30
    while (served := served_version(serving_url, model)) != want:
        if time.monotonic() > deadline:
            raise FollowError(f"MLServer at {serving_url} serves {model} v{served} after the reload, expected v{want}")
        time.sleep(0.2)


def follow_champion(client: Any, model: str, serving: Serving, actor: str = "mlplat",
                    reload_timeout_s: float = RELOAD_TIMEOUT_S) -> list[str]:
    """Make the champion slot and the served version equal to the `champion` alias; only what differs changes.
    Returns what was done (empty: everything already agreed)."""
    want = champion_version(client, model)
    if want is None:
        raise FollowError(f"{model} has no champion in the registry at {client.tracking_uri}")
    done = []
    if slot_version(serving.slot_dir, model) != want:
        _publish(client, model, want, serving.slot_dir, actor)
        done.append(f"slot -> v{want}")
    if served_version(serving.serving_url, model) != want:
        _reload(serving.serving_url, model, want, reload_timeout_s)
        done.append(f"MLServer serves v{want}")
    # The model's explainer (served from the same alias) explains the version that serves.
    explainer = model_registry.get(model).explainer_name if model in model_registry.names() else None
    if explainer is not None:
        served = served_version(serving.serving_url, explainer)
        if served is not None and served != want:
            _reload(serving.serving_url, explainer, want, reload_timeout_s)
            done.append(f"{explainer} explains v{want}")
    return done


def promote(client: Any, model: str, version: str, serving: Serving, actor: str = "mlplat") -> list[str]:
    """Move `champion` to `version` and make the slot and the server follow. When they cannot, the alias and
    the slot are put back to what they were and FollowError says what happened (nothing changed)."""
    server_ready(serving.serving_url)
    previous = champion_version(client, model)
    client.set_registered_model_alias(model, CHAMPION, str(version))
    try:
        return [f"champion v{previous or '-'} -> v{version}", *follow_champion(client, model, serving, actor)]
    except FollowError as exc:
        restored = "removed"
        if previous is None:
            client.delete_registered_model_alias(model, CHAMPION)
        else:
            client.set_registered_model_alias(model, CHAMPION, previous)
            restored = f"back at v{previous}"
            try:
                follow_champion(client, model, serving, actor)
            except FollowError as again:
                raise FollowError(f"{exc}; the champion alias is {restored} but serving did not follow it either "
                                  f"({again}): fix the model server, then `mlplat local status` shows what "
                                  "differs") from again
        raise FollowError(f"{exc}; nothing changed: the champion alias is {restored}. Repeat the command once "
                          "`mlplat local status` shows the model server up") from exc
