"""The checks of the Pod Security Standards, one function per `policy/check_*.go` of
kubernetes/pod-security-admission v0.34.9, and the table of their versioned variants (CHECKS).

Each check takes the pod's metadata and spec in wire form (camelCase dicts, after the API server's
defaulting) and returns the fields it refuses; infra/conformance/pss.py expands the table into the checks a
level runs at a policy version and evaluates pods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)
LATEST = "latest"

@dataclass(frozen=True)
class Violation:
    """One field that the level refuses; `path` is relative to the pod (`spec.containers[name]...`)."""

    check: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} ({self.check})"


@dataclass(frozen=True)
class Options:
    # UserNamespacesPodSecurityStandards (alpha in 1.34, default off): user-namespace pods skip the
    # runAsNonRoot, runAsUser and procMount checks.
    relax_user_namespaces: bool = False


CheckFn = Callable[[dict[str, Any], dict[str, Any], Options], list[Violation]]


@dataclass(frozen=True)
class Variant:
    minor: int  # the policy version 1.<minor> from which this variant applies
    fn: CheckFn
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    id: str
    level: str
    variants: tuple[Variant, ...]


# ---------------------------------------------------------------------------------------------- helpers


def _containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            yield f"spec.{key}[{c.get('name', '')}]", c


def _sc(obj: dict[str, Any]) -> dict[str, Any] | None:
    sc = obj.get("securityContext")
    return sc if isinstance(sc, dict) else None


def _windows(spec: dict[str, Any]) -> bool:
    return ((spec.get("os") or {}).get("name")) == "windows"


def _user_namespace(spec: dict[str, Any], opts: Options) -> bool:
    return opts.relax_user_namespaces and spec.get("hostUsers") is False


def _unless_windows(fn: CheckFn) -> CheckFn:
    """The 1.25 form of the restricted checks that do not apply to pods declared `os.name: windows`."""
    def check(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
        return [] if _windows(spec) else fn(meta, spec, opts)
    return check


# ---------------------------------------------------------------------------------------------- baseline


def _host_namespaces(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
    return [Violation("hostNamespaces", f"spec.{k}", "must not be true")
            for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k) is True]


def _privileged(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
    return [Violation("privileged", f"{p}.securityContext.privileged", "must not be true")
            for p, c in _containers(spec) if (_sc(c) or {}).get("privileged") is True]


BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
    "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})


def _capabilities_baseline(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
    out = []
    for p, c in _containers(spec):
        added = ((_sc(c) or {}).get("capabilities") or {}).get("add") or []
        bad = sorted({str(a) for a in added if a not in BASELINE_CAPABILITIES})
        if bad:
            out.append(Violation("capabilities_baseline", f"{p}.securityContext.capabilities.add",
                                 f"adds {', '.join(bad)}, beyond the runtime's default set"))
    return out


def _host_path_volumes(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
    return [Violation("hostPathVolumes", f"spec.volumes[{v.get('name', '')}].hostPath", "is not allowed")
            for v in spec.get("volumes") or [] if v.get("hostPath") is not None]


def _host_ports(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
    out = []
    for p, c in _containers(spec):
        for port in c.get("ports") or []:
            if port.get("hostPort") not in (None, 0):
                out.append(Violation("hostPorts", f"{p}.ports[{port.get('containerPort')}].hostPort",
                                     f"hostPort {port.get('hostPort')} is not allowed"))
    return out


def _valid_apparmor_annotation(value: str) -> bool:
    return value in ("", "runtime/default") or value.startswith("localhost/")


APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


def _apparmor(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
    out = []
    allowed_types = ("RuntimeDefault", "Localhost")
    pod_profile = (_sc(spec) or {}).get("appArmorProfile")
    if pod_profile is not None and (pod_profile or {}).get("type") not in allowed_types:
        out.append(Violation("appArmorProfile", "spec.securityContext.appArmorProfile.type",
                             f"{(pod_profile or {}).get('type')!r} is not RuntimeDefault or Localhost"))
    for p, c in _containers(spec):
        profile = (_sc(c) or {}).get("appArmorProfile")
        if profile is not None and (profile or {}).get("type") not in allowed_types:
            out.append(Violation("appArmorProfile", f"{p}.securityContext.appArmorProfile.type",
                                 f"{(profile or {}).get('type')!r} is not RuntimeDefault or Localhost"))
    for key, value in sorted(((meta.get("annotations") or {})).items()):
        if key.startswith(APPARMOR_ANNOTATION_PREFIX) and not _valid_apparmor_annotation(str(value)):
            out.append(Violation("appArmorProfile", f"metadata.annotations[{key}]",
                                 f"{value!r} is not runtime/default or localhost/*"))
    return out


SELINUX_TYPES_1_0 = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
SELINUX_TYPES_1_31 = SELINUX_TYPES_1_0 | {"container_engine_t"}


def _selinux(allowed: frozenset[str]) -> CheckFn:
    def check(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
        out = []
        holders = [("spec", spec), *_containers(spec)]
        for p, holder in holders:
            options = (_sc(holder) or {}).get("seLinuxOptions")
            if options is None:
                continue
            where = f"{p}.securityContext.seLinuxOptions"
            if str(options.get("type") or "") not in allowed:
                out.append(Violation("seLinuxOptions", f"{where}.type", f"{options.get('type')!r} is not allowed"))
            for key in ("user", "role"):
                if options.get(key):
                    out.append(Violation("seLinuxOptions", f"{where}.{key}", "must not be set"))
        return out
    return check


def _proc_mount(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
    if _user_namespace(spec, opts):
        return []
    return [Violation("procMount", f"{p}.securityContext.procMount", f"{mount!r} is not Default")
            for p, c in _containers(spec)
            if (mount := (_sc(c) or {}).get("procMount")) is not None and mount != "Default"]


SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
SECCOMP_CONTAINER_ANNOTATION_PREFIX = "container.seccomp.security.alpha.kubernetes.io/"
SECCOMP_TYPES = ("RuntimeDefault", "Localhost")


def _valid_seccomp_annotation(value: str) -> bool:
    return value in ("runtime/default", "docker/default") or value.startswith("localhost/")


def _seccomp_baseline_annotations(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
    annotations = meta.get("annotations") or {}
    keys = [SECCOMP_POD_ANNOTATION] + [SECCOMP_CONTAINER_ANNOTATION_PREFIX + str(c.get("name", ""))
                                       for _, c in _containers(spec)]
    return [Violation("seccompProfile_baseline", f"metadata.annotations[{key}]",
                      f"{annotations[key]!r} is not runtime/default, docker/default or localhost/*")
            for key in dict.fromkeys(keys)
            if key in annotations and not _valid_seccomp_annotation(str(annotations[key]))]


def _explicit_seccomp(spec: dict[str, Any], check: str) -> tuple[list[Violation], bool]:
    """Violations of explicitly set seccomp types, and whether the pod sets a valid one."""
    out = []
    pod_valid = False
    pod_profile = (_sc(spec) or {}).get("seccompProfile")
    if pod_profile is not None:
        if (pod_profile or {}).get("type") in SECCOMP_TYPES:
            pod_valid = True
        else:
            out.append(Violation(check, "spec.securityContext.seccompProfile.type",
                                 f"{(pod_profile or {}).get('type')!r} is not RuntimeDefault or Localhost"))
    for p, c in _containers(spec):
        profile = (_sc(c) or {}).get("seccompProfile")
        if profile is not None and (profile or {}).get("type") not in SECCOMP_TYPES:
            out.append(Violation(check, f"{p}.securityContext.seccompProfile.type",
                                 f"{(profile or {}).get('type')!r} is not RuntimeDefault or Localhost"))
    return out, pod_valid


def _seccomp_baseline_fields(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
    return _explicit_seccomp(spec, "seccompProfile_baseline")[0]


SYSCTLS_1_0 = frozenset({"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                         "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"})
SYSCTLS_1_27 = SYSCTLS_1_0 | {"net.ipv4.ip_local_reserved_ports"}
SYSCTLS_1_29 = SYSCTLS_1_27 | {"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                               "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
SYSCTLS_1_32 = SYSCTLS_1_29 | {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}


def _sysctls(allowed: frozenset[str]) -> CheckFn:
    def check(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
        return [Violation("sysctls", f"spec.securityContext.sysctls[{s.get('name')}]", "is not a safe sysctl")
                for s in (_sc(spec) or {}).get("sysctls") or [] if s.get("name") not in allowed]
    return check


def _windows_host_process(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
    holders = [("spec", spec), *_containers(spec)]
    return [Violation("windowsHostProcess", f"{p}.securityContext.windowsOptions.hostProcess", "must not be true")
            for p, h in holders if ((_sc(h) or {}).get("windowsOptions") or {}).get("hostProcess") is True]


def _host_probes_and_lifecycle(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
    out = []
    for p, c in _containers(spec):
        handlers = [(probe, c.get(probe)) for probe in ("livenessProbe", "readinessProbe", "startupProbe")]
        handlers += [(f"lifecycle.{hook}", (c.get("lifecycle") or {}).get(hook)) for hook in ("postStart", "preStop")]
        for where, handler in handlers:
            for action in ("httpGet", "tcpSocket"):
                host = ((handler or {}).get(action) or {}).get("host")
                if host:
                    out.append(Violation("hostProbesAndHostLifecycle", f"{p}.{where}.{action}.host",
                                         f"{host!r}: probes and lifecycle handlers must not name a host"))
    return out


# ---------------------------------------------------------------------------------------------- restricted


RESTRICTED_VOLUME_SOURCES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image",
                                       "persistentVolumeClaim", "projected", "secret"})


def _restricted_volumes(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
    out = []
    for v in spec.get("volumes") or []:
        sources = [k for k, value in v.items() if k != "name" and value is not None]
        if any(s in RESTRICTED_VOLUME_SOURCES for s in sources):
            continue
        kind = sources[0] if sources else "unknown"
        out.append(Violation("restrictedVolumes", f"spec.volumes[{v.get('name', '')}]",
                             f"volume type {kind} is not allowed "
                             f"(only {', '.join(sorted(RESTRICTED_VOLUME_SOURCES))})"))
    return out


def _allow_privilege_escalation(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
    return [Violation("allowPrivilegeEscalation", f"{p}.securityContext.allowPrivilegeEscalation", "must be false")
            for p, c in _containers(spec) if (_sc(c) or {}).get("allowPrivilegeEscalation") is not False]


def _run_as_non_root(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
    if _user_namespace(spec, opts):
        return []
    explicit, implicit = [], []
    pod_value = (_sc(spec) or {}).get("runAsNonRoot")
    if pod_value is False:
        explicit.append(Violation("runAsNonRoot", "spec.securityContext.runAsNonRoot", "must not be false"))
    for p, c in _containers(spec):
        value = (_sc(c) or {}).get("runAsNonRoot")
        if value is False:
            explicit.append(Violation("runAsNonRoot", f"{p}.securityContext.runAsNonRoot", "must not be false"))
        elif value is None and pod_value is not True:
            implicit.append(Violation("runAsNonRoot", f"{p}.securityContext.runAsNonRoot",
                                      "must be true (here or in spec.securityContext)"))
    return explicit or implicit


def _run_as_user(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
    if _user_namespace(spec, opts):
        return []
    holders = [("spec", spec), *_containers(spec)]
    return [Violation("runAsUser", f"{p}.securityContext.runAsUser", "must not be 0")
            for p, h in holders if (_sc(h) or {}).get("runAsUser") == 0]


def _seccomp_restricted(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
    explicit, pod_valid = _explicit_seccomp(spec, "seccompProfile_restricted")
    if explicit:
        return explicit
    if pod_valid:
        return []
    return [Violation("seccompProfile_restricted", f"{p}.securityContext.seccompProfile.type",
                      "must be RuntimeDefault or Localhost (here or in spec.securityContext)")
            for p, c in _containers(spec) if (_sc(c) or {}).get("seccompProfile") is None]


def _capabilities_restricted(meta: dict[str, Any], spec: dict[str, Any], opts: Options) -> list[Violation]:
    out = []
    for p, c in _containers(spec):
        caps = (_sc(c) or {}).get("capabilities")
        if caps is None or "ALL" not in (caps.get("drop") or []):
            out.append(Violation("capabilities_restricted", f"{p}.securityContext.capabilities.drop",
                                 'must include "ALL"'))
        added = sorted({str(a) for a in (caps or {}).get("add") or [] if a != "NET_BIND_SERVICE"})
        if added:
            out.append(Violation("capabilities_restricted", f"{p}.securityContext.capabilities.add",
                                 f"adds {', '.join(added)} (only NET_BIND_SERVICE may be added)"))
    return out


# ---------------------------------------------------------------------------------------------- the table


CHECKS: tuple[Check, ...] = (
    Check("allowPrivilegeEscalation", RESTRICTED, (Variant(8, _allow_privilege_escalation),
                                                   Variant(25, _unless_windows(_allow_privilege_escalation)))),
    Check("appArmorProfile", BASELINE, (Variant(0, _apparmor),)),
    Check("capabilities_baseline", BASELINE, (Variant(0, _capabilities_baseline),)),
    Check("capabilities_restricted", RESTRICTED, (
        Variant(22, _capabilities_restricted, ("capabilities_baseline",)),
        Variant(25, _unless_windows(_capabilities_restricted), ("capabilities_baseline",)))),
    Check("hostNamespaces", BASELINE, (Variant(0, _host_namespaces),)),
    Check("hostPathVolumes", BASELINE, (Variant(0, _host_path_volumes),)),
    Check("hostPorts", BASELINE, (Variant(0, _host_ports),)),
    Check("hostProbesAndHostLifecycle", BASELINE, (Variant(34, _host_probes_and_lifecycle),)),
    Check("privileged", BASELINE, (Variant(0, _privileged),)),
    Check("procMount", BASELINE, (Variant(0, _proc_mount),)),
    Check("restrictedVolumes", RESTRICTED, (Variant(0, _restricted_volumes, ("hostPathVolumes",)),)),
    Check("runAsNonRoot", RESTRICTED, (Variant(0, _run_as_non_root),)),
    Check("runAsUser", RESTRICTED, (Variant(23, _run_as_user),)),
    Check("seLinuxOptions", BASELINE, (Variant(0, _selinux(SELINUX_TYPES_1_0)),
                                       Variant(31, _selinux(SELINUX_TYPES_1_31)))),
    Check("seccompProfile_baseline", BASELINE, (Variant(0, _seccomp_baseline_annotations),
                                                Variant(19, _seccomp_baseline_fields))),
    Check("seccompProfile_restricted", RESTRICTED, (
        Variant(19, _seccomp_restricted, ("seccompProfile_baseline",)),
        Variant(25, _unless_windows(_seccomp_restricted), ("seccompProfile_baseline",)))),
    Check("sysctls", BASELINE, (Variant(0, _sysctls(SYSCTLS_1_0)), Variant(27, _sysctls(SYSCTLS_1_27)),
                                Variant(29, _sysctls(SYSCTLS_1_29)), Variant(32, _sysctls(SYSCTLS_1_32)))),
    Check("windowsHostProcess", BASELINE, (Variant(0, _windows_host_process),)),
)

MAX_MINOR = max(c.variants[-1].minor for c in CHECKS)  # the newest policy version the checks know: 1.34
