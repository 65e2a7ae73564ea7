"""`mlplat bench cache`: what the prediction cache saves per request at a given hit rate.

    mlplat bench cache [--model NAME] [--data DIR] [--model-dir DIR] [--hit-rates 0,0.5,0.8]
                       [--requests 2000] [--url URL] [--json FILE]

For a model whose runtime uses the prediction cache (`CACHEABLE`; default: the first registered one):
trains it (quick: no baselines) on --data (default: generated sample data) or loads --model-dir,
starts a local redis-server (or uses --url, e.g. ElastiCache from a pod), and loads the runtime in
this process twice: without a cache and with the Redis prediction cache
(ml/serving/prediction_cache.py). For each hit rate h it builds one request stream from the plugin's
sample requests (one per entity of the data) in which each request repeats an earlier one with
probability h (the same entity asking again, e.g. a page reload) and is otherwise a sample request not
used before; the stream ends when those run out or at --requests. It then times the runtime's
`predict` on that stream with and without the cache (Redis flushed first) and prints p50/p99/mean
latency, the hit rate reached and the saving per request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from contracts import model_registry
from ml.model_plugin import load_plugin
from ml.service_checks import check_redis
from ml.serving.loadgen import machine_info
from ml.serving.processes import RedisServer
from ml.serving.settings import runtimes


def cacheable_models() -> list[str]:
    """Registered models whose runtime class declares `CACHEABLE = True` (deterministic answers)."""
    out = []
    for name in model_registry.names():
        module, cls_name = runtimes()[name].rsplit(".", 1)
        if getattr(getattr(importlib.import_module(module), cls_name), "CACHEABLE", False):
            out.append(name)
    return out


def register(sub: argparse._SubParsersAction) -> None:
    cache = sub.add_parser("cache", help="latency saved by the Redis prediction cache at given hit rates")
    cache.add_argument("--model", help="a registered model whose runtime uses the cache (default: the first)")
    cache.add_argument("--data", type=Path, help="dataset directory (default: generated sample data)")
    cache.add_argument("--model-dir", type=Path, help="a trained model directory of that model (skips training)")
    cache.add_argument("--hit-rates", default="0,0.5,0.8", help="comma-separated shares of repeated requests")
    cache.add_argument("--requests", type=int, default=2000, help="timed requests per hit rate and variant")
    cache.add_argument("--url", help="redis:// or rediss:// URL of a running Redis (default: a local redis-server)")
    cache.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON to FILE")
    cache.set_defaults(func=run)


def _stream(bodies: list[dict[str, Any]], n: int, hit_rate: float, seed: int) -> list[dict[str, Any]]:
    """Up to n bodies: each repeats an earlier one with probability ``hit_rate``, else is unused so far."""
    rng = np.random.default_rng(seed)
    fresh = [bodies[i] for i in rng.permutation(len(bodies))]
    seen: list[dict[str, Any]] = []
    out = []
    while len(out) < n:
        if seen and rng.random() < hit_rate:
            body = seen[int(rng.integers(len(seen)))]
        elif fresh:
            body = fresh.pop()
            seen.append(body)
        else:
            break
        out.append(body)
    return out


class _Runtime:
    """The model's MLServer runtime loaded in this process; `predict` driven on a private event loop (the
    same overhead with and without the cache, so the difference is the cache's)."""

    def __init__(self, model: str, model_dir: Path, extra: dict[str, Any]) -> None:
        from mlserver.settings import ModelParameters, ModelSettings

        module, cls_name = runtimes()[model].rsplit(".", 1)
        cls = getattr(importlib.import_module(module), cls_name)
        self.runtime = cls(ModelSettings(name=f"bench-cache-{model}", implementation=cls,
                                         parameters=ModelParameters(uri=str(model_dir), extra=extra)))
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.runtime.load())

    def predict(self, request: Any) -> Any:
        return self.loop.run_until_complete(self.runtime.predict(request))

    def close(self) -> None:
        self.loop.run_until_complete(self.runtime.unload())
        self.loop.close()


