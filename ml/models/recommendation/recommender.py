"""The servable recommender: an item-item weight matrix plus a popularity fallback.

Every model here (EASE, item-kNN, their blend, popularity) reduces to the same serving form:
``score = sum of the weight rows of the history books``, history books masked, top-k taken.
An empty history falls back to the most popular books. The artefact is plain numpy files plus
JSON (no pickle), and carries titles and authors so that serving needs no other file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

FORMAT_VERSION = 1


class UnknownItemError(ValueError):
    """History contains book ids the model's catalogue does not know (a client error: 4xx)."""

    def __init__(self, unknown: list[int]) -> None:
        self.unknown = sorted(set(unknown))
        super().__init__(f"unknown book id(s) in history: {self.unknown}")


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


class Recommender:
    """Top-k book recommendation from a list of recently read book ids."""

    def __init__(
        self,
        item_ids: np.ndarray,
        weights: np.ndarray | sp.csr_matrix | None,
        popularity: np.ndarray,
        catalog: dict[int, tuple[str, str]],
        params: dict | None = None,
    ) -> None:
        self.item_ids = np.asarray(item_ids, dtype=np.int64)  # modelled (recommendable) books
        n = len(self.item_ids)
        if weights is not None and weights.shape != (n, n):
            raise ValueError(f"weights shape {weights.shape} does not match {n} items")
        if popularity.shape != (n,):
            raise ValueError(f"popularity shape {popularity.shape} does not match {n} items")
        self.weights = weights
        self.popularity = np.asarray(popularity, dtype=np.float32)
        self.catalog = catalog  # book_id -> (title, authors), every book of the books file
        self.params = dict(params or {})
        self.known_items: set[int] = set(catalog)
        self._index = {int(b): i for i, b in enumerate(self.item_ids)}
        self._popular = np.argsort(-self.popularity, kind="stable")

    # -- scoring ---------------------------------------------------------------------------------
    def _indices(self, history: Sequence[int]) -> list[int]:
        if isinstance(history, (str, bytes)) or not isinstance(history, Sequence | np.ndarray):
            raise ValueError(f"history must be a list of book ids, got {type(history).__name__}")
        bad = [b for b in history if isinstance(b, bool) or not isinstance(b, (int, np.integer))]
        if bad:
            raise ValueError(f"history must contain integer book ids, got {bad[:5]!r}")
        unknown = [int(b) for b in history if int(b) not in self.known_items]
        if unknown:
            raise UnknownItemError(unknown)
        # Known books that were too rarely rated to be modelled carry no signal; they are skipped.
        return sorted({self._index[int(b)] for b in history if int(b) in self._index})

    def _top(self, scores: np.ndarray, exclude: list[int], k: int) -> list[tuple[int, float]]:
        scores = scores.astype(np.float32, copy=True)
        scores[exclude] = -np.inf
        k_eff = min(k, len(scores) - len(exclude))
        if k_eff <= 0:
            return []
        top = np.argpartition(-scores, k_eff - 1)[:k_eff]
        top = top[np.lexsort((top, -scores[top]))]
        return [(int(self.item_ids[i]), float(scores[i])) for i in top]

    def _scores(self, rows: list[int]) -> np.ndarray:
        if not rows or self.weights is None:
            return self.popularity
        if sp.isspmatrix_csr(self.weights):
            # Sum of the history's CSR rows without scipy's row slicing (~190 us -> ~40 us per request on
            # the 2-core dev box, same top-k on 200 recorded requests; scores agree to float32 rounding).
            w = self.weights
            spans = [(w.indptr[r], w.indptr[r + 1]) for r in rows]
            columns = np.concatenate([w.indices[a:b] for a, b in spans])
            values = np.concatenate([w.data[a:b] for a, b in spans])
            return np.bincount(columns, weights=values, minlength=w.shape[1])
        if sp.issparse(self.weights):
            return np.asarray(self.weights[rows].sum(axis=0)).ravel()
        return self.weights[rows].sum(axis=0)

    def recommend(self, history: list[int], k: int = 10) -> list[tuple[int, float]]:
        """Top-k (book_id, score) not in ``history``; most popular books when the history is empty."""
        k = _check_k(k)
        rows = self._indices(history)
        return self._top(self._scores(rows), rows, k)

    def recommend_batch(self, histories: Sequence[list[int]], k: int = 10) -> list[list[tuple[int, float]]]:
        """``recommend`` for many histories; one sparse-dense product instead of a Python loop."""
        k = _check_k(k)
        rows = [self._indices(h) for h in histories]
        if self.weights is None or not rows:
            return [self._top(self.popularity, r, k) for r in rows]
        n = len(self.item_ids)
        indptr = np.cumsum([0] + [len(r) for r in rows])
        indices = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(indptr[-1]))
        hist = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(rows), n))
        scores = hist @ self.weights
        scores = scores.toarray() if sp.issparse(scores) else np.asarray(scores)
        out = []
        for i, r in enumerate(rows):
            out.append(self._top(scores[i] if r else self.popularity, r, k))
        return out

    def title(self, book_id: int) -> str:
        try:
            return self.catalog[int(book_id)][0]
        except (KeyError, TypeError, ValueError):
            raise UnknownItemError([book_id]) from None

    def authors(self, book_id: int) -> str:
        try:
            return self.catalog[int(book_id)][1]
        except (KeyError, TypeError, ValueError):
            raise UnknownItemError([book_id]) from None

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write item_ids.npy, popularity.npy, weights (.npy dense or .npz CSR parts), catalog/meta JSON."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "item_ids.npy", self.item_ids)
        np.save(directory / "popularity.npy", self.popularity)
        kind = "none"
        if sp.issparse(self.weights):
            w = self.weights.tocsr()
            np.savez(directory / "weights_csr.npz", data=w.data, indices=w.indices, indptr=w.indptr)
            kind = "csr"
        elif self.weights is not None:
            np.save(directory / "weights.npy", self.weights)
            kind = "dense"
        ids = sorted(self.catalog)
        catalog = {
            "book_id": ids,
            "title": [self.catalog[b][0] for b in ids],
            "authors": [self.catalog[b][1] for b in ids],
        }
        (directory / "catalog.json").write_text(json.dumps(catalog, ensure_ascii=False))
        meta = {"format_version": FORMAT_VERSION, "weights": kind, "items": len(self.item_ids)}
        meta["params"] = self.params
        (directory / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> Recommender:
        directory = Path(directory)
        meta_path = directory / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: not a saved recommendation model (meta.json missing)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{meta_path}: unsupported format_version {meta.get('format_version')!r}")
        item_ids = np.load(directory / "item_ids.npy", allow_pickle=False)
        popularity = np.load(directory / "popularity.npy", allow_pickle=False)
        n = len(item_ids)
        weights: np.ndarray | sp.csr_matrix | None = None
        if meta["weights"] == "csr":
            with np.load(directory / "weights_csr.npz", allow_pickle=False) as parts:
                weights = sp.csr_matrix((parts["data"], parts["indices"], parts["indptr"]), shape=(n, n))
        elif meta["weights"] == "dense":
            weights = np.load(directory / "weights.npy", allow_pickle=False)
        raw = json.loads((directory / "catalog.json").read_text())
        catalog = {int(b): (t, a) for b, t, a in zip(raw["book_id"], raw["title"], raw["authors"], strict=True)}
        return cls(item_ids, weights, popularity, catalog, params=meta.get("params"))
