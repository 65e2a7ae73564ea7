"""`mlplat synth --stack ENV --out FILE`: the offline plan of one stack (preview-shaped JSON)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from stacks.config import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="run the Pulumi program under mocks and write the resource graph as JSON")
    p.add_argument("--stack", choices=["dev", "staging", "prod"],
                   help="stack to synthesize (with --update-golden: default all stacks)")
    p.add_argument("--out", type=Path, help="output file (pulumi preview --json shape)")
    p.add_argument("--update-golden", action="store_true",
                   help="rewrite tests/golden/<stack>.json (the reviewed offline plans)")
    p.add_argument("--preview", action="store_true",
                   help="the plan as the first `pulumi preview` sees it: values AWS assigns on create are unknown")
    p.set_defaults(func=_synth)


def _synth(args: argparse.Namespace) -> int:
    from infra.offline.synth import synthesize, write_plan

    if args.update_golden:
        if args.preview:
            print("mlplat synth: golden plans are update-time plans; --preview does not apply", file=sys.stderr)
            return 2
        return _update_golden(args)
    if args.stack is None or args.out is None:
        print("mlplat synth: --stack and --out are required (unless --update-golden)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        synthesis = synthesize(args.stack, first_preview=args.preview)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    write_plan(synthesis, args.out)
    kind = "first-preview plan, values unknown until up" if args.preview else "offline plan"
    print(f"{args.out}: {len(synthesis.resources)} resources for stack {args.stack} "
          f"in {time.perf_counter() - started:.1f}s ({kind}; cannot predict replacements)")
    return 0


def _update_golden(args: argparse.Namespace) -> int:
    from infra.offline.golden import STACKS, write_golden
    from infra.offline.synth import synthesize, write_plan

    for stack in [args.stack] if args.stack else STACKS:
        try:
            synthesis = synthesize(stack)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"{write_golden(synthesis)}: {len(synthesis.resources)} resources for stack {stack}")
        if args.out:
            write_plan(synthesis, args.out)
    return 0