def _timed(runtime: _Runtime, bodies: list[dict[str, Any]]) -> dict[str, float]:
    from mlserver.types import InferenceRequest

    requests = [InferenceRequest.model_validate(b) for b in bodies]
    for r in requests[:20]:  # warm-up on a prefix; its keys stay cached, as in a running server
        runtime.predict(r)
    times = []
    for r in requests:
        started = time.perf_counter()
        runtime.predict(r)
        times.append(time.perf_counter() - started)
    ms = np.array(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3)}


def run(args: argparse.Namespace) -> int:
    try:
        rates = [float(r) for r in args.hit_rates.split(",") if r.strip()]
    except ValueError:
        print(f"mlplat bench cache: --hit-rates must be numbers between 0 and 1, got {args.hit_rates!r}",
              file=sys.stderr)
        return 2
    if not rates or any(not 0 <= r < 1 for r in rates) or args.requests < 1:
        print("mlplat bench cache: --hit-rates must be in [0, 1) and --requests >= 1", file=sys.stderr)
        return 2
    if args.url:
        check_redis(args.url, fix="check --url (a running Redis the benchmark can reach)")
    model = args.model or next(iter(cacheable_models()), None)
    if model is None or model not in cacheable_models():
        print(f"mlplat bench cache: no model whose runtime uses the prediction cache is named {model!r}; "
              f"cacheable: {', '.join(cacheable_models()) or 'none'}", file=sys.stderr)
        return 2
    plugin = load_plugin(model)
    with tempfile.TemporaryDirectory(prefix="mlplat-bench-cache-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        data_dir = args.data
        if data_dir is None:
            data_dir = work / "data"
            plugin.generate_sample(data_dir)
        model_dir = args.model_dir
        if model_dir is None:
            print(f"[bench] training {model} on {data_dir}", file=sys.stderr)
            with contextlib.redirect_stdout(sys.stderr):
                model_dir = plugin.train(data_dir, work / "model", quick=True).model_dir
        url = args.url or stack.enter_context(RedisServer(work / "redis")).url
        bodies = plugin.sample_requests(data_dir, model_dir, n=100_000)
        plain = _Runtime(model, Path(model_dir), {})
        cached = _Runtime(model, Path(model_dir), {"redis_url": url, "prediction_cache_ttl_s": 3600})
        rows = []
        for i, rate in enumerate(rates):
            stream = _stream(bodies, args.requests, rate, seed=i)
            repeats = len(stream) - len({json.dumps(b, sort_keys=True) for b in stream})
            cached.runtime.cache.clear()  # each stream starts cold
            without, with_cache = _timed(plain, stream), _timed(cached, stream)
            rows.append({"hit_rate_target": rate, "hit_rate": round(repeats / len(stream), 3),
                         "requests": len(stream), "without": without, "with": with_cache,
                         "saved_mean_ms": round(without["mean_ms"] - with_cache["mean_ms"], 3)})
        plain.close()
        cached.close()
    report = {"command": " ".join(["mlplat", *sys.argv[1:]]), "machine": machine_info(), "model": model,
              "model_dir": str(model_dir), "rows": rows}
    print(f"prediction cache, {model} runtime in-process (Redis: {'--url' if args.url else 'local redis-server'})")
    print(f"{'requests':>8s} {'hit rate':>9s} {'p50 / p99 / mean ms without':>30s} {'p50 / p99 / mean ms with':>28s} "
          f"{'saved/req':>10s}")
    for r in rows:
        w, c = r["without"], r["with"]
        print(f"{r['requests']:>8d} {r['hit_rate']:>9.2f} {w['p50_ms']:>10.3f} / {w['p99_ms']:.3f} / {w['mean_ms']:.3f}"
              f" {c['p50_ms']:>10.3f} / {c['p99_ms']:.3f} / {c['mean_ms']:.3f} {r['saved_mean_ms']:>8.3f}ms")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0
