"""Write an MLServer model repository: `settings.json` plus one `<model>/model-settings.json` each.

Used by the tests, `mlplat bench models` and the local platform; the container image
(docker/model-server/Dockerfile) gets the same layout from Seldon's Model CRs instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.model_slots import explainer_runtimes, model_runtimes

BARE = "bare-onnx"  # the benchmark baseline's runtime kind and served name (not a model)
EXTRA_RUNTIMES = {BARE: "ml.serving.bare.BareOnnxRuntime"}


def runtimes() -> dict[str, str]:
    """Runtime kind -> class path: every registered model's runtime, its explainer's (`<name>-explainer`),
    plus `EXTRA_RUNTIMES`."""
    return {**model_runtimes(), **explainer_runtimes(), **EXTRA_RUNTIMES}


@dataclass
class ModelEntry:
    name: str  # MLServer model name (URL path /v2/models/<name>/infer)
    kind: str  # key of runtimes()
    uri: str  # local directory (absolute) or models:/<name>@<alias>
    extra: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        kinds = runtimes()
        if self.kind not in kinds:
            raise ValueError(f"unknown runtime kind {self.kind!r}; expected one of {', '.join(kinds)}")
        uri = self.uri
        if "://" not in uri and not uri.startswith(("models:/", "runs:/")):
            uri = str(Path(uri).resolve())
        return {
            "name": self.name,
            "implementation": kinds[self.kind],
            "parameters": {"uri": uri, "extra": self.extra},
        }


def write_repository(
    root: str | Path,
    models: list[ModelEntry],
    http_port: int = 8080,
    grpc_port: int = 8081,
    metrics_port: int = 8082,
    parallel_workers: int = 0,
    host: str = "127.0.0.1",
) -> Path:
    """Create the repository under `root`; return it. parallel_workers=0 serves in the main process
    (lowest latency for small models; metrics then come from the default Prometheus registry)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    settings = {
        "debug": False,
        "host": host,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": parallel_workers,
        "load_models_at_startup": True,
        "gzip_enabled": False,
    }
    (root / "settings.json").write_text(json.dumps(settings, indent=1))
    for entry in models:
        d = root / entry.name
        d.mkdir(exist_ok=True)
        (d / "model-settings.json").write_text(json.dumps(entry.settings(), indent=1))
    return root
