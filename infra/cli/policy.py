"""`mlplat policy` (evaluate the CrossGuard pack offline) and `mlplat policy-doc` (docs/POLICIES.md)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

from policies.config import PolicyConfigError, load_file, resolve, stack_config_path

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "POLICIES.md"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("policy", help="evaluate the policy pack against a stack's offline plan or a plan file")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", choices=["dev", "staging", "prod"], help="synthesize this stack and check it")
    source.add_argument("--plan", type=Path, help="plan JSON (mlplat synth --out, or pulumi preview --json)")
    p.add_argument("--policy-config", type=Path,
                   help="policy-pack config JSON (default: policies/config/<stack>.json, as CI passes to pulumi)")
    p.add_argument("--json", type=Path, dest="json_out", help="also write the violations as JSON here")
    p.add_argument("--preview", action="store_true",
                   help="with --stack: check the plan a first `pulumi preview` sees (values unknown until up); "
                        "rules that need them say so instead of deciding")
    p.set_defaults(func=_policy)
    d = sub.add_parser("policy-doc", help="regenerate docs/POLICIES.md from the policy pack")
    d.add_argument("--check", action="store_true", help="exit 1 if docs/POLICIES.md is stale instead of writing")
    d.set_defaults(func=_policy_doc)


def _policy(args: argparse.Namespace) -> int:
    from infra.offline.policy_eval import PlanFormatError, evaluate, load_plan, violations_json
    from policies.rules import ALL_RULES

    if args.preview and not args.stack:
        print("mlplat policy: --preview needs --stack (a plan file already is what it is)", file=sys.stderr)
        return 2
    try:
        plan = load_plan(_synthesized(args.stack, args.preview)) if args.stack else load_plan(args.plan)
        config_path = args.policy_config or (stack_config_path(plan.environment)
                                             if stack_config_path(plan.environment).exists() else None)
        resolved = resolve(load_file(config_path) if config_path else {}, ALL_RULES)
    except (PlanFormatError, PolicyConfigError) as exc:
        print(f"mlplat policy: {exc}", file=sys.stderr)
        return 2
    violations = evaluate(plan, resolved)
    for v in violations:
        level = "undecided at preview" if v.undecided else v.enforcement
        print(f"[{level}] {v.policy} ({v.severity}) {v.resource} [{v.resource_type or 'stack'}]: {v.message}")
    counts = Counter("undecided" if v.undecided else v.enforcement for v in violations)
    undecided = f", {counts['undecided']} undecided until `pulumi up`" if counts["undecided"] else ""
    print(f"stack {plan.stack} ({plan.environment or 'unknown tier'}): {len(plan.resources)} resources, "
          f"{len(ALL_RULES)} policies, config {config_path or 'defaults'}; "
          f"{counts['mandatory']} mandatory, {counts['advisory']} advisory violation(s){undecided}")
    if args.json_out:
        args.json_out.write_text(json.dumps(violations_json(violations), indent=2) + "\n")
    return 1 if counts["mandatory"] else 0


def _synthesized(stack: str, first_preview: bool = False) -> Path:
    from infra.offline.synth import synthesize, write_plan

    out = Path(tempfile.mkdtemp(prefix="mlplat-policy-")) / f"{stack}.json"
    write_plan(synthesize(stack, first_preview=first_preview), out)
    return out


def _policy_doc(args: argparse.Namespace) -> int:
    from policies.docs import render

    text = render()
    if args.check:
        if not DOC_PATH.exists() or DOC_PATH.read_text() != text:
            print(f"{DOC_PATH} is stale: run `mlplat policy-doc`", file=sys.stderr)
            return 1
        return 0
    DOC_PATH.write_text(text)
    print(f"wrote {DOC_PATH}")
    return 0
