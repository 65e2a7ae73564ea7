"""The spark-features image (docker/spark-features/Dockerfile): what it downloads is what the BOM pins, it
copies only what the job imports, and it starts as the Spark Operator's pods expect. No image is built
here (no container engine): the download steps themselves run only where the image is built."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from infra.conformance.software import dockerfile
from stacks.bom import load_bom

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "spark-features" / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "spark-features" / "entrypoint.sh"
# What the job needs of the repository: the ML packages and the lock file, plus the start-up script.
ALLOWED = {"requirements/ml.txt", "pyproject.toml", "README.md", "mlplat/", "contracts/", "stacks/", "ml/",
           "docker/spark-features/entrypoint.sh"}


def _fetched_jars(text: str) -> set[tuple[str | None, str, str | None]]:
    """(directory under Maven's root, file, checksum) of every `fetch` call of the jar step (its helper checks
    the SHA-1 it is given)."""
    return {(d, f, f"sha1:{c}") for d, f, c in re.findall(r"^\s*fetch (\S+) (\S+\.jar) ([0-9a-f]{40});", text, re.M)}


def _pinned() -> set[tuple[str | None, str, str | None]]:
    return {(j.maven_dir, j.file, j.checksum) for j in load_bom().jars["spark-features"].values()}


def _copied(text: str) -> set[str]:
    out: set[str] = set()
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "COPY":
            out |= {p for p in parts[1:-1] if not p.startswith("--")}
    return out


def _base(text: str) -> str:
    return re.findall(r"^FROM (\S+)", text, re.M)[-1]


def test_the_image_downloads_exactly_the_jars_the_bom_pins_with_their_checksums():
    assert _fetched_jars(DOCKERFILE.read_text()) == _pinned()
    # Every download is checked before use, and the helper fails the build on a mismatch.
    assert 'sha1sum -c -' in DOCKERFILE.read_text() and "set -eu" in DOCKERFILE.read_text()


def test_the_jar_check_notices_a_changed_checksum_or_version():
    text = DOCKERFILE.read_text().replace("hadoop-aws-3.5.0.jar 9e59", "hadoop-aws-3.5.0.jar 0e59")
    assert _fetched_jars(text) != _pinned()


def test_base_image_and_python_pins_come_from_the_bom():
    bom = load_bom()
    base = bom.images["spark-features-base"]
    assert _base(DOCKERFILE.read_text()) == f"{base.repository}:{base.tag}"
    text = DOCKERFILE.read_text()
    assert "pip install --no-deps -r requirements/ml.txt" in text  # the lock file: pyspark == BOM python.pyspark
    assert "openjdk-17-jre-headless" in text
    # The S3A jars are the Hadoop version pyspark bundles (its hadoop-client jars).
    assert bom.jars["spark-features"]["hadoop-aws"].version == "3.5.0" and bom.python["pyspark"] == "4.3.0"


def test_the_image_copies_only_what_the_job_imports():
    copied = _copied(DOCKERFILE.read_text())
    assert copied and copied <= ALLOWED, sorted(copied - ALLOWED)
    assert not _copied("COPY infra/ infra/") <= ALLOWED


def test_the_image_starts_as_spark_on_kubernetes_expects():
    facts = dockerfile(DOCKERFILE)
    assert facts["user"] == 185  # the uid of the SparkApplication's pod templates (runAsNonRoot)
    assert facts["entrypoint"] == ["/usr/bin/tini", "-s", "--", "/opt/spark-entrypoint.sh"]
    assert os.access(ENTRYPOINT, os.X_OK)
    script = ENTRYPOINT.read_text()
    for mode in ("driver)", "executor)"):
        assert mode in script
    assert "KubernetesExecutorBackend" in script and "--deploy-mode client" in script


@pytest.mark.parametrize("name", ["hadoop-aws", "aws-sdk-bundle", "analytics-accelerator-s3"])
def test_bom_jar_urls_are_maven_central_paths(name: str):
    jar = load_bom().jars["spark-features"][name]
    assert jar.url.endswith(f"/{jar.version}/{jar.file}") and jar.url.startswith("https://repo1.maven.org/maven2/")
