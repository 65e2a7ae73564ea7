"""`mlplat bench models`: in-process and HTTP (optionally gRPC) latency/throughput of the model runtimes.

    mlplat bench models [--models NAME,NAME,...] [--data DIR] [--concurrency 4]
                        [--duration 10] [--repeat N] [--grpc] [--json FILE]
                        [--max-batch-size N --max-batch-time-ms T] [--online-clients CLIENT,...]
                        [--rtt-ms MS,...] [--store-cpus server|load] [--no-pin]

Per model (default: every registered model, contracts/model_registry.py, through its plugin,
ml/model_plugin.py): trains on --data (the shared datasets' file names) or on generated sample data,
then serves every model plus a bare ONNX runtime (the ONNX call alone of the first model whose plugin
offers `bare_onnx_requests`) from one real `mlserver start`. Each run times every runtime's `predict`
in-process (single-row requests, no HTTP), then loads each model with `wrk` (or a Python load
generator) at a fixed concurrency; `--grpc` also drives the V2 gRPC endpoint of the same server
(ml/serving/grpc_load.py). Models with Feast features read them from a real redis-server loaded by
Feast materialization. Models that read online features are served once per online-store client
(`--online-clients`) and store round trip (`--rtt-ms`: the store behind a calibrated delay proxy,
ml/serving/delay_proxy.py, on the load generator's CPUs), so the clients are compared at a cluster's
round trip in one run. Throughput and p99 are also given as ratios to the bare runtime measured in the
same run; with `--repeat N` the runs alternate the model order and each figure, in-process ones included,
is the median over the runs (the ratio: the median of the per-run ratios), so a noisy machine still
gives a stable ratio. The server's and redis-server's CPU time per request is measured from /proc
during each load and divided by the requests the server counted as answered in that window (what `mlplat
capacity` sizes pods and shards from). On Linux with 2+ CPUs the server
side (MLServer, redis-server, the in-process timing) runs on half of the CPUs and the load generators
on the others (`--no-pin`: all on every CPU; `--store-cpus load`: redis-server with the load generators);
the report records the layout.

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
from typing import TYPE_CHECKING, Any

from contracts import model_registry
from contracts.feast import DEFAULT_ONLINE_CLIENT, ONLINE_CLIENTS
from ml.cli import bench_cache
from ml.data.feast_repo import apply_and_materialize, write_repo
from ml.model_plugin import load_plugin
from ml.service_checks import check_redis
from ml.serving.delay_proxy import netem_available
from ml.serving.grpc_load import grpc_load
from ml.serving.loadgen import (
    CpuLayout,
    feature_fetch_totals,
    http_load,
    machine_info,
    on_cpus,
    process_cpu_seconds,
    requests_served,
    time_calls,
    versions,
)
from ml.serving.processes import MLServerProcess, RedisServer, free_port
from ml.serving.settings import BARE, ModelEntry, runtimes, write_repository

if TYPE_CHECKING:
    from ml.serving.store_rtt import DelayedStore

# MLServer and the online-store client (which loads Feast's protobufs) are imported by the command that
# uses them, for the start-up time of `mlplat` and its other subcommands.



def _clients(text: str) -> list[str]:
    clients = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in clients if c not in ONLINE_CLIENTS]
    if not clients or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown online client(s) {unknown or text!r}; expected {', '.join(ONLINE_CLIENTS)}")
    return list(dict.fromkeys(clients))


def _round_trips(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected milliseconds like 0.2,0.5,1.0, got {text!r}") from None
    if not values or any(not 0 < v <= 100 for v in values):
        raise argparse.ArgumentTypeError(f"round trips must be in (0, 100] ms, got {text!r}")
    return sorted(set(values))


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
    models.add_argument("--online-clients", type=_clients, default=[DEFAULT_ONLINE_CLIENT], metavar="CLIENT,...",
                        help=f"online feature clients ({', '.join(ONLINE_CLIENTS)}); with several, each model that "
                             "reads online features is served once per client, as <model>-<client> "
                             f"(default: {DEFAULT_ONLINE_CLIENT})")
    models.add_argument("--rtt-ms", type=_round_trips, default=[], metavar="MS,...",
                        help="serve each model that reads online features through a store round trip of MS "
                             "milliseconds (a calibrated delay proxy), once per value, as <model>[-<client>]-<MS>ms")
    models.add_argument("--store-cpus", choices=("server", "load"), default="server",
                        help="where the local redis-server runs: with the server side (default; its CPU competes "
                             "with the model server's, as on one machine) or with the load generators (as a store "
                             "on other machines: the read then crosses vCPUs)")
    models.add_argument("--no-pin", action="store_true",
                        help="run the server side and the load generators on every CPU (default: on separate "
                             "CPUs, see CpuLayout in ml/serving/loadgen.py)")
    models.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON to FILE")
    models.set_defaults(func=run)
    store = sub.add_parser("store", help="round trip of the online feature read (local redis-server by default)")
    store.add_argument("--url", help="redis:// or rediss:// URL of a running store (default: start a local "
                                     "redis-server and time it on one CPU and across two)")
    store.add_argument("--requests", type=int, default=5000, help="timed reads per placement")
    store.add_argument("--rtt-ms", type=_round_trips, default=[], metavar="MS,...",
                       help="also time the read through a delay proxy calibrated to each round trip (local store)")
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


def _variants(name: str, clients: list[str], stores: dict[float | None, str]) -> list[tuple[str, str, float | None]]:
    """(served name, online client, store round trip) of a model that reads online features on every
    request: one per client and round trip, named by what differs between them."""
    out = []
    for rtt in stores:
        for client in clients:
            label = (name + (f"-{client}" if len(clients) > 1 else "")
                     + (f"-{rtt:g}ms" if len(stores) > 1 and rtt is not None else ""))
            out.append((label, client, rtt))
    return out


def _train(names: list[str], args: argparse.Namespace, work: Path, stores: dict[float | None, str],
           report: dict[str, Any], in_process: dict[str, _InProcess]) -> list[tuple[ModelEntry, list[dict]]]:
    """`stores`: the online store's URL per round trip (None: the store itself, no proxy). Order of the loads: each
    model's variants, the bare runtime right after the first model that offers it, the explainers last (they
    have no target): a round's ratio compares loads minutes apart on a host whose speed drifts, so the models
    with a target sit next to the bare runtime."""
    entries: list[tuple[ModelEntry, list[dict]]] = []
    explainers: list[tuple[ModelEntry, list[dict]]] = []
    direct_url = report["settings"]["store_url"]
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
            apply_and_materialize(write_repo(work / "feast" / name, direct_url), defs)
        bodies = plugin.sample_requests(data_dir, out.model_dir)
        features = model_registry.get(name).features
        variants = (_variants(name, args.online_clients, stores) if features is not None and features.every_request
                    else [(name, args.online_clients[0], None)])
        for served, client, rtt in variants:
            extra: dict[str, Any] = {"redis_url": stores.get(rtt, direct_url), "online_client": client}
            report["models"][served] = {"model": name, "online_client": client, "store_rtt_ms": rtt}
            in_process[served] = _InProcess(name, out.model_dir, extra, bodies)
            entries.append((ModelEntry(served, name, str(out.model_dir), extra), bodies))
        explainer = model_registry.get(name).explainer_name
        if explainer is not None:  # explanations of the same requests, served beside the model
            extra = {"redis_url": direct_url, "online_client": args.online_clients[0]}
            report["models"][explainer] = {"model": explainer, "online_client": args.online_clients[0],
                                           "store_rtt_ms": None}
            in_process[explainer] = _InProcess(explainer, out.model_dir, extra, bodies)
            explainers.append((ModelEntry(explainer, explainer, str(out.model_dir), extra), bodies))
        bare_bodies = None if BARE in report["models"] else plugin.bare_onnx_requests(data_dir, out.model_dir)
        if bare_bodies:
            report["models"][BARE] = {"model": BARE}
            in_process[BARE] = _InProcess(BARE, out.model_dir, {}, bare_bodies)
            entries.append((ModelEntry(BARE, BARE, str(out.model_dir)), bare_bodies))
    return entries + explainers


def _measured(load: dict[str, Any], cpu: dict[str, tuple[int, float]], done: float) -> dict[str, Any]:
    """Add CPU microseconds per request of the server (and redis-server) to a load result; `done`: the
    requests the server answered in the window (its own counter, not the load generator's rate x duration)."""
    load["served"] = done
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
                     "max_batch_time_ms": args.max_batch_time_ms, "online_clients": args.online_clients,
                     "store_rtt_ms": args.rtt_ms,
                     "cpus": layout.describe() if layout else "shared",
                     "store_cpus": args.store_cpus if layout else "shared"},
        "models": {}, "runs": [],
    }
    report["machine"]["load_before"] = report["machine"].pop("load_average")
    with contextlib.ExitStack() as stack, contextlib.redirect_stdout(sys.stderr):
        # The servers and their threads keep the affinity they start with.
        with on_cpus(server_cpus if args.store_cpus == "server" else load_cpus):
            redis = stack.enter_context(RedisServer(work / "redis"))
        report["settings"]["store_url"] = redis.url
        stores: dict[float | None, str] = {None: redis.url}
        proxies: dict[str, DelayedStore] = {}
        if args.rtt_ms:
            from ml.serving.store_rtt import delayed_store

            # On the load generators' CPUs: the proxy stands for the network, not for the server's work.
            with on_cpus(load_cpus):
                for rtt in args.rtt_ms:
                    delayed = delayed_store(redis.url, rtt, work)
                    stack.callback(delayed.stop)
                    stores[rtt] = delayed.url
                    proxies[delayed.url] = delayed
            del stores[None]
            report["store_paths"] = [{"rtt_ms": d.rtt_ms, "floor_ms": d.floor_ms, "added_ms": d.added_ms,
                                      "method": "delay proxy (ml/serving/delay_proxy.py; no netem in this kernel)"
                                      if not netem_available() else "delay proxy (netem available, not used)"}
                                     for d in proxies.values()]
        in_process: dict[str, _InProcess] = {}
        stack.callback(lambda: [r.close() for r in in_process.values()])
        entries = _train(names, args, work, stores, report, in_process)
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
                    served = requests_served(metrics_url, entry.name)  # before the CPU window opens
                    cpu = {"server_cpu_us": (server.proc.pid, process_cpu_seconds(server.proc.pid)),
                           "redis_cpu_us": (redis.proc.pid, process_cpu_seconds(redis.proc.pid))}
                    proxy = proxies.get(entry.extra.get("redis_url", ""))
                    if proxy is not None and proxy.proxy.proc is not None:
                        cpu["proxy_cpu_us"] = (proxy.proxy.proc.pid, proxy.cpu_seconds())
                    if protocol == "http":
                        fetches, fetch_s = feature_fetch_totals(metrics_url, entry.name)
                        with on_cpus(load_cpus):
                            load = http_load(f"{server.url}/v2/models/{entry.name}/infer", bodies,
                                             args.concurrency, args.duration)
                        served = requests_served(metrics_url, entry.name) - served
                        if served > 0:  # online feature round trips per request (what Redis must serve)
                            count, seconds = feature_fetch_totals(metrics_url, entry.name)
                            load["fetches_per_request"] = round((count - fetches) / served, 3)
                            if count > fetches:  # the store wait the runtime saw, proxy included, under load
                                load["fetch_ms"] = round((seconds - fetch_s) / (count - fetches) * 1000, 3)
                    else:
                        with on_cpus(load_cpus):
                            load = grpc_load(f"127.0.0.1:{grpc_port}", entry.name, bodies, args.concurrency,
                                             args.duration)
                        served = requests_served(metrics_url, entry.name) - served
                    figures[protocol] = _measured(load, cpu, served)
            _add_ratios(run_figures)
            report["runs"].append(run_figures)
    report["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    _summarize(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"[bench] report written to {args.json}", file=sys.stderr)
    print(_table(report))
    return 0


def _add_ratios(run_figures: dict[str, Any]) -> None:
    """Each served model's requests/s and p99 against the bare runtime's in the same run, and `cpu_vs_bare`:
    the bare runtime's server CPU per request over the model's plus redis-server's (which shares its CPUs), the
    ratio a saturated server would serve, and one that other work on the host moves less than requests/s."""
    for protocol in ("http", "grpc"):
        bare = run_figures.get(BARE, {}).get(protocol, {})
        for figures in run_figures.values():
            if protocol not in figures:
                continue
            mine = figures[protocol]
            if bare.get("rps"):
                mine["rps_vs_bare"] = round(mine["rps"] / bare["rps"], 3)
            if bare.get("p99_ms"):
                mine["p99_vs_bare"] = round(mine["p99_ms"] / bare["p99_ms"], 3)
            cost = mine.get("server_cpu_us", 0) + mine.get("redis_cpu_us", 0)
            if bare.get("server_cpu_us") and cost:
                mine["cpu_vs_bare"] = round((bare["server_cpu_us"] + bare.get("redis_cpu_us", 0)) / cost, 3)


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
            for key in ("p50_ms", "p99_ms", "rps", "served", "non_2xx", "errors", "server_cpu_us", "redis_cpu_us",
                        "fetches_per_request", "fetch_ms", "proxy_cpu_us", "rps_vs_bare", "p99_vs_bare",
                        "cpu_vs_bare"):
                values = [x[key] for x in runs if key in x]
                if values:
                    summary[key] = round(statistics.median(values), 3)
            result[protocol] = summary


def _table(report: dict[str, Any]) -> str:
    m, st = report["machine"], report["settings"]
    width = max([16, *(len(n) + 2 for n in report["models"])])
    lines = [
        f"cores: {m['cores']}  load average before {m['load_before'][0]:.2f} after {m['load_after'][0]:.2f}  "
        f"concurrency: {st['concurrency']}  duration: {st['duration_s']} s  runs: {st['repeat']}  "
        f"data: {st['data']}",
        f"{'model':<{width}}{'proto':>6}{'inproc p50':>11}{'inproc p99':>11}{'p50':>9}{'p99':>9}{'req/s':>9}"
        f"{'vs bare':>9}{'p99/bare':>9}{'cpu us':>8}{'errors':>8}  tool",
    ]
    nan = float("nan")
    for name, r in report["models"].items():
        ip = r["in_process"]
        for protocol in ("http", "grpc"):
            h = r.get(protocol)
            if h is None:
                continue
            lines.append(
                f"{name:<{width}}{protocol:>6}{ip['p50_ms']:>9.3f}ms{ip['p99_ms']:>9.3f}ms"
                f"{h.get('p50_ms', nan):>7.2f}ms"
                f"{h.get('p99_ms', nan):>7.2f}ms{h.get('rps', 0):>9.0f}{h.get('rps_vs_bare', nan):>9.2f}"
                f"{h.get('p99_vs_bare', nan):>9.2f}{h.get('server_cpu_us', nan):>8.0f}"
                f"{h.get('non_2xx', h.get('errors', 0)):>8.0f}  {h.get('tool', '-')}"
            )
    if report.get("store_paths") or len(st.get("online_clients", [])) > 1:
        lines += ["", *_online_table(report)]
    return "\n".join(lines)


def _online_table(report: dict[str, Any]) -> list[str]:
    """The models that read the store on every request, per client and round trip: what each costs the
    server (CPU per request, so requests/s one core can carry) and what it achieves from one process."""
    lines = []
    for path in report.get("store_paths", []):
        lines.append(f"store round trip {path['rtt_ms']:g} ms: {path['method']}, floor {path['floor_ms']:.3f} ms "
                     f"through the proxy with nothing added, {path['added_ms']:.3f} ms added")
    lines.append(f"{'served as':<28}{'client':>15}{'rtt ms':>8}{'req/s':>8}{'p99 ms':>8}{'cpu us/req':>11}"
                 f"{'req/s/core':>11}{'wait ms':>9}{'proxy us':>9}")
    nan = float("nan")
    for name, r in report["models"].items():
        h = r.get("http")
        if h is None or "online_client" not in r or not h.get("fetches_per_request"):
            continue
        cpu = h.get("server_cpu_us")
        rtt = r.get("store_rtt_ms")
        lines.append(f"{name:<28}{r['online_client']:>15}{rtt if rtt is not None else 0:>8g}{h.get('rps', 0):>8.0f}"
                     f"{h.get('p99_ms', nan):>8.2f}{cpu or nan:>11.0f}{1e6 / cpu if cpu else nan:>11.0f}"
                     f"{h.get('fetch_ms', nan):>9.3f}{h.get('proxy_cpu_us', nan):>9.0f}")
    return lines


def run_store(args: argparse.Namespace) -> int:
    """`mlplat bench store`: one table row per placement (the local store) or for the given URL."""
    if args.requests < 1:
        print("mlplat bench: --requests must be >= 1", file=sys.stderr)
        return 2
    if args.url and args.rtt_ms:
        print("mlplat bench: --rtt-ms delays the local store; with --url the network's own round trip is measured",
              file=sys.stderr)
        return 2
    if args.url:  # before Feast's import (seconds): a store that does not answer is named at once
        check_redis(args.url, fix="check --url (a running Redis the benchmark can reach)")
    from ml.serving.store_rtt import RoundTripTooShort, delayed_store, round_trips

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
                for rtt in args.rtt_ms:
                    # The reader where the runtime runs (beside the store), the proxy where the network would be.
                    with on_cpus(frozenset({min(layout.load)}) if layout else None):
                        delayed = delayed_store(redis.url, rtt, Path(tmp))
                    try:
                        before = delayed.cpu_seconds()
                        with on_cpus(store_cpu):
                            figures = round_trips(delayed.url, args.requests)
                        figures["proxy_cpu_us"] = round((delayed.cpu_seconds() - before) / args.requests * 1e6, 1)
                    finally:
                        delayed.stop()
                    rows.append((f"through a {rtt:g} ms round trip (proxy floor {delayed.floor_ms:.3f} ms, "
                                 f"added {delayed.added_ms:.3f})", figures))
            except RoundTripTooShort as exc:
                print(f"mlplat bench: {exc}", file=sys.stderr)
                return 2
            finally:
                redis.stop()
    views = rows[0][1]["views"]
    print(f"online feature read (1 row: {views} pipelined HMGET(s), ml/serving/online.py), "
          f"{args.requests} timed reads each")
    if args.rtt_ms:
        print("round trips through ml/serving/delay_proxy.py (this kernel has "
              f"{'netem, not used' if netem_available() else 'no netem'}); the proxy runs on the other CPU")
    width = max(42, *(len(name) + 1 for name, _ in rows))
    print(f"{'placement':{width}s} {'p50':>9s} {'p99':>9s} {'mean':>9s} {'proxy cpu':>10s}")
    for name, r in rows:
        proxy = f"{r['proxy_cpu_us']:8.1f}us" if "proxy_cpu_us" in r else f"{'-':>10s}"
        print(f"{name:{width}s} {r['p50_ms'] * 1000:7.1f}us {r['p99_ms'] * 1000:7.1f}us {r['mean_us']:7.1f}us {proxy}")
    return 0
