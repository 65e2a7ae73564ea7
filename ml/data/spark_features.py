"""Batch features on Apache Spark: one job computes every model's batch feature views and writes them to
the Feast offline store as Parquet, which Feast then materializes into the online store.

The same code runs in two places:
- on the cluster, as the Spark Operator's `SparkApplication` (scheduled by a `ScheduledSparkApplication`,
  infra/workloads/spark.py): `python -m ml.data.spark_features --data s3a://... --out s3a://<feast>/offline`,
  S3 through the S3A filesystem with the pod's IRSA web identity;
- on one machine, with `local[2]` (`mlplat local up --engines spark`, the parity test).

Each model's transformation lives with the model (`views(spark, reader)` in the module its features module
names in `SPARK_VIEWS`, reached through `ModelPlugin.spark_feature_views`). The pandas code of the features modules
(`write_parquet`) stays only as the reference the parity test compares Spark's output to, value for value.

Output: `<out>/<model>/<view>.parquet`, one file per view (`write_views`), timestamps as Parquet
TIMESTAMP_MICROS: Feast's offline stores (file and Spark) and pyarrow read microseconds, while Spark's
default INT96 is deprecated and nanoseconds are unreadable to Spark itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

LOCAL_MASTER = "local[2]"
APP_NAME = "mlplat-batch-features"
SAMPLE = "sample"
# Spark settings the job needs wherever it runs (the SparkApplication passes the same in sparkConf).
JOB_CONF: dict[str, str] = {
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.session.timeZone": "UTC",
}
# Only on one machine: no UI port, few shuffle partitions, a driver that fits beside the other services.
LOCAL_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.shuffle.partitions": "2",
    "spark.driver.memory": "1g",
    "spark.ui.showConsoleProgress": "false",
}


def _is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def local_session(master: str = LOCAL_MASTER, app_name: str = APP_NAME) -> SparkSession:
    """A SparkSession on this machine. Python workers run this interpreter (PYSPARK_PYTHON), so they import
    the same environment (Feast, the model packages) as the driver."""
    # pyspark is imported here, not at the top: the features modules and the CLI import this module in
    # processes that never start a JVM.
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # one machine: nothing listens beyond the loopback
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in {**JOB_CONF, **LOCAL_CONF}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


class CsvReader:
    """Reads a model's CSV files (every cell as text, as the pandas contracts read them) from a data root:
    a local directory or an `s3a://` prefix. `name` or `name.gz` is read; the plain file wins, as in the
    pandas loaders. `on_driver`: the files exist only on the driver (sample data generated there), so the
    driver reads them and hands the rows to Spark; otherwise Spark's executors read them."""

    def __init__(self, spark: SparkSession, root: str, on_driver: bool = False) -> None:
        self.spark, self.root, self.on_driver = spark, root.rstrip("/"), on_driver

    def _uri(self, name: str) -> str:
        return f"{self.root}/{name}" if _is_remote(self.root) else Path(self.root, name).resolve().as_uri()

    def _exists(self, uri: str) -> bool:
        fs, path = _hadoop_fs(self.spark, uri)
        return bool(fs.exists(path))

    def resolve(self, name: str) -> str:
        for candidate in (self._uri(name), self._uri(f"{name}.gz")):
            if self._exists(candidate):
                return candidate
        raise FileNotFoundError(f"{self.root}: neither {name} nor {name}.gz found")

    def text(self, name: str, columns: Sequence[str]) -> DataFrame:
        """`columns` of the file as strings; a missing column or a malformed row fails the job (FAILFAST)."""
        from pyspark.sql.types import StringType, StructField, StructType

        uri = self.resolve(name)
        if self.on_driver:
            import pandas as pd

            rows = pd.read_csv(uri.removeprefix("file://"), dtype=str, keep_default_na=False)
            missing = [c for c in columns if c not in rows.columns]
            if missing:
                raise ValueError(f"{uri}: missing column(s) {missing} (has {list(rows.columns)})")
            return self.spark.createDataFrame(rows[list(columns)], schema=StructType(
                [StructField(c, StringType()) for c in columns]))
        frame = (self.spark.read.option("header", True).option("escape", '"').option("multiLine", True)
                 .option("mode", "FAILFAST").option("inferSchema", False).csv(uri))
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{uri}: missing column(s) {missing} (has {frame.columns})")
        schema = StructType([StructField(c, StringType()) for c in columns])
        return frame.select(*columns).to(schema)


