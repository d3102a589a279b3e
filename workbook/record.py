"""Record values from a notebook so later stages, the pipeline summary and tests can read them.

A recorded value is shown in the notebook as JSON (tagged with its key in the output metadata)
and written to ``records.json`` in the run directory (the notebook's working directory).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from workbook.files import read_json, write_json

RECORDS = "records.json"
METADATA_KEY = "workbook_record"


def run_dir() -> Path:
    """Where this run writes: ``WORKBOOK_RUN_DIR`` or the working directory."""
    return Path(os.environ.get("WORKBOOK_RUN_DIR", ".")).resolve()


def record(key: str, value: Any, *, display: bool = True) -> Any:
    """Store ``value`` under ``key`` in the run's records and show it in the notebook."""
    data = json.loads(json.dumps(value, default=str))
    path = run_dir() / RECORDS
    records = read_json(path, {})
    records[key] = data
    write_json(path, records)
    if display:
        try:
            from IPython.display import display as show

            show({"application/json": data}, raw=True, metadata={METADATA_KEY: key})
        except ImportError:  # outside Jupyter
            pass
    return value


def load(key: str | None = None, directory: Path | None = None) -> Any:
    """Read one record (or all of them) back from a run directory."""
    records = read_json((directory or run_dir()) / RECORDS, {})
    return records if key is None else records[key]


def from_notebook(nb: dict[str, Any]) -> dict[str, Any]:
    """Recorded values found in an executed notebook's outputs (what tests assert on)."""
    out: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        for o in cell.get("outputs", []):
            key = o.get("metadata", {}).get(METADATA_KEY)
            if key is not None:
                out[key] = o.get("data", {}).get("application/json")
    return out
