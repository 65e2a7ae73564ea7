"""Small synthetic goodbooks-like files for tests and the local demo.

Same file names, columns and cell formats as the shared dataset (including its documented defects:
empty ISBN/title/language cells, ``isbn13`` in float notation), with a learnable signal: every
book belongs to one of a few latent genres, every user prefers one or two of them, and both what a
user reads and how they rate it follow that taste. A popularity ranking therefore misses what an
item-item model finds, as on the real data.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ml.models.recommendation import data as contract

GENRES = ("fantasy", "romance", "mystery", "science-fiction", "history", "horror", "poetry", "biography")
_SUBSHELVES = ("classics", "series", "favourites", "book-club", "adult", "young-adult", "short-stories")
_WORDS = ("Shadow", "River", "Crown", "Garden", "Letter", "Winter", "Stone", "Silver", "House", "Road")


def _books_rows(n_books: int, genre_of: np.ndarray, rng: np.random.Generator) -> list[list[str]]:
    rows = []
    goodreads = rng.choice(np.arange(1, 40 * n_books + 1), size=n_books, replace=False)
    for i in range(n_books):
        book_id = i + 1
        genre = GENRES[genre_of[i]]
        title = f"{_WORDS[i % len(_WORDS)]} of the {genre.title()} ({genre.title()} Tales, #{book_id})"
        counts = rng.multinomial(int(rng.integers(50, 5000)), [0.03, 0.07, 0.2, 0.35, 0.35])
        average = float((counts * np.arange(1, 6)).sum() / counts.sum())
        isbn13 = 9.78e12 + float(rng.integers(0, 10**10))
        year = int(rng.integers(1800, 2017)) if rng.random() > 0.01 else -int(rng.integers(1, 1750))
        author = f"Author {int(rng.integers(1, n_books // 3 + 2))}"
        if rng.random() < 0.15:
            author += f", Translator {int(rng.integers(1, 50))}"
        rows.append(
            [
                str(book_id), str(goodreads[i]), str(goodreads[i]), str(int(rng.integers(1, 10**7))),
                str(int(rng.integers(1, 300))),
                "" if rng.random() < 0.07 else str(int(rng.integers(10**7, 10**9))),  # lost leading zeros
                "" if rng.random() < 0.06 else f"{isbn13:.11e}",  # float notation, as in the source
                author,
                "" if rng.random() < 0.01 else f"{year}.0",
                "" if rng.random() < 0.06 else title.split(" (")[0],
                title,
                "" if rng.random() < 0.1 else str(rng.choice(["eng", "en-US", "en-GB", "fre", "spa"])),
                f"{average:.2f}", str(int(counts.sum())), str(int(counts.sum() * 1.05)),
                str(int(counts.sum() // 20)), *(str(int(c)) for c in counts),
                f"https://images.example.org/books/{book_id}m.jpg",
                f"https://images.example.org/books/{book_id}s.jpg",
            ]
        )  # fmt: skip
    return rows


def generate_sample(out_dir: Path, users: int = 300, books: int = 400, seed: int = 0) -> list[Path]:
    """Write ratings, books and genres files; return their paths (ratings, books, genres)."""
    if users < 2 or books < 20:
        raise ValueError(f"need at least 2 users and 20 books, got users={users}, books={books}")
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    k = len(GENRES)
    genre_of = rng.integers(0, k, size=books)
    popularity = rng.pareto(1.5, size=books) + 1.0  # a long tail, as on Goodreads
    quality = rng.normal(0.0, 0.4, size=books)

    rating_rows: list[tuple[int, int, int]] = []
    user_ids = rng.choice(np.arange(1, 20 * users + 1), size=users, replace=False)
    for user in user_ids:
        taste = rng.dirichlet(np.full(k, 0.2))  # concentrated on one or two genres
        n = int(min(books - 1, rng.integers(20, 60)))
        weight = popularity**0.5 * (taste[genre_of] + 0.01)
        # Gumbel top-n: sampling without replacement proportional to weight.
        keys = np.log(weight) + rng.gumbel(size=books)
        chosen = np.argpartition(-keys, n)[:n]
        latent = 2.8 + 3.0 * taste[genre_of[chosen]] + quality[chosen] + rng.normal(0, 0.6, size=n)
        stars = np.clip(np.rint(latent), 1, 5).astype(int)
        rating_rows.extend((int(user), int(b) + 1, int(s)) for b, s in zip(chosen, stars, strict=True))
    order = rng.permutation(len(rating_rows))  # the real file is not grouped by user either

    ratings_path = out_dir / contract.RATINGS_FILE
    with ratings_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(contract.RATINGS_COLUMNS)
        writer.writerows(rating_rows[i] for i in order)

    book_rows = _books_rows(books, genre_of, rng)
    books_path = out_dir / contract.BOOKS_FILE
    with books_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(contract.BOOKS_COLUMNS)
        writer.writerows(book_rows)

    genres_path = out_dir / contract.GENRES_FILE
    with genres_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(contract.GENRES_COLUMNS)
        for i, row in enumerate(book_rows):
            shelves = {GENRES[genre_of[i]], "fiction", *rng.choice(_SUBSHELVES, size=2, replace=False)}
            writer.writerow([row[0], row[1], ",".join(sorted(shelves))])
    return [ratings_path, books_path, genres_path]
