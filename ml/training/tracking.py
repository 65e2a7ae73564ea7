"""MLflow helpers: tracking URI defaults, run logging, registration with aliases, model download.

Registry aliases only (`challenger`, `champion`), never stages (deprecated in MLflow 3). A model
version's source is the run's `model/` artifact directory: the portable serving artifact written by
the model's algorithm plus `reference.json` (drift) and `mlplat-model.json` (metadata).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_DIR = REPO_ROOT / ".local" / "mlflow"
ARTIFACT_PATH = "model"
CHALLENGER, CHAMPION = "challenger", "champion"


def default_tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else a SQLite store under .local/mlflow/ (created on demand)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    LOCAL_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{LOCAL_DIR / 'mlflow.db'}"


def mlflow_key(metric: str) -> str:
    """MLflow metric/param names allow [A-Za-z0-9_.-/ ]; `ndcg@10` becomes `ndcg_at_10`."""
    return re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", metric.replace("@", "_at_"))


def ensure_experiment(client: Any, name: str, tracking_uri: str) -> str:
    """Experiment id for `name`; a SQLite store keeps its artifacts in `artifacts/` beside the DB."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:///"):
        # Keep artifacts beside the database (the default store: .local/mlflow/artifacts), not in
        # the working directory's ./mlruns.
        db = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
        location = (db.parent / "artifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def pin_alias(uri: str, tracking_uri: str | None = None) -> tuple[str, str | None]:
    """`models:/NAME@ALIAS` -> (`models:/NAME/VERSION`, VERSION) resolved now; other URIs unchanged.

    A runtime records which version an alias pointed at when it loaded, so serving can report the
    version it actually holds (a later alias move takes effect at the next load/reload).
    """
    match = re.fullmatch(r"models:/([^/@]+)@([^/]+)", uri)
    if match is None:
        version = re.fullmatch(r"models:/[^/@]+/(\d+)", uri)
        return uri, version.group(1) if version else None
    from mlflow.tracking import MlflowClient

    name, alias = match.groups()
    client = MlflowClient(tracking_uri=tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri())
    version = str(client.get_model_version_by_alias(name, alias).version)
    return f"models:/{name}/{version}", version


def register_version(client: Any, name: str, run_id: str, source: str, tags: dict[str, str]) -> str:
    """Create registered model `name` if needed, add a version for the run's artifact; return it."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description=f"mlplat reference model '{name}'")
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
    version = client.create_model_version(name, source, run_id=run_id, tags=tags)
    return str(version.version)


def resolve_model_dir(uri_or_dir: str | Path, tracking_uri: str | None = None) -> Path:
    """Local directory of a serving artifact: a directory as is, or a `models:/` / `runs:/` download."""
    text = str(uri_or_dir)
    if "://" not in text and not text.startswith(("models:/", "runs:/")):
        path = Path(text)
        if not path.is_dir():
            raise FileNotFoundError(f"model directory {path} does not exist (or pass models:/NAME@ALIAS)")
        return path
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    elif "MLFLOW_TRACKING_URI" not in os.environ:
        mlflow.set_tracking_uri(default_tracking_uri())
    dst = Path(tempfile.mkdtemp(prefix="mlplat-model-"))
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=text, dst_path=str(dst)))
