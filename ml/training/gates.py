"""Quality gates: the metric floors a model version must reach to become `champion`.

The floors live in the typed stack config (`models.<name>.qualityGates`, stacks/schema.py), whose
defaults are each model's `ModelSpec.quality_gates` (contracts/model_registry.py). Training reads them
through `load_gates` only, so the pipeline never hard-codes a threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from contracts import model_registry


@dataclass(frozen=True)
class GateCheck:
    metric: str
    threshold: float
    value: float | None  # None: the evaluation did not produce this metric (counts as a failure)

    @property
    def passed(self) -> bool:
        return self.value is not None and not math.isnan(self.value) and self.value >= self.threshold


@dataclass(frozen=True)
class GateResult:
    checks: tuple[GateCheck, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def summary(self) -> str:
        parts = [
            f"{c.metric}={'missing' if c.value is None else f'{c.value:.4f}'} "
            f"{'>=' if c.passed else '<'} {c.threshold} ({'pass' if c.passed else 'FAIL'})"
            for c in self.checks
        ]
        return "; ".join(parts) or "no gates configured"


def load_gates(name: str, stack_file: str | Path | None = None) -> dict[str, float]:
    """Metric floors for model `name`: from a stack file if given, else the schema's defaults."""
    model_registry.get(name)  # ValueError naming the registered models
    # Imported lazily: stacks/ is light (pydantic + yaml) but not needed by the serving runtimes.
    from stacks.schema import ModelsConfig

    if stack_file is not None:
        from stacks.config import load_stack_file

        models = load_stack_file(stack_file).models
    else:
        models = ModelsConfig()
    return dict(models[name].quality_gates)


def check_gates(metrics: dict[str, float], gates: dict[str, float]) -> GateResult:
    """Compare evaluation metrics with the floors; a metric missing from `metrics` fails its gate."""
    checks = []
    for metric, threshold in sorted(gates.items()):
        value = metrics.get(metric)
        checks.append(GateCheck(metric, float(threshold), None if value is None else float(value)))
    return GateResult(tuple(checks))
