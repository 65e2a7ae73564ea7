"""Data contract of the fraud model: the `credit_card_fraud_10k.csv` file schema, its loader,
the feature encoding shared by training and the online runtime, and a synthetic sample generator.

The loader reads every cell as text and validates it with the pandera schemas below (the cells as
written, then the parsed frame), so a bad cell is reported with its file, column, 1-based data row
and value (`DataContractError`, pandera's failure-case report attached) instead of surfacing later
as a pandas dtype surprise. The shared file has no documented defects (no empty cells, every row as wide
as the header), so there is nothing to repair: any deviation refuses the file. What the loader does
note is recorded in `frame.attrs["contract"]` (source, rows, positives, compression).
"""

from __future__ import annotations

import argparse
import functools
import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.data.contract import DataContractError

# pandera (ml/training/validation.py) is imported where a file is validated: serving code may import this
# module for its constants and encodings, and should not load pandera at start-up.
FILE = "credit_card_fraud_10k.csv"
ID, LABEL = "transaction_id", "is_fraud"
RAW_COLUMNS = [
    "transaction_id", "amount", "transaction_hour", "merchant_category", "foreign_transaction",
    "location_mismatch", "device_trust_score", "velocity_last_24h", "cardholder_age", "is_fraud",
]
# Fixed order: the code of a category is its index here, so training and serving agree without
# fitting an encoder. Adding a category is a model change (retrain), never a silent remap.
MERCHANT_CATEGORIES = ("Clothing", "Electronics", "Food", "Grocery", "Travel")
_CATEGORY_CODE = {c: float(i) for i, c in enumerate(MERCHANT_CATEGORIES)}

# Model inputs, in matrix column order. The raw names are kept: the online runtime receives the
# first five in the request and reads the last three from the feature store.
FEATURES: list[str] = [
    "amount", "transaction_hour", "merchant_category", "foreign_transaction", "location_mismatch",
    "device_trust_score", "velocity_last_24h", "cardholder_age",
]

# Allowed integer ranges (inclusive). Wider than the observed ranges of the shared file where the
# domain allows it (a trust score is a 0-100 scale, an age has no hard upper bound below 120).
INT_RANGES: dict[str, tuple[int, int]] = {
    "transaction_id": (1, 2**53),
    "transaction_hour": (0, 23),
    "foreign_transaction": (0, 1),
    "location_mismatch": (0, 1),
    "device_trust_score": (0, 100),
    "velocity_last_24h": (0, 1000),
    "cardholder_age": (18, 120),
}
LABEL_VALUES = {"TRUE": 1, "FALSE": 0}


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _finite(text: pd.Series) -> pd.Series:
    return pd.Series(np.isfinite(pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)), index=text.index)


# The contract as pandera schemas (ml/training/validation.py), in two passes: the cells as written
# (every column text: present, non-empty, parseable, in the allowed set), then the parsed frame
# (ranges, uniqueness). A failure names file, column, row and the cell as written. Built on first
# use: pandera is not imported where only the encoding is needed (the serving runtime).
_EMPTY = "empty cell (or the row has fewer fields than the header)"


def _text_column(column: str) -> Any:
    import pandera.pandas as pa

    from ml.training.validation import integer_text, non_empty_text

    checks = [non_empty_text(_EMPTY)]
    if column == "amount":
        checks.append(pa.Check(_finite, error="expected a finite number"))
    elif column == "merchant_category":
        checks.append(pa.Check.isin(list(MERCHANT_CATEGORIES),
                                    error=f"value not in the allowed set {list(MERCHANT_CATEGORIES)}"))
    elif column == LABEL:
        checks.append(pa.Check.isin(list(LABEL_VALUES), error=f"value not in the allowed set {list(LABEL_VALUES)}"))
    else:
        checks.append(integer_text())
    return pa.Column(str, checks=checks)


@functools.cache
def text_schema() -> Any:
    import pandera.pandas as pa

    from ml.training.validation import has_rows

    return pa.DataFrameSchema({c: _text_column(c) for c in RAW_COLUMNS}, strict=True, ordered=False,
                              checks=[has_rows()], name="fraud.transactions.cells")


