"""The batch-feature Spark job (ml/data/spark_features.py) against the models' pandas feature code, the
reference: on the product's sample data every view must be equal value for value (same rows, columns, types
and timestamps), its Parquet must carry microsecond timestamps, and Feast must materialize it.

One SparkSession on local[2] serves the whole test session (`spark_session`, tests/ml/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml.data import spark_features
from ml.data.feast_repo import apply_and_materialize, write_repo
from ml.model_plugin import load_plugin

BATCH_MODELS = ("fraud", "recommendation")  # sentiment has no stored features (its features.py says why)
KEYS = {"card_features": "card_id", "device_features": "device_id", "book_features": "book_id",
        "reader_recent_books": "user_id"}


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("spark-sample")
    for name in BATCH_MODELS:
        load_plugin(name).generate_sample(data)
    return data


@pytest.fixture(scope="module")
def spark_out(spark_session: Any, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("spark-out")
    written = spark_features.run(spark_session, str(sample_dir), str(out), BATCH_MODELS)
    assert {(w.model, w.view) for w in written} == {("fraud", "card_features"), ("fraud", "device_features"),
                                                      ("recommendation", "book_features"),
                                                      ("recommendation", "reader_recent_books")}
    return out


def _reference(name: str, data: Path, out: Path) -> dict[str, pd.DataFrame]:
    paths = load_plugin(name).write_feature_data(data, out / name)
    return {view: pd.read_parquet(path) for view, path in paths.items()}


def _normalised(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    frame = frame.sort_values(key).reset_index(drop=True)
    frame["event_timestamp"] = frame["event_timestamp"].dt.as_unit("us")
    # Arrays (recent_book_ids) as tuples of Python ints: comparable whatever container Parquet gave back.
    return frame.apply(lambda col: col.map(lambda v: tuple(int(x) for x in v)) if col.dtype == object else col)


@pytest.mark.parametrize("name", BATCH_MODELS)
def test_spark_views_equal_the_pandas_reference_value_for_value(name: str, sample_dir: Path, spark_out: Path,
                                                                tmp_path: Path) -> None:
    reference = _reference(name, sample_dir, tmp_path)
    assert reference, f"{name} has batch feature views"
    for view, expected in reference.items():
        got = pd.read_parquet(spark_out / name / f"{view}.parquet")
        assert list(got.columns) == list(expected.columns), view
        assert len(got) == len(expected) > 0, view
        pd.testing.assert_frame_equal(_normalised(got, KEYS[view]), _normalised(expected, KEYS[view]),
                                      check_exact=True, obj=f"{name}/{view}")


def test_the_parquet_files_carry_microsecond_utc_timestamps_and_one_file_per_view(spark_out: Path) -> None:
    for name in BATCH_MODELS:
        files = sorted(p.name for p in (spark_out / name).iterdir())
        assert all(f.endswith(".parquet") for f in files), files  # no scratch directory left behind
        for file in files:
            schema = pq.read_schema(spark_out / name / file)
            assert schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC"), (name, file)


def test_a_broken_cell_fails_the_job_naming_nothing_silently(spark_session: Any, sample_dir: Path,
                                                              tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    frame = pd.read_csv(sample_dir / "credit_card_fraud_10k.csv", dtype=str)
    frame.loc[3, "cardholder_age"] = "old"
    frame.to_csv(bad / "credit_card_fraud_10k.csv", index=False)
    with pytest.raises(Exception, match="old"):  # Spark's ANSI cast names the value it could not parse
        spark_features.run(spark_session, str(bad), str(tmp_path / "out"), ["fraud"])
    missing = tmp_path / "missing"
    missing.mkdir()
    with pytest.raises(FileNotFoundError, match=r"credit_card_fraud_10k\.csv"):
        spark_features.run(spark_session, str(missing), str(tmp_path / "out"), ["fraud"])


def test_sample_mode_reads_on_the_driver_and_gives_the_same_views(spark_session: Any, spark_out: Path,
                                                                  tmp_path: Path) -> None:
    # `--data sample` on the cluster: the driver generates the sample (seed 0, as `sample_dir` did).
    spark_features.run(spark_session, spark_features.SAMPLE, str(tmp_path), ["recommendation"])
    for view in ("book_features", "reader_recent_books"):
        pd.testing.assert_frame_equal(
            _normalised(pd.read_parquet(tmp_path / "recommendation" / f"{view}.parquet"), KEYS[view]),
            _normalised(pd.read_parquet(spark_out / "recommendation" / f"{view}.parquet"), KEYS[view]),
            check_exact=True)


def test_feast_materializes_the_spark_output_and_serves_it(spark_out: Path, tmp_path: Path) -> None:
    plugin = load_plugin("fraud")
    store = apply_and_materialize(write_repo(tmp_path / "repo"), plugin.feature_definitions(spark_out / "fraud"))
    source = pd.read_parquet(spark_out / "fraud" / "card_features.parquet").iloc[7]
    online = store.get_online_features(features=["card_features:cardholder_age", "card_features:velocity_last_24h"],
                                       entity_rows=[{"card_id": int(source["card_id"])}]).to_dict()
    assert online["cardholder_age"] == [int(source["cardholder_age"])]
    assert online["velocity_last_24h"] == [int(source["velocity_last_24h"])]
    historical = store.get_historical_features(
        entity_df=pd.DataFrame({"card_id": [int(source["card_id"])],
                                "event_timestamp": [pd.Timestamp("2025-01-01", tz="UTC")]}),
        features=["card_features:cardholder_age"]).to_df()
    assert historical["cardholder_age"].tolist() == [int(source["cardholder_age"])]


def test_a_model_without_batch_features_gets_no_spark_views(spark_session: Any) -> None:
    assert load_plugin("sentiment").spark_feature_views(spark_session, None) == {}
