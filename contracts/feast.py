"""Feast constants shared by the cluster's feature store (infra/) and the model code (ml/)."""

from __future__ import annotations

PROJECT = "mlplat"  # Feast project name: part of every online-store key
ENTITY_KEY_SERIALIZATION_VERSION = 3
REGISTRY_KEY = "registry/registry.db"  # object key of the file registry in the Feast bucket
OFFLINE_PREFIX = "offline"  # Parquet offline store under s3://<feast bucket>/offline/

# The model runtimes' clients of the online store (ml/serving/online.py); the cluster's choice is stack
# config `serving.onlineClient` (stacks/schema.py), passed to the model server's environment.
ONLINE_CLIENTS = ("resp", "resp-async", "redis-asyncio", "redis-py")
ASYNC_ONLINE_CLIENTS = frozenset({"resp-async", "redis-asyncio"})
DEFAULT_ONLINE_CLIENT = "resp-async"