def _range(column: str) -> Any:
    import pandera.pandas as pa

    lo, hi = INT_RANGES[column]
    return pa.Check.in_range(lo, hi, error=f"value outside the allowed range {lo}..{hi}")


@functools.cache
def typed_schema() -> Any:
    import pandera.pandas as pa

    return pa.DataFrameSchema(
        {
            ID: pa.Column("int64", _range(ID), unique=True, report_duplicates="exclude_first"),
            "amount": pa.Column("float64", pa.Check.ge(0, error="amount must be >= 0")),
            **{c: pa.Column("int64", _range(c)) for c in INT_RANGES if c != ID},
            "merchant_category": pa.Column(str),
            LABEL: pa.Column("int64", pa.Check.isin([0, 1])),
        },
        strict=True, name="fraud.transactions",
    )


@functools.cache
def serving_schema() -> Any:
    """Sampled serving inputs (the columns the runtime monitors, ml/serving/serving_log.py): request
    features and the returned score; the drift report runs it on the serving window."""
    import pandera.pandas as pa

    return pa.DataFrameSchema(
        {
            "score": pa.Column(float, pa.Check.in_range(0, 1), coerce=True),
            "amount": pa.Column(float, pa.Check.ge(0), coerce=True),
            **{c: pa.Column(float, _range(c), coerce=True)
               for c in ("transaction_hour", "device_trust_score", "velocity_last_24h", "cardholder_age")},
        },
        strict=False, name="fraud.serving_inputs",
    )


def load_transactions(path: Path) -> pd.DataFrame:
    """Read and validate one transactions file (`.csv` or `.csv.gz`); `is_fraud` becomes int 0/1.

    Raises DataContractError naming the file, column, row and value of the first problem (pandera's
    full report attached): missing or unexpected column, empty file, empty cell, wrong type, value
    outside the allowed set/range, or a duplicate transaction_id.
    """
    path = Path(path)
    if not path.is_file():
        raise DataContractError(path, "file not found")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False,
                          compression="gzip" if path.suffix == ".gz" else None)
    except pd.errors.EmptyDataError as exc:
        raise DataContractError(path, "file is empty (no header row)") from exc
    except pd.errors.ParserError as exc:
        raise DataContractError(path, f"not a well-formed CSV file: {str(exc).strip()}") from exc
    except (UnicodeDecodeError, gzip.BadGzipFile, OSError) as exc:
        raise DataContractError(path, f"cannot be read as {'gzip ' if path.suffix == '.gz' else ''}"
                                      f"UTF-8 CSV: {exc}") from exc
    from ml.training.validation import validate

    validate(text_schema(), raw, path)
    frame = pd.DataFrame(index=raw.index)
    for column in RAW_COLUMNS:
        if column == "amount":
            frame[column] = pd.to_numeric(raw[column]).astype("float64")
        elif column == "merchant_category":
            frame[column] = raw[column].to_numpy()
        elif column == LABEL:
            frame[column] = raw[column].map(LABEL_VALUES).astype("int64")
        else:
            frame[column] = raw[column].str.strip().astype("int64")
    frame = validate(typed_schema(), frame[RAW_COLUMNS], path, raw=raw)
    frame.attrs["contract"] = {
        "source": str(path), "rows": len(frame), "positives": int(frame[LABEL].sum()),
        "compressed": path.suffix == ".gz", "defects_repaired": {},  # none documented for this file
    }
    return frame


def load(data_dir: Path) -> pd.DataFrame:
    """The validated transactions of `data_dir`/FILE (or FILE.gz when only that exists)."""
    data_dir = Path(data_dir)
    candidates = [data_dir / FILE, data_dir / f"{FILE}.gz"]
    present = [p for p in candidates if p.is_file()]
    if not present:
        raise DataContractError(data_dir, f"neither {FILE} nor {FILE}.gz found in the data directory")
    if len(present) > 1:
        raise DataContractError(data_dir, f"both {FILE} and {FILE}.gz exist; keep one so the input is unambiguous")
    return load_transactions(present[0])


