"""The fraud model's batch feature views on Spark: the same rows as `features.entity_frames` (the pandas
reference), computed from the transactions file by the Spark job (ml/data/spark_features.py).

Card and device ids are the transaction id and every row carries `FEATURE_TIMESTAMP`, exactly as in the
pandas path (the file has neither ids nor times; features.py explains why). Cells are cast from text with
Spark's ANSI casts, so a non-integer cell fails the job instead of becoming null.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml.models.fraud.data import FILE, ID
from ml.models.fraud.features import CARD_FEATURES, CARD_VIEW, DEVICE_FEATURES, DEVICE_VIEW, FEATURE_TIMESTAMP


def views(spark: Any, reader: Any) -> dict[str, DataFrame]:
    """card_features (card_id, cardholder_age, velocity_last_24h) and device_features (device_id,
    device_trust_score), each with event_timestamp."""
    raw = reader.text(FILE, [ID, *CARD_FEATURES, *DEVICE_FEATURES])
    typed = raw.select(*[F.trim(F.col(c)).cast("long").alias(c) for c in raw.columns])
    stamp = F.lit(FEATURE_TIMESTAMP).cast("timestamp").alias("event_timestamp")
    card = typed.select(F.col(ID).alias("card_id"), *CARD_FEATURES, stamp).orderBy("card_id")
    device = typed.select(F.col(ID).alias("device_id"), *DEVICE_FEATURES, stamp).orderBy("device_id")
    return {CARD_VIEW: card, DEVICE_VIEW: device}
