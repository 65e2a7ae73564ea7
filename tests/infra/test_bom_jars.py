"""The BOM's jars (stacks/bom.py `Jar`): one schema for every image's Java libraries, each with a checksum that
says its algorithm. That each Dockerfile fetches and checks exactly these is tests/infra/test_*_image.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from stacks.bom import Jar, load_bom

ROOT = Path(__file__).resolve().parents[2]
MAVEN = "https://repo1.maven.org/maven2/org/example/lib/1.2.3/lib-1.2.3.jar"


def test_jars_are_grouped_by_the_image_that_downloads_them():
    jars = load_bom().jars
    assert set(jars) == {"flink-job", "spark-features"}
    for image in jars:
        assert (ROOT / "docker" / image / "Dockerfile").is_file(), image


def test_each_pin_keeps_the_checksum_it_has():
    jars = load_bom().jars
    assert {name: j.algorithm for name, j in jars["flink-job"].items()} == {
        "flink-sql-connector-kafka": None, "aws-msk-iam-auth": "sha256"}
    assert {j.algorithm for j in jars["spark-features"].values()} == {"sha1"}


def test_a_maven_jar_reads_its_coordinates_from_its_url():
    jar = Jar(url=MAVEN, checksum="sha1:" + "a" * 40)
    assert (jar.file, jar.maven_dir, jar.version) == ("lib-1.2.3.jar", "org/example/lib/1.2.3", "1.2.3")
    assert (jar.algorithm, jar.digest) == ("sha1", "a" * 40)
    elsewhere = Jar(url="https://example.org/releases/x-all.jar", checksum="sha256:" + "b" * 64)
    assert (elsewhere.maven_dir, elsewhere.version, elsewhere.algorithm) == (None, None, "sha256")
    # With no checksum to pin, a Maven Central jar is checked against the .sha1 published beside it.
    assert Jar(url=MAVEN, checksum=None).algorithm is None


@pytest.mark.parametrize(("url", "checksum", "message"), [
    (MAVEN, "a" * 40, "must be sha1:<40 lower-case hex> or sha256:<64 lower-case hex>"),
    (MAVEN, "sha1:" + "a" * 64, "must be sha1:<40"),
    (MAVEN, "md5:" + "a" * 32, "must be sha1:<40"),
    (MAVEN, "sha256:" + "A" * 64, "must be sha1:<40"),
    ("https://example.org/x.jar", None, "not on Maven Central, which publishes a .sha1 to check against"),
    ("http://repo1.maven.org/maven2/org/example/lib/1.2.3/lib-1.2.3.jar", None, "must be an https URL of a .jar"),
    ("https://repo1.maven.org/maven2/org/example/lib/1.2.3/other-1.2.3.jar", None, "is not Maven's <group>"),
    ("https://repo1.maven.org/maven2/org/example/lib/1.2-SNAPSHOT/lib-1.2-SNAPSHOT.jar", None, "is a snapshot"),
])
def test_a_bad_jar_pin_is_refused_naming_what_is_wrong(url, checksum, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(".", r"\.")):
        Jar(url=url, checksum=checksum)
