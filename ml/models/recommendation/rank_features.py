"""Features of stage two (ranking): one row per (request, candidate book).

Item features are a per-book table built once at training time and shipped with the model version:
the catalogue features of the Feast `book_features` view (average rating, ratings count,
publication year, read back from the offline store by the pipeline's read-features step), the
book's genres (goodbooks shelf names, multi-hot over the most common ones), its first author, and
statistics of the training ratings (how often and how well it was rated). Serving then needs no
store round trip per candidate; the table is the materialised view as of training.

History features describe the request (length, popularity and rating level of what was read), and
match features relate the two: the exact EASE score, item-kNN co-occurrence (sum and maximum over
the history), genre match (cosine between the candidate's genres and the history's genre profile),
author match, and the retrieval score and rank. Everything is vectorised over the ~100 candidates of
one request so a request costs a few hundred microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ITEM_FEATURES_FILE = "item_features.npz"
# goodbooks titles name a book's series as "Title (Series Name, #3)".
SERIES_PATTERN = r"\((?P<name>[^()#]+?),?\s*#(?P<number>\d+(?:\.\d+)?)[^()]*\)\s*$"
TOP_GENRES = 200  # shelf names kept (the long tail is noise: spellings of the same shelf)

FEATURE_NAMES = (
    "retrieval_score", "retrieval_rank", "ease_score", "ease_rank", "ease_share",
    "knn_sum", "knn_max", "genre_match", "author_count", "author_share", "series_count", "series_number",
    "log_count", "train_mean_rating", "train_like_share", "average_rating", "log_ratings_count",
    "publication_year", "history_length", "history_log_count", "history_average_rating",
    "count_vs_history",
)  # fmt: skip


@dataclass
class ItemTable:
    """Per modelled item (rows aligned with the recommender's ``item_ids``)."""

    numeric: np.ndarray  # items x 6: log_count, train_mean_rating, train_like_share, avg rating, log ratings, year
    genres: np.ndarray  # items x TOP_GENRES float32, rows L2-normalised (zeros when unknown)
    author: np.ndarray  # items, int64 author id (first author); -1 unknown
    series: np.ndarray  # items, int64 series id from the title's "(Series, #n)"; -1 none
    series_number: np.ndarray  # items, float32 n of "#n" (0 when not in a series)

    def save(self, directory: Path) -> None:
        np.savez(Path(directory) / ITEM_FEATURES_FILE, numeric=self.numeric, genres=self.genres, author=self.author,
                 series=self.series, series_number=self.series_number)

    @classmethod
    def load(cls, directory: Path) -> ItemTable:
        with np.load(Path(directory) / ITEM_FEATURES_FILE, allow_pickle=False) as parts:
            return cls(parts["numeric"], parts["genres"], parts["author"], parts["series"], parts["series_number"])


def build_item_table(
    item_ids: np.ndarray, ratings: pd.DataFrame, books: pd.DataFrame | None, genres: pd.DataFrame | None
) -> ItemTable:
    """The item table of ``item_ids`` from the training ratings, the books file and the genres file."""
    ids = pd.Index(np.asarray(item_ids, dtype=np.int64))
    by_book = ratings.groupby("book_id")["rating"]
    count = by_book.size().reindex(ids).fillna(0).to_numpy(dtype=np.float64)
    mean = by_book.mean().reindex(ids).fillna(0).to_numpy(dtype=np.float64)
    liked = (ratings["rating"] >= 4).astype(np.float64).groupby(ratings["book_id"]).mean()
    like = liked.reindex(ids).fillna(0).to_numpy(dtype=np.float64)
    avg = np.zeros(len(ids))
    ratings_count = np.zeros(len(ids))
    year = np.zeros(len(ids))
    author = np.full(len(ids), -1, dtype=np.int64)
    series = np.full(len(ids), -1, dtype=np.int64)
    series_number = np.zeros(len(ids), dtype=np.float32)
    if books is not None:
        b = books.drop_duplicates("book_id").set_index("book_id").reindex(ids)
        avg = b["average_rating"].astype(float).fillna(0).to_numpy()
        ratings_count = b["ratings_count"].astype(float).fillna(0).to_numpy()
        year = b["original_publication_year"].astype(float).fillna(0).clip(lower=1000).to_numpy()
        first = b["authors"].fillna("").astype(str).str.split(",").str[0].str.strip().str.lower()
        codes, _ = pd.factorize(first)
        author = np.where(first.to_numpy() == "", -1, codes).astype(np.int64)
        found = b["title"].fillna("").astype(str).str.extract(SERIES_PATTERN)
        name = found["name"].fillna("").str.strip().str.lower()
        codes, _ = pd.factorize(name)
        series = np.where(name.to_numpy() == "", -1, codes).astype(np.int64)
        series_number = pd.to_numeric(found["number"], errors="coerce").fillna(0).to_numpy(dtype=np.float32)
    numeric = np.column_stack([np.log1p(count), mean, like, avg, np.log1p(ratings_count), year]).astype(np.float32)
    return ItemTable(numeric, _genre_matrix(ids, genres), author, series, series_number)


def _genre_matrix(ids: pd.Index, genres: pd.DataFrame | None) -> np.ndarray:
    out = np.zeros((len(ids), TOP_GENRES), dtype=np.float32)
    if genres is None or genres.empty:
        return out
    lists = genres.drop_duplicates("book_id").set_index("book_id")["genres"].reindex(ids).fillna("")
    split = lists.str.split(",").map(lambda xs: [x.strip() for x in xs if x.strip()])
    vocab = pd.Series([g for xs in split for g in xs]).value_counts().index[:TOP_GENRES]
    column = {g: j for j, g in enumerate(vocab)}
    for i, names in enumerate(split):
        for g in names:
            j = column.get(g)
            if j is not None:
                out[i, j] = 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1.0, norms)


