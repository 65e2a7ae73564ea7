"""The data registry as training uses it: the default registry of the local platform, and the exact
version a training run reads (`mlplat model train --data DIR` records one, `--data-version REF` picks one).

The run never reads the directory it was given: it reads the version back from the remote by content
address (ml/datasets/content.py), as a pod on the cluster does, so what it trained on is exactly what the
registry names.
"""

from __future__ import annotations

import re
from pathlib import Path

from ml.datasets.content import DatasetVersion, materialize
from ml.datasets.registry import DataRegistry, default_registry

LOCAL_REMOTE = "local"


def local_remote(registry_root: Path) -> Path:
    """The default registry's DVC remote: `dvc-remote` beside it (in the local platform's state directory)."""
    return registry_root.parent / "dvc-remote"


def default_name(path: Path) -> str:
    """A dataset's default name: its directory's name, in the registry's alphabet."""
    raw = Path(path).expanduser().resolve().name.lower()
    return re.sub(r"[^a-z0-9._-]+", "-", raw).strip("-.") or "dataset"


def open_or_create(explicit: Path | None, state_dir: Path) -> DataRegistry:
    """The registry at `explicit`, else the default one, created (with the local remote) when it does not
    exist yet; an explicit directory must already be a registry."""
    if explicit is not None:
        return DataRegistry(Path(explicit).expanduser())
    root = default_registry(state_dir)
    if root.exists() and any(root.iterdir()):
        return DataRegistry(root)
    return DataRegistry.init(root, {LOCAL_REMOTE: str(local_remote(root))}, LOCAL_REMOTE)


def training_data(*, data: Path | None, data_version: str | None, name: str | None, registry: Path | None,
                  remote: str | None, state_dir: Path, work: Path) -> tuple[DatasetVersion, Path]:
    """(the version a run trains on, the directory holding exactly its files).

    With `data`, the directory becomes the newest version of dataset `name` (nothing new when its content
    is already the newest) and is pushed to the remote; with `data_version`, that version is looked up.
    Either way the files are then read back from the remote into `work` by content address."""
    if (data is None) == (data_version is None):
        raise ValueError("give exactly one of data and data_version")
    if data_version is not None:
        reg = DataRegistry(Path(registry).expanduser() if registry else default_registry(state_dir))
        version = reg.resolve(data_version, remote)
    else:
        reg = open_or_create(registry, state_dir)
        version, _new = reg.add(data, name or default_name(data))  # type: ignore[arg-type]
        reg.push(remote)
        version = reg.resolve(f"{version.name}@{version.rev}", remote)
    materialize(version.location, version.md5, work)
    return version, work
