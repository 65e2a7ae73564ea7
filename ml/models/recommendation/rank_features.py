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


def _row_sums(w: sp.csr_matrix, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum and max over the history rows of a CSR item x item matrix, for all n columns."""
    if len(rows) == 0:
        return np.zeros(n, np.float32), np.zeros(n, np.float32)
    spans = [(w.indptr[r], w.indptr[r + 1]) for r in rows]
    columns = np.concatenate([w.indices[a:b] for a, b in spans])
    values = np.concatenate([w.data[a:b] for a, b in spans])
    total = np.bincount(columns, weights=values, minlength=n).astype(np.float32)
    peak = np.zeros(n, np.float32)
    np.maximum.at(peak, columns, values)
    return total, peak


def _shared(group: np.ndarray, history: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Per candidate, how many history books share its group id (author, series); 0 for id -1."""
    ids = group[history]
    ids = ids[ids >= 0]
    cand = group[candidates]
    if not len(ids):
        return np.zeros(len(candidates), np.float32)
    counts = np.bincount(ids, minlength=int(group.max()) + 1)
    return np.where(cand >= 0, counts[np.clip(cand, 0, None)], 0).astype(np.float32)


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

    ``history`` and ``candidates`` are row indices of modelled items; ``retrieval_scores`` the
    stage-one inner products of the candidates.
    """
    n = ease.shape[0]
    ease_all, _ = _row_sums(ease, history, n)
    knn_all, knn_peak = _row_sums(knn, history, n)
    ease_c = ease_all[candidates]
    ease_total = float(np.abs(ease_c).sum()) or 1.0
    hist_len = float(len(history))
    numeric = items.numeric[candidates]
    if len(history):
        profile = items.genres[history].mean(axis=0)
        genre = items.genres[candidates] @ profile
        author_count = _shared(items.author, history, candidates)
        series_count = _shared(items.series, history, candidates)
        hist_numeric = items.numeric[history]
        hist_count, hist_avg = float(hist_numeric[:, 0].mean()), float(hist_numeric[:, 3].mean())
    else:
        genre = np.zeros(len(candidates), np.float32)
        author_count = np.zeros(len(candidates), np.float32)
        series_count = np.zeros(len(candidates), np.float32)
        hist_count = hist_avg = 0.0
    columns = [
        retrieval_scores, np.arange(len(candidates), dtype=np.float32), ease_c, _rank(ease_c), ease_c / ease_total,
        knn_all[candidates], knn_peak[candidates], genre, author_count, author_count / max(hist_len, 1.0),
        series_count, items.series_number[candidates],
        numeric[:, 0], numeric[:, 1], numeric[:, 2], numeric[:, 3], numeric[:, 4], numeric[:, 5],
        np.full(len(candidates), hist_len), np.full(len(candidates), hist_count), np.full(len(candidates), hist_avg),
        numeric[:, 0] - hist_count,
    ]  # fmt: skip
    return np.column_stack(columns).astype(np.float32)
