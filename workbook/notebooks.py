"""Run the workbook's notebooks with papermill: one executed copy per run, figures beside it."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from workbook.errors import ConfigError, WorkbookError
from workbook.settings import DEFAULT_REQUESTS, project_root

NOTEBOOKS = (
    "01_workspace_setup",
    "02_package_image",
    "03_deploy_helm",
    "04_shift_traffic",
    "05_header_routing",
    "06_promote_or_rollback",
)


class NotebookError(WorkbookError):
    """A notebook failed while papermill executed it."""


def notebook_path(name: str) -> Path:
    """The committed notebook for a name such as ``04_shift_traffic`` (with or without .ipynb)."""
    stem = name.removesuffix(".ipynb")
    path = project_root() / "notebooks" / f"{stem}.ipynb"
    if stem not in NOTEBOOKS or not path.exists():
        raise ConfigError("notebook", name, f"is not one of {list(NOTEBOOKS)}")
    return path


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def run_notebook(
    name: str,
    parameters: dict[str, Any] | None = None,
    *,
    run_dir: Path,
    timeout_s: int = 900,
    log_output: bool = False,
) -> Path:
    """Execute one notebook into ``run_dir`` (its working directory too); return the output."""
    import papermill as pm

    src = notebook_path(name)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / src.name
    env_before = os.environ.get("WORKBOOK_RUN_DIR")
    os.environ["WORKBOOK_RUN_DIR"] = str(run_dir.resolve())
    try:
        pm.execute_notebook(
            str(src),
            str(out),
            parameters=parameters or {},
            kernel_name="python3",
            cwd=str(run_dir),
            execution_timeout=timeout_s,
            log_output=log_output,
            progress_bar=False,
        )
    except pm.PapermillExecutionError as e:
        raise NotebookError(
            f"notebook {src.name} failed in cell {e.exec_count}: {e.ename}: {e.evalue} "
            f"(executed copy: {out})"
        ) from None
    finally:
        _relative_paths(out, src)  # while WORKBOOK_RUN_DIR still names this run
        if env_before is None:
            os.environ.pop("WORKBOOK_RUN_DIR", None)
        else:
            os.environ["WORKBOOK_RUN_DIR"] = env_before
    return out


def walkthrough(
    run_dir: Path,
    *,
    target: str = "local",
    stages: tuple[int, ...] | None = None,
    requests: int = DEFAULT_REQUESTS,
    decision: str = "promote",
    echo: Any = print,
) -> list[Path]:
    """The whole canary through the notebooks: 01 → 02 → 03 → 05 → 04 per stage → 06.

    Each notebook runs in its own folder under ``run_dir`` (executed copy, figures, records).
    A failing stage stops the walk and runs 06 with ``decision="rollback"``.
    """
    from workbook.settings import STAGE_PLAN, Settings

    settings = Settings.from_env(target=target)
    if target == "local":  # a walkthrough starts from a fresh local mesh
        from workbook.local.client import LocalCluster

        LocalCluster(settings).down()
    plan: list[tuple[str, str, dict[str, Any]]] = [
        ("01_workspace_setup", "01_workspace_setup", {"target": target}),
        (
            "02_package_image",
            "02_package_image",
            {"target": target, "model_version": settings.canary_version},
        ),
        ("03_deploy_helm", "03_deploy_helm", {"target": target, "canary_weight": 0}),
        ("05_header_routing", "05_header_routing", {"target": target}),
    ]
    for w in stages or STAGE_PLAN:
        plan.append(
            (
                f"04_shift_traffic-{w:03d}",
                "04_shift_traffic",
                {"target": target, "canary_weight": w, "requests": requests},
            )
        )
    outputs = []
    for folder, name, params in plan:
        echo(f"running {name} {params}")
        try:
            outputs.append(run_notebook(name, params, run_dir=run_dir / folder))
        except Exception as e:  # a failed cell, a timeout, a dead kernel: roll back all the same
            echo(f"  failed: {e}")
            decision = "rollback"
            break
    echo(f"running 06_promote_or_rollback decision={decision}")
    outputs.append(
        run_notebook(
            "06_promote_or_rollback",
            {"target": target, "decision": decision},
            run_dir=run_dir / "06_promote_or_rollback",
        )
    )
    return outputs


def _relative_paths(out: Path, src: Path) -> None:
    """papermill records absolute input/output paths; keep the executed notebook machine-free."""
    import nbformat

    if not out.exists():
        return
    nb = nbformat.read(out, as_version=4)
    meta = nb.metadata.get("papermill", {})
    if meta:
        meta["input_path"] = f"notebooks/{src.name}"
        meta["output_path"] = out.name
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for field in ("text", "evalue"):
                if isinstance(output.get(field), str):
                    output[field] = machine_free(output[field])
            if "traceback" in output:
                output["traceback"] = [machine_free(line) for line in output["traceback"]]
    nbformat.write(nb, out)


def machine_free(text: str) -> str:
    """Text with this machine's paths (checkout, environment, home, run dir) made relative."""
    import sys

    roots = {
        str(out_dir): "<run>"
        for out_dir in [Path(os.environ.get("WORKBOOK_RUN_DIR", "")).resolve()]
        if str(out_dir) != "/"
    }
    roots.update({str(project_root()): ".", sys.prefix: "<venv>", str(Path.home()): "~"})
    for root, short in sorted(roots.items(), key=lambda kv: -len(kv[0])):
        if root and root not in (".", "/"):
            text = text.replace(root + "/", short + "/").replace(root, short)
    return text
