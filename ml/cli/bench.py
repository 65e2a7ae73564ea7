"""`mlplat bench models`: in-process and HTTP (optionally gRPC) latency/throughput of the model runtimes.

    mlplat bench models [--models NAME,NAME,...] [--data DIR] [--concurrency 4]
                        [--duration 10] [--repeat N] [--grpc] [--json FILE]
                        [--max-batch-size N --max-batch-time-ms T] [--online-client resp|redis-py]
                        [--compare-online-clients] [--no-pin]

Per model (default: every registered model, contracts/model_registry.py, through its plugin,
ml/model_plugin.py): trains on --data (the shared datasets' file names) or on generated sample data,
then serves every model plus a bare ONNX runtime (the ONNX call alone of the first model whose plugin
offers `bare_onnx_requests`) from one real `mlserver start`. Each run times every runtime's `predict`
in-process (single-row requests, no HTTP), then loads each model with `wrk` (or a Python load
generator) at a fixed concurrency; `--grpc` also drives the V2 gRPC endpoint of the same server
(ml/serving/grpc_load.py). Models with Feast features read them from a real redis-server loaded by
Feast materialization. Throughput is also given as a ratio to the bare runtime measured in the same
run; with `--repeat N` the runs alternate the model order and each figure, in-process ones included,
is the median over the runs (the ratio: the median of the per-run ratios), so a noisy machine still
gives a stable ratio. The server's and redis-server's CPU time per request is measured from /proc
during each load (what `mlplat capacity` sizes pods and shards from). On Linux with 2+ CPUs the server
side (MLServer, redis-server, the in-process timing) runs on half of the CPUs and the load generators
on the others (`--no-pin`: all on every CPU); the report records the layout.

`--json FILE` writes every figure of the table plus the machine (cores, load average before/after),
the command, the settings and the versions; the table is printed either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import shlex
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts import model_registry
from ml.cli import bench_cache
from ml.data.feast_repo import apply_and_materialize, write_repo
from ml.model_plugin import load_plugin
from ml.service_checks import check_redis
from ml.serving.grpc_load import grpc_load
from ml.serving.loadgen import (
    CpuLayout,
    feature_fetches,
    http_load,
    machine_info,
    on_cpus,
    process_cpu_seconds,
    time_calls,
    versions,
)
from ml.serving.processes import MLServerProcess, RedisServer, free_port
from ml.serving.settings import ModelEntry, runtimes, write_repository

# MLServer and the online-store client (which loads Feast's protobufs) are imported by the command that
# uses them, for the start-up time of `mlplat` and its other subcommands.

BARE = "bare-onnx"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks")
    sub = parser.add_subparsers(dest="bench_target", metavar="TARGET", required=True)
    models = sub.add_parser("models", help="latency/throughput of the model runtimes (in-process, HTTP, gRPC)")
    models.add_argument("--models", default=",".join(model_registry.names()), help="comma-separated subset")
    models.add_argument("--data", type=Path, help="dataset directory (default: generated sample data)")
    models.add_argument("--concurrency", type=int, default=4)
    models.add_argument("--duration", type=int, default=10, help="seconds of load per model and protocol")
    models.add_argument("--requests", type=int, default=2000, help="in-process timed calls per model")
    models.add_argument("--repeat", type=int, default=1, help="runs, in alternating model order; medians reported")
    models.add_argument("--grpc", action="store_true", help="also load the V2 gRPC endpoint")
    models.add_argument("--max-batch-size", type=int, help="MLServer adaptive batching: max_batch_size per model")
    models.add_argument("--max-batch-time-ms", type=float, help="MLServer adaptive batching: max_batch_time")
    models.add_argument("--online-client", choices=("resp", "redis-py"), help="online feature client of the runtimes")
    models.add_argument("--compare-online-clients", action="store_true",
                        help="also serve each model that reads online features with the redis-py client, as "
                             "<model>-redis-py, in the same run")
    models.add_argument("--no-pin", action="store_true",
                        help="run the server side and the load generators on every CPU (default: on separate "
                             "CPUs, see CpuLayout in ml/serving/loadgen.py)")
    models.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON to FILE")
    models.set_defaults(func=run)
    store = sub.add_parser("store", help="round trip of the online feature read (local redis-server by default)")
    store.add_argument("--url", help="redis:// or rediss:// URL of a running store (default: start a local "
                                     "redis-server and time it on one CPU and across two)")
    store.add_argument("--requests", type=int, default=5000, help="timed reads per placement")
    store.set_defaults(func=run_store)
    bench_cache.register(sub)


class _InProcess:
    """A model's MLServer runtime loaded in this process, timed on single requests (`predict` only: no
    HTTP, no MLServer routing). Timed once per run, in the run's model order, and reported as the median
    over the runs like the HTTP figures: a shared machine's speed drifts from one minute to the next.

    `predict` is driven to completion directly when it never suspends (no runtime here awaits I/O): a
    `run_until_complete` per call adds a task and an event-loop pass (~15 us, p99 30-80 us on the dev
    VM) that MLServer, which awaits `predict` inside its running loop, does not pay per model call. A
    runtime that does suspend is timed on the event loop instead."""

    def __init__(self, kind: str, uri: Path, extra: dict[str, Any], bodies: list[dict]) -> None:
        from mlserver.settings import ModelParameters, ModelSettings
        from mlserver.types import InferenceRequest

        module, cls_name = runtimes()[kind].rsplit(".", 1)
        cls = getattr(importlib.import_module(module), cls_name)
        self.runtime = cls(ModelSettings(name=f"inproc-{kind}", implementation=cls,
                                         parameters=ModelParameters(uri=str(uri), extra=extra)))
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.runtime.load())
        self.requests = [InferenceRequest.model_validate(b) for b in bodies]
        self.direct = True

    def predict(self, request: Any) -> Any:
        if self.direct:
            call = self.runtime.predict(request)
            try:
                call.send(None)
            except StopIteration as done:
                return done.value
            except RuntimeError:  # it asked for the running event loop
                pass
            else:
                call.close()  # it suspended
            self.direct = False  # it awaits something real: rerun it, and every later call, on the loop
        return self.loop.run_until_complete(self.runtime.predict(request))

    def time(self, n: int) -> dict[str, float]:
        requests, predict = self.requests, self.predict
        return time_calls(lambda i: predict(requests[i % len(requests)]), n)

    def close(self) -> None:
        self.loop.close()


def _train(names: list[str], args: argparse.Namespace, work: Path, redis_url: str,
           report: dict[str, Any], in_process: dict[str, _InProcess]) -> list[tuple[ModelEntry, list[dict]]]:
    entries: list[tuple[ModelEntry, list[dict]]] = []
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
            apply_and_materialize(write_repo(work / "feast" / name, redis_url), defs)
        bodies = plugin.sample_requests(data_dir, out.model_dir)
        extra: dict[str, Any] = {"redis_url": redis_url}
        if args.online_client:
            extra["online_client"] = args.online_client
        report["models"][name] = {}
        in_process[name] = _InProcess(name, out.model_dir, extra, bodies)
        entries.append((ModelEntry(name, name, str(out.model_dir), extra), bodies))
        if defs and args.compare_online_clients:
            alt, alt_extra = f"{name}-redis-py", {**extra, "online_client": "redis-py"}
            report["models"][alt] = {}
            in_process[alt] = _InProcess(name, out.model_dir, alt_extra, bodies)
            entries.append((ModelEntry(alt, name, str(out.model_dir), alt_extra), bodies))
        bare_bodies = None if BARE in report["models"] else plugin.bare_onnx_requests(data_dir, out.model_dir)
        if bare_bodies:
            report["models"][BARE] = {}
            in_process[BARE] = _InProcess(BARE, out.model_dir, {}, bare_bodies)
            entries.append((ModelEntry(BARE, BARE, str(out.model_dir)), bare_bodies))
    return entries


def _measured(load: dict[str, Any], cpu: dict[str, tuple[int, float]], duration: int) -> dict[str, Any]:
    """Add CPU microseconds per request of the server (and redis-server) to a load result."""
    done = load["rps"] * duration
    for key, (pid, before) in cpu.items():
        if done > 0:
            load[key] = round((process_cpu_seconds(pid) - before) / done * 1e6, 1)
    return load


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    registered = model_registry.names()
    unknown = sorted(set(names) - set(registered))
    if unknown:
        print(f"mlplat bench: unknown model(s) {unknown}; expected {', '.join(registered)}", file=sys.stderr)
        return 2
    if args.concurrency < 1 or args.duration < 1 or args.repeat < 1:
        print("mlplat bench: --concurrency, --duration and --repeat must be >= 1", file=sys.stderr)
        return 2
    if (args.max_batch_size is None) != (args.max_batch_time_ms is None):
        print("mlplat bench: give --max-batch-size and --max-batch-time-ms together", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="mlplat-bench-"))
    layout = None if args.no_pin else CpuLayout.split()
    server_cpus, load_cpus = (layout.server, layout.load) if layout else (None, None)
    report: dict[str, Any] = {
        "schema": 1, "command": "mlplat " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine_info(),
        "versions": versions(),
        "settings": {"concurrency": args.concurrency, "duration_s": args.duration, "repeat": args.repeat,
                     "requests_in_process": args.requests, "data": str(args.data or "generated sample"),
                     "grpc": args.grpc, "max_batch_size": args.max_batch_size,
                     "max_batch_time_ms": args.max_batch_time_ms, "online_client": args.online_client or "default",
                     "compare_online_clients": args.compare_online_clients,
                     "cpus": layout.describe() if layout else "shared"},
        "models": {}, "runs": [],
    }
    report["machine"]["load_before"] = report["machine"].pop("load_average")
    with contextlib.ExitStack() as stack, contextlib.redirect_stdout(sys.stderr):
        with on_cpus(server_cpus):  # the servers and their threads keep the affinity they start with
            redis = stack.enter_context(RedisServer(work / "redis"))
        in_process: dict[str, _InProcess] = {}
        stack.callback(lambda: [r.close() for r in in_process.values()])
        entries = _train(names, args, work, redis.url, report, in_process)
        http, grpc_port, metrics_port = free_port(), free_port(), free_port()
        repo = write_repository(work / "mlserver", [e for e, _ in entries], http_port=http,
                                grpc_port=grpc_port, metrics_port=metrics_port)
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        if args.max_batch_size is not None:
            for entry, _ in entries:  # MLServer adaptive batching (model-settings max_batch_size/time, s)
                path = repo / entry.name / "model-settings.json"
                settings = json.loads(path.read_text())
                settings.update(max_batch_size=args.max_batch_size, max_batch_time=args.max_batch_time_ms / 1000)
                path.write_text(json.dumps(settings, indent=1))
        with on_cpus(server_cpus):
            server = stack.enter_context(MLServerProcess(repo, http))
        with on_cpus(load_cpus):
            for entry, bodies in entries:  # warm-up
                http_load(f"{server.url}/v2/models/{entry.name}/infer", bodies, args.concurrency, 2)
        for r in range(args.repeat):
            run_figures: dict[str, Any] = {}
            order = entries if r % 2 == 0 else entries[::-1]
            with on_cpus(server_cpus):  # in-process first, while the server is idle
                for entry, _ in order:
                    run_figures[entry.name] = {"in_process": in_process[entry.name].time(args.requests)}
            for entry, bodies in order:
                print(f"[bench] run {r + 1}/{args.repeat}: load on {entry.name}", file=sys.stderr)
                figures = run_figures[entry.name]
                protocols = ["http", "grpc"] if args.grpc else ["http"]
                for protocol in protocols:
                    cpu = {"server_cpu_us": (server.proc.pid, process_cpu_seconds(server.proc.pid)),
                           "redis_cpu_us": (redis.proc.pid, process_cpu_seconds(redis.proc.pid))}
                    if protocol == "http":
                        fetches = feature_fetches(metrics_url, entry.name)
                        with on_cpus(load_cpus):
                            load = http_load(f"{server.url}/v2/models/{entry.name}/infer", bodies,
                                             args.concurrency, args.duration)
                        if load["rps"] > 0:  # online feature round trips per request (what Redis must serve)
                            load["fetches_per_request"] = round(
                                (feature_fetches(metrics_url, entry.name) - fetches) / (load["rps"] * args.duration), 3)
                    else:
                        with on_cpus(load_cpus):
                            load = grpc_load(f"127.0.0.1:{grpc_port}", entry.name, bodies, args.concurrency,
                                             args.duration)
                    figures[protocol] = _measured(load, cpu, args.duration)
            for protocol in ("http", "grpc"):
                bare = run_figures.get(BARE, {}).get(protocol, {}).get("rps")
                for figures in run_figures.values():
                    if bare and protocol in figures:
                        figures[protocol]["rps_vs_bare"] = round(figures[protocol]["rps"] / bare, 3)
            report["runs"].append(run_figures)
    report["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    _summarize(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"[bench] report written to {args.json}", file=sys.stderr)
    print(_table(report))
    return 0


def _summarize(report: dict[str, Any]) -> None:
    """Per model and protocol, the median of each figure over the runs (`runs` keeps every run)."""
    for name, result in report["models"].items():
        timed = [r[name]["in_process"] for r in report["runs"] if "in_process" in r.get(name, {})]
        if timed:
            result["in_process"] = {key: round(statistics.median(t[key] for t in timed), 3)
                                    for key in ("p50_ms", "p99_ms")}
            result["in_process"]["runs"] = len(timed)
        for protocol in ("http", "grpc"):
            runs = [r[name][protocol] for r in report["runs"] if protocol in r.get(name, {})]
            if not runs:
                continue
            summary: dict[str, Any] = {"tool": runs[0]["tool"], "runs": len(runs)}
            for key in ("p50_ms", "p99_ms", "rps", "non_2xx", "errors", "server_cpu_us", "redis_cpu_us",
                        "fetches_per_request", "rps_vs_bare"):
                values = [x[key] for x in runs if key in x]
                if values:
                    summary[key] = round(statistics.median(values), 3)
            result[protocol] = summary


def _table(report: dict[str, Any]) -> str:
    m, st = report["machine"], report["settings"]
    lines = [
        f"cores: {m['cores']}  load average before {m['load_before'][0]:.2f} after {m['load_after'][0]:.2f}  "
        f"concurrency: {st['concurrency']}  duration: {st['duration_s']} s  runs: {st['repeat']}  "
        f"data: {st['data']}",
        f"{'model':<16}{'proto':>6}{'inproc p50':>11}{'inproc p99':>11}{'p50':>9}{'p99':>9}{'req/s':>9}"
        f"{'vs bare':>9}{'cpu us':>8}{'errors':>8}  tool",
    ]
    nan = float("nan")
    for name, r in report["models"].items():
        ip = r["in_process"]
        for protocol in ("http", "grpc"):
            h = r.get(protocol)
            if h is None:
                continue
            lines.append(
                f"{name:<16}{protocol:>6}{ip['p50_ms']:>9.3f}ms{ip['p99_ms']:>9.3f}ms{h.get('p50_ms', nan):>7.2f}ms"
                f"{h.get('p99_ms', nan):>7.2f}ms{h.get('rps', 0):>9.0f}{h.get('rps_vs_bare', nan):>9.2f}"
                f"{h.get('server_cpu_us', nan):>8.0f}{h.get('non_2xx', h.get('errors', 0)):>8.0f}  {h.get('tool', '-')}"
            )
    return "\n".join(lines)


def run_store(args: argparse.Namespace) -> int:
    """`mlplat bench store`: one table row per placement (the local store) or for the given URL."""
    if args.requests < 1:
        print("mlplat bench: --requests must be >= 1", file=sys.stderr)
        return 2
    if args.url:  # before Feast's import (seconds): a store that does not answer is named at once
        check_redis(args.url, fix="check --url (a running Redis the benchmark can reach)")
    from ml.serving.store_rtt import round_trips

    rows: list[tuple[str, dict[str, Any]]] = []
    if args.url:
        rows.append((args.url.split("@")[-1], round_trips(args.url, args.requests)))
    else:
        layout = CpuLayout.split()
        with tempfile.TemporaryDirectory(prefix="mlplat-store-") as tmp:
            store_cpu = frozenset({min(layout.server)}) if layout else None
            with on_cpus(store_cpu):
                redis = RedisServer(Path(tmp) / "redis").start()
            try:
                if layout is None:
                    rows.append(("as scheduled (no CPU placement here)", round_trips(redis.url, args.requests)))
                else:
                    other = frozenset({min(layout.load)})
                    for name, cpus in (("client and redis-server on one CPU", store_cpu),
                                       ("client and redis-server on two CPUs", other)):
                        with on_cpus(cpus):
                            rows.append((name, round_trips(redis.url, args.requests)))
            finally:
                redis.stop()
    views = rows[0][1]["views"]
    print(f"online feature read (1 row: {views} pipelined HMGET(s), ml/serving/online.py), "
          f"{args.requests} timed reads each")
    print(f"{'placement':42s} {'p50':>9s} {'p99':>9s} {'mean':>9s}")
    for name, r in rows:
        print(f"{name:42s} {r['p50_ms'] * 1000:7.1f}us {r['p99_ms'] * 1000:7.1f}us {r['mean_us']:7.1f}us")
    return 0
