"""Stage one of the two-stage recommender: candidate retrieval over learned embeddings with FAISS.

The embeddings are a low-rank factorisation of the (popularity-debiased) EASE item x item matrix
B ~ U S V': every book gets a *history* embedding (row of U S: what reading it says about the
reader) and an *item* embedding (row of V: how it answers that). A request's query vector is the sum
of the history embeddings of the books read, and the candidates are the items with the largest inner
product, found by an exact FAISS inner-product index (``IndexFlatIP``; 10k items need no
approximate index). The books already read are dropped after the search, so the index is asked for
``candidates + len(history)`` neighbours.

Threads: FAISS parallelises one small query over OpenMP threads, which on this machine made an
exact top-100 over 10k items ~20x slower with two threads than with one (docs in the README), so
``pin_threads()`` sets one OpenMP thread for the serving process; the training batch search does
the same because the whole run is measured on 2 shared cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd

INDEX_FILE = "retrieval.faiss"
HISTORY_EMBEDDINGS_FILE = "history_embeddings.npy"
RETRIEVAL_META_FILE = "retrieval.json"


def pin_threads(threads: int = 1) -> None:
    """One OpenMP thread for FAISS (measured fastest for a single query; see the module docstring)."""
    faiss.omp_set_num_threads(int(threads))


def factorise(weights: np.ndarray, interactions: sp.csr_matrix, dim: int, seed: int = 0) -> tuple[np.ndarray,
                                                                                             np.ndarray]:
    """(history, item) embeddings, both items x dim float32, with history @ item.T ~ weights.

    EASE's item x item matrix is a function of X'X, so its row space is spanned by the right singular
    vectors of the user x item matrix X. The history embeddings are the top ``dim`` of them (V_d, from a
    randomized SVD of the sparse X: cheap), the item embeddings the projection of the weights onto them
    (W' V_d, one GEMM), so that a history's query, x V_d, scores every item with x V_d V_d' W: the EASE
    score of the part of the history that the top ``dim`` directions of taste explain. On a validation
    split of the shared data this kept 93 % of exact EASE's recall@100 at 256 dimensions (README).
    """
    n = weights.shape[0]
    if weights.ndim != 2 or weights.shape != (n, n) or interactions.shape[1] != n:
        raise ValueError(f"weights {weights.shape} and interactions {interactions.shape} must share the items")
    dim = int(dim)
    if not 1 <= dim < min(interactions.shape):
        raise ValueError(f"embedding dim must be in 1..{min(interactions.shape) - 1}, got {dim}")
    _, _, vt = randomized_svd(interactions, n_components=dim, n_iter=5, random_state=seed)
    history = np.ascontiguousarray(vt.T, dtype=np.float32)
    item = np.ascontiguousarray(weights.T @ history, dtype=np.float32)
    return history, item


def _contains(sorted_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Which of ``rows`` are in ``sorted_rows`` (what ``np.isin`` answers; a binary search per row is
    several times cheaper for one request's ~20 history rows and ~120 neighbours)."""
    if not len(sorted_rows):
        return np.zeros(len(rows), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_rows, rows), len(sorted_rows) - 1)
    return sorted_rows[at] == rows


class Retriever:
    """Exact inner-product search of the query (sum of history embeddings) over the item embeddings."""

    def __init__(self, history_embeddings: np.ndarray, index: faiss.Index) -> None:
        if history_embeddings.shape != (index.ntotal, index.d):
            raise ValueError(
                f"history embeddings {history_embeddings.shape} do not match the index ({index.ntotal}, {index.d})"
            )
        self.history_embeddings = np.ascontiguousarray(history_embeddings, dtype=np.float32)
        self.index = index

    @classmethod
    def build(cls, history_embeddings: np.ndarray, item_embeddings: np.ndarray) -> Retriever:
        index = faiss.IndexFlatIP(item_embeddings.shape[1])
        index.add(np.ascontiguousarray(item_embeddings, dtype=np.float32))
        return cls(history_embeddings, index)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def queries(self, histories: list[np.ndarray]) -> np.ndarray:
        """One query vector per history (row indices of modelled items): the sum of their embeddings."""
        out = np.zeros((len(histories), self.dim), dtype=np.float32)
        for i, rows in enumerate(histories):
            if len(rows):
                out[i] = self.history_embeddings[rows].sum(axis=0)
        return out

    def search(self, histories: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
        """(item rows, scores), each len(histories) x n: the top n per history, its own items removed.

        Rows are -1 (score -inf) where fewer than n items are left.
        """
        if n < 1:
            raise ValueError(f"number of candidates must be >= 1, got {n}")
        longest = max((len(h) for h in histories), default=0)
        want = min(n + longest, self.index.ntotal)
        scores, rows = self.index.search(self.queries(histories), want)
        out_rows = np.full((len(histories), n), -1, dtype=np.int64)
        out_scores = np.full((len(histories), n), -np.inf, dtype=np.float32)
        for i, history in enumerate(histories):
            keep = ~_contains(np.sort(np.asarray(history, dtype=np.int64)), rows[i]) & (rows[i] >= 0)
            r, s = rows[i][keep][:n], scores[i][keep][:n]
            out_rows[i, : len(r)] = r
            out_scores[i, : len(s)] = s
        return out_rows, out_scores

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        faiss.write_index(self.index, str(directory / INDEX_FILE))
        np.save(directory / HISTORY_EMBEDDINGS_FILE, self.history_embeddings)
        meta = {"index": type(self.index).__name__, "dim": self.dim, "items": int(self.index.ntotal),
                "faiss": faiss.__version__}
        (directory / RETRIEVAL_META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> Retriever:
        directory = Path(directory)
        path = directory / INDEX_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the model version has no retrieval index")
        index = faiss.read_index(str(path))
        return cls(np.load(directory / HISTORY_EMBEDDINGS_FILE, allow_pickle=False), index)
