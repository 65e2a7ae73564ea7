"""Data-contract errors shared by the reference models' loaders.

A loader refuses broken input before any training starts, and says exactly what is wrong: which
file, which column, which value, and what was expected. Nothing is modified or dropped silently.
The checks themselves are pandera schemas run by ml/training/validation.py, which raises this error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class DataContractError(ValueError):
    """Input data does not match the model's file schema."""

    file: str | Path
    problem: str
    column: str | None = None
    row: int | None = None  # 1-based data row (header excluded), when one row is at fault
    value: object = None
    report: dict | None = None  # the validation library's report (ml/training/validation.py), when it ran

    def __str__(self) -> str:
        where = f"{self.file}"
        if self.column is not None:
            where += f", column '{self.column}'"
        if self.row is not None:
            where += f", row {self.row}"
        detail = f" (value {self.value!r})" if self.value is not None else ""
        return f"{where}: {self.problem}{detail}"
