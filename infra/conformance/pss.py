"""The Pod Security Standards (baseline, restricted) as Kubernetes' Pod Security admission evaluates them,
policy version by policy version, over one pod's metadata and spec in wire form (camelCase dicts).

Written from the policy package of kubernetes/pod-security-admission at tag v0.34.9 (the admission
plugin of Kubernetes 1.34): one check per `policy/check_*.go` (infra/conformance/pss_checks.py), each
with the policy versions at which its rule changed (`VersionedCheck.MinimumVersion`), restricted
checks that replace a baseline check from their version on (`OverrideCheckIDs`), and the registry's
expansion (`policy/registry.go`): at version 1.N a level runs, for every check of the level, the
newest variant whose minimum version is <= 1.N; restricted also runs the baseline checks that no
active restricted check overrides; a version newer than the newest variant known (or `latest`) is
evaluated at the newest one.
Containers are visited as `policy/visitor.go` does: init containers, containers, ephemeral containers.

The relaxation for pods in a user namespace (`hostUsers: false`) is behind the alpha feature gate
UserNamespacesPodSecurityStandards in 1.34, off by default (and on EKS, where gates cannot be set):
`relax_user_namespaces` models it and is off unless asked for.
`tests/infra/test_pss_corpus.py` runs every fixture of the upstream corpus for 1.34 through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infra.conformance.pss_checks import (
    BASELINE,
    CHECKS,
    LATEST,
    LEVELS,
    PRIVILEGED,
    RESTRICTED,
    Check,
    Options,
    Variant,
    Violation,
)

__all__ = ["BASELINE", "CHECKS", "LATEST", "LEVELS", "PRIVILEGED", "RESTRICTED", "Options", "Violation"]

MAX_MINOR = max(c.variants[-1].minor for c in CHECKS)  # the newest policy version the checks know: 1.34


def _active(check: Check, minor: int) -> Variant | None:
    found = None
    for variant in check.variants:
        if variant.minor <= minor:
            found = variant
    return found


@dataclass(frozen=True)
class LevelVersion:
    level: str
    version: str = LATEST  # "latest" or "v1.N"

    def minor(self) -> int:
        """The policy version evaluated: `latest` and versions newer than the checks know are the newest."""
        if self.version == LATEST:
            return MAX_MINOR
        return min(int(self.version.removeprefix("v1.")), MAX_MINOR)

    def __str__(self) -> str:
        return f"{self.level}:{self.version}"


def overriding(check_id: str, minor: int) -> set[str]:
    """The restricted checks that replace the baseline check `check_id` at policy version 1.<minor>."""
    return {i for i, v in checks_for(RESTRICTED, minor) if check_id in v.overrides}


def checks_for(level: str, minor: int) -> list[tuple[str, Variant]]:
    """(check id, variant) that `level` runs at policy version 1.<minor>, baseline checks first, ids sorted."""
    if level == PRIVILEGED:
        return []
    minor = min(minor, MAX_MINOR)
    active = {c.id: (c, v) for c in CHECKS if (v := _active(c, minor)) is not None}
    baseline = sorted(i for i, (c, _) in active.items() if c.level == BASELINE)
    if level == BASELINE:
        return [(i, active[i][1]) for i in baseline]
    restricted = sorted(i for i, (c, _) in active.items() if c.level == RESTRICTED)
    overridden = {o for i in restricted for o in active[i][1].overrides}
    return [(i, active[i][1]) for i in baseline if i not in overridden] + [(i, active[i][1]) for i in restricted]


@dataclass
class Evaluation:
    level_version: LevelVersion
    violations: list[Violation] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return not self.violations

    @property
    def failed_checks(self) -> set[str]:
        return {v.check for v in self.violations}


def with_api_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """The pod spec as admission receives it after the API server's defaulting (k8s.io/kubernetes
    pkg/apis/core/v1/defaults.go): a volume without a source is an emptyDir (SetDefaults_Volume), and with
    hostNetwork every container port without a hostPort gets its containerPort (SetDefaults_PodSpec)."""
    out = dict(spec)
    if out.get("volumes"):
        out["volumes"] = [v if any(k != "name" and val is not None for k, val in v.items())
                          else {**v, "emptyDir": {}} for v in out["volumes"]]
    if out.get("hostNetwork") is True:
        for key in ("initContainers", "containers"):
            if out.get(key):
                out[key] = [{**c, "ports": [p if p.get("hostPort") else {**p, "hostPort": p.get("containerPort")}
                                            for p in c.get("ports") or []]} if c.get("ports") else c
                            for c in out[key]]
    return out


def evaluate(level_version: LevelVersion, metadata: dict[str, Any] | None, spec: dict[str, Any] | None,
             options: Options | None = None) -> Evaluation:
    """Every violation of the pod (metadata + spec, wire form, before defaulting) at the level and version."""
    meta, pod_spec = metadata or {}, with_api_defaults(spec or {})
    options = options or Options()
    out = Evaluation(level_version)
    for _, variant in checks_for(level_version.level, level_version.minor()):
        out.violations.extend(variant.fn(meta, pod_spec, options))
    return out


# ---------------------------------------------------------------------------------------------- namespace labels

ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
ENFORCE_VERSION_LABEL = "pod-security.kubernetes.io/enforce-version"


def enforce_policy(labels: dict[str, str] | None, default: LevelVersion = LevelVersion(PRIVILEGED)) -> tuple[
        LevelVersion, list[str]]:
    """The enforce level and version a namespace's labels select, and the label errors (api.PolicyToEvaluate):
    an invalid level fails closed to restricted, an invalid version to latest."""
    labels = labels or {}
    level, version, errors = default.level, default.version, []
    if ENFORCE_LABEL in labels:
        level = labels[ENFORCE_LABEL]
        if level not in LEVELS:
            errors.append(f"{ENFORCE_LABEL}={level!r} must be one of {', '.join(LEVELS)}")
            level = RESTRICTED
    if ENFORCE_VERSION_LABEL in labels:
        version = labels[ENFORCE_VERSION_LABEL]
        ok = version == LATEST or (version.startswith("v1.") and version[3:].isdigit()
                                   and (version[3:] == "0" or not version[3:].startswith("0")))
        if not ok:
            errors.append(f'{ENFORCE_VERSION_LABEL}={version!r} must be "latest" or "v1.x"')
            version = LATEST
    return LevelVersion(level, version), errors
