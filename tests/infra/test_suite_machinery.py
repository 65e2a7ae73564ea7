"""The test suite's own machinery (tests/conftest.py): shared set-ups are grouped onto one xdist worker,
and the fast lane refuses to start processes. Each runs pytest on a small generated suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration  # each test runs pytest in a subprocess

CONFTEST = (ROOT / "tests" / "conftest.py").read_text()


def _suite(tmp_path: Path, body: str) -> Path:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_generated.py").write_text(body)
    return tmp_path


def _pytest(suite: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", *args, str(suite)],
                          cwd=suite, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})


def test_tests_sharing_a_set_up_run_on_one_worker(tmp_path: Path) -> None:
    """pytest-xdist tags grouped node ids (`--dist loadgroup`); with pytest 9 it silently stopped doing so
    and every worker built its own copy of each shared set-up."""
    suite = _suite(tmp_path, '''
import os
import pytest

@pytest.fixture(scope="session")
def report():
    return os.environ["PYTEST_XDIST_WORKER"]

@pytest.fixture(scope="module")
def platform():
    return os.environ["PYTEST_XDIST_WORKER"]

@pytest.mark.parametrize("i", range(8))
def test_uses_the_shared_report(report, i):
    assert report == os.environ["PYTEST_XDIST_WORKER"]

@pytest.mark.parametrize("i", range(8))
def test_uses_the_module_platform(platform, i):
    assert platform == os.environ["PYTEST_XDIST_WORKER"]
''')
    done = _pytest(suite, "-n", "2", "--dist", "loadgroup")
    assert done.returncode == 0, done.stdout + done.stderr
    workers: dict[str, set[str]] = {}
    for line in done.stdout.splitlines():
        if "PASSED" in line:
            worker, name = line.split()[0], line.split("::", 1)[1]
            workers.setdefault(name.split("[", 1)[0], set()).add(worker)
    assert workers.keys() == {"test_uses_the_shared_report", "test_uses_the_module_platform"}
    assert all(len(ws) == 1 for ws in workers.values()), workers
    assert "@conformance" in done.stdout  # the `report` fixture's group from SHARED_SETUPS


def test_the_fast_lane_fails_a_test_that_starts_a_process(tmp_path: Path) -> None:
    suite = _suite(tmp_path, '''
import subprocess

def test_runs_a_process():
    subprocess.run(["true"], check=True)

def test_pure():
    assert 1 + 1 == 2
''')
    done = _pytest(suite, "-n", "2", env={"MLPLAT_TEST_FAST": "1"})
    assert done.returncode == 1
    assert "PASSED" in done.stdout and "test_pure" in done.stdout
    assert "the fast lane (MLPLAT_TEST_FAST=1) starts no process, but this test ran ['true']" in done.stdout
    assert _pytest(suite, "-n", "2").returncode == 0  # outside the fast lane the same test runs
