"""`mlplat loadtest`: a Locust load test of the served models, checked against the stack's service levels.

    mlplat loadtest [--target URL] [--users N] [--duration D] [--model NAME ...] [--stack ENV]

Default target: the running local platform's MLServer (its record, contracts/local_platform.py), every
model it serves and each model's explainer. Prints p50/p95/p99, requests/s and failures per model and
exits 1 when a model misses `mlplatform:serviceLevels` of the stack (p99 and error ratio), 0 otherwise,
2 on bad input. The same command runs inside the cluster's load-test Job against the Seldon mesh
(`--mesh --requests FILE`; `mlplat loadtest-job` renders the Job).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from contracts import local_platform
from contracts.model_slots import slot_prefix
from ml.loadtest import mix as request_mix
from ml.loadtest.results import LoadReport, Objective, parse_duration, split_users
from ml.training.directory_bucket import LOCAL_BUCKET
from ml.training.tracking import CHAMPION
from stacks.config import ConfigError, load_stack_file, stack_file


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("loadtest", help="Locust load test of the served models against the stack's SLO")
    p.add_argument("--target", help="base URL of the V2 endpoint (default: the running local platform's MLServer)")
    p.add_argument("--users", type=int, default=4, help="concurrent users, spread over the models (default 4)")
    p.add_argument("--duration", default="20s", help="how long the load runs: 30, 30s, 2m (default 20s)")
    p.add_argument("--model", action="append", dest="models", metavar="NAME",
                   help="a served model (or a model's explainer, `<name>-explainer`) to load; repeat for several "
                        "(default: every model of the local platform and its explainer, or of --requests)")
    p.add_argument("--stack", default="dev", help="stack whose serviceLevels are the objective (default dev)")
    p.add_argument("--p99-ms", type=float, help="latency objective instead of the stack's (ms)")
    p.add_argument("--max-error-ratio", type=float, help="error objective instead of the stack's (0-1)")
    p.add_argument("--data", type=Path, help="data directory with the shared datasets' schema (default: each model's "
                                             "generated sample)")
    p.add_argument("--model-dir", action="append", default=[], metavar="NAME=DIR",
                   help="a model's serving artifact (default on the local platform: its champion slot)")
    p.add_argument("--requests", type=Path, help="a saved request mix (`--save-requests`) instead of building one")
    p.add_argument("--save-requests", type=Path, metavar="FILE",
                   help="write the request mix to FILE and exit (for the cluster Job's ConfigMap)")
    p.add_argument("--mesh", action="store_true", help="address the Seldon mesh (champion Models, Seldon-Model header)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the report as JSON to FILE")
    p.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"mlplat loadtest: {message}", file=sys.stderr)
    return 2


def server_problem(target: str, timeout_s: float = 3.0) -> str | None:
    """Why the V2 endpoint at `target` cannot be load-tested (it does not answer), or None when it answers."""
    try:
        with urllib.request.urlopen(f"{target.rstrip('/')}/v2/health/ready", timeout=timeout_s):
            return None
    except urllib.error.HTTPError:
        return None  # something answers (a mesh may not route the health path): the load will tell
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return (f"the model server (MLServer) at {target} does not answer ({getattr(exc, 'reason', exc)}); start the "
                "local platform with `mlplat local up`, or name a running endpoint with --target URL")


def objective_of(args: argparse.Namespace) -> Objective:
    """The stack's serviceLevels, with --p99-ms / --max-error-ratio taking precedence."""
    source = f"--stack {args.stack} ({stack_file(args.stack)})"
    if args.p99_ms is not None and args.max_error_ratio is not None:
        return Objective(args.p99_ms, args.max_error_ratio, "command line")
    levels = load_stack_file(stack_file(args.stack)).service_levels
    p99 = levels.latency_p99_ms if args.p99_ms is None else args.p99_ms
    errors = levels.max_error_ratio if args.max_error_ratio is None else args.max_error_ratio
    return Objective(p99, errors, source)


def _model_dirs(pairs: list[str], record: local_platform.PlatformRecord | None) -> dict[str, Path | None]:
    dirs: dict[str, Path | None] = {}
    if record is not None:
        for model in record.models:
            dirs[model] = record.slot_dir / LOCAL_BUCKET / slot_prefix(model, CHAMPION)
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--model-dir {pair!r} must be NAME=DIR")
        dirs[name] = Path(path)
    return dirs


def run(args: argparse.Namespace) -> int:
    try:
        duration = parse_duration(args.duration)
        objective = objective_of(args)
    except (ValueError, ConfigError) as exc:
        return _fail(str(exc))
    if args.users < 1:
        return _fail(f"--users must be at least 1, got {args.users}")
    if not 0 <= objective.max_error_ratio <= 1 or objective.latency_p99_ms <= 0:
        return _fail("--p99-ms must be > 0 and --max-error-ratio in [0, 1]")
    record = None
    target = args.target
    if target is None or (args.requests is None and not args.models):
        try:
            record = local_platform.find_running()
        except local_platform.PlatformNotFound as exc:
            if target is None:
                return _fail(f"{exc}; or name the endpoint with --target URL")
        if record is not None and target is None:
            target = record.serving_url
            print(f"mlplat loadtest: {record.describe()}")
    problem = server_problem(str(target)) if args.save_requests is None else None
    if problem is not None:
        return _fail(problem)
    try:
        if args.requests is not None:
            mix = request_mix.load(args.requests)
            if args.models:
                unknown = sorted(set(args.models) - set(mix))
                if unknown:
                    return _fail(f"{args.requests} has no requests for {', '.join(unknown)} "
                                 f"(it has {', '.join(mix)})")
                mix = {name: mix[name] for name in args.models}
        else:
            served = args.models or request_mix.served_names(list(record.models) if record else [])
            if not served:
                return _fail("no model to load: name one with --model NAME")
            mix = request_mix.build(served, _model_dirs(args.model_dir, record), args.data, seed=args.seed)
    except ValueError as exc:
        return _fail(str(exc))
    if args.save_requests is not None:
        request_mix.save(mix, args.save_requests)
        print(f"mlplat loadtest: request mix of {', '.join(f'{k} ({len(v)})' for k, v in mix.items())} "
              f"written to {args.save_requests}")
        return 0
    try:
        split_users(args.users, list(mix))
    except ValueError as exc:
        return _fail(str(exc))
    # Locust patches the standard library for gevent when imported: only here, once the run is certain.
    from ml.loadtest import scenario

    print(f"mlplat loadtest: {args.users} user(s) for {duration:g} s against {target} "
          f"({', '.join(mix)}); objective p99 <= {objective.latency_p99_ms:g} ms, errors <= "
          f"{objective.max_error_ratio:.2%} ({objective.source})", flush=True)
    report: LoadReport = scenario.run(str(target), mix, args.users, duration, mesh=args.mesh, seed=args.seed)
    print(report.table())
    misses = report.misses(objective)
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_dict(objective), indent=2) + "\n")
    if misses:
        print("OBJECTIVE MISSED:\n" + "\n".join(f"  {m}" for m in misses))
        return 1
    print(f"objective met: every model p99 <= {objective.latency_p99_ms:g} ms, errors <= "
          f"{objective.max_error_ratio:.2%}")
    return 0
