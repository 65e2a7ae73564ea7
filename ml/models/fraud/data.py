"""Data contract of the fraud model: the `credit_card_fraud_10k.csv` file schema, its loader,
the feature encoding shared by training and the online runtime, and a synthetic sample generator.

The loader reads every cell as text and parses it column by column, so a bad cell is reported with
its file, column, 1-based data row and value (`DataContractError`) instead of surfacing later as a
pandas dtype surprise. The shared file has no documented defects (no empty cells, every row as wide
as the header), so there is nothing to repair: any deviation refuses the file. What the loader does
note is recorded in `frame.attrs["contract"]` (source, rows, positives, compression).
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from ml.common.contract import DataContractError

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


def _parse_int(path: Path, column: str, text: pd.Series) -> np.ndarray:
    bad = ~text.str.fullmatch(r"[+-]?\d{1,18}").to_numpy(dtype=bool)
    if bad.any():
        i = _first_bad(bad)
        raise DataContractError(path, "expected an integer", column, i + 1, text.iloc[i])
    ints = text.to_numpy().astype(np.int64)
    low, high = INT_RANGES[column]
    out = (ints < low) | (ints > high)
    if out.any():
        i = _first_bad(out)
        raise DataContractError(path, f"value outside the allowed range {low}..{high}", column, i + 1,
                                text.iloc[i])
    return ints


def _parse_amount(path: Path, text: pd.Series) -> np.ndarray:
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        i = _first_bad(bad)
        raise DataContractError(path, "expected a finite number", "amount", i + 1, text.iloc[i])
    if (values < 0).any():
        i = _first_bad(values < 0)
        raise DataContractError(path, "amount must be >= 0", "amount", i + 1, text.iloc[i])
    return values


def _parse_choice(path: Path, column: str, text: pd.Series, allowed: list[str]) -> np.ndarray:
    bad = ~text.isin(allowed).to_numpy()
    if bad.any():
        i = _first_bad(bad)
        raise DataContractError(path, f"value not in the allowed set {allowed}", column, i + 1, text.iloc[i])
    return text.to_numpy()


def load_transactions(path: Path) -> pd.DataFrame:
    """Read and validate one transactions file (`.csv` or `.csv.gz`); `is_fraud` becomes int 0/1.

    Raises DataContractError naming the file, column, row and value of the first problem: missing
    or unexpected column, empty file, empty cell, wrong type, value outside the allowed set/range,
    or a duplicate transaction_id.
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
    missing = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing:
        raise DataContractError(path, f"missing column(s) {missing}; found columns {list(raw.columns)}",
                                missing[0])
    extra = [c for c in raw.columns if c not in RAW_COLUMNS]
    if extra:
        raise DataContractError(path, f"unexpected column(s) {extra}; expected columns {RAW_COLUMNS}", extra[0])
    if raw.empty:
        raise DataContractError(path, "file has a header but no data rows")
    for column in RAW_COLUMNS:
        empty = (raw[column].str.strip() == "").to_numpy()
        if empty.any():
            # pandas pads a row with fewer fields than the header with empty cells
            raise DataContractError(path, "empty cell (or the row has fewer fields than the header)", column,
                                    _first_bad(empty) + 1, "")

    frame = pd.DataFrame(index=raw.index)
    for column in RAW_COLUMNS:
        if column == "amount":
            frame[column] = _parse_amount(path, raw[column])
        elif column == "merchant_category":
            frame[column] = _parse_choice(path, column, raw[column], list(MERCHANT_CATEGORIES))
        elif column == LABEL:
            text = _parse_choice(path, column, raw[column], list(LABEL_VALUES))
            frame[column] = np.array([LABEL_VALUES[v] for v in text], dtype=np.int64)
        else:
            frame[column] = _parse_int(path, column, raw[column])
    dup = frame[ID].duplicated().to_numpy()
    if dup.any():
        i = _first_bad(dup)
        raise DataContractError(path, "duplicate transaction_id", ID, i + 1, int(frame[ID].iloc[i]))
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
