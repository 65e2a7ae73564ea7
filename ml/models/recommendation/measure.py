"""Request latency of a trained recommendation model, in-process, per stage.

    python -m ml.models.recommendation.measure --model DIR --data DIR [--seed 0] [--repeats 3]

Replays the histories of the held-out users of the training split (`split_users` with the seed, the
protocol's 80 % history, its last 20 known books as the benchmarks send them) through
`recommend(history, 10)` and prints JSON: wall-clock and CPU time (``time.thread_time``: what the
request costs a core, unaffected by other processes on a busy machine) at p50/p99, and for a
two-stage model the CPU time of each stage (retrieval, features, ranker) and, when the version ships
batch scores, the CPU time of a `user_id` request's lookup for the stored readers (`cpu_batch_lookup`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ml.models.recommendation import data
from ml.models.recommendation.batch_scores import BatchScores
from ml.models.recommendation.features import recent_histories
from ml.models.recommendation.protocol import history_split, split_users
from ml.models.recommendation.two_stage import TwoStageRecommender, load_model


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def _cpu(call: Callable[[], object]) -> float:
    started = time.thread_time()
    call()
    return time.thread_time() - started


def measure(model_dir: Path, data_dir: Path, seed: int = 0, repeats: int = 3) -> dict:
    model = load_model(model_dir)
    _, test = split_users(data.load_ratings(data.resolve(data_dir, data.RATINGS_FILE)), 0.2, seed)
    histories = [[b for b in c.history if b in model.known_items][-20:] for c in history_split(test, seed=seed)]
    for h in histories[:50]:  # warm-up
        model.recommend(h, 10)
    wall, cpu = [], []
    for _ in range(repeats):
        for h in histories:
            started = time.perf_counter()
            cpu.append(_cpu(lambda h=h: model.recommend(h, 10)))
            wall.append(time.perf_counter() - started)
    report: dict = {"requests": len(wall), "wall": _percentiles(wall), "cpu": _percentiles(cpu)}
    if isinstance(model, TwoStageRecommender):
        stages: dict[str, list[float]] = {"retrieval": [], "features": [], "ranker": []}
        for h in histories:
            rows = np.array(model.stage.base._indices(h), dtype=np.int64)
            started = time.thread_time()
            r, s = model.stage.candidates([rows], model.n_candidates)
            retrieved = time.thread_time()
            _, x = model.stage.features(rows, r[0], s[0])
            featured = time.thread_time()
            model.ranker.predict(x, num_threads=1)
            stages["retrieval"].append(retrieved - started)
            stages["features"].append(featured - retrieved)
            stages["ranker"].append(time.thread_time() - featured)
        report["cpu_by_stage"] = {k: _percentiles(v) for k, v in stages.items()}
    table = BatchScores.load(model_dir)
    if table is not None and isinstance(model, TwoStageRecommender):
        # A user_id request's model work when the batch scores answer: the history's rows, then the lookup.
        readers = recent_histories(data.load_ratings(data.resolve(data_dir, data.RATINGS_FILE)))
        stored = [(int(u), [b for b in readers[u] if b in model.known_items]) for u in readers.index[:500]]
        lookups, hits = [], 0
        for _ in range(repeats):
            for user, history in stored:
                started = time.thread_time()
                hit = table.lookup(user, model.history_rows(history), 10)
                lookups.append(time.thread_time() - started)
                hits += hit is not None
        report["cpu_batch_lookup"] = {**_percentiles(lookups), "readers": len(stored), "hits": hits}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a trained model directory")
    parser.add_argument("--data", type=Path, required=True, help="directory with the goodbooks files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.model, args.data, args.seed, args.repeats), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
