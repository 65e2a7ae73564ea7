"""Feast constants shared by the cluster's feature store (infra/) and the model code (ml/)."""

from __future__ import annotations

PROJECT = "mlplat"  # Feast project name: part of every online-store key
ENTITY_KEY_SERIALIZATION_VERSION = 3
REGISTRY_KEY = "registry/registry.db"  # object key of the file registry in the Feast bucket
OFFLINE_PREFIX = "offline"  # Parquet offline store under s3://<feast bucket>/offline/
