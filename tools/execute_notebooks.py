"""Execute the committed notebooks in order against a fresh local mesh and keep their outputs.

nbval compares later runs with these outputs. Records and figures go to a temporary run
directory, not next to the notebooks; the mesh is stopped at the end.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from workbook.local.target import LocalTarget
from workbook.notebooks import NOTEBOOKS
from workbook.settings import Settings

ROOT = Path(__file__).resolve().parent.parent / "notebooks"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="workbook-nb-") as tmp:
        os.environ["WORKBOOK_STATE_DIR"] = str(Path(tmp) / "state")
        os.environ["WORKBOOK_RUN_DIR"] = str(Path(tmp) / "run")
        Path(os.environ["WORKBOOK_RUN_DIR"]).mkdir()
        try:
            for name in NOTEBOOKS:
                path = ROOT / f"{name}.ipynb"
                nb = nbformat.read(path, as_version=4)
                NotebookClient(
                    nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": tmp}}
                ).execute()
                nbformat.write(nb, path)
                print("executed", name)
        finally:
            LocalTarget(Settings.from_env()).down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
