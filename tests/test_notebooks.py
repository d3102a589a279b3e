"""The notebooks for real: papermill runs with recorded values, and nbval replays of all six."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from workbook import notebooks, operations, record
from workbook.local.target import LocalTarget
from workbook.settings import Settings, project_root

pytestmark = [pytest.mark.integration, pytest.mark.notebooks]

ABSOLUTE = re.compile(r'"(/root|/tmp|/work|/home)/')
SECRETS = re.compile(r"(client_secret|AccountKey=|password)\s*[:=]", re.IGNORECASE)


@pytest.fixture
def use_mesh(mesh: LocalTarget, monkeypatch: pytest.MonkeyPatch) -> LocalTarget:
    """Point notebook kernels (they inherit the environment) at the session mesh."""
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(mesh.settings.state_dir))
    return mesh


SENTINEL = "sentinel-client-secret-4f2a9c"


def assert_machine_free(text: str, *paths: Path) -> None:
    """No secret from the environment, no path of this machine in an executed notebook."""
    assert SENTINEL not in text
    for p in (project_root(), Path.home(), Path(sys.prefix), *paths):
        assert str(p) not in text, f"executed notebook holds {p}"


def test_stage_notebook_records_a_fitting_split(
    use_mesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_CLIENT_SECRET", SENTINEL)  # what a pipeline agent would hold
    out = notebooks.run_notebook(
        "04_shift_traffic",
        {"canary_weight": 25, "requests": 600, "alpha": 1e-4},
        run_dir=tmp_path,
    )
    stage = record.from_notebook(nbformat.read(out, as_version=4))["stage"]
    assert stage["canary_weight"] == 25
    assert stage["weights"] == {"v1": 75, "v2": 25}
    assert stage["probe"]["total"] == 600 and stage["probe"]["errors"] == 0
    assert stage["split"]["passed"] and stage["passed"]
    assert record.load("stage", tmp_path)["canary_weight"] == 25
    for fig in ("split-025.png", "latency-025.png", "mesh-025.png"):
        assert (tmp_path / fig).stat().st_size > 10_000
    # the figures show inline in the executed notebook (what Jupyter and the pipeline show)
    nb = nbformat.read(out, as_version=4)
    shown = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(shown) >= 3
    text = out.read_text()
    assert "<Figure size" not in text
    shown_text = [
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        for o in c.get("outputs", [])
    ]
    assert sum(stage["line"] in t for t in shown_text) == 1  # the stage's line, shown once
    assert not ABSOLUTE.search(text), "executed notebook holds an absolute path"
    assert not SECRETS.search(text)
    assert_machine_free(text, tmp_path, use_mesh.settings.state_dir)


def test_stage_notebook_fails_when_the_canary_errs(use_mesh, tmp_path: Path) -> None:
    # the dummy canary answers half of its requests with a 500: the stage's gate must fail
    fault = [{"name": "DUMMY_ERROR_RATE", "value": "0.5"}]
    operations.upgrade(use_mesh, {"canary": {"env": fault}})
    try:
        with pytest.raises(notebooks.NotebookError, match="StageFailed"):
            notebooks.run_notebook(
                "04_shift_traffic", {"canary_weight": 30, "requests": 300}, run_dir=tmp_path
            )
    finally:
        operations.upgrade(use_mesh, {"canary": {"env": []}})
    stage = record.load("stage", tmp_path)
    assert stage["passed"] is False and stage["probe"]["errors"] > 0
    # the failed notebook is what a rollback stage publishes: its traceback is machine-free too
    assert_machine_free((tmp_path / "04_shift_traffic.ipynb").read_text(), tmp_path)


def test_a_notebook_run_out_of_order_says_which_to_run_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "empty-state"))  # nothing deployed
    with pytest.raises(notebooks.NotebookError, match="Run notebook 03_deploy_helm first") as err:
        notebooks.run_notebook("04_shift_traffic", {"requests": 50}, run_dir=tmp_path / "run")
    assert err.value.exit_code == 2
    nb = nbformat.read(tmp_path / "run" / "04_shift_traffic.ipynb", as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert len(errors) == 1 and len(errors[0]["traceback"]) == 1  # one line, no traceback
    assert "Run notebook 03_deploy_helm first." in errors[0]["traceback"][0]


def test_header_notebook_pins_every_request(use_mesh, tmp_path: Path) -> None:
    out = notebooks.run_notebook("05_header_routing", {"requests": 100}, run_dir=tmp_path)
    result = record.from_notebook(nbformat.read(out, as_version=4))["header_routing"]
    assert result["stable"]["counts"] == {"v1": 100}
    assert result["canary"]["counts"] == {"v2": 100}


def test_nbval_replays_all_notebooks_against_a_fresh_mesh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = sorted(p.name for p in (project_root() / "notebooks").iterdir())
    env = dict(os.environ)
    env["WORKBOOK_STATE_DIR"] = str(tmp_path / "state")
    env["WORKBOOK_RUN_DIR"] = str(tmp_path / "run")
    (tmp_path / "run").mkdir()
    paths = [str(project_root() / "notebooks" / f"{n}.ipynb") for n in notebooks.NOTEBOOKS]
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "--nbval-lax",
                "--nbval-current-env",
                "--nbval-cell-timeout",
                "300",
                *paths,
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        # 06 again on the promoted release: one clear line, what it found, the history shown
        monkeypatch.setenv("WORKBOOK_STATE_DIR", str(tmp_path / "state"))
        with pytest.raises(notebooks.NotebookError, match="there is no canary to promote"):
            notebooks.run_notebook("06_promote_or_rollback", {}, run_dir=tmp_path / "again")
    finally:
        LocalTarget(Settings(state_dir=tmp_path / "state")).down()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert re.search(r"\d+ passed", proc.stdout)
    again = nbformat.read(tmp_path / "again" / "06_promote_or_rollback.ipynb", as_version=4)
    shown = "".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in again.cells
        for o in c.get("outputs", [])
    )
    assert "found revision" in shown and "no canary" in shown and "description" in shown
    # nothing was written next to the notebooks
    assert sorted(p.name for p in (project_root() / "notebooks").iterdir()) == before


def test_committed_notebooks_are_clean() -> None:
    for name in notebooks.NOTEBOOKS:
        nb = json.loads((project_root() / "notebooks" / f"{name}.ipynb").read_text())
        assert nb["metadata"]["kernelspec"]["name"] == "python3"
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1 and 'target = "local"' in "".join(tagged[0]["source"])
        text = json.dumps(nb)
        assert not ABSOLUTE.search(text) and not SECRETS.search(text)
        tags = [c.get("metadata", {}).get("tags", []) for c in nb["cells"]]
        checked = [c for c, t in zip(nb["cells"], tags, strict=True) if "nbval-check-output" in t]
        assert not any("NBVAL_" in "".join(c.get("source", "")) for c in nb["cells"])
        assert checked and all(c.get("outputs") for c in checked), f"{name}: no compared output"
        # what JupyterLab writes for this environment's kernel, and nothing a run leaves behind:
        # opening the notebook does not modify it, a refresh changes only what the run changed
        from ipykernel.kernelspec import get_kernel_dict

        assert nb["metadata"]["kernelspec"]["display_name"] == get_kernel_dict()["display_name"]
        assert not any("execution" in c.get("metadata", {}) for c in nb["cells"]), name
        assert "papermill" not in nb["metadata"] and "<Figure size" not in text
    # the committed stage notebook shows its figures without being run
    nb = json.loads((project_root() / "notebooks" / "04_shift_traffic.ipynb").read_text())
    outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3
