"""The pack's files agree with the rest of the repo: pins, version, generated docs."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from infra.cli.policy import DOC_PATH
from policies.docs import render
from stacks.bom import load_bom

REPO = Path(__file__).resolve().parents[2]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_pack_requirements_match_the_policy_lock():
    pack, lock = _pins(REPO / "policies" / "requirements.txt"), _pins(REPO / "requirements" / "policy.txt")
    assert pack and all(lock.get(name) == version for name, version in pack.items()), (pack, lock)


def test_pulumi_policy_yaml_is_a_python_pack_with_the_platform_version():
    doc = yaml.safe_load((REPO / "policies" / "PulumiPolicy.yaml").read_text())
    assert doc["runtime"]["name"] == "python"
    assert str(doc["version"]) == load_bom().platform.version


def test_pack_is_constructed_only_in_its_entry_point():
    for path in (REPO / "policies").rglob("*.py"):
        tree = ast.parse(path.read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "PolicyPack"]
        top_imports = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "pulumi_policy"]
        if path.name == "__main__.py" and path.parent.name == "policies":
            assert len(calls) == 1
        else:
            assert not calls and not top_imports, f"{path} must not import pulumi_policy at module level"


def test_policies_md_is_current():
    assert DOC_PATH.read_text() == render(), "docs/POLICIES.md is stale: run `.venv/bin/mlplat policy-doc`"
