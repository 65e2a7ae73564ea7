"""A third-party scanner over everything that would reach the API server: checkov's Kubernetes
checks, run from its own environment (`.venv-checkov`: checkov cannot share one with pulumi), with
`BC_SKIP_MAPPING=TRUE` and no download of external checks. Each finding is fixed or justified in
`checkov-baseline.yaml` (check, resource pattern, reason); a finding outside the baseline is a problem.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.conformance.model import KubeObject, Problem

REPO_ROOT = Path(__file__).resolve().parents[2]
BASELINE = Path(__file__).with_name("checkov-baseline.yaml")
CHECKOV_ENV = "MLPLAT_CHECKOV"


def checkov_binary() -> Path:
    override = os.environ.get(CHECKOV_ENV)
    return Path(override) if override else REPO_ROOT / ".venv-checkov" / "bin" / "checkov"


@dataclass(frozen=True)
class Finding:
    check: str
    name: str
    resource: str  # Kind.namespace.name, as checkov names it
    file: str


@dataclass(frozen=True)
class BaselineEntry:
    check: str  # regular expression over the check id (whole id)
    resource: str  # fnmatch pattern over Kind.namespace.name
    reason: str

    def covers(self, finding: Finding) -> bool:
        return bool(re.fullmatch(self.check, finding.check)) and fnmatch.fnmatchcase(finding.resource, self.resource)


def load_baseline(path: Path = BASELINE) -> list[BaselineEntry]:
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    out = []
    for entry in (data or {}).get("accepted") or []:
        reason = str(entry.get("reason") or "").strip()
        if not reason:
            raise ValueError(f"{path.name}: {entry} has no reason")
        out.append(BaselineEntry(str(entry["check"]), str(entry["resource"]), reason))
    return out


def write_manifests(objects: list[KubeObject], out: Path) -> dict[str, KubeObject]:
    """One file per object, grouped by release (`_program` for the program's own)."""
    files: dict[str, KubeObject] = {}
    for i, obj in enumerate(objects):
        folder = out / (obj.release or "_program")
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{i:04d}-{obj.kind.lower()}-{obj.name or 'unnamed'}.yaml"
        (folder / name).write_text(yaml.safe_dump(obj.manifest, sort_keys=False))
        files[f"/{folder.name}/{name}"] = obj
    return files


def run_checkov(directory: Path, binary: Path | None = None) -> list[Finding]:
    binary = binary or checkov_binary()
    if not binary.exists():
        raise FileNotFoundError(f"checkov is not installed at {binary}: run scripts/bootstrap.sh checkov")
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    proc = subprocess.run([str(binary), "-d", str(directory), "--framework", "kubernetes", "-o", "json",
                           "--quiet", "--compact", "--skip-download", "--no-fail-on-crash"],
                          capture_output=True, text=True, env=env, timeout=900, check=False)
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        raise RuntimeError(f"checkov failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    data: Any = json.loads(proc.stdout)
    reports = data if isinstance(data, list) else [data]
    findings = []
    for report in reports:
        for item in (report.get("results") or {}).get("failed_checks") or []:
            findings.append(Finding(item["check_id"], item.get("check_name", ""), item.get("resource", ""),
                                    item.get("file_path", "")))
    return findings


def scan(objects: list[KubeObject], baseline: list[BaselineEntry] | None = None) -> tuple[list[Problem], list[str]]:
    """Problems (findings outside the baseline) and notes (accepted findings per workload)."""
    baseline = load_baseline() if baseline is None else baseline
    applied = [o for o in objects if not o.derived]
    with tempfile.TemporaryDirectory(prefix="mlplat-checkov-") as tmp:
        files = write_manifests(applied, Path(tmp))
        findings = run_checkov(Path(tmp))
    problems, accepted = [], 0
    for f in findings:
        obj = files.get(f.file)
        if any(entry.covers(f) for entry in baseline):
            accepted += 1
            continue
        where = obj.where if obj else f"{f.resource} ({f.file})"
        problems.append(Problem("scanner", where, f"checkov {f.check}: {f.name} (fix it, or accept it with a reason "
                                                  f"in {BASELINE.name} as resource {f.resource!r})",
                                obj.release if obj else None))
    notes = [f"checkov: {len(findings)} findings, {accepted} accepted by {BASELINE.name}, "
             f"{len(findings) - accepted} not"]
    return problems, notes
