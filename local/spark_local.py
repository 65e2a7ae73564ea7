"""The batch-feature Spark job on this machine (`mlplat local up --engines spark`): the same entry point
the cluster's SparkApplication runs (`python -m ml.data.spark_features`), with `local[2]`, in a process of
its own so that the JVM ends with it. Its Parquet files replace the pandas-derived ones as the local Feast
repository's offline sources; Feast then materializes them as usual (local/feast_local.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ml.data.spark_features import LOCAL_MASTER

TIMEOUT_S = 600
_LINE = re.compile(r"^(?P<model>[\w-]+)/(?P<view>[\w-]+): (?P<rows>\d+) rows -> (?P<uri>\S+)$")



class SparkJobError(RuntimeError):
    """The job could not run or failed; the message says why (and where its log is)."""


@dataclass
class SparkRun:
    """What the job wrote: (model, view) -> rows, and how long the whole process took (JVM start included)."""

    views: dict[tuple[str, str], int] = field(default_factory=dict)
    seconds: float = 0.0

    def describe(self) -> str:
        return (f"Spark {LOCAL_MASTER}: {len(self.views)} batch feature view(s) in {self.seconds:.1f}s "
                f"({', '.join(f'{v}: {n} rows' for (_, v), n in self.views.items())})")


def run_job(data_dir: Path, out_dir: Path, models: tuple[str, ...], log_path: Path) -> SparkRun:
    """Run the job over `data_dir` into `out_dir/<model>/<view>.parquet`; raise SparkJobError with the log's
    tail when it fails."""
    if shutil.which("java") is None:
        raise SparkJobError("the Spark engine needs Java 17 on PATH: install Debian's openjdk-17-jre-headless "
                           "(scripts/bootstrap.sh system does)")
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "ml.data.spark_features", "--master", LOCAL_MASTER, "--data", str(data_dir),
           "--out", str(out_dir), "--models", ",".join(models)]
    # Python workers run this interpreter: the ML environment, with the model packages and Feast.
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    with log_path.open("w") as log:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env, timeout=TIMEOUT_S)
    if done.returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-15:])
        raise SparkJobError(f"the Spark job failed (exit {done.returncode}); {log_path}:\n{tail}")
    result = SparkRun(seconds=time.perf_counter() - started)
    for line in done.stdout.splitlines():
        match = _LINE.match(line.strip())
        if match:
            result.views[(match["model"], match["view"])] = int(match["rows"])
    return result
