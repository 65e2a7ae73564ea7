"""Data contract of the recommendation model: generated sample, loaders and every refusal case."""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import pytest

from ml.data.contract import DataContractError
from ml.models.recommendation import data, synthetic


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("goodbooks")
    synthetic.generate_sample(out, users=60, books=80, seed=3)
    return out


@pytest.fixture
def work_dir(sample_dir, tmp_path) -> Path:
    for f in sample_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def _write(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def _edit(path: Path, row: int, column: str, value: str) -> None:
    """Set one cell (1-based data row) of a CSV file."""
    rows = _rows(path)
    rows[row][rows[0].index(column)] = value
    _write(path, rows)


def test_generate_sample_writes_the_real_file_names_and_columns(sample_dir, tmp_path):
    paths = synthetic.generate_sample(tmp_path, users=60, books=80, seed=3)
    assert [p.name for p in paths] == [data.RATINGS_FILE, data.BOOKS_FILE, data.GENRES_FILE]
    assert tuple(_rows(paths[0])[0]) == data.RATINGS_COLUMNS
    assert tuple(_rows(paths[1])[0]) == data.BOOKS_COLUMNS and len(data.BOOKS_COLUMNS) == 23
    assert tuple(_rows(paths[2])[0]) == data.GENRES_COLUMNS
    # Same seed, same bytes.
    assert paths[0].read_bytes() == (sample_dir / data.RATINGS_FILE).read_bytes()


def test_load_sample_is_valid_and_counts_documented_defects(sample_dir):
    rec = data.load(sample_dir)
    r = rec.ratings
    assert list(r.columns) == ["user_id", "book_id", "rating"]
    assert all(str(t) == "int64" for t in r.dtypes)
    assert set(r["rating"]) <= {1, 2, 3, 4, 5}
    assert not r.duplicated(["user_id", "book_id"]).any()
    assert r["user_id"].nunique() == 60
    assert set(r["book_id"]) <= set(rec.books["book_id"])
    assert len(rec.books) == 80 and rec.genres is not None and len(rec.genres) == 80
    # The generator reproduces the real file's documented empty cells; the loader counts them.
    assert rec.defects["books_empty_isbn"] > 0
    assert rec.defects["books_empty_language_code"] > 0
    assert rec.defects["books_empty_isbn13"] == (rec.books["isbn13"] == "").sum()
    assert rec.defects["books_without_genres"] == 0


def test_gzip_files_of_the_same_name_are_accepted(work_dir):
    plain = work_dir / data.RATINGS_FILE
    with plain.open("rb") as src, gzip.open(f"{plain}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    expected = data.load_ratings(plain)
    plain.unlink()
    rec = data.load(work_dir)
    assert rec.ratings.attrs["path"].endswith(".csv.gz")
    assert rec.ratings.equals(expected)
    assert data.load_ratings(plain).equals(expected)  # a .csv path falls back to .csv.gz


def test_text_like_na_is_kept_literally(work_dir):
    _edit(work_dir / data.BOOKS_FILE, 1, "title", "NA")
    books = data.load_books(work_dir / data.BOOKS_FILE)
    assert books.loc[0, "title"] == "NA"


def test_missing_file(tmp_path):
    with pytest.raises(DataContractError, match=r"file not found \(looked for goodbooks_ratings_sample.csv"):
        data.load(tmp_path)


def test_empty_file_and_header_only(work_dir):
    path = work_dir / data.RATINGS_FILE
    path.write_text("")
    with pytest.raises(DataContractError, match="file is empty"):
        data.load_ratings(path)
    path.write_text("user_id,book_id,rating\n")
    with pytest.raises(DataContractError, match="header but no data rows"):
        data.load_ratings(path)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("rating", "4.5", r"column 'rating', row 2: not an integer .*\(value '4.5'\)"),
        ("rating", "4.0", r"column 'rating', row 2: not an integer"),
        ("rating", "five", r"column 'rating', row 2: not an integer"),
        ("rating", "6", r"column 'rating', row 2: rating must be one of \[1, 2, 3, 4, 5\] \(value '6'\)"),
        ("rating", "0", r"column 'rating', row 2: rating must be one of"),
        ("user_id", "", r"column 'user_id', row 2: empty cell"),
        ("user_id", "0", r"column 'user_id', row 2: value outside the allowed range >= 1"),
        ("book_id", "x12", r"column 'book_id', row 2: not an integer"),
    ],
)
def test_bad_rating_cells_are_refused_with_location(work_dir, column, value, message):
    path = work_dir / data.RATINGS_FILE
    _edit(path, 2, column, value)
    with pytest.raises(DataContractError, match=message) as err:
        data.load_ratings(path)
    assert err.value.column == column and err.value.row == 2
    assert str(path) in str(err.value)


