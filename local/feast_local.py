"""The local Feast repository: the cluster's feature definitions, local provider, materialized.

Definitions come from each model's features module (`ModelSpec.features`, through the model's
plugin: `write_feature_data` + `feature_definitions`), the same functions the cluster's apply Job
uses; `common/feast_repo.py` writes `feature_store.yaml` and applies/materializes. Online store:
SQLite by default, the local `redis-server` with `--redis`. A second `up` skips the work when data,
online store and (for Redis) the redis process are unchanged.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml.data.feast_repo import apply_and_materialize, write_repo
from ml.model_plugin import load_plugin

MARKER = ".materialized.json"


@dataclass
class FeastState:
    repo: Path
    online_store: str  # "sqlite" | "redis"
    views: dict[str, int] = field(default_factory=dict)  # feature view -> rows in its offline source
    reused: bool = False
    seconds: float = 0.0
    batch_engine: str = ""  # what computed the offline sources (pandas, or the Spark job and its timing)


def build(repo_dir: Path, data_dir: Path, models: tuple[str, ...], redis_url: str | None,
          identity: dict[str, Any], spark: bool = False) -> FeastState:
    """Write, apply and materialize the repository unless `identity` matches the last build. `spark`: the
    offline sources are computed by the batch-feature Spark job (local[2], local/spark_local.py) instead of
    the models' pandas code."""
    started = time.perf_counter()
    store_kind = "redis" if redis_url else "sqlite"
    marker = repo_dir / MARKER
    want = {**identity, "online_store": store_kind, "redis_url": redis_url, "models": sorted(models),
            "batch_engine": "spark" if spark else "pandas"}
    if marker.is_file() and (repo_dir / "registry.db").is_file():
        done = json.loads(marker.read_text())
        if done.get("identity") == want:
            return FeastState(repo_dir, store_kind, done.get("views", {}), reused=True,
                              batch_engine=done.get("batch_engine", ""))
    # Start clean: a registry or online store of an earlier configuration must not leak views.
    if repo_dir.exists():
        shutil.rmtree(repo_dir)
    parquet_dir = repo_dir / "data"
    objects: list[Any] = []
    views: dict[str, int] = {}
    engine = "pandas (the models' feature code)"
    if spark:
        from local.spark_local import run_job  # imported only with the Spark engine

        repo_dir.mkdir(parents=True)
        job = run_job(data_dir, parquet_dir, models, repo_dir / "spark-job.log")
        views = {view: rows for (_, view), rows in job.views.items()}
        engine = job.describe()
    for name in models:
        plugin = load_plugin(name)
        if spark:
            objects.extend(plugin.feature_definitions(parquet_dir / name))
            continue
        for view, path in plugin.write_feature_data(data_dir, parquet_dir).items():
            views[view] = _rows(path)
        objects.extend(plugin.feature_definitions(parquet_dir))
    write_repo(repo_dir, redis_url=redis_url)
    if objects:
        apply_and_materialize(repo_dir, objects)
    marker.write_text(json.dumps({"identity": want, "views": views, "batch_engine": engine}))
    return FeastState(repo_dir, store_kind, views, seconds=time.perf_counter() - started, batch_engine=engine)


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def check_online(repo_dir: Path) -> dict[str, str]:
    """Read one entity per feature view back from the online store and compare with its source row.

    Returns view -> "ok" or a short problem description. Generic on purpose: it proves that what
    was materialized is served, for whatever views the models define.
    """
    import pandas as pd
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo_dir))
    results: dict[str, str] = {}
    for view in store.list_feature_views():
        join_keys = [store.get_entity(e).join_key for e in view.entities]
        source = getattr(view.batch_source, "path", None)
        if not source or not view.features:
            continue
        row = pd.read_parquet(source).iloc[0]
        entity = {k: _plain(row[k]) for k in join_keys}
        feature = view.features[0].name
        got = store.get_online_features(features=[f"{view.name}:{feature}"], entity_rows=[entity]).to_dict()
        value = got.get(feature, [None])[0]
        expected = _plain(row[feature])
        if value is None:
            results[view.name] = f"no online value for {entity}"
        elif _same(value, expected):
            results[view.name] = "ok"
        else:
            results[view.name] = f"{feature}={value!r}, source has {expected!r}"
    return results


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return value.item() if hasattr(value, "item") else value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a) - float(b)) <= 1e-4 * max(1.0, abs(float(b)))
    return list(a) == list(b) if isinstance(a, list | tuple) else a == b
