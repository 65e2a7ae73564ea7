"""The flink-job image (docker/flink-job/Dockerfile): what it downloads is what the BOM pins, every download is
checked before use, it copies only what the job imports, and it starts as the operator's pods expect. No image is
built here (no container engine): the download steps themselves run only where the image is built."""

from __future__ import annotations

import re
from pathlib import Path

from infra.conformance.software import dockerfile
from stacks.bom import load_bom

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "flink-job" / "Dockerfile"
ALLOWED = {"requirements/flink.txt", "pyproject.toml", "README.md", "mlplat/", "contracts/", "stacks/", "ml/"}


def _downloads(text: str) -> dict[str, str]:
    """file -> URL of every `curl -o FILE URL` of the jar step."""
    return {f: u for f, u in re.findall(r"curl -fsSL -o (\S+\.jar) (https://\S+\.jar);", text)}


def _checks(text: str) -> dict[str, str | None]:
    """file -> the checksum it is checked against (`sha256:<digest>`), or None where it is checked against the
    `.sha1` published beside it at build time."""
    out: dict[str, str | None] = {
        f: f"sha256:{d}" for d, f in re.findall(r'echo "([0-9a-f]{64})  (\S+\.jar)" \| sha256sum -c -', text)}
    out |= {f: None for f in re.findall(r'\.jar\.sha1\)  (\S+\.jar)" \| sha1sum -c -', text)}
    return out


def test_the_image_downloads_exactly_the_jars_the_bom_pins_and_checks_each():
    text = DOCKERFILE.read_text()
    jars = load_bom().jars["flink-job"]
    assert _downloads(text) == {j.file: j.url for j in jars.values()}
    assert _checks(text) == {j.file: j.checksum for j in jars.values()}
    assert "set -eu" in text


def test_a_changed_digest_or_url_is_noticed():
    text = DOCKERFILE.read_text()
    jars = load_bom().jars["flink-job"]
    checksum, digest = jars["aws-msk-iam-auth"].checksum, jars["aws-msk-iam-auth"].digest
    assert checksum is not None and digest is not None
    assert _checks(text.replace(digest, "0" * 64))["aws-msk-iam-auth-2.3.5-all.jar"] != checksum
    assert _downloads(text.replace("v2.3.5/", "v2.3.4/")) != {j.file: j.url for j in jars.values()}


def test_base_image_is_the_boms_by_digest_and_flink_matches_the_lock():
    bom = load_bom()
    base = bom.images["flink-job-base"]
    assert re.findall(r"^FROM (\S+)", DOCKERFILE.read_text(), re.M) == [f"{base.repository}:{base.tag}"]
    assert "@sha256:" in base.tag
    flink = bom.python_tools["flink"]["apache-flink"]
    assert base.tag.startswith(f"{flink}-")  # the image's Flink runtime is the PyFlink version of the job
    assert f"apache-flink=={flink}" in (ROOT / "requirements" / "flink.txt").read_text()
    assert f"flink-python-{flink}.jar" in DOCKERFILE.read_text()


def test_it_copies_only_what_the_job_imports_and_runs_as_flink():
    copied = set()
    for line in DOCKERFILE.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "COPY":
            copied |= {p for p in parts[1:-1] if not p.startswith("--")}
    assert copied == ALLOWED
    facts = dockerfile(DOCKERFILE)
    assert facts["user"] == 9999  # the `flink` user the pod template's securityContext names
    assert facts["entrypoint"] == ["/docker-entrypoint.sh"]
