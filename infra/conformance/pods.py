"""One pod on this machine: its volumes as the kubelet lays them out, each runnable container in a
bubblewrap sandbox as its pod declares it (infra/conformance/sandbox.py), init containers first."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.conformance.podspec import PodTemplate, References, Volume, container_env, expand
from infra.conformance.sandbox import Mount, Sandboxed
from infra.conformance.software import BASE_PATH, ROOT, Image

TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
HOSTS, TRUST = "/etc/hosts", "/etc/ssl/certs/ca-certificates.crt"
BUSYBOX_BIN = "/usr/local/busybox-bin"
OPENBSD_NC = "/bin/nc.openbsd"
KUBERNETES_SERVICE = "10.100.0.1"  # the `kubernetes` Service address the kubelet puts in every container's env


class NotStartable(ValueError):
    """The kubelet would refuse to create this container (CreateContainerConfigError and the like)."""


def security(pod: PodTemplate, container: dict[str, Any]) -> dict[str, Any]:
    return {**(pod.spec.get("securityContext") or {}), **(container.get("securityContext") or {})}


@dataclass
class PodLayout:
    """The pod's directory on this machine: its volumes, shared by its containers."""

    pod: PodTemplate
    directory: Path
    volumes: dict[str, Volume]
    token_dir: Path | None = None
    paths: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.paths = {name: self.directory / "volumes" / name for name in self.volumes}
        if self._automount():
            self.token_dir = self.directory / "serviceaccount"

    def create(self, token: str, ca: str) -> None:
        """Write the volumes (and the service account token) as the kubelet does before the containers start."""
        sc = self.pod.spec.get("securityContext") or {}
        fs_group = sc.get("fsGroup")
        for name, vol in self.volumes.items():
            path = self.paths[name]
            path.mkdir(parents=True, exist_ok=True)
            if vol.kind in ("emptyDir", "claim"):
                # emptyDir: 0777; with fsGroup the kubelet gives the group ownership and the setgid bit.
                if fs_group is not None:
                    os.chown(path, 0, int(fs_group))
                    path.chmod(0o2777)
                else:
                    path.chmod(0o777)
                continue
            for rel, content in vol.files.items():
                target = path / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
                if fs_group is not None:
                    os.chown(target, 0, int(fs_group))
                target.chmod(vol.mode | (0o040 if fs_group is not None else 0))
        if self.token_dir is not None:
            self.token_dir.mkdir(parents=True, exist_ok=True)
            for key, value in (("token", token), ("namespace", self.pod.namespace), ("ca.crt", ca)):
                (self.token_dir / key).write_text(value)
                (self.token_dir / key).chmod(0o644)

    def _automount(self) -> bool:
        value = self.pod.spec.get("automountServiceAccountToken")
        return True if value is None else bool(value)

    def usage(self, name: str) -> int:
        total = 0
        for base, _, files in os.walk(self.paths[name]):
            total += sum((Path(base) / f).lstat().st_size for f in files)
        return total

    def mounts(self, container: dict[str, Any]) -> list[Mount]:
        out: list[Mount] = []
        for vm in container.get("volumeMounts") or []:
            name = str(vm["name"])
            if name not in self.paths:
                raise NotStartable(f"volumeMounts {name}: no volume of that name in the pod")
            vol = self.volumes[name]
            source = self.paths[name]
            if vm.get("subPath"):
                source = source / str(vm["subPath"])
                if vol.kind == "files" and not any(f == vm["subPath"] or f.startswith(f"{vm['subPath']}/")
                                                   for f in vol.files):
                    raise NotStartable(f"volumeMounts {name} subPath {vm['subPath']}: no such key in the volume")
            writable = vol.kind in ("emptyDir", "claim") and not vm.get("readOnly")
            out.append(Mount(source, str(vm["mountPath"]), writable))
        if self.token_dir is not None and not any(m.target == TOKEN_DIR for m in out):
            out.append(Mount(self.token_dir, TOKEN_DIR))
        return out


