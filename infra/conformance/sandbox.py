"""Run a process the way a container runtime would start it, on this machine, with bubblewrap.

A pod's network is a network namespace of its own (`Network`: `unshare --net`, every pod and every
stand-in service gets an address on its loopback device), so servers listen on their declared ports
and clients reach the names they are configured with (a hosts file maps them), with no clash with
other processes of this machine. A container is `bwrap` as root (no user namespace, so file
ownership and permissions are the host's real ones) with:

- the root filesystem read-only: every top-level entry of this machine's `/` bound read-only into
  bwrap's own root, which is remounted read-only once all mounts are in place (a container's image
  root is read-only under `readOnlyRootFilesystem`, and the runtime creates mount points in it);
- exactly the pod's volumes at their `mountPath`s (emptyDir: a host directory per pod, as the
  kubelet makes it, shared by the pod's containers; ConfigMap/Secret: files written read-only;
  `subPath`: the one file or directory);
- the user, group and supplementary groups of the security context, no capabilities and
  `no_new_privs`, applied by util-linux `setpriv` inside the sandbox just before the program runs;
- a cleared environment: the image's variables, then the container's, as the runtime sets them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BWRAP = "bwrap"
SETPRIV = "/usr/bin/setpriv"  # by path: a busybox image puts its own `setpriv` applet first on PATH
SKIPPED_ROOT_ENTRIES = ("proc", "dev", "sys")


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the check's process ends, however it ends (no orphans)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class SandboxUnavailable(RuntimeError):
    """bubblewrap, util-linux or root is missing: the runtime check cannot start containers."""


def require_tools() -> None:
    missing = [t for t in (BWRAP, SETPRIV, "unshare", "nsenter", "ip") if shutil.which(t) is None]
    if missing:
        raise SandboxUnavailable(f"missing {', '.join(missing)} (Debian: apt-get install -y bubblewrap util-linux "
                                 "iproute2; scripts/bootstrap.sh system installs them)")
    if os.geteuid() != 0:
        raise SandboxUnavailable("the runtime check starts containers with bubblewrap as root (it sets the user, "
                                 "group and mounts of each pod); run it as root")


class Namespace:
    """A network namespace held by a `sleep` process (`unshare --net`)."""

    def __init__(self) -> None:
        require_tools()
        self._holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "infinity"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        preexec_fn=_die_with_parent)
        own = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{self._holder.pid}/ns/net") == own:
            if time.monotonic() > deadline or self._holder.poll() is not None:
                raise SandboxUnavailable("could not create a network namespace (`unshare --net`)")
            time.sleep(0.01)
        self.run(["ip", "link", "set", "lo", "up"])

    @property
    def pid(self) -> int:
        return self._holder.pid

    @property
    def prefix(self) -> list[str]:
        return ["nsenter", f"--net=/proc/{self._holder.pid}/ns/net", "--"]

    def run(self, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.prefix + argv, capture_output=True, text=True, timeout=timeout, check=True)

    def close(self) -> None:
        self._holder.kill()
        self._holder.wait()


class Network(Namespace):
    """The cluster side: stand-in services on addresses of its loopback device; the kubelet's probes and
    Prometheus' scrapes start here. Each pod gets a namespace of its own (`pod`), joined by a veth pair,
    so that two pods may listen on the same port and a pod is reached at its own address."""

    def __init__(self) -> None:
        super().__init__()
        self._pods: list[Namespace] = []

    def add_address(self, ip: str) -> None:
        self.run(["ip", "addr", "add", f"{ip}/32", "dev", "lo"])

    def pod(self, ip: str) -> Namespace:
        pod = Namespace()
        n = len(self._pods)
        self._pods.append(pod)
        self.run(["ip", "link", "add", f"c{n}", "type", "veth", "peer", "name", f"p{n}"])
        self.run(["ip", "link", "set", f"p{n}", "netns", str(pod.pid)])
        self.run(["ip", "link", "set", f"c{n}", "up"])
        self.run(["ip", "route", "add", f"{ip}/32", "dev", f"c{n}"])
        pod.run(["ip", "link", "set", f"p{n}", "up"])
        pod.run(["ip", "addr", "add", f"{ip}/32", "dev", f"p{n}"])
        pod.run(["ip", "route", "add", "default", "dev", f"p{n}"])
        return pod

    def close(self) -> None:
        for pod in self._pods:
            pod.close()
        super().close()


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    writable: bool = False


@dataclass
class Sandboxed:
    """One container: what to run and under which identity."""

    argv: list[str]
    env: dict[str, str]
    mounts: list[Mount]
    uid: int
    gid: int
    groups: list[int] = field(default_factory=list)
    cwd: str = "/"
    hostname: str = "pod"
    no_new_privs: bool = True
    expose: list[Path] = field(default_factory=list)  # host paths the program needs below a private directory


def _host_path(target: str) -> Path:
    """The host path a target resolves to below `/` (symlinks of this machine followed)."""
    return Path(os.path.realpath(target))


def _nearest_existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def _rebind_children(directory: Path) -> list[str]:
    args: list[str] = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if directory == Path("/") and entry.name in SKIPPED_ROOT_ENTRIES:
            continue
        dest = str(directory / entry.name)
        if entry.is_symlink():
            args += ["--symlink", os.readlink(entry.path), dest]
        else:
            args += ["--ro-bind", entry.path, dest]
    return args


def _private_ancestors(paths: list[Path]) -> dict[Path, set[Path]]:
    """Directories other users may not traverse (here: /root, 0700) on the way to paths a container must reach
    (the interpreter of .venv-ml lives under /root/.pyenv): shown as a directory holding only that path."""
    out: dict[Path, set[Path]] = {}
    for path in paths:
        for ancestor in reversed(path.parents):
            if ancestor != Path("/") and not ancestor.stat().st_mode & 0o001:
                out.setdefault(ancestor, set()).add(ancestor / path.relative_to(ancestor).parts[0])
                break
    return out


def bwrap_argv(box: Sandboxed) -> list[str]:
    """The `bwrap ... setpriv ... -- argv` command line of one container."""
    mounts = sorted(box.mounts, key=lambda m: (m.target.count("/"), m.target))
    overlays: set[Path] = {Path("/")}
    placed: list[Mount] = []
    dests: dict[str, str] = {}
    made: list[str] = []  # mount points to create in the image root, as the runtime does (0755)
    for mount in mounts:
        parent = next((m for m in reversed(placed) if mount.target.startswith(m.target.rstrip("/") + "/")), None)
        if parent is not None:
            # A mount point inside another volume: the runtime creates it in that volume's directory.
            inner = parent.source / os.path.relpath(mount.target, parent.target)
            if not inner.exists():
                if mount.source.is_dir():
                    inner.mkdir(parents=True, exist_ok=True)
                else:
                    inner.parent.mkdir(parents=True, exist_ok=True)
                    inner.touch()
            dests[mount.target] = mount.target
        else:
            # Under the image root (this machine's): symlinks of the path resolved as they would be there.
            host = _host_path(mount.target)
            dests[mount.target] = str(host)
            if not host.exists() or host.is_dir() != mount.source.is_dir():
                anchor = _nearest_existing(host.parent)
                overlays.add(anchor)
                missing = host if mount.source.is_dir() else host.parent
                made += [str(p) for p in reversed([missing, *missing.parents]) if p not in anchor.parents
                         and p != anchor and str(p) not in made]
        placed.append(mount)
    args = [BWRAP, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--hostname", box.hostname, "--clearenv"]
    for overlay in sorted(overlays, key=lambda p: len(p.parts)):
        if overlay != Path("/"):
            args += ["--tmpfs", str(overlay)]
        args += _rebind_children(overlay)
    # /dev/shm: the runtime's 64 MiB tmpfs, writable by every user (POSIX semaphores, shared memory).
    args += ["--dev", "/dev", "--proc", "/proc", "--perms", "1777", "--size", str(64 * 2**20), "--tmpfs", "/dev/shm"]
    private = _private_ancestors(box.expose)
    for directory, children in private.items():
        args += ["--tmpfs", str(directory)]
        for child in sorted(children):
            args += ["--ro-bind", str(child), str(child)]
    for directory in made:
        args += ["--perms", "0755", "--dir", directory]
    for mount in mounts:
        args += ["--bind" if mount.writable else "--ro-bind", str(mount.source), dests[mount.target]]
    for overlay in sorted(overlays | set(private), key=lambda p: -len(p.parts)):
        args += ["--remount-ro", str(overlay)]
    for key, value in box.env.items():
        args += ["--setenv", key, value]
    args += ["--chdir", box.cwd, "--", SETPRIV, f"--reuid={box.uid}", f"--regid={box.gid}"]
    args += [f"--groups={','.join(str(g) for g in box.groups)}"] if box.groups else ["--clear-groups"]
    args += ["--inh-caps=-all", "--bounding-set=-all"]
    if box.no_new_privs:
        args.append("--no-new-privs")
    return [*args, "--", *box.argv]


class Process:
    """A started container (or service) process; its output goes to a log file."""

    def __init__(self, argv: list[str], log: Path, network: Namespace | None = None) -> None:
        self.log = log
        self._out = log.open("wb")
        self.popen = subprocess.Popen((network.prefix if network else []) + argv, stdout=self._out,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                      preexec_fn=_die_with_parent)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            if self.wait(5) is None:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._out.close()