def test_missing_ratings_column(work_dir):
    path = work_dir / data.RATINGS_FILE
    _write(path, [[r[0], r[2]] for r in _rows(path)])
    with pytest.raises(DataContractError, match=r"column 'book_id': missing column\(s\) \['book_id'\]"):
        data.load_ratings(path)


def test_duplicate_user_book_pair(work_dir):
    path = work_dir / data.RATINGS_FILE
    rows = _rows(path)
    rows.append([rows[5][0], rows[5][1], "3"])
    _write(path, rows)
    with pytest.raises(DataContractError, match=r"duplicate \('user_id', 'book_id'\) key") as e:
        data.load_ratings(path)
    assert e.value.row == len(rows) - 1


def test_rated_book_missing_from_books(work_dir):
    path = work_dir / data.RATINGS_FILE
    _edit(path, 4, "book_id", "9999")
    with pytest.raises(DataContractError, match=r"rated book_id not present in goodbooks_books.csv") as e:
        data.load(work_dir)
    assert (e.value.column, e.value.row, e.value.value) == ("book_id", 4, 9999)
    assert e.value.report["library"].startswith("pandera") and e.value.report["failure_count"] == 1


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("title", "", r"column 'title', row 3: empty cell \(required\)"),
        ("authors", "  ", r"column 'authors', row 3: empty cell \(required\)"),
        ("average_rating", "high", r"column 'average_rating', row 3: must be a number in 0..5"),
        ("average_rating", "7.1", r"column 'average_rating', row 3: must be a number in 0..5"),
        ("original_publication_year", "1999AD", r"column 'original_publication_year', row 3: not a number"),
        ("ratings_count", "", r"column 'ratings_count', row 3: empty cell"),
        ("book_id", "-4", r"column 'book_id', row 3: value outside the allowed range >= 1"),
    ],
)
def test_bad_book_cells_are_refused(work_dir, column, value, message):
    path = work_dir / data.BOOKS_FILE
    _edit(path, 3, column, value)
    with pytest.raises(DataContractError, match=message):
        data.load_books(path)


def test_documented_empty_book_cells_are_accepted_and_counted(work_dir):
    path = work_dir / data.BOOKS_FILE
    before = data.load_books(path).attrs["empty_cells"]
    for column in data.BOOKS_MAY_BE_EMPTY:
        _edit(path, 1, column, "")
    books = data.load_books(path)
    after = books.attrs["empty_cells"]
    assert all(after[c] >= before[c] for c in data.BOOKS_MAY_BE_EMPTY)
    assert sum(after.values()) > sum(before.values())
    assert books["original_publication_year"].isna().sum() == after["original_publication_year"]


def test_negative_year_means_bce(work_dir):
    path = work_dir / data.BOOKS_FILE
    _edit(path, 1, "original_publication_year", "-750.0")
    assert data.load_books(path).loc[0, "original_publication_year"] == -750.0


def test_missing_books_column(work_dir):
    path = work_dir / data.BOOKS_FILE
    rows = _rows(path)
    i = rows[0].index("authors")
    _write(path, [r[:i] + r[i + 1 :] for r in rows])
    with pytest.raises(DataContractError, match=r"column 'authors': missing column\(s\) \['authors'\]"):
        data.load_books(path)


def test_duplicate_book_id(work_dir):
    path = work_dir / data.BOOKS_FILE
    _edit(path, 2, "book_id", "1")
    with pytest.raises(DataContractError, match=r"duplicate \('book_id',\) key"):
        data.load_books(path)


def test_genres_are_optional_but_validated_when_present(work_dir):
    genres = work_dir / data.GENRES_FILE
    _edit(genres, 2, "genres", "")
    with pytest.raises(DataContractError, match=r"column 'genres', row 2: empty genre list"):
        data.load(work_dir)
    _edit(genres, 2, "genres", "fiction")
    _edit(genres, 2, "book_id", "5000")
    with pytest.raises(DataContractError, match=r"genre book_id not present"):
        data.load(work_dir)
    genres.unlink()
    rec = data.load(work_dir)
    assert rec.genres is None and "books_without_genres" not in rec.defects


def test_generator_rejects_tiny_sizes(tmp_path):
    with pytest.raises(ValueError, match="need at least 2 users and 20 books"):
        synthetic.generate_sample(tmp_path, users=1, books=5)
