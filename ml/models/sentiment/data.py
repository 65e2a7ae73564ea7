"""Data contract of the sentiment reference model: lexicon-labelled and human-labelled CSV files.

Three schemas exist:

- ``Twitter_Data.csv``: ``clean_text,category``; ``Reddit_Data.csv``: ``clean_comment,category`` --
  pre-cleaned text, ``category`` ``-1`` negative, ``0`` neutral, ``1`` positive, labelled by a
  lexicon tool (weak labels);
- ``tweets_human_labelled_dev.csv`` (``HUMAN_FILE``): ``text,sentiment`` (other columns, such as
  ``textID``, are ignored) -- raw tweets, ``sentiment`` ``negative`` / ``neutral`` / ``positive``,
  labelled by people.

(any file may be gzip-compressed as ``<name>.csv.gz``). The loader returns the columns ``text`` and
``label`` (-1/0/1) whichever the schema; ``load_file`` detects the schema from the header.

Documented defects of the real files are handled explicitly and counted, never silently:
rows with an empty / whitespace-only text or an empty label are dropped, and the counts are
returned in ``df.attrs["dropped"]`` (total) and ``df.attrs["dropped_by_reason"]``. Anything else
that does not match the schema (missing column, ambiguous schema, a label that is not one of
-1/0/1) raises :class:`DataContractError` naming the file, column, row and value.
"""

from __future__ import annotations

import csv
import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.data.contract import DataContractError

log = logging.getLogger(__name__)

# pandera (ml/training/validation.py) is imported where a file is validated: serving code may import this
# module for its constants and encodings, and should not load pandera at start-up.
FILES = ("Twitter_Data.csv", "Reddit_Data.csv")  # lexicon-labelled, both required
SOURCES = {"Twitter_Data.csv": "twitter", "Reddit_Data.csv": "reddit"}
TEXT_COLUMNS = {"clean_text": "twitter", "clean_comment": "reddit"}
LABEL_COLUMN = "category"
LABELS = {"-1": -1, "0": 0, "1": 1}
HUMAN_FILE = "tweets_human_labelled_dev.csv"  # human-labelled, optional (used when present)
HUMAN = "human"  # its schema / source name
RAW_TEXT_COLUMN = "text"
SENTIMENT_COLUMN = "sentiment"
SENTIMENT_WORDS = {"negative": -1, "neutral": 0, "positive": 1}


def _read_raw(path: Path) -> pd.DataFrame:
    """Read every cell as a string so that empty cells and odd labels stay visible."""
    if not path.is_file():
        raise DataContractError(path, "file not found")
    try:
        # keep_default_na=False: an empty cell stays "" (a counted defect), not NaN that would hide it.
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, compression="infer")
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise DataContractError(path, f"not a readable CSV file: {exc}") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataContractError(path, "file is empty (no header)") from exc


def _schema(path: Path, columns: list[str]) -> tuple[str, str, str]:
    """(schema, text column, label column) from the header: twitter, reddit or human."""
    present = [c for c in TEXT_COLUMNS if c in columns]
    human = RAW_TEXT_COLUMN in columns and SENTIMENT_COLUMN in columns
    if len(present) > 1:
        raise DataContractError(path, "ambiguous schema: both 'clean_text' and 'clean_comment' present")
    if present and human:
        raise DataContractError(path, f"ambiguous schema: both {present[0]!r} and 'text'/'sentiment' present")
    if human:
        return HUMAN, RAW_TEXT_COLUMN, SENTIMENT_COLUMN
    if not present:
        if RAW_TEXT_COLUMN in columns:
            raise DataContractError(path, f"missing label column for raw text, found {columns}",
                                    column=SENTIMENT_COLUMN)
        raise DataContractError(
            path,
            "missing text column: expected 'clean_text' (Twitter), 'clean_comment' (Reddit) or 'text' with "
            f"'sentiment' (human-labelled), found {columns}",
            column="clean_text|clean_comment|text",
        )
    if LABEL_COLUMN not in columns:
        raise DataContractError(path, f"missing label column, found {columns}", column=LABEL_COLUMN)
    return TEXT_COLUMNS[present[0]], present[0], LABEL_COLUMN


