"""The challenger's model server of the local platform: a second MLServer (ports `challenger_*`) serving the
challenger versions of the models under a rollout, a shadow or an experiment, each as `models:/<name>/<version>`.
Started on first use, the model reloaded when the server already runs; stopped by `local down`."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from typing import Any

from local import serving, traffic
from local.config import LocalConfig
from local.services import decide, ensure
from local.supervisor import Supervisor
from local.training import ModelState
from ml.delivery.splitter import CHALLENGER
from ml.training.follow import champion_version, served_version

CHALLENGER_VERSIONS = "versions.json"


class ChallengerError(RuntimeError):
    """The challenger cannot be served (the message names the model, version and why)."""


def _client(cfg: LocalConfig) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=cfg.mlflow_url, registry_uri=cfg.mlflow_url)


def ensure_challenger(cfg: LocalConfig, model: str, version: str, say: Callable[[str], None]) -> str:
    """Serve `model` v`version` on the challenger's model server; returns the champion's version."""
    if model not in cfg.models:
        raise ChallengerError(f"{model} is not served by this platform (it serves {', '.join(cfg.models)})")
    client = _client(cfg)
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(model, version)
    except MlflowException:
        raise ChallengerError(f"{model} v{version} is not in the registry at {cfg.mlflow_url}") from None
    champion = champion_version(client, model)
    if champion is None:
        raise ChallengerError(f"{model} has no champion to compare with")
    if champion == version:
        raise ChallengerError(f"{model} v{version} is already the champion")
    root = cfg.path(traffic.CHALLENGER_DIR)
    root.mkdir(parents=True, exist_ok=True)
    versions_file = root / CHALLENGER_VERSIONS
    versions = json.loads(versions_file.read_text()) if versions_file.is_file() else {}
    versions[model] = version
    states = [ModelState(m, v, False, CHALLENGER, "") for m, v in sorted(versions.items()) if m in cfg.models]
    serving.write_repo(cfg, states, root=root, uris={m.name: f"models:/{m.name}/{m.version}" for m in states},
                       ports=(cfg.ports["challenger_http"], cfg.ports["challenger_grpc"],
                              cfg.ports["challenger_metrics"]))
    versions_file.write_text(json.dumps(versions, indent=1, sort_keys=True))
    sup = Supervisor(cfg.state_dir)
    url = cfg.url("challenger_http")
    if sup.running("challenger") is None:
        say(f"starting the challenger's model server at {url}")
        ensure(cfg, sup, decide(cfg, sup, "challenger"), say, extra_env=serving.server_env(cfg), url=url)
    elif served_version(url, model) != version:
        req = urllib.request.Request(f"{url}/v2/repository/models/{model}/load", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=180):
            pass
    served = served_version(url, model)
    if served != version:
        raise ChallengerError(f"the challenger's model server at {url} serves {model} v{served}, expected v{version}; "
                           f"its log: {cfg.path(traffic.CHALLENGER_DIR, 'challenger.log')}")
    say(f"{model} v{version} serves as {CHALLENGER} at {url} ({model} v{champion} is champion)")
    return champion
