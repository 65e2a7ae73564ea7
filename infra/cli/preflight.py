"""`mlplat preflight --stack ENV`: read-only AWS calls that tell, before the first `pulumi up`, whether the
account and region can hold the stack (infra/preflight.py). Prints one row per check; exit 1 on any
shortfall (or an AWS call that failed), 2 when the stack file is invalid or no credentials are found."""

from __future__ import annotations

import argparse
import sys

from stacks.config import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preflight", help="check with read-only AWS calls that the account and region can hold the "
                                         "stack: add-on versions, instance types per zone, engine versions, quotas")
    p.add_argument("--stack", required=True, choices=["dev", "staging", "prod"], help="stack to check")
    p.add_argument("--profile", help="AWS profile (default: the standard credential chain)")
    p.set_defaults(func=_preflight)


def _preflight(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, NoCredentialsError

    from infra.preflight import Clients, run, shortfalls, table
    from stacks.bom import load_bom
    from stacks.config import load_stack_file, stack_file

    try:
        cfg = load_stack_file(stack_file(args.stack))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    bom = load_bom()
    version = cfg.cluster.kubernetes_version or bom.kubernetes.default
    try:
        clients = Clients.for_region(cfg.region, args.profile)
        checks = run(cfg, bom, version, clients)
    except (NoCredentialsError, BotoCoreError) as exc:
        print(f"mlplat preflight: {exc}", file=sys.stderr)
        return 2
    print(f"preflight of stack {args.stack} in {cfg.region} (Kubernetes {version}):")
    print(table(checks))
    failed = shortfalls(checks)
    print("OK" if not failed else f"{failed} shortfall(s)")
    return 1 if failed else 0
