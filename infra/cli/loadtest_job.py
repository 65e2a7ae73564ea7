"""`mlplat loadtest-job --stack ENV --image IMAGE --requests FILE`: the cluster's load-test manifests as YAML.

Prints the Namespace, NetworkPolicies, ConfigMap and Job of infra/workloads/loadtest_job.py (for
`kubectl apply -f -`), with the stack's `serviceLevels` as the Job's objective. The request mix comes from
`mlplat loadtest --save-requests FILE` (ML environment), the image is the stack's model-server image.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

from infra.workloads import loadtest_job
from stacks.config import ConfigError, load_stack_file, stack_file


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("loadtest-job",
                              help="render the cluster's load-test Job (Locust against the Seldon mesh)")
    p.add_argument("--stack", default="dev", help="stack whose serviceLevels the Job checks (default dev)")
    p.add_argument("--image", required=True, help="the model-server image (stack output modelServerImage)")
    p.add_argument("--requests", type=Path, required=True, help="request mix from `mlplat loadtest --save-requests`")
    p.add_argument("--users", type=int, default=8, help="concurrent users (default 8)")
    p.add_argument("--duration", default="2m", help="how long the load runs (default 2m)")
    p.add_argument("--model", action="append", dest="models", metavar="NAME", help="only these served models")
    p.add_argument("--name", help="Job name (default loadtest-<unix time>)")
    p.add_argument("--out", type=Path, help="write the YAML here instead of stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        levels = load_stack_file(stack_file(args.stack)).service_levels
        mix_json = args.requests.read_text()
        docs = loadtest_job.manifests(args.image, levels, mix_json, args.users, args.duration,
                                      args.name or f"loadtest-{int(time.time())}", args.models)
    except (ConfigError, OSError, ValueError) as exc:
        print(f"mlplat loadtest-job: {exc}", file=sys.stderr)
        return 2
    text = yaml.safe_dump_all(docs, sort_keys=False)
    if args.out is not None:
        args.out.write_text(text)
        print(f"mlplat loadtest-job: {len(docs)} manifests written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
