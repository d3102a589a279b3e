"""Run the workbook's notebooks with papermill: one executed copy per run, figures beside it."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from workbook import flow
from workbook.errors import ConfigError, WorkbookError
from workbook.settings import DEFAULT_REQUESTS, Settings, project_root

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


class NotebookExecutor:
    """Runs each step of the flow as its notebook(s), each in its own folder under ``run_dir``."""

    def __init__(
        self,
        run_dir: Path,
        *,
        target: str = "local",
        requests: int = DEFAULT_REQUESTS,
        deploy_params: dict[str, Any] | None = None,
        echo: Any = print,
    ) -> None:
        self.run_dir, self.target, self.requests, self.echo = run_dir, target, requests, echo
        self.deploy_params = dict(deploy_params or {})
        self.outputs: list[Path] = []
        self.image_ref = ""

    def _run(self, folder: str, name: str, params: dict[str, Any]) -> Path:
        shown = {k: v for k, v in params.items() if k != "target"}
        self.echo(f"running {name} {shown}")
        out = run_notebook(name, {"target": self.target, **params}, run_dir=self.run_dir / folder)
        self.outputs.append(out)
        return out

    def __call__(self, step: str) -> flow.StepOutcome:
        from workbook import record

        weight = flow.shift_weight(step)
        if weight is not None:
            out = self._run(
                f"04_shift_traffic-{weight:03d}",
                "04_shift_traffic",
                {"canary_weight": weight, "requests": self.requests},
            )
            stage = record.load("stage", out.parent)
            self.echo("  " + str(stage.get("line", "")))
            return flow.StepOutcome(step, True, data=stage)
        if step == flow.PACKAGE:
            settings = Settings.from_env(target=self.target)
            self._run("01_workspace_setup", "01_workspace_setup", {})
            out = self._run(
                "02_package_image", "02_package_image", {"model_version": settings.canary_version}
            )
            self.image_ref = str(record.load("image", out.parent)["ref"])
            return flow.StepOutcome(step, True, data={"image": self.image_ref})
        if step == flow.DEPLOY:
            params = {"canary_image": self.image_ref, **self.deploy_params}
            self._run("03_deploy_helm", "03_deploy_helm", params)
            return flow.StepOutcome(step, True)
        if step == flow.SMOKE:
            self._run(
                "05_header_routing", "05_header_routing", {"requests": min(self.requests, 200)}
            )
            return flow.StepOutcome(step, True)
        if step in (flow.PROMOTE, flow.ROLLBACK):
            self._run("06_promote_or_rollback", "06_promote_or_rollback", {"decision": step})
            return flow.StepOutcome(step, True)
        raise ConfigError("step", step, f"is not a step of the flow {flow.plan((100,))}")


def walkthrough(
    run_dir: Path,
    *,
    target: str = "local",
    requests: int = DEFAULT_REQUESTS,
    deploy_params: dict[str, Any] | None = None,
    echo: Any = print,
) -> tuple[flow.FlowResult, list[Path]]:
    """The whole canary through the notebooks, one step after the other (``workbook.flow``), for
    the settings' stage plan. A failing step rolls back through notebook 06."""
    settings = Settings.from_env(target=target)
    execute = NotebookExecutor(
        run_dir, target=target, requests=requests, deploy_params=deploy_params, echo=echo
    )

    def on_step(outcome: flow.StepOutcome) -> None:
        if not outcome.passed:
            echo(f"  {outcome.step} failed: " + "; ".join(outcome.reasons))

    result = flow.run(flow.plan(settings.stages), execute, on_step=on_step)
    return result, execute.outputs


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
