"""`mlplat bench models`: in-process and HTTP latency/throughput of the registered models' runtimes.

    mlplat bench models [--models NAME,NAME,...] [--data DIR] [--concurrency 4] [--duration 10] [--json]

Per model (default: every registered model, contracts/model_registry.py): trains on --data (the
shared datasets' file names) or on generated sample data, through the model's plugin
(ml/common/plugin.py), times the MLServer runtime's `predict` in-process (single-row requests), then
serves every model plus a bare ONNX runtime (the ONNX call alone of the first model whose plugin
offers `bare_onnx_requests`) from one real `mlserver start` and loads each with `wrk` (or a Python
load generator) at a fixed concurrency. Models with Feast features read them from a real
redis-server loaded by Feast materialization. Throughput is also given as a ratio to the bare
runtime measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from contracts import model_registry

BARE = "bare-onnx"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks")
    sub = parser.add_subparsers(dest="bench_target", metavar="TARGET", required=True)
    models = sub.add_parser("models", help="latency/throughput of the model runtimes (in-process and HTTP)")
    models.add_argument("--models", default=",".join(model_registry.names()), help="comma-separated subset")
    models.add_argument("--data", type=Path, help="dataset directory (default: generated sample data)")
    models.add_argument("--concurrency", type=int, default=4)
    models.add_argument("--duration", type=int, default=10, help="seconds of HTTP load per model")
    models.add_argument("--requests", type=int, default=2000, help="in-process timed calls per model")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(func=run)


def _in_process(kind: str, uri: Path, extra: dict[str, Any], bodies: list[dict], n: int) -> dict[str, float]:
    from mlserver.settings import ModelParameters, ModelSettings
    from mlserver.types import InferenceRequest

    from ml.serving.bench import time_calls
    from ml.serving.settings import runtimes

    module, cls_name = runtimes()[kind].rsplit(".", 1)
    cls = getattr(importlib.import_module(module), cls_name)
    runtime = cls(ModelSettings(name=f"inproc-{kind}", implementation=cls,
                                parameters=ModelParameters(uri=str(uri), extra=extra)))
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(runtime.load())
        requests = [InferenceRequest.model_validate(b) for b in bodies]
        return time_calls(lambda i: loop.run_until_complete(runtime.predict(requests[i % len(requests)])), n)
    finally:
        loop.close()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from ml.common.feast_repo import apply_and_materialize, write_repo
    from ml.common.plugin import load_plugin
    from ml.serving.bench import http_load
    from ml.serving.processes import MLServerProcess, RedisServer, free_port
    from ml.serving.settings import ModelEntry, write_repository

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    registered = model_registry.names()
    unknown = sorted(set(names) - set(registered))
    if unknown:
        print(f"mlplat bench: unknown model(s) {unknown}; expected {', '.join(registered)}", file=sys.stderr)
        return 2
    if args.concurrency < 1 or args.duration < 1:
        print("mlplat bench: --concurrency and --duration must be >= 1", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="mlplat-bench-"))
    report: dict[str, Any] = {"cores": os.cpu_count(), "concurrency": args.concurrency,
                              "duration_s": args.duration, "data": str(args.data or "generated sample"),
                              "models": {}}
    entries: list[tuple[ModelEntry, list[dict]]] = []
    with contextlib.ExitStack() as stack, contextlib.redirect_stdout(sys.stderr):
        redis = stack.enter_context(RedisServer(work / "redis"))
        for name in names:
            plugin = load_plugin(name)
            data_dir = args.data
            if data_dir is None:
                data_dir = work / "data" / name
                plugin.generate_sample(data_dir)
            print(f"[bench] training {name} on {data_dir}", file=sys.stderr)
            # quick: baselines only matter for model quality, not for serving speed.
            out = plugin.train(data_dir, work / "models" / name, quick=True)
            defs = plugin.feature_definitions(work / "parquet" / name)
            if defs:
                plugin.write_feature_data(data_dir, work / "parquet" / name)
                apply_and_materialize(write_repo(work / "feast" / name, redis.url), defs)
            bodies = plugin.sample_requests(data_dir, out.model_dir)
            extra = {"redis_url": redis.url}
            report["models"][name] = {"in_process": _in_process(name, out.model_dir, extra, bodies, args.requests)}
            entries.append((ModelEntry(name, name, str(out.model_dir), extra), bodies))
            bare_bodies = None if BARE in report["models"] else plugin.bare_onnx_requests(data_dir, out.model_dir)
            if bare_bodies:
                report["models"][BARE] = {"in_process": _in_process(BARE, out.model_dir, {}, bare_bodies,
                                                                    args.requests)}
                entries.append((ModelEntry(BARE, BARE, str(out.model_dir)), bare_bodies))
        http = free_port()
        repo = write_repository(work / "mlserver", [e for e, _ in entries], http_port=http,
                                grpc_port=free_port(), metrics_port=free_port())
        server = stack.enter_context(MLServerProcess(repo, http))
        for entry, bodies in entries:
            url = f"{server.url}/v2/models/{entry.name}/infer"
            print(f"[bench] HTTP load on {entry.name}", file=sys.stderr)
            http_load(url, bodies, args.concurrency, 2)  # warm-up
            report["models"][entry.name]["http"] = http_load(url, bodies, args.concurrency, args.duration)
    bare = report["models"].get(BARE, {}).get("http", {}).get("rps")
    for result in report["models"].values():
        if bare and "http" in result:
            result["http"]["rps_vs_bare"] = round(result["http"]["rps"] / bare, 2)
    print(json.dumps(report, indent=2) if args.json else _table(report))
    return 0


def _table(report: dict[str, Any]) -> str:
    lines = [
        f"cores: {report['cores']}  concurrency: {report['concurrency']}  duration: {report['duration_s']} s"
        f"  data: {report['data']}",
        f"{'model':<16}{'inproc p50':>11}{'inproc p99':>11}{'http p50':>10}{'http p99':>10}{'req/s':>9}"
        f"{'vs bare':>9}{'non-2xx':>9}  tool",
    ]
    for name, r in report["models"].items():
        ip, h = r["in_process"], r.get("http", {})
        lines.append(
            f"{name:<16}{ip['p50_ms']:>9.3f}ms{ip['p99_ms']:>9.3f}ms{h.get('p50_ms', float('nan')):>8.2f}ms"
            f"{h.get('p99_ms', float('nan')):>8.2f}ms{h.get('rps', 0):>9.0f}{h.get('rps_vs_bare', float('nan')):>9.2f}"
            f"{h.get('non_2xx', 0):>9}  {h.get('tool', '-')}"
        )
    return "\n".join(lines)
