"""Training reference distributions and PSI drift over a sliding window of live traffic.

The training pipeline saves, next to the serving artifact, `reference.json`: for the score and each
numeric input, quantile bin edges of the training data and the share of training rows per bin. The
runtime keeps the bin index of the last N observations per feature (a ring buffer with running
counts, O(1) per observation) and reports the Population Stability Index of the window against the
reference. PSI < 0.1 is usually read as stable, 0.1-0.25 as a moderate shift, > 0.25 as drift.
"""

from __future__ import annotations

import bisect
import json
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REFERENCE_FILE = "reference.json"
_EPS = 1e-4  # floor for empty bins, so log() stays finite


@dataclass(frozen=True)
class FeatureReference:
    edges: tuple[float, ...]  # interior bin edges; bin i holds values in [edges[i-1], edges[i])
    fractions: tuple[float, ...]  # len(edges) + 1 shares of training rows, summing to 1

    def bin_of(self, value: float) -> int:
        return bisect.bisect_right(self.edges, value)


def feature_reference(values: np.ndarray | list[float], bins: int = 10) -> FeatureReference:
    """Quantile bins of a training column; discrete columns get one bin per distinct value."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("cannot build a drift reference from an empty or all-NaN column")
    distinct = np.unique(x)
    if distinct.size <= bins:
        # Midpoints between distinct values: each value gets its own bin.
        edges = (distinct[:-1] + distinct[1:]) / 2
    else:
        edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]))
    idx = np.searchsorted(edges, x, side="right")
    counts = np.bincount(idx, minlength=edges.size + 1)
    return FeatureReference(tuple(float(e) for e in edges), tuple(float(c) for c in counts / counts.sum()))


def psi(expected: tuple[float, ...] | np.ndarray, actual: tuple[float, ...] | np.ndarray) -> float:
    """Population Stability Index between two bin-share vectors of equal length."""
    e = np.maximum(np.asarray(expected, dtype=float), _EPS)
    a = np.maximum(np.asarray(actual, dtype=float), _EPS)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass
class Reference:
    """The reference of every monitored feature of one model (`score` is the model output)."""

    features: dict[str, FeatureReference]

    @classmethod
    def from_columns(cls, columns: dict[str, np.ndarray | list[float]], bins: int = 10) -> Reference:
        return cls({name: feature_reference(v, bins) for name, v in columns.items()})

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / REFERENCE_FILE
        doc = {
            "version": 1,
            "features": {
                n: {"edges": list(f.edges), "fractions": list(f.fractions)} for n, f in self.features.items()
            },
        }
        path.write_text(json.dumps(doc, indent=1))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Reference:
        path = Path(directory) / REFERENCE_FILE
        doc = json.loads(path.read_text())
        if doc.get("version") != 1:
            raise ValueError(f"{path}: unsupported reference version {doc.get('version')!r}")
        return cls(
            {n: FeatureReference(tuple(f["edges"]), tuple(f["fractions"])) for n, f in doc["features"].items()}
        )


@dataclass
class _Window:
    ref: FeatureReference
    size: int
    bins: deque[int] = field(default_factory=deque)
    counts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.ref.fractions)

    def add(self, value: float) -> None:
        if not math.isfinite(value):
            return
        b = self.ref.bin_of(value)
        self.bins.append(b)
        self.counts[b] += 1
        if len(self.bins) > self.size:
            self.counts[self.bins.popleft()] -= 1

    def psi(self) -> float | None:
        n = len(self.bins)
        if n == 0:
            return None
        return psi(self.ref.fractions, [c / n for c in self.counts])


class DriftMonitor:
    """Sliding-window PSI per feature. Not thread-safe: MLServer calls a model from one event loop."""

    def __init__(self, reference: Reference, window: int = 1000, min_samples: int = 100) -> None:
        if window < 1 or min_samples < 1:
            raise ValueError("window and min_samples must be >= 1")
        self.window = window
        self.min_samples = min_samples
        self._windows = {n: _Window(r, window) for n, r in reference.features.items()}

    @property
    def features(self) -> list[str]:
        return list(self._windows)

    def observe(self, name: str, values: np.ndarray | list[float]) -> None:
        w = self._windows.get(name)
        if w is None:
            return
        for v in np.asarray(values, dtype=float).ravel():
            w.add(float(v))

    def psi(self) -> dict[str, float]:
        """PSI of each feature whose window holds at least `min_samples` observations."""
        out = {}
        for name, w in self._windows.items():
            if len(w.bins) >= self.min_samples:
                value = w.psi()
                if value is not None:
                    out[name] = value
        return out
