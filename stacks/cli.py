"""`mlplat validate-config PATH` and `mlplat config-doc`: check a stack file; regenerate docs/CONFIG.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stacks.config import ConfigError, load_stack_file
from stacks.docs import CONFIG_DOC_PATH, render_config_doc


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate-config", help="validate one Pulumi.<stack>.yaml against the typed schema")
    p.add_argument("path", type=Path, help="stack config file, e.g. stacks/Pulumi.prod.yaml")
    p.set_defaults(func=_validate)
    d = sub.add_parser("config-doc", help="regenerate docs/CONFIG.md from the schema (--check: fail if stale)")
    d.add_argument("--check", action="store_true", help="exit 1 when docs/CONFIG.md is out of date")
    d.set_defaults(func=_doc)


def _validate(args: argparse.Namespace) -> int:
    try:
        cfg = load_stack_file(args.path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.path}: valid ({cfg.environment}, {len(cfg.node_groups)} node groups)")
    return 0


def _doc(args: argparse.Namespace) -> int:
    text = render_config_doc()
    if args.check:
        current = CONFIG_DOC_PATH.read_text() if CONFIG_DOC_PATH.exists() else ""
        if current != text:
            print(f"{CONFIG_DOC_PATH} is stale: run `mlplat config-doc`", file=sys.stderr)
            return 1
        return 0
    CONFIG_DOC_PATH.write_text(text)
    print(f"wrote {CONFIG_DOC_PATH}")
    return 0