def load_file(path: Path) -> pd.DataFrame:
    """Load one file of any of the three schemas into columns ``text`` (str) and ``label`` (int).

    Rows with empty text or an empty label are dropped and counted in ``attrs``; a label outside the
    schema's three values or a missing column raises :class:`DataContractError`.
    """
    path = Path(path)
    raw = _read_raw(path)
    columns = [str(c) for c in raw.columns]
    schema, text_col, label_col = _schema(path, columns)

    from ml.training.validation import validate

    text = raw[text_col].astype(str)
    label_raw = raw[label_col].astype(str).str.strip()
    empty_text = text.str.strip() == ""
    empty_label = label_raw == ""

    # Any non-empty label must be exactly one of the three classes (pandera reports every offender).
    validate(_cells_schema(schema == HUMAN), pd.DataFrame({label_col: label_raw}), path)

    keep = ~(empty_text | empty_label)
    mapping = SENTIMENT_WORDS if schema == HUMAN else LABELS
    out = pd.DataFrame(
        {
            "text": text[keep].to_numpy(dtype=object),
            "label": label_raw[keep].map(mapping).to_numpy(dtype=np.int64),
        }
    )
    by_reason = {
        "empty_text": int((empty_text & ~empty_label).sum()),
        "empty_label": int((empty_label & ~empty_text).sum()),
        "empty_both": int((empty_text & empty_label).sum()),
    }
    out.attrs["schema"] = schema
    out.attrs["rows_read"] = len(raw)
    out.attrs["dropped"] = int((~keep).sum())
    out.attrs["dropped_by_reason"] = by_reason
    out.attrs["duplicate_texts"] = int(out["text"].duplicated().sum())
    if out.attrs["dropped"]:
        log.warning("%s: dropped %d rows with empty text/label %s", path, out.attrs["dropped"], by_reason)
    return validate(_rows_schema(), out, path)


@functools.cache
def _cells_schema(human: bool = False) -> Any:
    """pandera: the label cells as written (empty ones are a documented defect, dropped and counted)."""
    import pandera.pandas as pa

    if human:
        words = list(SENTIMENT_WORDS)
        allowed = pa.Check(lambda s: (s == "") | s.isin(words), error="sentiment must be one of " + ", ".join(words))
        return pa.DataFrameSchema({SENTIMENT_COLUMN: pa.Column(str, allowed)}, name="sentiment.human_labels.cells")
    allowed = pa.Check(lambda s: (s == "") | s.isin(list(LABELS)), error="label must be one of -1, 0, 1")
    return pa.DataFrameSchema({LABEL_COLUMN: pa.Column(str, allowed)}, name="sentiment.labels.cells")


@functools.cache
def _rows_schema() -> Any:
    """pandera: the usable rows (non-empty text, a class label), at least one."""
    import pandera.pandas as pa

    from ml.training.validation import has_rows, non_empty_text

    return pa.DataFrameSchema(
        {"text": pa.Column(str, non_empty_text("empty text")),
         "label": pa.Column("int64", pa.Check.isin([-1, 0, 1]))},
        checks=[has_rows("no usable rows (every row has an empty text or label)")], name="sentiment.rows")


def _candidates(data_dir: Path, name: str) -> list[Path]:
    data_dir = Path(data_dir)
    found = [p for p in (data_dir / name, data_dir / f"{name}.gz") if p.is_file()]
    if len(found) > 1:
        raise DataContractError(data_dir / name, f"both {name} and {name}.gz exist; keep only one")
    return found


