"""Feast definitions of the recommendation model: item features and the reader's recent history.

- `book` (join key `book_id`): catalogue features of a book (average rating, rating count,
  publication year) for re-ranking and for explaining a recommendation.
- `reader` (join key `user_id`): `recent_book_ids`, the user's last `HISTORY_LENGTH` rated books, so
  a request may carry just a `user_id` and the runtime resolves the history online (fast Redis path,
  `ml/serving/online.py`).

Point-in-time joins: the goodbooks ratings carry no timestamps, so every row is stamped with
`FEATURE_TIMESTAMP` and "recent" means "last in file order". With real event times in the source,
`get_historical_features` over an entity frame (user_id, event_timestamp) gives leakage-free
training histories without any change here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ml.models.recommendation.data import load

FEATURE_TIMESTAMP = datetime(2024, 1, 1, tzinfo=UTC)
HISTORY_LENGTH = 50
BOOK_VIEW, READER_VIEW = "book_features", "reader_recent_books"
BOOK_FEATURES = ("average_rating", "ratings_count", "original_publication_year")
READER_FEATURES = ("recent_book_ids", "history_length")


def recent_histories(ratings: pd.DataFrame) -> pd.Series:
    """user_id -> the reader's last `HISTORY_LENGTH` rated book ids in file order: the reader view's
    `recent_book_ids`, and the histories that training batch-scores (batch_scores.py) from the same rule."""
    return ratings.groupby("user_id", sort=True)["book_id"].apply(lambda s: [int(b) for b in s.tail(HISTORY_LENGTH)])


def write_parquet(data_dir: Path, parquet_dir: Path) -> dict[str, Path]:
    """Derive the offline-store Parquet files from the goodbooks files in `data_dir`."""

    rec = load(Path(data_dir))
    parquet_dir = Path(parquet_dir)
    parquet_dir.mkdir(parents=True, exist_ok=True)
    books = rec.books[["book_id", *BOOK_FEATURES]].copy()
    books["book_id"] = books["book_id"].astype("int64")
    books["average_rating"] = books["average_rating"].astype("float32")
    books["ratings_count"] = books["ratings_count"].astype("int64")
    books["original_publication_year"] = books["original_publication_year"].fillna(0).astype("int64")
    books["event_timestamp"] = FEATURE_TIMESTAMP
    recent = recent_histories(rec.ratings).rename("recent_book_ids").reset_index()
    recent["user_id"] = recent["user_id"].astype("int64")
    recent["history_length"] = recent["recent_book_ids"].map(len).astype("int64")
    recent["event_timestamp"] = FEATURE_TIMESTAMP
    paths = {BOOK_VIEW: parquet_dir / "book_features.parquet", READER_VIEW: parquet_dir / "reader_recent_books.parquet"}
    books.to_parquet(paths[BOOK_VIEW], index=False)
    pd.DataFrame(recent).to_parquet(paths[READER_VIEW], index=False)
    return paths


def definitions(parquet_dir: Path) -> list[Any]:
    """Entities, sources and feature views over the Parquet files of `write_parquet`."""
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Array, Float32, Int64

    parquet_dir = Path(parquet_dir).resolve()
    book = Entity(name="book", join_keys=["book_id"], value_type=ValueType.INT64, description="A goodbooks book.")
    reader = Entity(name="reader", join_keys=["user_id"], value_type=ValueType.INT64, description="A reader.")
    book_source = FileSource(
        name="book_features_source",
        path=str(parquet_dir / "book_features.parquet"),
        timestamp_field="event_timestamp",
    )
    reader_source = FileSource(
        name="reader_recent_books_source",
        path=str(parquet_dir / "reader_recent_books.parquet"),
        timestamp_field="event_timestamp",
    )
    book_view = FeatureView(
        name=BOOK_VIEW,
        entities=[book],
        source=book_source,
        online=True,
        schema=[
            Field(name="average_rating", dtype=Float32),
            Field(name="ratings_count", dtype=Int64),
            Field(name="original_publication_year", dtype=Int64),
        ],
        description="Catalogue features of a book.",
    )
    reader_view = FeatureView(
        name=READER_VIEW,
        entities=[reader],
        source=reader_source,
        online=True,
        schema=[Field(name="recent_book_ids", dtype=Array(Int64)), Field(name="history_length", dtype=Int64)],
        description=f"The reader's last {HISTORY_LENGTH} rated books (request-time history).",
    )
    return [book, reader, book_source, reader_source, book_view, reader_view]



# The same views computed on Spark (the job in ml/data/spark_features.py): the module whose
# `views(spark, reader)` returns them, imported only where the Spark job runs (it needs pyspark; the serving
# image and the Feast apply Job import this module). `write_parquet` above is the pandas reference the
# parity test compares them to.
SPARK_VIEWS = "ml.models.recommendation.batch_features"
