"""Execute the committed notebooks in order against a fresh local mesh and keep their outputs.

nbval compares later runs with these outputs. Each notebook runs in its own folder of one
temporary rollout (as a walkthrough does), so records and figures never land next to the
notebooks; the mesh is stopped at the end.

A refresh changes only what really changed: no execution timestamps, one kernel spec (the one
JupyterLab writes for this environment, so opening a notebook does not modify it), no ports of
this run's gateway, no machine paths.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

from workbook.local.target import LocalTarget
from workbook.notebooks import (
    KERNEL_ARGS,
    NOTEBOOK_ENV,
    NOTEBOOKS,
    coalesce_streams,
    machine_free,
)
from workbook.settings import Settings

ROOT = Path(__file__).resolve().parent.parent / "notebooks"

#: What ipykernel's own kernel spec says (``ipykernel.kernelspec.get_kernel_dict``): JupyterLab
#: writes this back on open when the notebook holds anything else.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
#: Cell metadata a run writes that says nothing about the notebook.
VOLATILE_CELL_METADATA = ("execution", "collapsed", "scrolled")
#: A loopback address with the port this run's gateway happened to get (a free port).
PORT = re.compile(r"127\.0\.0\.1:\d{2,5}")


def _stable_text(value: Any) -> Any:
    """Strings with ports and machine paths made the same on every run, recursively."""
    if isinstance(value, str):
        return PORT.sub("127.0.0.1:PORT", machine_free(value))
    if isinstance(value, list):
        return [_stable_text(v) for v in value]
    if isinstance(value, dict):
        return {k: _stable_text(v) for k, v in value.items()}
    return value


def tidy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook as committed: stable metadata, outputs without run-specific noise."""
    coalesce_streams(nb)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    for key in ("widgets", "papermill"):
        nb.metadata.pop(key, None)
    for cell in nb.cells:
        cell.setdefault("id", secrets.token_hex(4))  # a new cell; kept on every later refresh
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        for output in cell.get("outputs", []):
            for key in ("text", "evalue", "traceback", "metadata"):
                if key in output:
                    output[key] = _stable_text(output[key])
            data = output.get("data", {})
            for mime in [m for m in data if m.startswith("text/") or m.endswith("json")]:
                data[mime] = _stable_text(data[mime])
    return nbformat.from_dict(nb)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="workbook-nb-") as tmp:
        os.environ["WORKBOOK_STATE_DIR"] = str(Path(tmp) / "state")
        rollout = Path(tmp) / "rollout"
        try:
            for name in NOTEBOOKS:
                run_dir = rollout / name
                run_dir.mkdir(parents=True)
                os.environ["WORKBOOK_RUN_DIR"] = str(run_dir)
                os.environ[NOTEBOOK_ENV] = name
                path = ROOT / f"{name}.ipynb"
                nb = nbformat.read(path, as_version=4)
                NotebookClient(
                    nb,
                    kernel_name="python3",
                    timeout=600,
                    record_timing=False,
                    extra_arguments=list(KERNEL_ARGS),
                    resources={"metadata": {"path": str(run_dir)}},
                ).execute()
                nbformat.write(tidy(nb), path)
                print("executed", name)
        finally:
            LocalTarget(Settings.from_env()).down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