def resolve(data_dir: Path, name: str) -> Path:
    """Find ``name`` (``X.csv``) in ``data_dir`` as ``X.csv`` or ``X.csv.gz`` (exactly one of them)."""
    candidates = _candidates(data_dir, name)
    if not candidates:
        raise DataContractError(Path(data_dir) / name, f"file not found (expected {name} or {name}.gz)")
    return candidates[0]


def human_path(data_dir: Path) -> Path | None:
    """``HUMAN_FILE`` (or its ``.gz``) in ``data_dir``, or None when there is none."""
    candidates = _candidates(data_dir, HUMAN_FILE)
    return candidates[0] if candidates else None


def files(data_dir: Path) -> list[Path]:
    """The files training reads: both lexicon-labelled files and, when present, the human-labelled one."""
    human = human_path(data_dir)
    return [resolve(data_dir, name) for name in FILES] + ([human] if human else [])


def load_human(data_dir: Path) -> pd.DataFrame | None:
    """The human-labelled file of ``data_dir`` (columns ``text``, ``label``, ``source`` = human), or None."""
    path = human_path(data_dir)
    if path is None:
        return None
    df = load_file(path)
    if df.attrs["schema"] != HUMAN:
        raise DataContractError(path, f"file has the {df.attrs['schema']} schema, expected text/sentiment")
    return df.assign(source=HUMAN)


def load(data_dir: Path) -> pd.DataFrame:
    """Load both files of ``data_dir`` into ``text``, ``label`` and ``source`` (twitter / reddit)."""
    if not Path(data_dir).is_dir():
        raise DataContractError(data_dir, "data directory not found")
    frames, dropped, per_source = [], 0, {}
    for name in FILES:
        path = resolve(data_dir, name)
        df = load_file(path)
        source = SOURCES[name]
        if df.attrs["schema"] != source:
            raise DataContractError(path, f"file has the {df.attrs['schema']} schema, expected {source}")
        per_source[source] = {k: df.attrs[k] for k in ("rows_read", "dropped", "dropped_by_reason")}
        dropped += df.attrs["dropped"]
        frames.append(df.assign(source=source))
    out = pd.concat(frames, ignore_index=True)
    out.attrs["dropped"] = dropped
    out.attrs["per_source"] = per_source
    return out


# --- synthetic sample -----------------------------------------------------------------------------
# Invented mini-vocabulary: the label is the sign of a per-word score summed over the text, with a
# negation word flipping the next scored word. That gives the sample the same shape of signal as the
# real files (sparse polar words among neutral topic words) so a learned model has something to learn.
_POSITIVE = {"good": 1.0, "great": 1.5, "happy": 1.0, "love": 1.5, "win": 1.0, "proud": 1.0, "best": 2.0}
_NEGATIVE = {"bad": -1.0, "worst": -2.0, "sad": -1.0, "hate": -1.5, "fail": -1.0, "angry": -1.0, "poor": -1.0}
_NEUTRAL = [
    "vote",
    "election",
    "people",
    "government",
    "india",
    "party",
    "leader",
    "minister",
    "today",
    "news",
    "country",
    "state",
    "city",
    "policy",
    "speech",
    "rally",
    "campaign",
    "money",
    "tax",
    "village",
    "young",
    "time",
    "year",
    "week",
]
_NEGATION = "not"


def _sample_text(rng: np.random.Generator) -> tuple[str, int]:
    words = list(rng.choice(_NEUTRAL, size=int(rng.integers(4, 16))))
    n_polar = int(rng.choice([0, 1, 1, 2, 3]))
    polar = list(_POSITIVE) + list(_NEGATIVE)
    for _ in range(n_polar):
        w = str(rng.choice(polar))
        chunk = [_NEGATION, w] if rng.random() < 0.15 else [w]
        at = int(rng.integers(0, len(words) + 1))
        words[at:at] = chunk
    score, negate = 0.0, False
    for w in words:
        if w == _NEGATION:
            negate = True
            continue
        s = _POSITIVE.get(w, _NEGATIVE.get(w, 0.0))
        if s:
            score += -0.5 * s if negate else s
            negate = False
    label = 0 if score == 0 else (1 if score > 0 else -1)
    return " ".join(words), label


