"""What training produces: the serving artifact (`TrainOutput`, with its `mlplat-model.json`) and the
result of registering it in MLflow (`RegistrationResult`).

A model's `train.py` returns a `TrainOutput`; ml/training/registration.py registers it and returns a
`RegistrationResult`; the model card (ml/training/card.py) is built from both. The runtimes and
`mlplat model evaluate` read the artifact's metadata back with `read_metadata`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.governance import GATES, GATES_AND_APPROVAL
from ml.training.gates import GateResult
from ml.training.tracking import CHALLENGER, CHAMPION

METADATA_FILE = "mlplat-model.json"
# Global feature importances a model may ship in its artifact ({feature: {measure: value}}, most important
# first); the model card shows them (ml/training/card.py).
IMPORTANCES_FILE = "importances.json"


@dataclass
class TrainOutput:
    name: str  # a registered model (contracts/model_registry.py)
    model_dir: Path  # serving artifact: algorithm save dir + reference.json + mlplat-model.json
    params: dict[str, Any]
    metrics: dict[str, float]  # on held-out data
    info: dict[str, Any] = field(default_factory=dict)  # data sizes etc., logged as params
    # Held-out metrics per data segment (e.g. per source), when the data has segments: the model card.
    segments: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class RegistrationResult:
    run_id: str
    version: str
    gate: GateResult
    champion: bool
    tracking_uri: str
    promotion: str = GATES  # the stack's promotion policy (contracts/governance.py)
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def pending_approval(self) -> bool:
        return self.gate.passed and not self.champion and self.promotion == GATES_AND_APPROVAL

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "version": self.version,
            "aliases": [CHALLENGER, *([CHAMPION] if self.champion else [])],
            "gates_passed": self.gate.passed,
            "gates": self.gate.summary(),
            "promotion": self.promotion,
            "pending_approval": self.pending_approval,
            "tracking_uri": self.tracking_uri,
        }


def write_metadata(model_dir: Path, name: str, metrics: dict[str, float], params: dict[str, Any]) -> None:
    """`mlplat-model.json`: what the runtime and `mlplat model evaluate` need to know about the artifact."""
    doc = {"name": name, "format": 1, "metrics": metrics, "params": params}
    (Path(model_dir) / METADATA_FILE).write_text(json.dumps(doc, indent=1, default=str))


def read_metadata(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir} is not an mlplat model artifact ({METADATA_FILE} missing)")
    return json.loads(path.read_text())
