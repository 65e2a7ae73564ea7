"""The BOM is the single source of versions; generated docs are current."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from stacks.bom import Bom, load_bom
from stacks.docs import CONFIG_DOC_PATH, render_config_doc

ROOT = Path(__file__).resolve().parents[2]


def test_bom_loads_and_versions_are_exact():
    bom = load_bom()
    assert re.fullmatch(r"\d+\.\d+\.\d+", bom.platform.version)
    for name, chart in bom.charts.items():
        # cert-manager publishes its charts with a `v` prefix (cert-manager-v1.21.1.tgz).
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", chart.version), name
        assert chart.repository.startswith(("https://", "oci://")), name
    for image in bom.images.values():
        assert image.tag not in ("", "latest")


def test_project_version_equals_platform_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == load_bom().platform.version


def test_python_pins_match_the_ml_lock_file():
    def lock(env: str) -> dict[str, str]:
        return dict(re.findall(r"^([a-z0-9_.-]+)==(\S+)", (ROOT / "requirements" / f"{env}.txt").read_text(), re.M))

    ml = lock("ml")
    for package, version in load_bom().python.items():
        assert ml.get(package) == version, f"{package}: BOM {version}, lock {ml.get(package)}"


def test_tool_environment_pins_match_their_lock_files():
    tools = load_bom().python_tools
    assert {"dvc", "flink"} <= set(tools)
    for env, pins in tools.items():
        lock = dict(re.findall(r"^([a-z0-9_.-]+)==(\S+)", (ROOT / "requirements" / f"{env}.txt").read_text(), re.M))
        for package, version in pins.items():
            assert lock.get(package) == version, f"{env}: {package}: BOM {version}, lock {lock.get(package)}"


def test_bom_rejects_floating_versions():
    raw = load_bom().model_dump(by_alias=True)
    raw["charts"]["mlflow"]["version"] = "^1.11"
    with pytest.raises(ValueError, match="must be an exact version"):
        Bom.model_validate(raw)
    raw = load_bom().model_dump(by_alias=True)
    raw["kubernetes"]["supported"].append("1.99")
    with pytest.raises(ValueError, match=r"eksAddons has no entry for supported Kubernetes 1\.99"):
        Bom.model_validate(raw)


def test_no_version_literals_in_components():
    """Components read versions from the BOM; a literal like version="1.34" would bypass it."""
    pattern = re.compile(r"""(version|Version)\s*=\s*["'][v]?\d+\.\d+""")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in (ROOT / "infra").rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_config_doc_is_current():
    assert CONFIG_DOC_PATH.read_text() == render_config_doc(), "docs/CONFIG.md is stale: run `mlplat config-doc`"


def test_config_doc_lists_every_key_and_rule():
    text = render_config_doc()
    for key in ("mlplatform:network.natGateways", "mlplatform:nodeGroups.<name>.minSize", "aws:region",
                "mlplatform:redis.replicasPerShard", "mlplatform:models.fraud.qualityGates"):
        assert f"`{key}`" in text
    assert "prod uses one NAT gateway per availability zone" in text


def test_config_doc_shows_the_defaults_a_section_gives_its_fields():
    """A section whose default overrides its type's (a workload's own resources) is documented with its values."""
    rows = {line.split("|")[1].strip(" `"): line.split("|")[3].strip(" `") for line in render_config_doc().splitlines()
            if line.startswith("| `mlplatform:")}
    assert rows["mlplatform:workloads.feedback.resources.cpuRequest"] == "100m"
    assert rows["mlplatform:workloads.flink.taskManager.memoryLimit"] == "2Gi"
    assert rows["mlplatform:workloads.mlflow.resources.cpuRequest"] == "250m"  # the type's own default


@pytest.mark.integration
def test_config_doc_check_flag(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mlplat", "config-doc", "--check"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