_WORDS = {1: "positive", 0: "neutral", -1: "negative"}


def _raw_tweet(rng: np.random.Generator) -> tuple[str, str]:
    """A synthetic raw tweet: a sample text dressed the way real tweets are (case, punctuation, URL,
    @mention, html entity, elongated word, emoticon), labelled as a word. An emoticon counts like a
    polar word, as people read it; the elongation and entity leave the label alone."""
    text, label = _sample_text(rng)
    words = text.split()
    emoticon = ""
    if rng.random() < (0.25 if label else 0.05):
        sign = label or int(rng.choice([-1, 1]))
        emoticon = str(rng.choice([":)", ":-)", ":D"] if sign > 0 else [":(", ":'("]))
        label = sign
        words.append(emoticon)
    if rng.random() < 0.3:
        i = int(rng.integers(len(words)))
        w = words[i]
        if w.isalpha():
            words[i] = w[:-1] + w[-1] * int(rng.integers(3, 6))  # "goooood"-style elongation
    if rng.random() < 0.5:
        words[0] = words[0].capitalize()
    if rng.random() < 0.1:
        i = int(rng.integers(len(words)))
        words[i] = words[i].upper()
    out = " ".join(words)
    if not emoticon:
        out += str(rng.choice(["", ".", "!", "!!!", "?", "..."]))
    if rng.random() < 0.2:
        out = f"@user{int(rng.integers(1000))} {out}"
    if rng.random() < 0.15:
        out += f" http://t.co/{int(rng.integers(10**6)):x}"
    if rng.random() < 0.1:
        out = out.replace(" ", " &amp; ", 1)
    return out, _WORDS[label]


def generate_sample(out_dir: Path, rows: int = 1500, seed: int = 0, *, defects: bool = True,
                    human_rows: int | None = None) -> list[Path]:
    """Write synthetic ``Twitter_Data.csv``, ``Reddit_Data.csv`` (``rows`` data rows each) and the
    human-labelled ``HUMAN_FILE`` of raw tweets (``human_rows``, default ``rows // 2``; 0: none).

    With ``defects`` the files also carry the real files' documented defects (an empty text, a label
    that slipped onto the next row, a whitespace-only comment) so the loader's handling is exercised.
    """
    if rows < 10:
        raise ValueError(f"rows must be >= 10, got {rows}")
    human_rows = rows // 2 if human_rows is None else human_rows
    if human_rows and human_rows < 10:
        raise ValueError(f"human_rows must be 0 or >= 10, got {human_rows}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for name, text_col in (("Twitter_Data.csv", "clean_text"), ("Reddit_Data.csv", "clean_comment")):
        records: list[tuple[str, ...]] = []
        for _ in range(rows):
            text, label = _sample_text(rng)
            records.append((text, str(label)))
        if defects and name == "Twitter_Data.csv":
            records[5] = ("", "0")  # empty text with a label
            records[20] = (records[20][0], "")  # label slipped onto the next row ...
            records[21] = ("", "1")  # ... which has no text
        elif defects:
            records[7] = ("   ", "0")  # whitespace-only comment
        paths.append(_write_csv(out_dir / name, [text_col, LABEL_COLUMN], records))
    if human_rows:
        records = [(f"s{i:05d}", *_raw_tweet(rng)) for i in range(human_rows)]
        if defects:
            records[3] = (records[3][0], " ", records[3][2])  # whitespace-only tweet
        paths.append(_write_csv(out_dir / HUMAN_FILE, ["textID", RAW_TEXT_COLUMN, SENTIMENT_COLUMN], records))
    return paths


def _write_csv(path: Path, header: list[str], records: list[tuple[str, ...]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(records)
    return path
