"""Record values from a notebook so later stages, the pipeline summary and tests can read them.

A recorded value is written to ``records.json`` in the run directory and shown in the notebook as
one short line; the whole value rides along in the output's metadata (under ``workbook_record``
and ``workbook_value``), where :func:`from_notebook` reads it back from an executed notebook.

The run directory is ``WORKBOOK_RUN_DIR`` (papermill runs, the pipeline, the walkthrough). A
notebook opened in Jupyter without it writes into its own folder of the current rollout,
``runs/<rollout>/<notebook>-<time>/`` (see ``workbook.notebooks.run_folder``), never next to the
notebooks; outside a kernel it is the working directory.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from workbook.files import read_json, write_json

RECORDS = "records.json"
METADATA_KEY = "workbook_record"
VALUE_KEY = "workbook_value"
#: The longest line a recorded value is shown as.
SHOWN_CHARS = 160

_interactive_dir: Path | None = None


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (not in plain Python, not in a terminal IPython)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return getattr(shell, "kernel", None) is not None


def run_dir() -> Path:
    """Where this run writes: ``WORKBOOK_RUN_DIR``; in a kernel without it, this notebook's own
    run folder under ``runs/``; else the working directory."""
    global _interactive_dir
    env = os.environ.get("WORKBOOK_RUN_DIR")
    if env:
        return Path(env).resolve()
    if not _in_kernel():
        return Path(".").resolve()
    if _interactive_dir is None:
        from workbook.notebooks import kernel_notebook, run_folder

        _interactive_dir = run_folder(kernel_notebook())
        _interactive_dir.mkdir(parents=True, exist_ok=True)
    return _interactive_dir


def _next_interactive_run(key: str) -> None:
    """A notebook run again in the same kernel records its keys again: that is a new run, with
    its own folder, so the earlier run's records and figures stay as they were."""
    global _interactive_dir
    if _interactive_dir is not None and key in read_json(_interactive_dir / RECORDS, {}):
        _interactive_dir = None


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False, separators=(", ", ": "))


def summary(key: str, value: Any, limit: int = SHOWN_CHARS) -> str:
    """One line for a recorded value: a stage's own line, ``key=value`` pairs for other records
    (``recorded image: ref=..., digest=...``), cut at ``limit`` characters."""
    if isinstance(value, dict) and isinstance(value.get("line"), str):
        text = value["line"]
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={_compact(v)}" for k, v in value.items())
    else:
        text = _compact(value)
    line = f"recorded {key}: {text}"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def record(key: str, value: Any, *, display: bool = True) -> None:
    """Store ``value`` under ``key`` in the run's records and show it as one line."""
    data = json.loads(json.dumps(value, default=str))
    if not os.environ.get("WORKBOOK_RUN_DIR"):
        _next_interactive_run(key)
    path = run_dir() / RECORDS
    records = read_json(path, {})
    records[key] = data
    write_json(path, records)
    if display:
        try:
            from IPython.display import display as show
        except ImportError:  # outside Jupyter
            return
        show(
            {"text/plain": summary(key, data)},
            raw=True,
            metadata={METADATA_KEY: key, VALUE_KEY: data},
        )


def load(key: str | None = None, directory: Path | None = None) -> Any:
    """Read one record (or all of them) back from a run directory."""
    records = read_json((directory or run_dir()) / RECORDS, {})
    return records if key is None else records[key]


def from_notebook(nb: dict[str, Any]) -> dict[str, Any]:
    """Recorded values found in an executed notebook's outputs (what tests assert on)."""
    out: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {})
            key = meta.get(METADATA_KEY)
            if key is not None:
                out[key] = meta.get(VALUE_KEY, o.get("data", {}).get("application/json"))
    return out
