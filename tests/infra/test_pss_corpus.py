"""The Pod Security Standards evaluator against the upstream corpus of Kubernetes 1.34.

`../shared/charts/pod-security-admission-testdata-v0.34.9.tar.gz` is kubernetes/pod-security-admission's
`test/` at v0.34.9: `testdata/<level>/v1.<n>/<pass|fail>/<check id><i>.yaml`, each a Pod that admission at
that level and policy version must admit (pass) or refuse (fail). Every file is evaluated; a refused
fixture must be refused by the check its name names. The archive is read from the mirror
(MLPLAT_CHART_MIRROR, default `../shared/charts`); without it the test fails.
"""

from __future__ import annotations

import os
import re
import tarfile
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.conformance import pss

ROOT = Path(__file__).resolve().parents[2]
ARCHIVE = "pod-security-admission-testdata-v0.34.9.tar.gz"
FIXTURE = re.compile(r"/testdata/(baseline|restricted)/v1\.(\d+)/(pass|fail)/([a-z_]+?)(\d*)\.yaml$")


def _mirror() -> Path:
    return Path(os.environ.get("MLPLAT_CHART_MIRROR") or ROOT.parent / "shared" / "charts")


@cache
def corpus() -> list[tuple[str, int, str, str, dict[str, Any]]]:
    """(level, minor, pass|fail, file stem without index, pod) of every fixture in the archive."""
    path = _mirror() / ARCHIVE
    if not path.is_file():
        pytest.fail(f"the upstream Pod Security fixtures {path} are missing: set MLPLAT_CHART_MIRROR to the "
                    f"chart mirror (../shared/charts beside the checkout)", pytrace=False)
    out = []
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            match = FIXTURE.search(member.name)
            if not match or not member.isfile():
                continue
            level, minor, verdict, stem, _ = match.groups()
            handle = tar.extractfile(member)
            assert handle is not None
            out.append((level, int(minor), verdict, stem, yaml.safe_load(handle.read())))
    return out


# The check ids as the fixture files spell them (lower case), mapped back to the evaluator's ids.
CHECK_BY_STEM = {c.id.lower(): c.id for c in pss.CHECKS}


def test_the_corpus_is_complete() -> None:
    """The counts the mirror's README gives for the archive: 388 + 1,020 baseline, 549 + 2,136 restricted."""
    counts = Counter((level, verdict) for level, _, verdict, _, _ in corpus())
    assert counts == {("baseline", "pass"): 388, ("baseline", "fail"): 1020,
                      ("restricted", "pass"): 549, ("restricted", "fail"): 2136}
    assert {minor for _, minor, _, _, _ in corpus()} == set(range(35))
    assert pss.MAX_MINOR == 34
    stems = {stem for _, _, _, stem, _ in corpus()} - {"base", "base_linux", "base_windows"}
    assert stems == set(CHECK_BY_STEM), "every upstream check has fixtures and every fixture names a known check"


@pytest.mark.parametrize("level", ["baseline", "restricted"])
@pytest.mark.parametrize("minor", range(35))
def test_every_fixture_is_judged_as_upstream_files_it(level: str, minor: int) -> None:
    wrong = []
    seen = 0
    for fx_level, fx_minor, verdict, stem, pod in corpus():
        if (fx_level, fx_minor) != (level, minor):
            continue
        seen += 1
        result = pss.evaluate(pss.LevelVersion(level, f"v1.{minor}"), pod.get("metadata"), pod.get("spec"))
        name = pod["metadata"]["name"]
        if verdict == "pass" and not result.allowed:
            wrong.append(f"{name}: refused: {[str(v) for v in result.violations]}")
        elif verdict == "fail":
            # At restricted, a baseline check may be replaced by the restricted check that overrides it
            # (hostPathVolumes by restrictedVolumes, capabilities_baseline by capabilities_restricted, ...).
            expected = {CHECK_BY_STEM[stem]} | pss.overriding(CHECK_BY_STEM[stem], minor)
            if not expected & result.failed_checks:
                wrong.append(f"{name}: not refused by {sorted(expected)} (refused by {sorted(result.failed_checks)})")
    assert seen > 0
    assert wrong == [], f"{level} v1.{minor}: " + "\n".join(wrong)


def test_privileged_admits_every_fixture() -> None:
    assert all(pss.evaluate(pss.LevelVersion(pss.PRIVILEGED), pod["metadata"], pod["spec"]).allowed
               for _, _, _, _, pod in corpus())


def test_latest_and_newer_versions_evaluate_the_newest_policy() -> None:
    """api.ParseVersion / registry.EvaluatePod: `latest` and versions past the newest check use 1.34's checks:
    a probe host (a 1.34 rule) is refused at latest and v1.40, admitted at v1.33."""
    pod = {"containers": [{"name": "c", "readinessProbe": {"httpGet": {"host": "10.0.0.1", "port": 80}}}]}
    for version, allowed in (("latest", False), ("v1.40", False), ("v1.34", False), ("v1.33", True)):
        assert pss.evaluate(pss.LevelVersion("baseline", version), {}, pod).allowed is allowed, version


@pytest.mark.parametrize(("labels", "expected", "errors"), [
    ({}, "privileged:latest", 0),
    ({"pod-security.kubernetes.io/enforce": "baseline"}, "baseline:latest", 0),
    ({"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "v1.30"},
     "restricted:v1.30", 0),
    ({"pod-security.kubernetes.io/enforce": "strict"}, "restricted:latest", 1),  # fails closed
    ({"pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/enforce-version": "1.30"},
     "baseline:latest", 1),
    ({"pod-security.kubernetes.io/warn": "restricted"}, "privileged:latest", 0),  # warn never rejects
])
def test_namespace_labels_select_the_enforce_level(labels: dict[str, str], expected: str, errors: int) -> None:
    policy, found = pss.enforce_policy(labels)
    assert (str(policy), len(found)) == (expected, errors)
