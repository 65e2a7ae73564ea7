"""Write, apply and materialize a local Feast repository for the reference models.

`write_repo` creates `feature_store.yaml` (local provider, file offline store, SQLite registry,
online store SQLite or Redis); `apply_and_materialize` registers the definitions a model's
`features.py` builds (`definitions(parquet_dir)`) and loads the online store from the Parquet files
that `features.write_parquet(data_dir, parquet_dir)` derived from the model's data files. Library
functions only, so `mlplat local up` and the tests share them. On EKS the same definitions are
applied by a Job against the S3 registry and ElastiCache (workloads layer).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from contracts.feast import ENTITY_KEY_SERIALIZATION_VERSION, PROJECT  # ml/serving/online.py decodes this layout

__all__ = ["ENTITY_KEY_SERIALIZATION_VERSION", "PROJECT", "write_repo"]


def write_repo(repo_dir: str | Path, redis_url: str | None = None, project: str = PROJECT) -> Path:
    """feature_store.yaml for a local provider; Redis online store if `redis_url` (redis://host:port/db)."""
    repo = Path(repo_dir)
    repo.mkdir(parents=True, exist_ok=True)
    online: dict[str, Any]
    if redis_url:
        online = {"type": "redis", "connection_string": _feast_redis_connection(redis_url)}
    else:
        online = {"type": "sqlite", "path": str((repo / "online.db").resolve())}
    config = {
        "project": project,
        "provider": "local",
        "registry": {"registry_type": "file", "path": str((repo / "registry.db").resolve())},
        "online_store": online,
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": ENTITY_KEY_SERIALIZATION_VERSION,
    }
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return repo


def _feast_redis_connection(url: str) -> str:
    # Feast wants "host:port,db=N"; accept the redis:// URL everything else in the project uses.
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ValueError(f"redis_url must look like redis://HOST:PORT/DB, got {url!r}")
    db = (parsed.path or "/0").lstrip("/") or "0"
    conn = f"{parsed.hostname}:{parsed.port or 6379},db={db}"
    if parsed.password:
        conn += f",password={parsed.password}"
    if parsed.scheme == "rediss":
        conn += ",ssl=true"
    return conn


def apply_and_materialize(repo_dir: str | Path, objects: Sequence[Any], end: datetime | None = None) -> Any:
    """Register `objects` (entities, sources, feature views) and materialize every view; return the store."""
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo_dir))
    store.apply(list(objects))
    end = end or datetime.now(UTC) + timedelta(minutes=1)
    store.materialize(start_date=datetime(2000, 1, 1, tzinfo=UTC), end_date=end)
    return store
