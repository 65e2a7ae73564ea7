"""`mlplat diff --stack ENV --base GIT_REF`: offline plan diff of the working tree against a git revision.

The base revision is checked out in a temporary `git worktree` and synthesized there with its own
code (`python -m mlplat synth`), in parallel with the working tree; no cloud credentials are needed,
so this runs for pull requests from forks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from infra.offline.policy_eval import PlanFormatError

REPO_ROOT = Path(__file__).resolve().parents[2]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="offline plan diff of a stack: base git revision vs. the working tree")
    p.add_argument("--stack", required=True, choices=["dev", "staging", "prod"], help="stack to compare")
    base = p.add_mutually_exclusive_group(required=True)
    base.add_argument("--base", help="git revision to compare against (e.g. origin/main, HEAD~1)")
    base.add_argument("--base-plan", type=Path, help="compare against this plan file instead of a revision")
    p.add_argument("--head-plan", type=Path, help="use this plan file for the new side instead of synthesizing")
    p.add_argument("--markdown", type=Path, help="write the Markdown summary here (it is always printed)")
    p.add_argument("--json", type=Path, dest="json_out", help="write the preview-shaped JSON diff here")
    p.set_defaults(func=_diff)


def _synth_process(cwd: Path, stack: str, out: Path) -> subprocess.Popen[str]:
    # The worktree's own packages must win over the editable install that points at this checkout.
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.Popen([sys.executable, "-m", "mlplat", "synth", "--stack", stack, "--out", str(out)],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(proc: subprocess.Popen[str], label: str) -> None:
    _out, err = proc.communicate()
    if proc.returncode != 0:
        tail = "\n".join(err.strip().splitlines()[-15:])
        raise RuntimeError(f"synthesizing {label} failed (exit {proc.returncode}):\n{tail}")


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False)


def synthesize_both(stack: str, base_ref: str | None, tmp: Path, need_head: bool) -> tuple[Path | None, Path | None]:
    """Plans of `base_ref` (temporary worktree) and of the working tree, built concurrently."""
    base_out, head_out = tmp / "base.json", tmp / "head.json"
    worktree = tmp / "base-tree"
    procs: list[tuple[subprocess.Popen[str], str]] = []
    if base_ref is not None:
        rev = _git("rev-parse", "--verify", "--quiet", f"{base_ref}^{{commit}}")
        if rev.returncode != 0:
            raise RuntimeError(f"git revision {base_ref!r} not found (fetch it first, e.g. `git fetch origin main`)")
        added = _git("worktree", "add", "--detach", str(worktree), rev.stdout.strip())
        if added.returncode != 0:
            raise RuntimeError(f"git worktree add failed: {added.stderr.strip()}")
        if not any((worktree / p).exists() for p in ("infra/offline/synth.py", "mlplat/synth.py")):
            raise RuntimeError(f"revision {base_ref} predates `mlplat synth`; pick a newer base")
        procs.append((_synth_process(worktree, stack, base_out), f"{stack} at {base_ref}"))
    if need_head:
        procs.append((_synth_process(REPO_ROOT, stack, head_out), f"{stack} in the working tree"))
    try:
        for proc, label in procs:
            _wait(proc, label)
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
        if base_ref is not None:
            _git("worktree", "remove", "--force", str(worktree))
    return (base_out if base_ref is not None else None), (head_out if need_head else None)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise PlanFormatError(f"{path}: file not found") from exc
    except json.JSONDecodeError as exc:
        raise PlanFormatError(f"{path}: not valid JSON ({exc})") from exc


def _diff(args: argparse.Namespace) -> int:
    from infra.offline.plan_diff import diff_plans, to_markdown, to_preview_json

    with tempfile.TemporaryDirectory(prefix="mlplat-diff-") as tmp:
        try:
            base_path, head_path = synthesize_both(args.stack, args.base, Path(tmp), args.head_plan is None)
            base_path = base_path or args.base_plan
            head_path = head_path or args.head_plan
            result = diff_plans(_read(base_path), _read(head_path), args.stack,
                                args.base or str(args.base_plan), "working tree" if args.head_plan is None
                                else str(args.head_plan))
        except (RuntimeError, PlanFormatError) as exc:
            print(f"mlplat diff: {exc}", file=sys.stderr)
            return 2
    markdown = to_markdown(result)
    print(markdown, end="")
    if args.markdown:
        args.markdown.write_text(markdown)
    if args.json_out:
        args.json_out.write_text(json.dumps(to_preview_json(result), indent=2, sort_keys=True) + "\n")
    return 0
