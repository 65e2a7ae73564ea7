"""Training reference distributions and PSI drift over a sliding window of live traffic.

The training pipeline saves, next to the serving artifact, `reference.json`: for the score and each
numeric input, quantile bin edges of the training data and the share of training rows per bin. The
runtime keeps the bin index of the last N observations per feature (a ring buffer, binned in bulk
when read) and reports the Population Stability Index of the window against the
reference. PSI < 0.1 is usually read as stable, 0.1-0.25 as a moderate shift, > 0.25 as drift.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REFERENCE_FILE = "reference.json"
REFERENCE_SAMPLE_FILE = "reference_sample.json"  # training rows of the monitored columns (drift reports)
SAMPLE_ROWS = 5000


def sample_rows(columns: dict[str, np.ndarray | list[float]], rows: int = SAMPLE_ROWS,
                seed: int = 0) -> dict[str, list[float]]:
    """Up to `rows` rows of the monitored columns (the same rows of each column, when lengths agree)."""
    lengths = {len(v) for v in columns.values()}
    out: dict[str, list[float]] = {}
    rng = np.random.default_rng(seed)
    shared = None
    if len(lengths) == 1:
        n = lengths.pop()
        shared = np.sort(rng.choice(n, size=min(n, rows), replace=False)) if n > rows else np.arange(n)
    for name, values in columns.items():
        x = np.asarray(values, dtype=float)
        idx = shared if shared is not None else (
            np.sort(rng.choice(len(x), size=rows, replace=False)) if len(x) > rows else np.arange(len(x)))
        out[name] = [float(v) for v in x[idx]]
    return out
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
    # The training rows themselves (a seeded sample), for the Evidently drift reports; not for the PSI.
    sample: dict[str, list[float]] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_columns(cls, columns: dict[str, np.ndarray | list[float]], bins: int = 10) -> Reference:
        return cls({name: feature_reference(v, bins) for name, v in columns.items()}, sample_rows(columns))

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / REFERENCE_FILE
        doc = {
            "version": 1,
            "features": {
                n: {"edges": list(f.edges), "fractions": list(f.fractions)} for n, f in self.features.items()
            },
        }
        path.write_text(json.dumps(doc, indent=1))
        if self.sample is not None:
            (Path(directory) / REFERENCE_SAMPLE_FILE).write_text(json.dumps({"version": 1, "columns": self.sample}))
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


class _Window:
    """The bin indices of the last `size` finite observations of one feature, in a ring buffer.

    Observations are only appended to a list on the request path; they are binned (one vectorized
    `searchsorted`) and written into the ring when the window is read, so a request pays a list
    append per feature instead of a bisect and deque update per value.
    """

    def __init__(self, ref: FeatureReference, size: int) -> None:
        self.ref = ref
        self.size = size
        self._edges = np.asarray(ref.edges, dtype=float)
        self._ring = np.zeros(size, dtype=np.intp)
        self._next = 0  # ring position of the next observation
        self._filled = 0
        self._pending: list[float] = []

    def add_many(self, values: list[float]) -> None:
        self._pending.extend(values)
        if len(self._pending) > 4 * self.size:  # never hold more than a few windows unbinned
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        x = np.asarray(self._pending, dtype=float)
        self._pending = []
        x = x[np.isfinite(x)][-self.size:]
        if x.size == 0:
            return
        bins = np.searchsorted(self._edges, x, side="right")
        end = self._next + bins.size
        if end <= self.size:
            self._ring[self._next:end] = bins
        else:
            first = self.size - self._next
            self._ring[self._next:] = bins[:first]
            self._ring[:end - self.size] = bins[first:]
        self._next = end % self.size
        self._filled = min(self.size, self._filled + bins.size)

    def __len__(self) -> int:
        self._flush()
        return self._filled

    def psi(self) -> float | None:
        n = len(self)
        if n == 0:
            return None
        counts = np.bincount(self._ring[:n], minlength=len(self.ref.fractions))
        return psi(self.ref.fractions, counts / n)


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
        if isinstance(values, np.ndarray):
            values = values.ravel().tolist()
        w.add_many(values)

    def psi(self) -> dict[str, float]:
        """PSI of each feature whose window holds at least `min_samples` observations."""
        out = {}
        for name, w in self._windows.items():
            if len(w) >= self.min_samples:
                value = w.psi()
                if value is not None:
                    out[name] = value
        return out