def encode(df: pd.DataFrame) -> np.ndarray:
    """Model input matrix (float32, FEATURES order) from raw feature columns.

    Used unchanged by training and the online runtime (which may pass float defaults for the
    store features). Raises DataContractError for a missing column, a non-numeric or missing value,
    or a merchant_category outside MERCHANT_CATEGORIES.
    """
    source = df.attrs.get("contract", {}).get("source", "<input frame>")
    missing = [c for c in FEATURES if c not in df.columns]
    if missing:
        raise DataContractError(source, f"missing feature column(s) {missing}", missing[0])
    out = np.empty((len(df), len(FEATURES)), dtype=np.float32)
    for j, column in enumerate(FEATURES):
        values = df[column].to_numpy()
        if column == "merchant_category":
            codes = [_CATEGORY_CODE.get(v, np.nan) if isinstance(v, str) else np.nan for v in values]
            col = np.asarray(codes, dtype=np.float32)
            bad = np.isnan(col)
            if bad.any():
                i = _first_bad(bad)
                expected = list(MERCHANT_CATEGORIES)
                raise DataContractError(source, f"unknown merchant_category; expected one of {expected}",
                                        column, i + 1, values[i])
        else:
            try:
                col = values.astype(np.float32)
            except (TypeError, ValueError) as exc:
                raise DataContractError(source, f"non-numeric values ({exc})", column) from exc
            bad = ~np.isfinite(col)
            if bad.any():
                i = _first_bad(bad)
                raise DataContractError(source, "missing or non-finite value", column, i + 1, values[i])
        out[:, j] = col
    return out


def generate_sample(out_dir: Path, rows: int = 2000, seed: int = 0) -> Path:
    """Write a synthetic FILE (same name and schema as the shared file) into `out_dir`; return its path.

    The label follows a noisy risk score over night hours, high velocity, low device trust, foreign
    transactions and location mismatch (the kind of signal the shared file shows), with a higher
    fraud rate (~3.5 %) than the real file so that a 2,000-row sample still has enough positives.
    """
    if rows < 100:
        raise ValueError(f"rows must be >= 100 for a usable sample (both classes), got {rows}")
    rng = np.random.default_rng(seed)
    night = rng.random(rows) < 0.25
    hour = np.where(night, rng.integers(0, 4, rows), rng.integers(4, 24, rows))
    foreign = (rng.random(rows) < 0.16).astype(int)
    mismatch = (rng.random(rows) < 0.15).astype(int)
    trust = np.clip(np.round(rng.normal(57, 20, rows)), 25, 99).astype(int)
    velocity = np.clip(rng.poisson(2.1, rows), 0, 9)
    risk = (night.astype(float) + foreign + mismatch + (trust <= 40) + (velocity >= 5)
            + rng.normal(0, 0.2, rows))
    fraud = risk >= 2.5  # ~3 of the 5 risk signals; the noise mislabels a few percent
    frame = pd.DataFrame({
        "transaction_id": np.arange(1, rows + 1),
        "amount": np.round(rng.gamma(1.6, 110.0, rows) * np.where(fraud, 1.2, 1.0), 2),
        "transaction_hour": hour,
        "merchant_category": rng.choice(MERCHANT_CATEGORIES, rows),
        "foreign_transaction": foreign,
        "location_mismatch": mismatch,
        "device_trust_score": trust,
        "velocity_last_24h": velocity,
        "cardholder_age": rng.integers(18, 70, rows),
        "is_fraud": np.where(fraud, "TRUE", "FALSE"),
    })
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FILE
    frame.to_csv(path, index=False, float_format="%.2f")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Validate a fraud transactions file or write a sample.")
    parser.add_argument("--data", type=Path, help="directory holding " + FILE)
    parser.add_argument("--generate", type=Path, help="write a synthetic sample into this directory")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.generate:
        print(generate_sample(args.generate, args.rows, args.seed))
    if args.data:
        print(load(args.data).attrs["contract"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
