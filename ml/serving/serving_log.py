"""A sample of serving inputs and outputs, for drift reports and serving-data validation.

The runtime hands every request's monitored columns (the drift reference's features and the score:
`ReferenceRuntime.observe`) to a `ServingSampler`, which keeps a share of the rows
(`serving_sample_rate`, default 0.1) and writes them as JSON lines, one file per process and flush:
`<target>/<model>/<YYYY-MM-DD>/<time>-<pid>-<n>.jsonl`, every `FLUSH_ROWS` rows and, on a timer thread,
every `FLUSH_S` seconds even when no request comes (a report right after a burst sees the burst).
The target is a local directory (`mlplat local up`: `.local/serving-samples`) or `s3://bucket/prefix`
(the cluster: the models bucket; uploads run on a background thread, never on the request path).
`read_window` returns the newest N rows, which the drift report compares with the training reference.

Each row also carries the registry version that answered (`_version`) and the time (`_ts`).
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SAMPLES_ENV = "MLPLAT_SERVING_SAMPLES"
RATE_ENV = "MLPLAT_SERVING_SAMPLE_RATE"
MARKER = "PUBLISHED.json"  # ml/training/publish.py writes it into every Seldon slot (copied with the model)
FLUSH_ROWS = 200
FLUSH_S = 2.0


def served_identity(model_dir: Path, served_name: str, registry_version: str | None) -> tuple[str, str]:
    """(registered model name, registry version) of a loaded artifact.

    The name comes from `mlplat-model.json` (a Seldon Model is called `<model>-<slot>`); the version
    from the alias resolved at load (local platform), else the slot's `PUBLISHED.json` (cluster)."""
    name, version = served_name, registry_version
    meta = Path(model_dir) / "mlplat-model.json"
    if meta.is_file():
        name = str(json.loads(meta.read_text()).get("name") or served_name)
    marker = Path(model_dir) / MARKER
    if version is None and marker.is_file():
        version = str(json.loads(marker.read_text()).get("version") or "") or None
    return name, version or "unknown"


class ServingSampler:
    def __init__(self, target: str, model: str, version: str, rate: float = 0.1, seed: int | None = None,
                 flush_s: float | None = FLUSH_S) -> None:
        """`flush_s`: period of the timer thread that writes buffered rows (None: no timer, flush by hand)."""
        if not 0 < rate <= 1:
            raise ValueError(f"serving_sample_rate must be in (0, 1], got {rate}")
        self.target, self.model, self.version, self.rate = target.rstrip("/"), model, version, rate
        self._rows: list[dict[str, Any]] = []
        self._random = random.Random(seed)
        self._files = 0
        self._lock = threading.Lock()
        self._buffer_lock = threading.Lock()  # add() runs on the event loop, the timer on its own thread
        self._stopped = threading.Event()
        if flush_s is not None:
            threading.Thread(target=self._flush_every, args=(flush_s,), name=f"serving-samples-{model}",
                             daemon=True).start()

    def _flush_every(self, period_s: float) -> None:
        while not self._stopped.wait(period_s):
            try:
                self.flush()
            except Exception as exc:  # sampling must never break serving
                log.warning("serving samples: flush to %s failed: %s", self.target, exc)

    def close(self) -> None:
        """Stop the timer and write what is buffered."""
        self._stopped.set()
        self.flush()

    @classmethod
    def from_settings(cls, extra: dict[str, Any], model: str, version: str) -> ServingSampler | None:
        target = extra.get("serving_samples") or os.environ.get(SAMPLES_ENV)
        if not target:
            return None
        rate = float(extra.get("serving_sample_rate") or os.environ.get(RATE_ENV) or 0.1)
        return cls(str(target), model, version, rate)

    def add(self, columns: dict[str, Any]) -> None:
        """One request's monitored columns (equal-length sequences); keeps each row with `rate`."""
        lists = {k: list(v) if hasattr(v, "__len__") else [v] for k, v in columns.items()}
        n = max((len(v) for v in lists.values()), default=0)
        now = time.time()
        kept = []
        for i in range(n):
            if self.rate < 1 and self._random.random() >= self.rate:
                continue
            row = {k: _plain(v[i]) for k, v in lists.items() if i < len(v)}
            row["_version"], row["_ts"] = self.version, round(now, 3)
            kept.append(row)
        with self._buffer_lock:
            self._rows.extend(kept)
            full = len(self._rows) >= FLUSH_ROWS
        if full:
            self.flush()

    def flush(self) -> None:
        with self._buffer_lock:
            rows, self._rows = self._rows, []
            if not rows:
                return
            self._files += 1
            files = self._files
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        name = f"{self.model}/{day}/{time.time_ns()}-{os.getpid()}-{files}.jsonl"
        body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
        if self.target.startswith("s3://"):
            threading.Thread(target=self._upload, args=(name, body), daemon=True).start()
        else:
            path = Path(self.target) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(body)
            tmp.rename(path)  # readers never see a half-written file

    def _upload(self, name: str, body: str) -> None:
        try:
            import boto3

            bucket, _, prefix = self.target.removeprefix("s3://").partition("/")
            key = f"{prefix.strip('/')}/{name}" if prefix.strip("/") else name
            with self._lock:
                boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body.encode(),
                                              ContentType="application/x-ndjson")
        except Exception as exc:  # sampling must never break serving
            log.warning("serving samples: upload of %s to %s failed: %s", name, self.target, exc)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _local_files(root: Path) -> Iterator[tuple[str, Path]]:
    for path in root.rglob("*.jsonl"):
        yield path.name, path


def read_window(target: str, model: str, rows: int) -> list[dict[str, Any]]:
    """The newest `rows` sampled rows of `model` under `target` (a directory or s3://bucket/prefix)."""
    target = target.rstrip("/")
    if target.startswith("s3://"):
        import boto3

        bucket, _, prefix = target.removeprefix("s3://").partition("/")
        s3 = boto3.client("s3")
        base = f"{prefix.strip('/')}/{model}/" if prefix.strip("/") else f"{model}/"
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base)
                for o in page.get("Contents", []) if o["Key"].endswith(".jsonl")]
        keys.sort(key=lambda k: k.rsplit("/", 1)[-1], reverse=True)
        bodies = (s3.get_object(Bucket=bucket, Key=k)["Body"].read().decode() for k in keys)
    else:
        root = Path(target) / model
        files = sorted(_local_files(root), reverse=True) if root.is_dir() else []
        bodies = (p.read_text() for _, p in files)
    out: list[dict[str, Any]] = []
    for body in bodies:  # newest file first; rows within a file are in time order
        chunk = [json.loads(line) for line in body.splitlines() if line.strip()]
        out[:0] = chunk
        if len(out) >= rows:
            break
    return out[-rows:]