def _gather_rows(w: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(columns, values) of the CSR rows ``rows``, concatenated in that order, without a Python loop."""
    starts = w.indptr[rows]
    lengths = w.indptr[rows + 1] - starts
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    positions = np.arange(int(lengths.sum()), dtype=np.int64) + offsets
    return w.indices[positions], w.data[positions]


def _sums_at(w: sp.csr_matrix, rows: np.ndarray, slot: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum and max over the CSR rows ``rows`` of an item x item matrix, for the m candidate columns only
    (``slot`` maps an item to its candidate position, -1 for the other items). Each candidate's sum adds
    the same values in the same order as a sum over all columns would, so the result is the same."""
    columns, values = _gather_rows(w, rows)
    position = slot[columns]
    hit = position >= 0
    position, values = position[hit], values[hit]
    total = np.bincount(position, weights=values, minlength=m).astype(np.float32)
    peak = np.zeros(m, np.float32)
    np.maximum.at(peak, position, values)
    return total, peak


def _shared(group: np.ndarray, history: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Per candidate, how many history books share its group id (author, series); 0 for id -1."""
    ids = group[history]
    ids = ids[ids >= 0]
    cand = group[candidates]
    if not len(ids):
        return np.zeros(len(candidates), np.float32)
    return (cand[:, None] == ids[None, :]).sum(axis=1).astype(np.float32)  # cand -1 never equals an id >= 0


def _rank(values: np.ndarray) -> np.ndarray:
    order = np.argsort(-values, kind="stable")
    rank = np.empty(len(values), dtype=np.float32)
    rank[order] = np.arange(len(values), dtype=np.float32)
    return rank


def request_features(
    history: np.ndarray,
    candidates: np.ndarray,
    retrieval_scores: np.ndarray,
    ease: sp.csr_matrix,
    knn: sp.csr_matrix,
    items: ItemTable,
) -> np.ndarray:
    """Feature matrix (len(candidates) x len(FEATURE_NAMES)) of one request.

    ``history`` and ``candidates`` are row indices of modelled items (candidates distinct); ``retrieval_scores``
    the stage-one inner products of the candidates. Only the candidates' columns are computed: the request
    costs what its ~100 candidates and ~20 history rows need, not a pass over every item.
    """
    m = len(candidates)
    history = np.asarray(history, dtype=np.int64)
    slot = np.full(ease.shape[0], -1, dtype=np.int64)
    slot[candidates] = np.arange(m)
    ease_c, _ = _sums_at(ease, history, slot, m)
    knn_sum, knn_peak = _sums_at(knn, history, slot, m)
    ease_total = float(np.abs(ease_c).sum()) or 1.0
    hist_len = float(len(history))
    numeric = items.numeric[candidates]
    out = np.zeros((m, len(FEATURE_NAMES)), dtype=np.float32)
    if len(history):
        profile = items.genres[history].mean(axis=0)
        out[:, 7] = items.genres[candidates] @ profile
        author_count = _shared(items.author, history, candidates)
        out[:, 8], out[:, 9] = author_count, author_count / max(hist_len, 1.0)
        out[:, 10] = _shared(items.series, history, candidates)
        hist_numeric = items.numeric[history]
        hist_count, hist_avg = float(hist_numeric[:, 0].mean()), float(hist_numeric[:, 3].mean())
    else:
        hist_count = hist_avg = 0.0
    out[:, 0], out[:, 1] = retrieval_scores, np.arange(m, dtype=np.float32)
    out[:, 2], out[:, 3], out[:, 4] = ease_c, _rank(ease_c), ease_c / ease_total
    out[:, 5], out[:, 6], out[:, 11] = knn_sum, knn_peak, items.series_number[candidates]
    out[:, 12:18] = numeric
    out[:, 18], out[:, 19], out[:, 20] = hist_len, hist_count, hist_avg
    out[:, 21] = numeric[:, 0] - hist_count
    return out
