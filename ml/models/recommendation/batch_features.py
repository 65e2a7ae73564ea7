"""The recommendation model's batch feature views on Spark: the same rows as `features.write_parquet` (the
pandas reference), computed from the goodbooks files by the Spark job (ml/data/spark_features.py).

"Recent" means last in file order (the ratings carry no times): the rows are numbered as read
(`monotonically_increasing_id` grows with the partition, and partitions follow the file), and each reader
keeps the last `HISTORY_LENGTH` book ids in that order.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ml.models.recommendation.data import BOOKS_FILE, RATINGS_FILE
from ml.models.recommendation.features import (
    BOOK_FEATURES,
    BOOK_VIEW,
    FEATURE_TIMESTAMP,
    HISTORY_LENGTH,
    READER_VIEW,
)


def _number(column: str) -> Any:
    # An empty cell is a missing value (null); anything else must parse (ANSI cast), as the data contract says.
    text = F.trim(F.col(column))
    return F.when(text == "", None).otherwise(text.cast("double"))


def views(spark: Any, reader: Any) -> dict[str, DataFrame]:
    """book_features (book_id, average_rating float, ratings_count, original_publication_year: 0 where
    unknown) and reader_recent_books (user_id, recent_book_ids, history_length), each with event_timestamp."""
    stamp = F.lit(FEATURE_TIMESTAMP).cast("timestamp").alias("event_timestamp")
    books = reader.text(BOOKS_FILE, ["book_id", *BOOK_FEATURES]).select(
        F.trim("book_id").cast("long").alias("book_id"),
        _number("average_rating").cast("float").alias("average_rating"),
        F.trim("ratings_count").cast("long").alias("ratings_count"),
        F.coalesce(_number("original_publication_year"), F.lit(0.0)).cast("long").alias("original_publication_year"),
        stamp,
    ).orderBy("book_id")
    ratings = reader.text(RATINGS_FILE, ["user_id", "book_id"]).select(
        F.trim("user_id").cast("long").alias("user_id"), F.trim("book_id").cast("long").alias("book_id"),
        F.monotonically_increasing_id().alias("row"))
    latest_first = Window.partitionBy("user_id").orderBy(F.col("row").desc())
    recent = (
        ratings.withColumn("rank", F.row_number().over(latest_first))
        .where(F.col("rank") <= HISTORY_LENGTH)
        .groupBy("user_id")
        .agg(F.sort_array(F.collect_list(F.struct("row", "book_id"))).alias("history"))
        .select("user_id", F.transform("history", lambda h: h["book_id"]).alias("recent_book_ids"))
        .withColumn("history_length", F.size("recent_book_ids").cast("long"))
        .select("user_id", "recent_book_ids", "history_length", stamp)
        .orderBy("user_id")
    )
    return {BOOK_VIEW: books, READER_VIEW: recent}
