"""Data contract of the recommendation model: the goodbooks-10k file schemas.

The loaders read the shared dataset's exact files (``.csv`` or ``.csv.gz`` of the same name) and
validate them with the pandera schemas of ``schemas()``, refusing broken input with a
:class:`DataContractError` naming the file, column, row and value (pandera's report attached).
Cells are read as text first (``keep_default_na=False``) so that pandas never turns a title such as
"NA" into a missing value behind our back; every conversion is then checked explicitly.

Known defects of the real books file (README of the shared datasets) are accepted but counted:
empty cells in ``isbn``, ``isbn13``, ``original_title``, ``original_publication_year`` and
``language_code``. The counts travel with the data (``DataFrame.attrs["empty_cells"]`` and
``RecData.defects``) and are logged.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ml.data.contract import DataContractError

log = logging.getLogger(__name__)

# pandera (ml/training/validation.py) is imported where a file is validated: serving code may import this
# module for its constants and encodings, and should not load pandera at start-up.
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


def _read(path: Path, name: str) -> pd.DataFrame:
    """The file's cells as text (structure and values are checked by the pandera schemas below)."""
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
    frame.attrs["path"] = str(path)
    return frame


# ---- the contract as pandera schemas (ml/training/validation.py) -------------------------------------
# Two passes per file: the cells as written (present columns, non-empty where required, parseable),
# then the parsed frame (ranges, allowed values, unique keys, references to the books file). Built on
# first use: pandera is not imported where only the loaded data is needed (the serving runtime).


def _int_text() -> list[Any]:
    from ml.training.validation import integer_text, non_empty_text

    return [non_empty_text("empty cell"), integer_text("not an integer")]


def _at_least(low: int) -> Any:
    import pandera.pandas as pa

    return pa.Check.ge(low, error=f"value outside the allowed range >= {low}")


def _unique(columns: tuple[str, ...]) -> Any:
    import pandera.pandas as pa

    return pa.Check(lambda df: ~df.duplicated(subset=list(columns), keep="first"), error=f"duplicate {columns} key")


def _number_in_0_5(text: pd.Series) -> pd.Series:
    value = pd.to_numeric(text.str.strip(), errors="coerce")
    return value.notna() & (value >= 0) & (value <= 5)


def _number_or_empty(text: pd.Series) -> pd.Series:
    stripped = text.str.strip()
    return (stripped == "") | pd.to_numeric(stripped, errors="coerce").notna()


def _text_schema(name: str, columns: dict[str, list[Any]]) -> Any:
    import pandera.pandas as pa

    from ml.training.validation import has_rows

    return pa.DataFrameSchema({c: pa.Column(str, checks) for c, checks in columns.items()}, checks=[has_rows()],
                              name=name)


@functools.cache
def schemas() -> dict[str, Any]:
    """name -> pandera schema: `<file>.cells` (text) and `<file>` (parsed) for ratings, books, genres."""
    import pandera.pandas as pa

    from ml.training.validation import non_empty_text

    books_text: dict[str, list[Any]] = {c: [] for c in BOOKS_COLUMNS}
    books_text.update({c: _int_text() for c in _BOOKS_INT})
    books_text.update({c: [non_empty_text("empty cell (required)")] for c in _BOOKS_REQUIRED_TEXT})
    books_text["average_rating"] = [pa.Check(_number_in_0_5, error="must be a number in 0..5")]
    books_text["original_publication_year"] = [pa.Check(_number_or_empty, error="not a number")]
    return {
        "ratings.cells": _text_schema("recommendation.ratings.cells", {c: _int_text() for c in RATINGS_COLUMNS}),
        "ratings": pa.DataFrameSchema({
            "user_id": pa.Column("int64", _at_least(1)), "book_id": pa.Column("int64", _at_least(1)),
            "rating": pa.Column("int64", pa.Check.isin(list(RATING_VALUES),
                                                       error=f"rating must be one of {list(RATING_VALUES)}")),
        }, checks=[_unique(("user_id", "book_id"))], name="recommendation.ratings"),
        "books.cells": _text_schema("recommendation.books.cells", books_text),
        "books": pa.DataFrameSchema(
            {c: pa.Column("int64", _at_least(1 if c == "book_id" else 0)) for c in _BOOKS_INT}
            | {"average_rating": pa.Column("float64", pa.Check.in_range(0, 5))},
            checks=[_unique(("book_id",))], name="recommendation.books"),
        "genres.cells": _text_schema("recommendation.genres.cells", {
            "book_id": _int_text(), "goodreads_book_id": _int_text(), "genres": [non_empty_text("empty genre list")]}),
        "genres": pa.DataFrameSchema({"book_id": pa.Column("int64", _at_least(1)),
                                      "goodreads_book_id": pa.Column("int64", _at_least(0)),
                                      "genres": pa.Column(str)},
                                     checks=[_unique(("book_id",))], name="recommendation.genres"),
    }


