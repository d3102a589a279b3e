"""The Porto Seguro Safe Driver input schema, read from the file the scoring image ships.

``workbook/scoring/safe-driver/schema.json`` is the one source: training builds its columns from
it and the image's score.py validates requests and publishes its swagger example from it.
Column types: ``binary`` (0 or 1), ``category`` and ``integer`` (whole numbers, -1 for missing)
and ``number`` (finite, -1 for missing), as in the competition data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "scoring" / "safe-driver" / "schema.json"

#: The value the competition data uses for a missing entry.
MISSING = -1

TYPES = ("binary", "category", "integer", "number")


@dataclass(frozen=True)
class Column:
    """One input column: its name and its type (one of ``TYPES``)."""

    name: str
    type: str

    @property
    def group(self) -> str:
        """``ind``, ``reg``, ``car`` or ``calc``: the competition's feature groups."""
        return self.name.split("_")[1]

    @property
    def whole(self) -> bool:
        """Whether the values are whole numbers (sent as JSON integers)."""
        return self.type != "number"


@cache
def load_schema(path: Path = SCHEMA_FILE) -> dict[str, Any]:
    """The schema document: ``{"columns": [{"name", "type"}, ...], "example": {column: value}}``."""
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return data


def columns() -> tuple[Column, ...]:
    """The 57 input columns in the competition's order."""
    return tuple(Column(c["name"], c["type"]) for c in load_schema()["columns"])


def column_names() -> list[str]:
    """The input column names in order."""
    return [c.name for c in columns()]


def example_row() -> dict[str, int | float]:
    """The example row published in the scoring server's swagger."""
    return dict(load_schema()["example"])
