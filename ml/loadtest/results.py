"""What a load test measured, per served model, and whether it met the stack's service levels.

Latencies are the client's: from sending a request to reading its whole answer, in milliseconds, as
Locust's request event reports them (kept unrounded here; Locust's own statistics round to whole
milliseconds below 100 ms, too coarse for a 10 ms objective). A request fails when it errs or its status
is not 2xx. The objective (`mlplatform:serviceLevels`, stacks/schema.py) holds per model: p99 at most
`latency_p99_ms` and failures at most `max_error_ratio` of the requests; a model that served no request
misses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Objective:
    latency_p99_ms: float
    max_error_ratio: float
    source: str  # where it comes from (a stack file, or the command line)


@dataclass
class ModelLoad:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # first words of each failure -> count

    def record(self, latency_ms: float, failure: str | None) -> None:
        self.latencies_ms.append(float(latency_ms))
        if failure is not None:
            self.failures += 1
            key = failure[:120]
            self.errors[key] = self.errors.get(key, 0) + 1

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def error_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 1.0


@dataclass
class LoadReport:
    target: str
    users: int
    duration_s: float
    models: dict[str, ModelLoad]

    def misses(self, objective: Objective) -> list[str]:
        """One line per model that misses the objective (empty: every model met it)."""
        out = []
        for load in self.models.values():
            if not load.requests:
                out.append(f"{load.name}: no request completed")
                continue
            p99 = load.percentile(99)
            if p99 > objective.latency_p99_ms:
                out.append(f"{load.name}: p99 {p99:.2f} ms > {objective.latency_p99_ms:g} ms")
            if load.error_ratio > objective.max_error_ratio:
                out.append(f"{load.name}: {load.failures} of {load.requests} requests failed "
                           f"({load.error_ratio:.2%} > {objective.max_error_ratio:.2%})")
        return out

    def rows(self) -> list[dict[str, Any]]:
        return [{"model": m.name, "requests": m.requests,
                 "rps": m.requests / self.duration_s if self.duration_s else 0.0,
                 "p50_ms": m.percentile(50), "p95_ms": m.percentile(95), "p99_ms": m.percentile(99),
                 "failures": m.failures, "errors": dict(m.errors)} for m in self.models.values()]

    def table(self) -> str:
        lines = [f"{'model':<20} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>7}"]
        for row in self.rows():
            lines.append(f"{row['model']:<20} {row['requests']:>9} {row['rps']:>8.1f} {row['p50_ms']:>8.2f} "
                         f"{row['p95_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['failures']:>7}")
        for row in self.rows():
            for message, count in row["errors"].items():
                lines.append(f"  {row['model']}: {count} x {message}")
        return "\n".join(lines)

    def as_dict(self, objective: Objective) -> dict[str, Any]:
        return {"target": self.target, "users": self.users, "duration_s": self.duration_s,
                "objective": {"latency_p99_ms": objective.latency_p99_ms,
                              "max_error_ratio": objective.max_error_ratio, "source": objective.source},
                "models": self.rows(), "misses": self.misses(objective)}


def parse_duration(text: str) -> float:
    """Seconds of `30`, `30s`, `2m`, `1h`, `1.5s`; ValueError naming the value otherwise."""
    raw = str(text).strip().lower()
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(raw[-1:])
    number = raw[:-1] if scale is not None else raw
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        raise ValueError(f"duration {text!r} is not a number of seconds or a value like 30s, 2m, 1h") from None
    if not 0 < seconds <= 24 * 3600:
        raise ValueError(f"duration {text!r} must be more than 0 s and at most 24 h")
    return seconds


def split_users(users: int, models: list[str]) -> dict[str, int]:
    """`users` spread evenly over `models` (the first ones get the remainder); ValueError when too few."""
    if users < len(models):
        raise ValueError(f"--users {users} is fewer than the {len(models)} models under test "
                         f"({', '.join(models)}): every model needs a user")
    base, extra = divmod(users, len(models))
    return {name: base + (1 if i < extra else 0) for i, name in enumerate(models)}
