"""Supervisor: pid records, liveness by start time, stopping whole process groups, port checks."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from local.supervisor import (
    ServiceRecord,
    Supervisor,
    group_members,
    pid_alive,
    port_in_use,
    port_listening,
    port_owner,
    start_ticks,
    wait_ports_free,
)
from ml.serving.processes import free_port

# A "service" that listens on a port and has a worker child in its process group, like MLServer.
pytestmark = pytest.mark.integration  # real child processes, process groups and ports

SERVICE = textwrap.dedent("""
    import socket, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
    print(child.pid, flush=True)
    time.sleep(600)
""")


def _start(port: int) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", SERVICE, str(port)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    child = int(proc.stdout.readline())  # type: ignore[union-attr]  # stdout=PIPE
    deadline = time.monotonic() + 10
    while not port_in_use(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert port_in_use(port), f"the test service did not listen on {port} within 10 s"
    return proc, child


def _record(proc: subprocess.Popen[str], port: int, name: str = "svc", ticks: int | None = None) -> ServiceRecord:
    return ServiceRecord(name=name, pid=proc.pid, ports={"main": port}, cmdline=[sys.executable], log="",
                         start_ticks=start_ticks(proc.pid) if ticks is None else ticks)


def test_stop_kills_the_whole_group_and_frees_the_port(tmp_path):
    port = free_port()
    proc, child = _start(port)
    sup = Supervisor(tmp_path)
    sup.record(_record(proc, port))
    running = sup.running("svc")
    assert running is not None and (running.pid, running.ports) == (proc.pid, {"main": port})
    assert set(group_members(proc.pid)) == {proc.pid, child}

    was_running, busy = sup.stop("svc")

    assert was_running and busy == []
    assert not pid_alive(proc.pid) and not pid_alive(child)
    assert group_members(proc.pid) == []
    assert not port_in_use(port)
    assert sup.get("svc") is None


def test_a_reused_pid_is_never_signalled(tmp_path):
    """A record whose start time does not match belongs to a dead service: forget it, touch nothing."""
    port = free_port()
    proc, child = _start(port)
    try:
        sup = Supervisor(tmp_path)
        sup.record(_record(proc, port, ticks=start_ticks(proc.pid) - 1))
        assert sup.running("svc") is None
        assert sup.get("svc") is None  # the stale record is dropped
        assert pid_alive(proc.pid) and pid_alive(child)  # ... and the unrelated process lives on
        sup.record(_record(proc, port, ticks=start_ticks(proc.pid) + 5))
        was_running, _ = sup.stop("svc")
        assert not was_running and pid_alive(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_workers_left_behind_by_a_dead_leader_are_stopped(tmp_path):
    port = free_port()
    proc, child = _start(port)
    rec = _record(proc, port)
    proc.kill()
    proc.wait(timeout=10)
    assert pid_alive(child)  # the worker survived its leader, still in the leader's group
    sup = Supervisor(tmp_path)
    sup.record(rec)
    assert sup.running("svc") is None
    deadline = time.monotonic() + 10
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child)


def test_garbled_record_is_dropped(tmp_path):
    sup = Supervisor(tmp_path)
    sup.run_dir.mkdir(parents=True)
    (sup.run_dir / "mlflow.json").write_text("{not json")
    assert sup.get("mlflow") is None
    assert sup.records() == []


def test_port_checks():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert port_in_use(port)
        assert wait_ports_free([port], timeout_s=0.3) == [port]
        assert shutil.which("ss"), "ss is not installed: run scripts/bootstrap.sh system (Debian package iproute2)"
        # This very process listens: the lookup must name it, not come back empty.
        assert (port_owner(port) or "").startswith(f"pid {os.getpid()} (python")
    assert port_owner(port) is None  # and nothing once it is closed
    assert not port_in_use(port)
    assert wait_ports_free([port], timeout_s=1) == []


def test_a_source_port_is_in_use_but_not_listening():
    # After `down`, another process's outgoing connection may hold one of the freed ports as its ephemeral
    # source port: it blocks a bind, but nothing listens there, so `down` must not call it busy.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.socket() as client:
            client.connect(server.getsockname())
            source = client.getsockname()[1]
            assert port_in_use(source)
            assert not port_listening(source)
            assert wait_ports_free([source], timeout_s=0.3) == []
            listener = server.getsockname()[1]
            assert port_listening(listener)
            assert port_listening(listener, "0.0.0.0")


def test_a_listener_on_every_address_serves_loopback():
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        assert port_listening(s.getsockname()[1])


def test_a_pid_that_does_not_exist_is_not_alive():
    missing = 2**22 + 7  # above Linux's largest pid_max
    assert not pid_alive(missing)
    assert start_ticks(missing) == 0
    assert group_members(missing) == []
