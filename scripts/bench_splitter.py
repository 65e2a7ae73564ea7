"""What the local traffic splitter and the shadow mirror add to a request's latency, on the running platform.

    .venv-ml/bin/python scripts/bench_splitter.py --model fraud --shadow-version 2 [--requests 400]

Sequential requests on one keep-alive connection per path, interleaved in rounds of 50 so that drift of the
machine affects every path alike: (a) the model server directly, (b) through HAProxy (champion 100 %),
(c) through HAProxy and the mirror (100 % mirrored to `--shadow-version`, which the command starts with
`mlplat rollout shadow` semantics and stops afterwards). Prints p50/p99 per path and the differences.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time
from pathlib import Path

from local import rollout_runner
from ml.model_plugin import load_plugin


def _lat(host: str, port: int, path: str, bodies: list[bytes], n: int) -> list[float]:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    out = []
    for i in range(n):
        started = time.perf_counter()
        conn.request("POST", path, body=bodies[i % len(bodies)], headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise SystemExit(f"{port}{path}: HTTP {resp.status}")
        out.append((time.perf_counter() - started) * 1000)
    conn.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="fraud")
    ap.add_argument("--shadow-version", required=True, help="registered version the mirror copies requests to")
    ap.add_argument("--requests", type=int, default=400, help="per path")
    args = ap.parse_args()
    cfg = rollout_runner.platform_config()
    bodies = [json.dumps(b).encode() for b in load_plugin(args.model).sample_requests(
        cfg.path("data", "sample"), Path("."), n=20)]
    path = f"/v2/models/{args.model}/infer"
    rollout_runner.shadow_start(cfg, args.model, args.shadow_version, 0, say=lambda _line: None)
    results: dict[str, list[float]] = {"direct": [], "splitter": [], "splitter+mirror": []}
    sp = rollout_runner.traffic.splitter(cfg)
    try:
        for _ in range(max(1, args.requests // 50)):
            results["direct"] += _lat(cfg.host, cfg.ports["http"], path, bodies, 50)
            results["splitter"] += _lat(cfg.host, cfg.ports["splitter"], path, bodies, 50)
            sp.set_mirror(args.model, "challenger", 100)
            results["splitter+mirror"] += _lat(cfg.host, cfg.ports["splitter"], path, bodies, 50)
            sp.set_mirror(args.model, None, 0)
    finally:
        sp.set_mirror(args.model, None, 0)

    def q(v: list[float], p: float) -> float:
        return sorted(v)[min(len(v) - 1, int(p * len(v)))]

    base = results["direct"]
    print(f"{'path':<17}{'n':>5}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}")
    for name, v in results.items():
        print(f"{name:<17}{len(v):>5}{statistics.median(v):>9.2f}{q(v, 0.99):>9.2f}"
              f"{statistics.median(v) - statistics.median(base):>9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
