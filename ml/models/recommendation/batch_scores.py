"""Batch scoring of the known readers: each reader's ranking computed at training time, served by lookup.

A `user_id` request makes the runtime read the reader's recent books from the online store
(`reader_recent_books`); the two-stage model then retrieves and ranks for that history, ~1 ms of CPU.
Both the history the store holds and the model are fixed between two materialisations of the reader
view, so the same answer can be computed once per reader when the model is trained, from the same
derivation of the reader view (`features.recent_histories`), and looked up at request time. This is
the usual batch-scoring pattern for recommendations, with one guard that keeps it exact: each entry
records the input it was computed from (the sorted modelled item rows of the history, which is all the
two-stage model reads), and the lookup answers only when the history read from the store gives the
same rows. A reader the table does not know, a history that changed since training, or a request that
carries its own `book_ids` takes the online path; a hit returns exactly what the online path would
(tests/ml/test_recommendation_two_stage.py checks it for every reader of the sample).

The table keeps the top `depth` (the runtime's largest k) of each reader: the two-stage ranking sorts
all candidates by score then item, so the top k is the first k of the top depth. A reader none of whose
books is modelled is left out: the popular-books fallback picks its top k among equal counts in no set
order, so its top k need not be a prefix of its top depth, and it costs next to nothing online anyway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.models.recommendation.two_stage import TwoStageRecommender

BATCH_SCORES_FILE = "batch_scores.npz"
DEPTH = 100  # answers kept per reader: the runtime's largest k


@dataclass
class BatchScores:
    """Per reader (``user_ids`` sorted): the history rows the answer was computed from, and the answer."""

    user_ids: np.ndarray  # readers, int64, ascending
    key_indptr: np.ndarray  # readers + 1: reader i's rows are key_rows[key_indptr[i]:key_indptr[i + 1]]
    key_rows: np.ndarray  # int64, the sorted modelled item rows of each reader's history
    book_ids: np.ndarray  # readers x depth, int64, -1 past the end of a shorter answer
    scores: np.ndarray  # readers x depth, float32

    def __post_init__(self) -> None:
        n = len(self.user_ids)
        if (self.key_indptr.shape != (n + 1,) or self.book_ids.shape != self.scores.shape
                or self.book_ids.shape[0] != n or np.any(np.diff(self.user_ids) <= 0)):
            raise ValueError("batch scores disagree on the number of readers or are not sorted by user_id")
        self._position = {int(u): i for i, u in enumerate(self.user_ids)}

    @property
    def depth(self) -> int:
        return int(self.book_ids.shape[1])

    @classmethod
    def build(cls, model: TwoStageRecommender, histories: Mapping[int, Sequence[int]], depth: int) -> BatchScores:
        """Score every reader of ``histories`` (user_id -> book ids, as the reader view stores them) with
        ``model.recommend_batch``: the online path's own code, so a hit cannot differ from it."""
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        known = model.known_items
        entries = []
        for user in sorted(int(u) for u in histories):
            history = [int(b) for b in histories[user] if int(b) in known]
            rows = model.history_rows(history)
            if len(rows):  # see the module docstring: the popular-books fallback is answered online
                entries.append((user, history, rows))
        users = np.array([u for u, _, _ in entries], dtype=np.int64)
        kept = [h for _, h, _ in entries]
        keys = [r for _, _, r in entries]
        ranked = model.recommend_batch(kept, depth) if len(users) else []
        book_ids = np.full((len(users), depth), -1, dtype=np.int64)
        scores = np.zeros((len(users), depth), dtype=np.float32)
        for i, answer in enumerate(ranked):
            book_ids[i, : len(answer)] = [b for b, _ in answer]
            scores[i, : len(answer)] = [s for _, s in answer]
        indptr = np.concatenate([[0], np.cumsum([len(k) for k in keys])]).astype(np.int64)
        rows = np.concatenate(keys).astype(np.int64) if keys else np.zeros(0, dtype=np.int64)
        return cls(users, indptr, rows, book_ids, scores)

    def lookup(self, user_id: int, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(book ids, scores) of the top k for this reader when ``rows`` (the sorted modelled item rows of
        the history just read) are the rows the entry was computed from and k <= depth; else None."""
        i = self._position.get(int(user_id))
        if i is None or k > self.depth:
            return None
        if not np.array_equal(self.key_rows[self.key_indptr[i] : self.key_indptr[i + 1]], rows):
            return None
        ids = self.book_ids[i, :k]
        found = int(np.count_nonzero(ids >= 0))
        return ids[:found], self.scores[i, :found]

    def save(self, directory: Path) -> None:
        np.savez(Path(directory) / BATCH_SCORES_FILE, user_ids=self.user_ids, key_indptr=self.key_indptr,
                 key_rows=self.key_rows, book_ids=self.book_ids, scores=self.scores)

    @classmethod
    def load(cls, directory: Path) -> BatchScores | None:
        """The table saved with a model version; None for a version trained before batch scoring."""
        path = Path(directory) / BATCH_SCORES_FILE
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as parts:
            return cls(parts["user_ids"], parts["key_indptr"], parts["key_rows"], parts["book_ids"], parts["scores"])
