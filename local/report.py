"""Console output of the local platform: timed progress lines and the final summary."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from ml.training.tracking import mlflow_key


class Progress:
    """`[  12.3s] step ...` lines: long steps announce themselves and report their duration."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def say(self, text: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {text}", file=self.stream, flush=True)

    def detail(self, text: str) -> None:
        print(f"          {text}", file=self.stream, flush=True)

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.say(f"{title} ...")
        t0 = time.perf_counter()
        yield
        self.detail(f"done in {time.perf_counter() - t0:.1f}s")


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def key_metrics(metrics: dict[str, float], first: tuple[str, ...] = (), limit: int = 3) -> str:
    """The gated metrics first, then others (no baselines, no gate thresholds), compactly."""

    plain = {mlflow_key(k): v for k, v in metrics.items() if not k.startswith(("baseline", "gate."))}
    order = [mlflow_key(k) for k in first if mlflow_key(k) in plain]
    order += [k for k in plain if k not in order]
    return " ".join(f"{k}={plain[k]:.3f}" for k in order[:limit])


def summary_text(doc: dict[str, Any]) -> str:
    """The closing block of `local up`, from the summary document saved under .local/."""
    out = ["", "mlplat local platform is up" if doc["ok"] else "mlplat local platform is up, with PROBLEMS", ""]
    out.append("Open:")
    for label, url in doc["urls"].items():
        out.append(f"  {label:<22} {url}")
    out.append("")
    rows = []
    for m in doc["models"]:
        s = doc["smoke"].get(m["name"], {})
        latency = f"{s['first_ms']:.1f} / {s['p50_ms']:.1f}" if s.get("ok") else "-"
        rows.append([
            m["name"], f"v{m['version']}", m["alias"], "trained" if m["trained"] else "reused",
            key_metrics(m["metrics"], tuple(m.get("gate_metrics", ())), limit=2),
            ("OK degraded" if s.get("degraded") else "OK") if s.get("ok") else f"FAIL {s.get('status', '')}",
            latency,
            s.get("answer", "")[:60],
        ])
    out.append(table(rows, ["model", "version", "serving", "training", "held-out metrics", "smoke",
                            "ms first/p50", "answer"]))
    for m in doc["models"]:
        if m["alias"] != "champion":
            out.append(f"  note: {m['name']} failed its quality gates ({m['gates']}); serving its challenger")
        if doc["smoke"].get(m["name"], {}).get("degraded"):
            out.append(f"  note: {m['name']} answered with fallback features: its runtime reads the online store "
                       "from Redis; `mlplat local up --redis` serves it the full path")
    out.append("")
    out.append(f"Feast: {doc['feast']['online_store']} online store, views {', '.join(doc['feast']['views'])}"
               f" ({doc['feast']['check']})")
    if doc.get("streaming"):
        out.append(f"Streaming features: {doc['streaming']['engine']}: {doc['streaming']['check']}")
    if doc["feast"].get("batch_engine", "").startswith("Spark"):
        out.append(f"Batch features: {doc['feast']['batch_engine']}")
    out.append(f"Tracing: {doc['tracing']}")
    out.append(f"Prometheus: {doc['prometheus']}")
    if doc.get("splitter"):
        out.append(f"Traffic splitter: {doc['splitter']}")
    out.append(f"Services: {', '.join(f'{k} {v}' for k, v in doc['services'].items())}")
    out.append(f"Data: {doc['data']}; champion gates: {doc.get('gates', '')}")
    out.append("")
    out.append(f"Total time: {doc['total_s']:.1f}s.  `mlplat local status` shows health, "
               f"`mlplat local down` stops everything.")
    return "\n".join(out)
