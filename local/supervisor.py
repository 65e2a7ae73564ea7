"""Process supervision for the local platform: pid records, liveness, stop by process group, ports.

`mlplat local up` starts each service in its own session (so it outlives the command) and writes
`<state>/run/<name>.json`: pid, ports, command line, URL, log file. `status` and `down` run in other
processes and work from those records only. A record is trusted only while its pid is alive *and*
still has the recorded start time, so a recycled pid is never signalled. `stop` signals the whole
process group (workers included), waits until no member is left and the ports are free.
A record is matched to its process by pid *and* start time (/proc/<pid>/stat), because some
programs rewrite their command line (redis-server shows `redis-server 127.0.0.1:16379`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class ServiceRecord:
    name: str
    pid: int
    ports: dict[str, int]
    cmdline: list[str]
    log: str
    start_ticks: int = 0  # /proc/<pid>/stat field 22: identifies this process among pid reuses
    url: str = ""
    started: float = field(default_factory=time.time)
    info: dict[str, object] = field(default_factory=dict)  # service-specific (e.g. served model versions)


class PortInUseError(RuntimeError):
    """A port the platform needs is taken by a process it did not start."""

    def __init__(self, port: int, purpose: str, owner: str | None, hint: str) -> None:
        self.port = port
        who = f" by {owner}" if owner else " by another program"
        super().__init__(f"port {port} ({purpose}) is already in use{who}. {hint}")


# ---- processes ------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state letter, process group, start time in clock ticks) of `pid`, or None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    return rest[0], int(rest[2]), int(rest[19])


def start_ticks(pid: int) -> int:
    stat = _proc_stat(pid)
    return stat[2] if stat else 0


def _reap(pid: int) -> None:
    # A service started by this very process stays a zombie until waited for.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int) -> bool:
    _reap(pid)
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid` (zombies excluded)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        stat = _proc_stat(pid)
        if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
            members.append(pid)
    return members


def same_program(record: ServiceRecord) -> bool:
    """The recorded pid is alive and is still the process that was started (not a reused pid)."""
    return pid_alive(record.pid) and record.start_ticks > 0 and start_ticks(record.pid) == record.start_ticks


def stop_group(pgid: int, timeout_s: float = 15.0) -> None:
    """SIGTERM the process group, wait for every member to exit, SIGKILL what is left."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            _reap(pgid)
            if not group_members(pgid):
                return
            time.sleep(0.1)
    if group_members(pgid):
        raise RuntimeError(f"process group {pgid} survived SIGKILL: {group_members(pgid)}")


# ---- ports ----------------------------------------------------------------------------------------


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if host:port cannot be bound now: a listener, or any socket holding it as its local port (an
    outgoing connection's ephemeral source port counts too). The question to ask before starting a service."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR ignores lingering TIME_WAIT connections but still fails on a listener.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's state column
_ANY = {"00000000", "00000000000000000000000000000000"}


def _listeners(host: str) -> set[int] | None:
    """Ports with a TCP listener reachable at `host` (or on every address), from /proc/net/tcp{,6};
    None where the kernel tables cannot be read."""
    wanted = {socket.inet_aton(host)[::-1].hex().upper()} if host != "0.0.0.0" else set()
    ports: set[int] = set()
    try:
        tables = [Path("/proc/net/tcp").read_text(), Path("/proc/net/tcp6").read_text()]
    except OSError:
        return None
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 4 or fields[3] != _LISTEN:
                continue
            address, _, port_hex = fields[1].rpartition(":")
            if host == "0.0.0.0" or address in _ANY or address in wanted:
                ports.add(int(port_hex, 16))
    return ports


def port_listening(port: int, host: str = "127.0.0.1") -> bool:
    """True if a TCP listener serves host:port. Unlike `port_in_use`, a client connection that happens to
    use the port as its source port does not count: this is the question after a service has stopped."""
    listeners = _listeners(host)
    return port_in_use(port, host) if listeners is None else port in listeners


def port_owner(port: int) -> str | None:
    """'pid 123 (redis-server)' for the listener on `port`, when `ss` can tell (best effort)."""
    ss = shutil.which("ss")
    if ss is None:
        return None
    try:
        out = subprocess.run(
            [ss, "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    marker = 'users:(("'
    if marker not in out:
        return None
    name, _, rest = out.split(marker, 1)[1].partition('"')
    pid = rest.split("pid=", 1)[1].split(",", 1)[0] if "pid=" in rest else "?"
    return f"pid {pid} ({name})"


def wait_ports_free(ports: list[int], timeout_s: float = 10.0, host: str = "127.0.0.1") -> list[int]:
    """Wait until none of `ports` has a listener; return those still taken at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        busy = [p for p in ports if port_listening(p, host)]
        if not busy or time.monotonic() >= deadline:
            return busy
        time.sleep(0.1)


# ---- records --------------------------------------------------------------------------------------


class Supervisor:
    """Reads and writes the service records under `<state_dir>/run/`."""

    def __init__(self, state_dir: str | Path) -> None:
        self.run_dir = Path(state_dir) / "run"

    def _path(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def record(self, rec: ServiceRecord) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._path(rec.name).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(rec), indent=1))
        tmp.replace(self._path(rec.name))  # atomic: a concurrent `status` never reads half a file

    def get(self, name: str) -> ServiceRecord | None:
        try:
            return ServiceRecord(**json.loads(self._path(name).read_text()))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, TypeError):
            self._path(name).unlink(missing_ok=True)  # unreadable record: nothing can be trusted
            return None

    def records(self) -> list[ServiceRecord]:
        if not self.run_dir.is_dir():
            return []
        found = (self.get(p.stem) for p in sorted(self.run_dir.glob("*.json")))
        return [r for r in found if r is not None]

    def forget(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def running(self, name: str) -> ServiceRecord | None:
        """The record of `name` if its process is alive and still ours; stale records are dropped."""
        rec = self.get(name)
        if rec is None:
            return None
        if same_program(rec):
            return rec
        self._stop_orphans(rec)
        self.forget(name)
        return None

    @staticmethod
    def _stop_orphans(rec: ServiceRecord) -> None:
        # The leader died but workers of its group may linger. Only when the leader pid is free:
        # Linux does not hand out a pid that is still a live group's id, so the group is ours; a
        # live pid with another start time is someone else's process and is left alone.
        if not pid_alive(rec.pid) and group_members(rec.pid):
            stop_group(rec.pid)

    def stop(self, name: str, timeout_s: float = 15.0) -> tuple[bool, list[int]]:
        """Stop service `name` if ours and running. Returns (was_running, ports still busy)."""
        rec = self.get(name)
        if rec is None:
            return False, []
        was_running = same_program(rec)
        if was_running:
            stop_group(rec.pid, timeout_s)
        else:
            self._stop_orphans(rec)
        self.forget(name)
        busy = wait_ports_free(list(rec.ports.values())) if was_running else []
        return was_running, busy