def _octet_prefix(cidr: str) -> str:
    network = ipaddress.ip_network(cidr, strict=False)
    return ".".join(str(network.network_address).split(".")[: max(1, network.prefixlen // 8)]) + "."


_ENVIRONMENTS = re.compile(r"\b(dev|staging|prod)\b")


def _plain(value: str) -> str:
    """A base64 value (configuration passed as `*_BASE64` env) decoded, so its contents are normalised too."""
    if len(value) < 16:
        return value
    try:
        return base64.b64decode(value, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return value


def spec_key(pod: PodTemplate, boxes: list[Sandboxed], extra: Any, layout: PodLayout, pod_ip: str,
             aliases: dict[str, str], pod_cidr: str, secrets: set[str]) -> str:
    """What makes two pods behave alike: their containers' command lines, environments, identities and
    mounts (volume contents included), probes and scrape endpoints, with the pod address, the stack's
    name, the stand-in services' host names (which differ by stack only) and Secret values (charts make
    random ones at every render) left out."""
    def norm(text: str) -> str:
        for value in sorted(secrets, key=len, reverse=True):
            text = text.replace(value, "<secret>")
        text = text.replace(pod_ip, "<pod-ip>").replace(str(layout.directory), "<pod-dir>")
        text = text.replace(pod_cidr, "<pod-cidr>").replace(_octet_prefix(pod_cidr), "<pod-net>.")
        for host, role in aliases.items():
            text = text.replace(host, role)
        return _ENVIRONMENTS.sub("<env>", text)

    files = {name: sorted(v.files.items()) for name, v in layout.volumes.items()}
    doc = json.dumps({"boxes": [[b.argv, sorted((k, _plain(v)) for k, v in b.env.items()),
                                 [(m.target, m.writable) for m in b.mounts], b.uid,
                                 b.gid, b.groups, b.cwd] for b in boxes], "files": files, "extra": extra,
                      "kind": pod.workload.kind}, sort_keys=True, default=str)
    if os.environ.get("MLPLAT_RUNTIME_KEEP"):
        (layout.directory / "spec-key.json").write_text(norm(doc))  # what two pods were compared on
    return hashlib.sha256(norm(doc).encode()).hexdigest()


def busybox_applets(directory: Path) -> Path:
    """A directory of links to busybox, one per applet (the busybox image's /bin)."""
    target = directory / "busybox-bin"
    if not target.exists():
        target.mkdir(parents=True)
        binary = shutil.which("busybox") or "busybox"
        listing = subprocess.run([binary, "--list"], capture_output=True, text=True, check=True).stdout
        for applet in listing.split():
            (target / applet).symlink_to(binary)
        # Debian builds busybox without `nc -z` (the busybox image's build has it): OpenBSD netcat's nc takes
        # the same `-z -w SEC HOST PORT` the charts' wait scripts use.
        if Path(OPENBSD_NC).exists():
            (target / "nc").unlink()
            (target / "nc").symlink_to(OPENBSD_NC)
    return target


def sandbox_for(pod: PodTemplate, container: dict[str, Any], image: Image, refs: References, layout: PodLayout,
                pod_ip: str, hosts_file: Path, trust: Path, workdir: Path,
                injected: dict[str, str] | None = None, image_files: dict[str, Path] | None = None) -> Sandboxed:
    """`injected`: variables an admission webhook adds (the pod identity webhook's, for IRSA service accounts).
    `image_files`: path in the image -> file here, for files our images' builds add (bound read-only)."""
    sc = security(pod, container)
    uid = sc.get("runAsUser", image.user if image.user is not None else 0)
    if sc.get("runAsNonRoot") and int(uid) == 0:
        raise NotStartable("securityContext.runAsNonRoot: the container would run as root (no runAsUser, and the "
                           "image's USER is root); the kubelet refuses to start it")
    gid = int(sc.get("runAsGroup", 0))
    groups = [int(g) for g in ([sc["fsGroup"]] if "fsGroup" in sc else []) + list(sc.get("supplementalGroups") or [])]
    path_dirs = list(image.path_prefix)
    binds = dict(image.binds)
    if "busybox" in image.software:
        binds[str(busybox_applets(workdir))] = BUSYBOX_BIN  # the image's applet links (its /bin)
        path_dirs.insert(0, BUSYBOX_BIN)
    env = {"PATH": ":".join([*path_dirs, BASE_PATH]), "HOSTNAME": f"{pod.workload.name}-0", "HOME": "/",
           **image.env, "KUBERNETES_SERVICE_HOST": KUBERNETES_SERVICE, "KUBERNETES_SERVICE_PORT": "443",
           **(injected or {})}
    env = container_env(pod, container, refs, pod_ip, env)
    if container.get("command"):
        argv = list(container["command"]) + list(container.get("args") or [])
    else:
        argv = image.entrypoint + (list(container["args"]) if container.get("args") is not None else image.cmd)
    argv = [expand(str(a), env) for a in argv]
    mounts = layout.mounts(container)
    mounts += [Mount(hosts_file, HOSTS), Mount(trust, TRUST)]
    mounts += [Mount(Path(src), dest) for src, dest in binds.items()]
    if image.repo_at_workdir:
        mounts.append(Mount(ROOT, image.workdir))
        mounts += [Mount(source, dest) for dest, source in (image_files or {}).items()]
    expose = [Path(os.path.realpath(Path(d) / "python")) for d in image.path_prefix if (Path(d) / "python").exists()]
    return Sandboxed(argv=argv, env=env, mounts=mounts, uid=int(uid), gid=gid, groups=groups,
                     cwd=str(container.get("workingDir") or image.workdir),
                     hostname=f"{pod.workload.name}-0", no_new_privs=sc.get("allowPrivilegeEscalation") is False,
                     expose=expose)