def _ints(frame: pd.DataFrame, columns: tuple[str, ...]) -> dict[str, pd.Series]:
    return {c: frame[c].str.strip().astype("int64") for c in columns}


def load_ratings(path: Path) -> pd.DataFrame:
    """Ratings (user_id, book_id, rating as int64); ratings are 1..5 and (user, book) pairs unique."""
    from ml.training.validation import validate

    frame = _read(path, RATINGS_FILE)
    src = frame.attrs["path"]
    validate(schemas()["ratings.cells"], frame, src)
    out = validate(schemas()["ratings"], pd.DataFrame(_ints(frame, RATINGS_COLUMNS)), src, raw=frame)
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
    from ml.training.validation import validate

    frame = _read(path, BOOKS_FILE)
    src = frame.attrs["path"]
    validate(schemas()["books.cells"], frame, src)
    out = frame[list(BOOKS_COLUMNS)].copy()
    for column, values in _ints(frame, _BOOKS_INT).items():
        out[column] = values
    out["average_rating"] = pd.to_numeric(frame["average_rating"].str.strip()).astype("float64")
    out["original_publication_year"] = pd.to_numeric(frame["original_publication_year"].str.strip(),
                                                     errors="coerce").astype("float64")
    for column in ("isbn", "isbn13", "original_title", "language_code"):
        out[column] = frame[column].str.strip()
    out = validate(schemas()["books"], out, src, raw=frame)
    empty = _count_empty(frame, BOOKS_MAY_BE_EMPTY)
    if any(empty.values()):
        log.info("%s: documented empty cells accepted: %s", src, empty)
    out.attrs.update(path=src, empty_cells=empty)
    return out


def load_genres(path: Path) -> pd.DataFrame:
    """Per-book shelf names: book_id, goodreads_book_id (int64), genres (comma-separated, non-empty)."""
    from ml.training.validation import validate

    frame = _read(path, GENRES_FILE)
    src = frame.attrs["path"]
    validate(schemas()["genres.cells"], frame, src)
    typed = pd.DataFrame({**_ints(frame, ("book_id", "goodreads_book_id")), "genres": frame["genres"].str.strip()})
    out = validate(schemas()["genres"], typed, src, raw=frame)
    out.attrs["path"] = src
    return out


def _known_books(frame: pd.DataFrame, books: pd.DataFrame, src: str, what: str) -> None:
    """Every book_id of `frame` is in the books file (a pandera check over the loaded ids)."""
    import pandera.pandas as pa

    from ml.training.validation import validate

    known = pa.Check.isin(set(books["book_id"].tolist()), error=f"{what} book_id not present in {BOOKS_FILE}")
    validate(pa.DataFrameSchema({"book_id": pa.Column("int64", known)}, name=f"recommendation.{what}_books"),
             frame[["book_id"]], src)


def load(data_dir: Path) -> RecData:
    """Ratings, books and (when the file exists) genres from ``data_dir``, cross-checked."""
    data_dir = Path(data_dir)
    ratings = load_ratings(resolve(data_dir, RATINGS_FILE))
    books = load_books(resolve(data_dir, BOOKS_FILE))
    _known_books(ratings, books, ratings.attrs["path"], "rated")
    genres = None
    if any((data_dir / f"{GENRES_FILE}{ext}").is_file() for ext in ("", ".gz")):
        genres = load_genres(resolve(data_dir, GENRES_FILE))
        _known_books(genres, books, genres.attrs["path"], "genre")
    defects = {f"books_empty_{k}": v for k, v in books.attrs["empty_cells"].items()}
    if genres is not None:
        defects["books_without_genres"] = int((~books["book_id"].isin(genres["book_id"])).sum())
    return RecData(ratings=ratings, books=books, genres=genres, defects=defects)
