"""`mlplat` lists every subcommand from either environment and runs each in the one it needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlplat.cli import COMMANDS, env_python

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
@pytest.mark.parametrize("env", ["iac", "ml"])
def test_help_lists_every_command_in_both_environments(env):
    python = env_python(env)
    assert python.exists(), f"{python} is missing: run scripts/bootstrap.sh {env}"
    done = subprocess.run([str(python), "-m", "mlplat", "--help"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for name, _module, _env in COMMANDS:
        assert name in done.stdout


@pytest.mark.integration
def test_an_ml_command_runs_from_the_iac_environment():
    """`runbook` needs the ML environment; called from .venv it re-executes there."""
    done = subprocess.run([sys.executable, "-m", "mlplat", "runbook", "list"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "redis-auth-rotation" in done.stdout
