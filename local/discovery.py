"""Finding the running platform from the local commands: the state directory and the ports `up` recorded.

`mlplat local up` records where it runs in `<state>/platform.json` (contracts/local_platform.py, which
the ML commands read as well). `status`, `down`, `chaos` and `pipeline run --local` take the ports from
that record, so a platform started with `--http-port 28080` (or MLPLAT_HTTP_PORT in another shell) is
found without repeating the flag; a port flag given on the command line still wins.
"""

from __future__ import annotations

from pathlib import Path

from contracts import local_platform
from local.config import LocalConfig, default_ports


def resolve_ports(state: Path, given: dict[str, int | None]) -> dict[str, int]:
    """Ports for a command on the platform in `state`: a flag given, else the recorded port, else the default
    (MLPLAT_<NAME>_PORT, then the built-in one)."""
    record = local_platform.read(state)
    ports = default_ports()
    if record is not None:
        ports.update({k: v for k, v in record.ports.items() if k in ports})
    ports.update({k: v for k, v in given.items() if v is not None})
    return ports


def recorded_models(state: Path) -> tuple[str, ...] | None:
    record = local_platform.read(state)
    return record.models if record is not None else None


def record(cfg: LocalConfig, services: list[str], phase: str) -> None:
    """Write (or update) the platform record of `cfg` with its phase."""
    local_platform.write(local_platform.PlatformRecord(
        state_dir=cfg.state_dir, host=cfg.host, ports=dict(cfg.ports), models=tuple(cfg.models),
        services=tuple(services), phase=phase))


def set_phase(state: Path, phase: str) -> None:
    """Change the phase of the record in `state`, if there is one."""
    found = local_platform.read(state)
    if found is None:
        return
    local_platform.write(local_platform.PlatformRecord(
        state_dir=found.state_dir, host=found.host, ports=found.ports, models=found.models,
        services=found.services, phase=phase))
