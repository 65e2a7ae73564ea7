"""`mlplat`: the project's command line.

The platform needs two Python environments that cannot be merged (current pulumi and feast pin
conflicting versions of shared dependencies): the IaC one (`.venv`: pulumi, moto, kubernetes) and the ML
one (`.venv-ml`: MLflow, Feast, MLServer). Each subcommand declares which environment it needs; when
invoked from the other one, `mlplat` re-executes itself with that environment's interpreter, so users
type one command everywhere.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# (subcommand, module, environment). A module exposes `register(subparsers) -> None`; the parser
# it adds sets `func` (a callable taking the parsed args and returning an exit code).
COMMANDS: list[tuple[str, str, str]] = [
    ("validate-config", "stacks.cli", "iac"),
    ("config-doc", "stacks.cli", "iac"),
    ("synth", "infra.cli.synth", "iac"),
    ("render", "infra.cli.render", "iac"),
    ("policy", "infra.cli.policy", "iac"),
    ("policy-doc", "infra.cli.policy", "iac"),
    ("diff", "infra.cli.diff", "iac"),
    ("charts", "infra.cli.charts", "iac"),
    ("conform", "infra.cli.conform", "iac"),
    ("preflight", "infra.cli.preflight", "iac"),
    ("local", "local.cli", "ml"),
    ("runbook", "runbooks.cli", "ml"),
    ("model", "ml.cli.model", "ml"),
    ("bench", "ml.cli.bench", "ml"),
    ("capacity", "ml.cli.capacity", "ml"),
    ("loadtest", "ml.cli.loadtest", "ml"),
    ("loadtest-job", "infra.cli.loadtest_job", "iac"),
    ("pipeline", "local.cli", "ml"),
    ("data", "ml.cli.datasets", "ml"),
    ("rollout", "local.rollout_cli", "ml"),
    ("experiment", "local.experiment_cli", "ml"),
]

ENV_DIRS = {"iac": ".venv", "ml": ".venv-ml"}
ENV_PROBES = {"iac": "pulumi", "ml": "mlserver"}


def env_python(env: str) -> Path:
    """Interpreter of the named environment (overridable with MLPLAT_<ENV>_VENV)."""
    override = os.environ.get(f"MLPLAT_{env.upper()}_VENV")
    venv = Path(override) if override else REPO_ROOT / ENV_DIRS[env]
    return venv / "bin" / "python"


def _in_env(env: str) -> bool:
    return importlib.util.find_spec(ENV_PROBES[env]) is not None


def _reexec(env: str, argv: list[str]) -> int:
    python = env_python(env)
    if not python.exists():
        print(
            f"mlplat: this command needs the {env} environment ({python.parent.parent}), which is missing.\n"
            f"Create it with: scripts/bootstrap.sh {env}",
            file=sys.stderr,
        )
        return 2
    os.execv(str(python), [str(python), "-m", "mlplat", *argv])
    return 0  # unreachable


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of `only` (a subcommand), or of every subcommand for `mlplat --help`. A command of the
    other environment is listed by name there, not imported: its modules need that environment's packages."""
    parser = argparse.ArgumentParser(prog="mlplat", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    seen: set[str] = set()
    for name, module, env in COMMANDS:
        if only is not None and name != only:
            continue
        if only is None and not _in_env(env):
            sub.add_parser(name, help=f"(runs in {ENV_DIRS[env]}; `mlplat {name} --help` shows its options)")
            continue
        if module in seen:
            continue
        seen.add(module)
        loaded = importlib.import_module(module)
        loaded.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wanted = {name: env for name, _m, env in COMMANDS}
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in wanted and not _in_env(wanted[command]):
        return _reexec(wanted[command], argv)
    # Import only the module of the chosen command: the other environment's imports may be absent.
    parser = build_parser(only=command if command in wanted else None)
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args) or 0)
    except Exception as exc:
        # Errors the user can fix (contracts/errors.py, matched by attribute: this module imports nothing of
        # ours) are one message, not a traceback; anything else is a bug and keeps its traceback.
        if not getattr(exc, "user_error", False):
            raise
        print(f"mlplat {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
