"""The two writers of the fraud model's online velocity on one machine, on the same events (docs/BENCHMARKS.md):

- the hand-written ingestor's loop (ml/models/fraud/streaming/ingestor.py) fed by an in-memory consumer,
  pushing through Feast into a local redis-server;
- the Flink job (ml/models/fraud/streaming/flink_job.py) as `mlplat local up --engines flink` runs it: time
  until it runs (JVM, mini-cluster, job graph), then one file of the same events until the last card's row is
  in Redis, and the resident memory of its process group.

Run from the repository root in the ML environment (it starts the Flink job in .venv-flink):
    .venv-ml/bin/python -m scripts.bench_streaming --events 20000 --cards 2000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contracts import feast_redis  # noqa: E402  (the repository root is put on the path above)
from contracts.flink import RUNNING_MARKER  # noqa: E402
from ml.serving.processes import RedisServer  # noqa: E402


def events(n: int, cards: int) -> list[str]:
    t0 = datetime(2026, 12, 7, tzinfo=UTC)
    return [json.dumps({"transaction_id": f"b-{i}", "card_id": i % cards, "amount": 1.0, "cardholder_age": 40,
                        "event_time": (t0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")})
            for i in range(n)]


class _Message:
    def __init__(self, value: bytes) -> None:
        self._value = value

    def value(self) -> bytes:
        return self._value

    def error(self) -> None:
        return None


class _Consumer:
    def __init__(self, lines: list[str]) -> None:
        self.lines, self.i = lines, 0

    def poll(self, timeout: float) -> _Message | None:
        if self.i >= len(self.lines):
            return None
        self.i += 1
        return _Message(self.lines[self.i - 1].encode())

    def commit(self, asynchronous: bool = True) -> None:
        return None

    def close(self) -> None:
        return None


def ingestor(lines: list[str], redis_url: str, work: Path) -> str:
    from ml.data.feast_repo import apply_and_materialize, write_repo
    from ml.model_plugin import load_plugin
    from ml.models.fraud import features
    from ml.models.fraud.streaming.ingestor import FeastPushSink, StreamIngestor

    load_plugin("fraud").generate_sample(work / "data", seed=1)
    features.write_parquet(work / "data", work / "parquet")
    apply_and_materialize(write_repo(work / "feast", redis_url), features.definitions(work / "parquet"))
    loop = StreamIngestor(_Consumer(lines), FeastPushSink(str(work / "feast"), "card_activity_push"),
                          batch_size=500, registry=CollectorRegistry())
    started = time.perf_counter()
    n = loop.run(idle_polls=1)
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return f"ingestor: {n} events in {seconds:.2f} s = {n / seconds:.0f} events/s; max RSS {rss:.0f} MiB"


def _group_rss_mib(pgid: int) -> float:
    total = 0
    for pid in subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split():
        try:
            total += next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                          if line.startswith("VmRSS"))
        except (FileNotFoundError, StopIteration):
            continue
    return total / 1024


def flink(lines: list[str], redis_url: str, work: Path) -> str:
    inbox = work / "inbox"
    inbox.mkdir(parents=True)
    env = {**os.environ, "VELOCITY_SOURCE": "files", "INPUT_DIR": str(inbox), "REDIS_URL": redis_url,
           "FEAST_PROJECT": "mlplat", "MONITOR_INTERVAL_SECONDS": "0.5"}
    log = work / "job.log"
    started = time.perf_counter()
    with open(log, "wb") as out:
        job = subprocess.Popen([str(ROOT / ".venv-flink" / "bin" / "python"), "-m",
                                "ml.models.fraud.streaming.flink_job"], env=env, stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True, cwd=work)
    try:
        while RUNNING_MARKER not in log.read_text(errors="replace"):
            if job.poll() is not None:
                raise RuntimeError(f"the job exited: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        ready = time.perf_counter() - started
        last: dict[str, Any] = json.loads(lines[-1])
        key = feast_redis.entity_key("mlplat", "card_id", last["card_id"])
        want = feast_redis.timestamp(datetime.fromisoformat(last["event_time"].replace("Z", "+00:00")))
        client = redis.Redis.from_url(redis_url)
        (inbox / ".events").write_text("\n".join(lines) + "\n")
        sent = time.perf_counter()
        (inbox / ".events").rename(inbox / "events.jsonl")
        while client.hget(key, feast_redis.ts_field("card_features")) != want:
            time.sleep(0.05)
        seconds = time.perf_counter() - sent
        rss = _group_rss_mib(job.pid)
    finally:
        os.killpg(job.pid, 15)
        job.wait(60)
    return (f"flink: running {ready:.1f} s after start (JVM, mini-cluster, job graph); {len(lines)} events in "
            f"{seconds:.2f} s = {len(lines) / seconds:.0f} events/s end to end; process group RSS {rss:.0f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--cards", type=int, default=2000)
    args = parser.parse_args()
    lines = events(args.events, args.cards)
    work = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    server = RedisServer(work / "redis")
    server.start()
    try:
        print(ingestor(lines, server.url, work / "ingestor"), flush=True)
        server_url = server.url.rsplit("/", 1)[0] + "/1"  # its own database: the same events, an empty store
        print(flink(lines, server_url, work / "flink"), flush=True)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
