"""`mlplat bench cache`: what the prediction cache saves per request at a given hit rate.

    mlplat bench cache [--data DIR] [--model DIR] [--hit-rates 0,0.5,0.8] [--requests 2000] [--url URL]

Trains the recommendation model (quick: no baselines) on --data (default: generated sample data) or
loads --model DIR, starts a local redis-server (or uses --url, e.g. ElastiCache from a pod), and loads
the recommendation runtime in this process twice: without a cache and with the Redis prediction cache
(ml/serving/prediction_cache.py). For each hit rate h it builds one request stream in which each
request repeats an earlier one with probability h (a reader asking again for the same history and k,
e.g. a page reload) and is otherwise new (a reader's history, a random 20-book subset, so keys do not
collide), then times the runtime's `predict` on that stream with and without the cache (Redis
flushed first) and prints p50/p99/mean latency, the hit rate reached and the saving per request.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ml.model_plugin import load_plugin
from ml.service_checks import check_redis
from ml.serving.loadgen import machine_info
from ml.serving.processes import RedisServer

MODEL = "recommendation"


def register(sub: argparse._SubParsersAction) -> None:
    cache = sub.add_parser("cache", help="latency saved by the Redis prediction cache at given hit rates")
    cache.add_argument("--data", type=Path, help="dataset directory (default: generated sample data)")
    cache.add_argument("--model", type=Path, help="a trained recommendation model directory (skips training)")
    cache.add_argument("--hit-rates", default="0,0.5,0.8", help="comma-separated shares of repeated requests")
    cache.add_argument("--requests", type=int, default=2000, help="timed requests per hit rate and variant")
    cache.add_argument("--url", help="redis:// or rediss:// URL of a running Redis (default: a local redis-server)")
    cache.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON to FILE")
    cache.set_defaults(func=run)


def _stream(histories: list[list[int]], n: int, hit_rate: float, seed: int) -> list[dict[str, Any]]:
    """n V2 bodies: each repeats an earlier body with probability ``hit_rate``, else is new."""
    rng = np.random.default_rng(seed)
    seen: list[dict[str, Any]] = []
    out = []
    for _ in range(n):
        if seen and rng.random() < hit_rate:
            body = seen[int(rng.integers(len(seen)))]
        else:
            history = histories[int(rng.integers(len(histories)))]
            pick = sorted(int(b) for b in rng.choice(history, size=min(20, len(history)), replace=False))
            body = {"inputs": [{"name": "book_ids", "datatype": "INT64", "shape": [len(pick)], "data": pick}],
                    "parameters": {"k": 10}}
            seen.append(body)
        out.append(body)
    return out


def _timed(runtime: Any, bodies: list[dict[str, Any]]) -> dict[str, float]:
    from mlserver.types import InferenceRequest

    from ml.cli.bench import _InProcess

    assert isinstance(runtime, _InProcess)
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


def _flush(url: str) -> None:
    from ml.serving.online import _command, _Resp

    client = _Resp(url, 1.0)
    client.pipeline([_command(b"FLUSHDB")])
    client.close()


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
    from ml.cli.bench import _InProcess

    plugin = load_plugin(MODEL)
    with tempfile.TemporaryDirectory(prefix="mlplat-bench-cache-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        data_dir = args.data
        if data_dir is None:
            data_dir = work / "data"
            plugin.generate_sample(data_dir)
        model_dir = args.model
        if model_dir is None:
            print(f"[bench] training {MODEL} on {data_dir}", file=sys.stderr)
            with contextlib.redirect_stdout(sys.stderr):
                model_dir = plugin.train(data_dir, work / "model", quick=True).model_dir
        url = args.url or stack.enter_context(RedisServer(work / "redis")).url
        bodies = plugin.sample_requests(data_dir, model_dir, n=2000)
        histories = [b["inputs"][0]["data"] for b in bodies if b["inputs"][0]["data"]]
        plain = _InProcess(MODEL, model_dir, {}, bodies[:1])
        cached = _InProcess(MODEL, model_dir, {"redis_url": url, "prediction_cache_ttl_s": 3600}, bodies[:1])
        rows = []
        for i, rate in enumerate(rates):
            stream = _stream(histories, args.requests, rate, seed=i)
            repeats = args.requests - len({json.dumps(b, sort_keys=True) for b in stream})
            _flush(url)
            without, with_cache = _timed(plain, stream), _timed(cached, stream)
            rows.append({"hit_rate_target": rate, "hit_rate": round(repeats / args.requests, 3),
                         "without": without, "with": with_cache,
                         "saved_mean_ms": round(without["mean_ms"] - with_cache["mean_ms"], 3)})
        plain.close()
        cached.close()
    report = {"command": " ".join(["mlplat", *sys.argv[1:]]), "machine": machine_info(), "model_dir": str(model_dir),
              "requests": args.requests, "rows": rows}
    print(f"prediction cache, {MODEL} runtime in-process, {args.requests} requests per row "
          f"(Redis: {'--url' if args.url else 'local redis-server'})")
    print(f"{'hit rate':>9s} {'p50 / p99 / mean ms without':>30s} {'p50 / p99 / mean ms with':>28s} {'saved/req':>10s}")
    for r in rows:
        w, c = r["without"], r["with"]
        print(f"{r['hit_rate']:>9.2f} {w['p50_ms']:>10.3f} / {w['p99_ms']:.3f} / {w['mean_ms']:.3f}"
              f" {c['p50_ms']:>10.3f} / {c['p99_ms']:.3f} / {c['mean_ms']:.3f} {r['saved_mean_ms']:>8.3f}ms")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0
