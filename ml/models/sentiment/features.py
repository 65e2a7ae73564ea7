"""Feast definitions of the sentiment model: deliberately none.

The model's only input is the text of the request. The datasets carry no author, thread or time,
so there is no entity whose history could be stored and served (e.g. an author's past sentiment),
and every feature the model uses (negation-aware binary word features) is computed from the text
itself inside the model artifact. Putting text vectors in the online store would add a network
round trip to a sub-millisecond model for no gain. `definitions` returns an empty list so the
local platform can treat the three models alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_parquet(data_dir: Path, parquet_dir: Path) -> dict[str, Path]:
    """Nothing to derive: the sentiment model has no stored features."""
    return {}


def definitions(parquet_dir: Path) -> list[Any]:
    return []