@dataclass(frozen=True)
class ViewOutput:
    model: str
    view: str
    uri: str
    rows: int


def _hadoop_fs(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    """(FileSystem, Path) of `uri` through the JVM: the scheme's Hadoop filesystem (file, s3a)."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def write_views(spark: SparkSession, views: dict[str, DataFrame], model: str, out: str) -> list[ViewOutput]:
    """Each view as ONE Parquet file `<out>/<model>/<view>.parquet`, the layout the models' Feast file
    sources name (and the pandas reference writes): Spark writes one part file into a scratch directory
    beside it, which is then renamed into place (on S3A a copy), replacing the previous run's file."""
    root = out.rstrip("/") if _is_remote(out) else Path(out).resolve().as_uri()
    written = []
    for view, frame in views.items():
        target, scratch = f"{root}/{model}/{view}.parquet", f"{root}/{model}/_spark-{view}"
        frame.coalesce(1).write.mode("overwrite").parquet(scratch)
        fs, scratch_path = _hadoop_fs(spark, scratch)
        parts = [s.getPath() for s in fs.listStatus(scratch_path) if s.getPath().getName().endswith(".parquet")]
        if len(parts) != 1:
            raise RuntimeError(f"{scratch}: expected one Parquet part file, found {len(parts)}")
        _, target_path = _hadoop_fs(spark, target)
        fs.delete(target_path, True)
        if not fs.rename(parts[0], target_path):
            raise RuntimeError(f"could not move {parts[0]} to {target}")
        fs.delete(scratch_path, True)
        # The local filesystem keeps a checksum beside each file (`.<name>.crc`), renamed along with it.
        _, crc = _hadoop_fs(spark, f"{root}/{model}/.{view}.parquet.crc")
        fs.delete(crc, False)
        # Counted from the written file's footer: no second pass over the data.
        written.append(ViewOutput(model, view, target, spark.read.parquet(target).count()))
    return written


def run(spark: SparkSession, data: str, out: str, models: Sequence[str] | None = None) -> list[ViewOutput]:
    """Compute and write the batch feature views of `models` (default: every registered model that has
    some) from the data files under `data` (a directory, an s3a:// prefix, or `sample`: the product's sample
    data, generated into a temporary directory on the driver, which suits `local[*]` only)."""
    from ml.model_plugin import load_plugin, plugins

    chosen = [load_plugin(m) for m in models] if models else plugins()
    written: list[ViewOutput] = []
    with tempfile.TemporaryDirectory(prefix="mlplat-spark-sample-") as tmp:
        for plugin in chosen:
            source = data
            if data == SAMPLE:
                source = str(Path(tmp) / plugin.name)
                plugin.generate_sample(Path(source))
            views = plugin.spark_feature_views(spark, CsvReader(spark, source, on_driver=data == SAMPLE))
            written += write_views(spark, views, plugin.name, out)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the job image (docker/spark-features/Dockerfile) and of `spark-submit`."""
    parser = argparse.ArgumentParser(prog="python -m ml.data.spark_features", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="data root: a directory, an s3a:// prefix, or `sample`")
    parser.add_argument("--out", required=True, help="offline-store root: a directory or s3a://<bucket>/offline")
    parser.add_argument("--models", default="", help="comma-separated model names (default: all with features)")
    parser.add_argument("--master", default=None,
                        help=f"Spark master for a run outside spark-submit (e.g. {LOCAL_MASTER}); "
                             "omitted under spark-submit, which sets it")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.master:
        spark = local_session(args.master)
    else:
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.appName(APP_NAME)
        for key, value in JOB_CONF.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
    session_s = time.monotonic() - started
    try:
        models = [m for m in args.models.split(",") if m]
        for out in run(spark, args.data, args.out, models or None):
            print(f"{out.model}/{out.view}: {out.rows} rows -> {out.uri}")
    finally:
        spark.stop()
    total_s = time.monotonic() - started
    print(f"batch features written in {total_s:.1f}s (JVM + SparkSession {session_s:.1f}s, "
          f"job {total_s - session_s:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
