"""Data contract of the recommendation model: the goodbooks-10k file schemas.

The loaders read the shared dataset's exact files (``.csv`` or ``.csv.gz`` of the same name) and
refuse broken input with a :class:`DataContractError` naming the file, column, row and value.
Cells are read as text first (``keep_default_na=False``) so that pandas never turns a title such as
"NA" into a missing value behind our back; every conversion is then checked explicitly.

Known defects of the real books file (README of the shared datasets) are accepted but counted:
empty cells in ``isbn``, ``isbn13``, ``original_title``, ``original_publication_year`` and
``language_code``. The counts travel with the data (``DataFrame.attrs["empty_cells"]`` and
``RecData.defects``) and are logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ml.common.contract import DataContractError

log = logging.getLogger(__name__)

RATINGS_FILE = "goodbooks_ratings_sample.csv"
BOOKS_FILE = "goodbooks_books.csv"
GENRES_FILE = "goodbooks_book_genres.csv"

RATINGS_COLUMNS = ("user_id", "book_id", "rating")
RATING_VALUES = (1, 2, 3, 4, 5)
BOOKS_COLUMNS = (
    "book_id", "goodreads_book_id", "best_book_id", "work_id", "books_count", "isbn", "isbn13",
    "authors", "original_publication_year", "original_title", "title", "language_code",
    "average_rating", "ratings_count", "work_ratings_count", "work_text_reviews_count",
    "ratings_1", "ratings_2", "ratings_3", "ratings_4", "ratings_5", "image_url", "small_image_url",
)  # fmt: skip
GENRES_COLUMNS = ("book_id", "goodreads_book_id", "genres")

_BOOKS_INT = (
    "book_id", "goodreads_book_id", "best_book_id", "work_id", "books_count", "ratings_count",
    "work_ratings_count", "work_text_reviews_count",
    "ratings_1", "ratings_2", "ratings_3", "ratings_4", "ratings_5",
)  # fmt: skip
# Columns the dataset README documents as sometimes empty; anything else empty is an error.
BOOKS_MAY_BE_EMPTY = ("isbn", "isbn13", "original_publication_year", "original_title", "language_code")
_BOOKS_REQUIRED_TEXT = ("authors", "title", "image_url", "small_image_url")


@dataclass
class RecData:
    """Validated inputs of the recommendation model."""

    ratings: pd.DataFrame
    books: pd.DataFrame
    genres: pd.DataFrame | None = None
    defects: dict[str, int] = field(default_factory=dict)  # documented defects accepted, by kind


def resolve(data_dir: Path, name: str) -> Path:
    """Path of ``name`` or ``name.gz`` in ``data_dir``; the plain file wins when both exist."""
    for candidate in (Path(data_dir) / name, Path(data_dir) / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataContractError(Path(data_dir) / name, f"file not found (looked for {name} and {name}.gz)")


def _read(path: Path, columns: tuple[str, ...], name: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        alt = path.with_name(path.name + ".gz")
        if not path.name.endswith(".gz") and alt.is_file():
            path = alt
        else:
            raise DataContractError(path, "file not found")
    base = path.name.removesuffix(".gz")
    if base != name:
        log.info("reading %s as %s", path, name)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise DataContractError(path, f"not a readable CSV file: {exc}") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataContractError(path, "file is empty (no header row)") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataContractError(path, f"missing column(s) {missing}; expected {list(columns)}", column=missing[0])
    if frame.empty:
        raise DataContractError(path, "file has a header but no data rows")
    frame.attrs["path"] = str(path)
    return frame


def _first_bad(mask: pd.Series) -> int:
    """0-based position of the first True in ``mask``."""
    return int(mask.to_numpy().argmax())


def _integers(frame: pd.DataFrame, column: str, low: int | None = None, high: int | None = None) -> pd.Series:
    """Column parsed as int64; empty, non-integer or out-of-range cells raise a contract error."""
    raw = frame[column].str.strip()
    bad = ~raw.str.fullmatch(r"[+-]?\d{1,18}")  # "4.0" or "4.5" in an id/rating column is a type error
    if bad.any():
        i = _first_bad(bad)
        problem = "empty cell" if raw.iloc[i] == "" else "not an integer"
        raise DataContractError(
            frame.attrs["path"], f"{problem} ({int(bad.sum())} bad cell(s) in total)",
            column=column, row=i + 1, value=frame[column].iloc[i],
        )  # fmt: skip
    out = raw.astype("int64")
    if low is not None or high is not None:
        lo = low if low is not None else out.min()
        hi = high if high is not None else out.max()
        bad = (out < lo) | (out > hi)
        if bad.any():
            i = _first_bad(bad)
            allowed = f"{low}..{high}" if high is not None else f">= {low}"
            raise DataContractError(
                frame.attrs["path"], f"value outside the allowed range {allowed}",
                column=column, row=i + 1, value=frame[column].iloc[i],
            )  # fmt: skip
    return out


def _no_duplicates(frame: pd.DataFrame, columns: list[str], path: str) -> None:
    dup = frame.duplicated(subset=columns, keep="first")
    if dup.any():
        i = _first_bad(dup)
        key = tuple(int(frame[c].iloc[i]) for c in columns)
        raise DataContractError(
            path, f"duplicate {tuple(columns)} key ({int(dup.sum())} duplicate row(s) in total)",
            column=columns[-1], row=i + 1, value=key,
        )  # fmt: skip


def load_ratings(path: Path) -> pd.DataFrame:
    """Ratings (user_id, book_id, rating as int64); ratings are 1..5 and (user, book) pairs unique."""
    frame = _read(path, RATINGS_COLUMNS, RATINGS_FILE)
    src = frame.attrs["path"]
    out = pd.DataFrame(
        {
            "user_id": _integers(frame, "user_id", low=1),
            "book_id": _integers(frame, "book_id", low=1),
        }
    )
    rating = _integers(frame, "rating")
    bad = ~rating.isin(RATING_VALUES)
    if bad.any():
        i = _first_bad(bad)
        raise DataContractError(
            src, f"rating must be one of {list(RATING_VALUES)}", column="rating", row=i + 1,
            value=frame["rating"].iloc[i],
        )  # fmt: skip
    out["rating"] = rating
    _no_duplicates(out, ["user_id", "book_id"], src)
    out.attrs["path"] = src
    return out


def _count_empty(frame: pd.DataFrame, columns: tuple[str, ...]) -> dict[str, int]:
    return {c: int((frame[c].str.strip() == "").sum()) for c in columns}


def load_books(path: Path) -> pd.DataFrame:
    """Book metadata with all 23 columns of goodbooks ``books.csv``.

    Integer columns become int64, ``average_rating`` and ``original_publication_year`` float
    (the year is NaN where empty; negative years mean BCE). ``isbn``/``isbn13`` stay text because
    the source damaged them (float notation, lost leading zeros): never use them as keys.
    Documented empty cells are kept as "" (text) or NaN (year) and counted in
    ``attrs["empty_cells"]``; empty cells in any other column are an error.
    """
    frame = _read(path, BOOKS_COLUMNS, BOOKS_FILE)
    src = frame.attrs["path"]
    out = frame[list(BOOKS_COLUMNS)].copy()
    for column in _BOOKS_INT:
        out[column] = _integers(frame, column, low=0 if column != "book_id" else 1)
    for column in _BOOKS_REQUIRED_TEXT:
        empty = frame[column].str.strip() == ""
        if empty.any():
            i = _first_bad(empty)
            raise DataContractError(src, "empty cell (required)", column=column, row=i + 1, value="")
    avg = pd.to_numeric(frame["average_rating"].str.strip(), errors="coerce")
    bad = avg.isna() | (avg < 0) | (avg > 5)
    if bad.any():
        i = _first_bad(bad)
        raise DataContractError(
            src, "must be a number in 0..5", column="average_rating", row=i + 1,
            value=frame["average_rating"].iloc[i],
        )  # fmt: skip
    out["average_rating"] = avg.astype("float64")
    year_raw = frame["original_publication_year"].str.strip()
    year = pd.to_numeric(year_raw, errors="coerce")
    bad = year.isna() & (year_raw != "")
    if bad.any():
        i = _first_bad(bad)
        raise DataContractError(
            src, "not a number", column="original_publication_year", row=i + 1, value=year_raw.iloc[i]
        )
    out["original_publication_year"] = year.astype("float64")
    for column in ("isbn", "isbn13", "original_title", "language_code"):
        out[column] = frame[column].str.strip()
    _no_duplicates(out, ["book_id"], src)
    empty = _count_empty(frame, BOOKS_MAY_BE_EMPTY)
    if any(empty.values()):
        log.info("%s: documented empty cells accepted: %s", src, empty)
    out.attrs.update(path=src, empty_cells=empty)
    return out


def load_genres(path: Path) -> pd.DataFrame:
    """Per-book shelf names: book_id, goodreads_book_id (int64), genres (comma-separated, non-empty)."""
    frame = _read(path, GENRES_COLUMNS, GENRES_FILE)
    src = frame.attrs["path"]
    out = pd.DataFrame(
        {
            "book_id": _integers(frame, "book_id", low=1),
            "goodreads_book_id": _integers(frame, "goodreads_book_id", low=0),
            "genres": frame["genres"].str.strip(),
        }
    )
    empty = out["genres"] == ""
    if empty.any():
        i = _first_bad(empty)
        raise DataContractError(src, "empty genre list", column="genres", row=i + 1, value="")
    _no_duplicates(out, ["book_id"], src)
    out.attrs["path"] = src
    return out


def _unknown_books(ids: pd.Series, books: pd.DataFrame, src: str, what: str) -> None:
    unknown = ~ids.isin(books["book_id"])
    if unknown.any():
        i = _first_bad(unknown)
        n = int(ids[unknown].nunique())
        raise DataContractError(
            src, f"{n} {what} book_id value(s) not present in {BOOKS_FILE}", column="book_id",
            row=i + 1, value=int(ids.iloc[i]),
        )  # fmt: skip


def load(data_dir: Path) -> RecData:
    """Ratings, books and (when the file exists) genres from ``data_dir``, cross-checked."""
    data_dir = Path(data_dir)
    ratings = load_ratings(resolve(data_dir, RATINGS_FILE))
    books = load_books(resolve(data_dir, BOOKS_FILE))
    _unknown_books(ratings["book_id"], books, ratings.attrs["path"], "rated")
    genres = None
    if any((data_dir / f"{GENRES_FILE}{ext}").is_file() for ext in ("", ".gz")):
        genres = load_genres(resolve(data_dir, GENRES_FILE))
        _unknown_books(genres["book_id"], books, genres.attrs["path"], "genre")
    defects = {f"books_empty_{k}": v for k, v in books.attrs["empty_cells"].items()}
    if genres is not None:
        defects["books_without_genres"] = int((~books["book_id"].isin(genres["book_id"])).sum())
    return RecData(ratings=ratings, books=books, genres=genres, defects=defects)


def generate_sample(out_dir: Path, users: int = 300, books: int = 400, seed: int = 0) -> list[Path]:
    """Write small synthetic files with the real names and schemas (see ``synthetic.py``)."""
    from ml.models.recommendation.synthetic import write_sample

    return write_sample(Path(out_dir), users=users, books=books, seed=seed)
