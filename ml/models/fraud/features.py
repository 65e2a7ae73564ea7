"""Feast definitions of the fraud model: cardholder and device features, including velocity.

Split of the model's inputs (see docs/MODELS.md):
- request-time (in the inference request): amount, transaction_hour, merchant_category,
  foreign_transaction, location_mismatch;
- online store, entity `card` (join key `card_id`): cardholder_age, velocity_last_24h — velocity is
  a streaming feature, so the view also has a PushSource (`card_activity_push`) that our own small
  consumer writes to (Feast's Kafka sources are experimental);
- online store, entity `device` (join key `device_id`): device_trust_score.

Point-in-time joins: the fraud file has no timestamps and no card/device identifiers. To exercise
the same path anyway, `write_parquet` derives `card_id = device_id = transaction_id` and stamps
every row with `FEATURE_TIMESTAMP`; `training_frame` then rebuilds the training columns with
`get_historical_features` (a point-in-time join that, on this file, returns the file's own values).
With real card/device ids and event times the same code gives leakage-free training data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ml.models.fraud import data

FEATURE_TIMESTAMP = datetime(2024, 1, 1, tzinfo=UTC)
CARD_VIEW, DEVICE_VIEW = "card_features", "device_features"
CARD_FEATURES = ("cardholder_age", "velocity_last_24h")
DEVICE_FEATURES = ("device_trust_score",)
ONLINE_FEATURES = (*DEVICE_FEATURES, *CARD_FEATURES)
REQUEST_FEATURES = ("amount", "transaction_hour", "merchant_category", "foreign_transaction", "location_mismatch")


def entity_frames(transactions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Card and device feature rows derived from a transactions frame (ids = transaction_id)."""
    ids = transactions["transaction_id"].astype("int64").to_numpy()
    card = pd.DataFrame({"card_id": ids, **{c: transactions[c].astype("int64").to_numpy() for c in CARD_FEATURES}})
    device = pd.DataFrame(
        {"device_id": ids, **{c: transactions[c].astype("int64").to_numpy() for c in DEVICE_FEATURES}}
    )
    for frame in (card, device):
        frame["event_timestamp"] = FEATURE_TIMESTAMP
    return {CARD_VIEW: card, DEVICE_VIEW: device}


def write_parquet(data_dir: Path, parquet_dir: Path) -> dict[str, Path]:
    """Derive the offline-store Parquet files from the fraud file in `data_dir`."""

    transactions = data.load(Path(data_dir))
    parquet_dir = Path(parquet_dir)
    parquet_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for view, frame in entity_frames(transactions).items():
        paths[view] = parquet_dir / f"{view}.parquet"
        frame.to_parquet(paths[view], index=False)
    return paths


def definitions(parquet_dir: Path) -> list[Any]:
    """Entities, sources (file + push) and feature views over the Parquet files of `write_parquet`."""
    from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
    from feast.types import Int64

    parquet_dir = Path(parquet_dir).resolve()
    card = Entity(name="card", join_keys=["card_id"], value_type=ValueType.INT64, description="A payment card.")
    device = Entity(name="device", join_keys=["device_id"], value_type=ValueType.INT64, description="A device.")
    card_file = FileSource(
        name="card_features_source", path=str(parquet_dir / f"{CARD_VIEW}.parquet"), timestamp_field="event_timestamp"
    )
    card_push = PushSource(name="card_activity_push", batch_source=card_file)
    device_file = FileSource(
        name="device_features_source", path=str(parquet_dir / f"{DEVICE_VIEW}.parquet"),
        timestamp_field="event_timestamp",
    )
    card_view = FeatureView(
        name=CARD_VIEW, entities=[card], source=card_push, online=True,
        schema=[Field(name=f, dtype=Int64) for f in CARD_FEATURES],
        description="Cardholder age and transaction velocity (count over the last 24 h, pushed by a stream consumer).",
    )
    device_view = FeatureView(
        name=DEVICE_VIEW, entities=[device], source=device_file, online=True,
        schema=[Field(name=f, dtype=Int64) for f in DEVICE_FEATURES],
        description="Trust score of the device used for the transaction.",
    )
    return [card, device, card_file, card_push, device_file, card_view, device_view]


def training_frame(store: Any, transactions: pd.DataFrame) -> pd.DataFrame:
    """`transactions`' request-time columns joined point-in-time with the card/device features."""
    entity_df = pd.DataFrame({
        "card_id": transactions["transaction_id"].astype("int64"),
        "device_id": transactions["transaction_id"].astype("int64"),
        "event_timestamp": FEATURE_TIMESTAMP,
    })
    refs = [f"{CARD_VIEW}:{f}" for f in CARD_FEATURES] + [f"{DEVICE_VIEW}:{f}" for f in DEVICE_FEATURES]
    joined = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
    joined = joined.sort_values("card_id").reset_index(drop=True)
    base = transactions.sort_values("transaction_id").reset_index(drop=True)
    for column in ONLINE_FEATURES:
        base[column] = joined[column].to_numpy()
    return base



# The same views computed on Spark (the job in ml/data/spark_features.py): the module whose
# `views(spark, reader)` returns them, imported only where the Spark job runs (it needs pyspark; the serving
# image and the Feast apply Job import this module). `write_parquet` above is the pandas reference the
# parity test compares them to.
SPARK_VIEWS = "ml.models.fraud.batch_features"
