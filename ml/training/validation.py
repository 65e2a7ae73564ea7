"""Data validation with pandera: the models' data contracts are pandera schemas, run here.

Each model's `data.py` declares its file schemas (`pandera.pandas.DataFrameSchema`: columns, types,
allowed values and ranges, uniqueness, frame-level checks) and loads a file through `validate`, which
runs the schema lazily (every check, every row) and, on failure, raises `DataContractError` naming
the first failure (file, column, 1-based row, value, the check's message) with pandera's whole
failure-case report attached (`.report`). Why pandera and not Great Expectations: docs/MODELS.md.

Every validation made while `recording()` is active is collected: the training pipeline logs them to
MLflow (run artifact `validation/training.json`, tag `validation.passed`), and the drift report runs
the serving schemas on the sampled serving inputs the same way (`validation/serving.json`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa

from ml.data.contract import DataContractError

LIBRARY = f"pandera {version('pandera')}"
MAX_REPORTED_FAILURES = 200  # failure cases kept in a report (the count is always complete)
_STRUCTURAL = {"column_in_dataframe": 0, "column_in_schema": 1}  # reported before cell-level failures
_BUILTIN_MESSAGES = {"field_uniqueness": "duplicate {column}", "not_nullable": "missing value"}


@dataclass
class ValidationResult:
    """One schema run on one frame: what was checked and what failed (pandera's failure cases)."""

    schema: str
    source: str
    rows: int
    columns: list[str]
    checks: int  # checks the schema declares (column checks, dtype/uniqueness, frame checks)
    passed: bool
    failure_count: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)  # pandera failure cases, first N
    library: str = LIBRARY

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_local = threading.local()


@contextlib.contextmanager
def recording() -> Iterator[list[ValidationResult]]:
    """Collect every `validate` result made in this thread inside the block (nested blocks share)."""
    outer = getattr(_local, "results", None)
    results: list[ValidationResult] = [] if outer is None else outer
    _local.results = results
    try:
        yield results
    finally:
        _local.results = outer


def _record(result: ValidationResult) -> None:
    results = getattr(_local, "results", None)
    if results is not None:
        results.append(result)


def count_checks(schema: pa.DataFrameSchema) -> int:
    n = len(schema.checks) + (1 if schema.strict else 0)
    for column in schema.columns.values():
        n += len(column.checks) + (1 if column.dtype is not None else 0) + int(bool(column.unique))
        n += int(not column.nullable)
    return n


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _failures(cases: pd.DataFrame, order: Sequence[str]) -> list[dict[str, Any]]:
    """Failure cases sorted as a reader fixes them: structure first, then by column order and row."""
    rank = {c: i for i, c in enumerate(order)}
    rows = []
    for case in cases.to_dict("records"):
        index = case.get("index")
        rows.append({
            "column": case.get("column"), "check": str(case.get("check")),
            "row": None if index is None or pd.isna(index) else int(index) + 1,
            "value": _jsonable(case.get("failure_case")), "context": case.get("schema_context"),
            "check_number": None if pd.isna(case.get("check_number")) else int(case["check_number"]),
        })
    rows.sort(key=lambda r: (_STRUCTURAL.get(r["check"], 2), rank.get(str(r["column"]), len(rank)),
                             r["row"] or 0, -1 if r["check_number"] is None else r["check_number"]))
    return rows


def validate(schema: pa.DataFrameSchema, frame: pd.DataFrame, source: str | Path,
             raw: pd.DataFrame | None = None) -> pd.DataFrame:
    """Run `schema` on `frame` (every check, lazily); return the validated frame or raise
    DataContractError for the first failure with the full report attached. `raw`: the frame as read
    (text cells), so the error quotes the cell as written in the file rather than the parsed value."""
    name = schema.name or "schema"
    try:
        out = schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        failures = _failures(exc.failure_cases, list(schema.columns))
        result = ValidationResult(name, str(source), len(frame), list(frame.columns), count_checks(schema),
                                  passed=False, failure_count=len(failures),
                                  failures=failures[:MAX_REPORTED_FAILURES])
        _record(result)
        raise _contract_error(failures, frame, source, raw, result) from None
    _record(ValidationResult(name, str(source), len(frame), list(frame.columns), count_checks(schema), passed=True))
    return out


def _contract_error(failures: list[dict[str, Any]], frame: pd.DataFrame, source: str | Path,
                    raw: pd.DataFrame | None, result: ValidationResult) -> DataContractError:
    first = failures[0]
    column, check, row = first["column"], first["check"], first["row"]
    if check in _STRUCTURAL:
        expected = list(result.columns) if check == "column_in_schema" else None
        kind = [f["value"] for f in failures if f["check"] == check]
        if check == "column_in_dataframe":
            problem = f"missing column(s) {kind}; found columns {list(frame.columns)}"
        else:
            problem = f"unexpected column(s) {kind}; found columns {expected}"
        error = DataContractError(source, problem, str(kind[0]))
    elif column not in frame.columns:  # a frame-level check (e.g. "no data rows")
        error = DataContractError(source, check, None, row)
    else:
        value = first["value"]
        if check in _BUILTIN_MESSAGES:
            check = _BUILTIN_MESSAGES[check].format(column=column)
        if raw is not None and row is not None and column in raw.columns and first["check"] != "field_uniqueness":
            value = raw[column].iloc[row - 1]
        error = DataContractError(source, check, str(column), row, value)
    extra = result.failure_count - 1
    if extra:
        error.problem += f" (+{extra} more failure(s) in pandera's report)"
    error.report = result.as_dict()
    return error


def finite_numbers(name: str, columns: Sequence[str]) -> pa.DataFrameSchema:
    """A schema whose columns must all be finite numbers (the default serving-sample schema)."""
    import numpy as np

    finite = pa.Check(lambda s: np.isfinite(s.astype(float)), error="expected a finite number")
    return pa.DataFrameSchema({c: pa.Column(float, finite, coerce=True) for c in columns}, name=name)


def integer_text(error: str = "expected an integer") -> pa.Check:
    """A text cell that parses as a (signed, up to 18-digit) integer."""
    return pa.Check.str_matches(r"^\s*[+-]?\d{1,18}\s*$", error=error)


def non_empty_text(error: str = "empty cell") -> pa.Check:
    return pa.Check(lambda s: s.str.strip() != "", error=error)


def has_rows(error: str = "file has a header but no data rows") -> pa.Check:
    return pa.Check(lambda df: len(df) > 0, error=error)
