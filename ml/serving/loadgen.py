"""Latency/throughput measurement for `mlplat bench models`: in-process timing, `wrk` against a real
MLServer (Lua script rotating POST bodies), a bounded Python load generator when wrk is absent, CPU
time of the server processes, and the machine and versions for the report (gRPC: grpc_load.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml.serving.metrics import FEATURE_FETCH


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def time_calls(call: Callable[[int], object], n: int, warmup: int = 20) -> dict[str, float]:
    """p50/p99 of `call(i)` over n calls after a warm-up."""
    for i in range(warmup):
        call(i)
    times = []
    for i in range(n):
        t = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - t)
    return percentiles(times)


_LUA = """
local bodies = {}
local i = 0
for line in io.lines("%s") do bodies[#bodies + 1] = line end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = (i %% #bodies) + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
"""


def _wrk_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip()).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk_load(url: str, bodies: list[dict[str, Any]], concurrency: int, duration_s: int) -> dict[str, Any]:
    """Run wrk (1 thread, `concurrency` connections); parse p50/p99 and requests/s."""
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "bodies.jsonl"
        body_file.write_text("\n".join(json.dumps(b, separators=(",", ":")) for b in bodies) + "\n")
        script = Path(tmp) / "post.lua"
        script.write_text(_LUA % body_file)
        out = subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", f"-d{duration_s}s", "--latency", "-s", str(script), url],
            capture_output=True, text=True, check=True, timeout=duration_s + 60,
        ).stdout
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.MULTILINE))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "tool": "wrk", "p50_ms": round(_wrk_ms(lat["50"]), 3), "p99_ms": round(_wrk_ms(lat["99"]), 3),
        "rps": round(rps, 1), "non_2xx": int(errors.group(1)) if errors else 0,
    }


def python_load(url: str, bodies: list[dict[str, Any]], concurrency: int, duration_s: int) -> dict[str, Any]:
    """Fallback load generator: `concurrency` asyncio clients in closed loop (slower than wrk)."""
    import httpx

    async def main() -> tuple[list[float], int]:
        times: list[float] = []
        bad = 0
        deadline = time.perf_counter() + duration_s

        async def worker(k: int, client: httpx.AsyncClient) -> None:
            nonlocal bad
            i = k
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                r = await client.post(url, json=bodies[i % len(bodies)])
                times.append(time.perf_counter() - t)
                bad += r.status_code >= 300
                i += concurrency

        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(worker(k, client) for k in range(concurrency)))
        return times, bad

    started = time.perf_counter()
    times, bad = asyncio.run(main())
    elapsed = time.perf_counter() - started
    return {"tool": "python", **percentiles(times), "rps": round(len(times) / elapsed, 1), "non_2xx": bad}


def http_load(url: str, bodies: list[dict[str, Any]], concurrency: int, duration_s: int) -> dict[str, Any]:
    if shutil.which("wrk"):
        return wrk_load(url, bodies, concurrency, duration_s)
    return python_load(url, bodies, concurrency, duration_s)


@dataclass(frozen=True)
class CpuLayout:
    """Which CPUs the server side (MLServer, redis-server, the in-process timing) and the load generators
    run on. Splitting them keeps the load generator off the server's core, and keeps the runtime's
    feature store round trip on one core: on the dev VM (Firecracker) a loopback Redis round trip
    between two vCPUs waits ~120 us for the cross-vCPU wake-up, ~10 us on one vCPU (docs/BENCHMARKS.md),
    where a physical machine pays a few us either way."""

    server: frozenset[int]
    load: frozenset[int]

    @classmethod
    def split(cls) -> CpuLayout | None:
        """Half of this process's CPUs (at least one) for the server side, the rest for the load; None
        where there is one CPU or no affinity control (not Linux)."""
        if not hasattr(os, "sched_setaffinity"):
            return None
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return None
        half = (len(cpus) + 1) // 2
        return cls(frozenset(cpus[:half]), frozenset(cpus[half:]))

    def describe(self) -> dict[str, list[int]]:
        return {"server": sorted(self.server), "load": sorted(self.load)}


@contextlib.contextmanager
def on_cpus(cpus: frozenset[int] | None) -> Iterator[None]:
    """Run this process (and what it starts meanwhile: children inherit) on `cpus`; restore after."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), for CPU-per-request figures."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_info() -> dict[str, Any]:
    """Cores, CPU model and the load average, for the bench report."""
    model = ""
    with contextlib.suppress(OSError):
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    return {"cores": os.cpu_count(), "cpu_model": model, "load_average": [round(x, 2) for x in os.getloadavg()]}


def versions() -> dict[str, str]:
    """Versions of what the figures depend on: Python, the serving libraries, redis-server, wrk, the
    platform (BOM) and the commit."""
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for dist in ("mlserver", "onnxruntime", "numpy", "fastapi", "uvicorn", "grpcio", "redis", "hiredis"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[dist] = md.version(dist)
    for name, cmd in (("redis-server", ["redis-server", "--version"]), ("wrk", ["wrk", "--version"])):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            text = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            out[name] = (text.stdout or text.stderr).strip().splitlines()[0][:80]
    root = Path(__file__).resolve().parents[2]
    with contextlib.suppress(OSError, KeyError, TypeError):
        import yaml

        out["platform"] = str(yaml.safe_load((root / "stacks" / "bom.yaml").read_text())["platform"]["version"])
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        if commit:
            out["commit"] = commit
    return out


SERVED = "model_infer_request_success_total"  # MLServer's own count of answered inference requests


def _scrape(metrics_url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(metrics_url, timeout=10) as r:
        return r.read().decode()


def requests_served(metrics_url: str, model: str, settle_s: float = 0.02, max_wait_s: float = 2.0) -> float:
    """Inference requests a served model has answered so far (MLServer's counter, every version), read once the
    count stops moving for `settle_s`: after a load the requests still in flight are counted too, so the
    figures per request divide by what the server actually did over the same window."""
    pattern = re.compile(rf'^{SERVED}{{model="{re.escape(model)}",[^}}]*}} ([\d.e+-]+)$', re.MULTILINE)
    deadline = time.monotonic() + max_wait_s
    last = None
    while True:
        count = sum(float(v) for v in pattern.findall(_scrape(metrics_url)))
        if count == last or time.monotonic() > deadline:
            return count
        last = count
        time.sleep(settle_s)


def feature_fetch_totals(metrics_url: str, model: str) -> tuple[float, float]:
    """Online feature fetches a served model has made so far, and the seconds they took in all (its
    fetch-latency histogram's count and sum)."""
    text = _scrape(metrics_url)
    totals = []
    for part in ("count", "sum"):
        m = re.search(rf'^{FEATURE_FETCH}_{part}{{model="{re.escape(model)}"}} ([\d.e+-]+)$', text, re.MULTILINE)
        totals.append(float(m.group(1)) if m else 0.0)
    return totals[0], totals[1]


def feature_fetches(metrics_url: str, model: str) -> float:
    """Online feature fetches a served model has made so far (its fetch-latency histogram count)."""
    return feature_fetch_totals(metrics_url, model)[0]
