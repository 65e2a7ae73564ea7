"""`mlplat synth --stack ENV --out FILE`: the offline plan of one stack (preview-shaped JSON)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from stacks.config import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="run the Pulumi program under mocks and write the resource graph as JSON")
    p.add_argument("--stack", required=True, choices=["dev", "staging", "prod"], help="stack to synthesize")
    p.add_argument("--out", type=Path, required=True, help="output file (pulumi preview --json shape)")
    p.set_defaults(func=_synth)


def _synth(args: argparse.Namespace) -> int:
    from mlplat.synth import synthesize, write_plan

    started = time.perf_counter()
    try:
        synthesis = synthesize(args.stack)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    write_plan(synthesis, args.out)
    print(f"{args.out}: {len(synthesis.resources)} resources for stack {args.stack} "
          f"in {time.perf_counter() - started:.1f}s (offline plan; cannot predict replacements)")
    return 0
