"""Run the workbook's notebooks with papermill (one executed copy per run, figures beside it), and
what a notebook needs in Jupyter: its own run folder, one-line answers for the workbook's errors,
the release history as a table.

Run folders: ``runs/<rollout>/<notebook>-<time>/``. A rollout starts with a deploy (notebook 03):
notebooks 01-03 open a new rollout folder when the current one already holds a deploy, 04-06 join
the current one. So ``steps.stages_so_far`` (which reads the sibling folders) sees this rollout's
stages only.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from pathlib import Path
from typing import Any

from workbook import flow
from workbook.errors import (
    ConfigError,
    MeshError,
    NotRunningError,
    RegistryError,
    WorkbookError,
)
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


#: Where run folders go (default ``runs/`` in the checkout).
RUNS_ENV = "WORKBOOK_RUNS"
#: The file in the runs folder that names the current rollout's folder.
CURRENT_ROLLOUT = ".current-rollout"
#: Notebooks that begin a rollout (package, deploy): they open a new rollout folder once the
#: current one holds a deploy.
STARTS_ROLLOUT = ("01_workspace_setup", "02_package_image", "03_deploy_helm")
DEPLOY_NOTEBOOK = "03_deploy_helm"


def runs_root() -> Path:
    """The folder that holds every run: ``WORKBOOK_RUNS`` or ``runs/`` in the checkout."""
    return Path(os.environ.get(RUNS_ENV) or project_root() / "runs").resolve()


def _unique(path: Path) -> Path:
    n, out = 1, path
    while out.exists():
        n += 1
        out = path.with_name(f"{path.name}-{n}")
    return out


def rollout_dir(stem: str, root: Path | None = None) -> Path:
    """The rollout folder a run of notebook ``stem`` belongs to (created and made current when a
    new rollout begins)."""
    root = root or runs_root()
    pointer = root / CURRENT_ROLLOUT
    current = root / pointer.read_text().strip() if pointer.is_file() else None
    if current is not None and current.is_dir():
        deployed = any(current.glob(f"{DEPLOY_NOTEBOOK}*"))
        if not (stem in STARTS_ROLLOUT and deployed):
            return current
    new = _unique(root / f"rollout-{new_run_id()}")
    new.mkdir(parents=True)
    pointer.write_text(new.name + "\n")
    return new


def run_folder(stem: str, root: Path | None = None) -> Path:
    """A new folder for a run of notebook ``stem``: ``<rollout>/<stem>-<HHMMSS>`` (not created)."""
    stem = stem.removesuffix(".ipynb")
    return _unique(rollout_dir(stem, root) / f"{stem}-{dt.datetime.now():%H%M%S}")


#: The notebook a papermill kernel runs (set by :func:`run_notebook`).
NOTEBOOK_ENV = "WORKBOOK_NOTEBOOK"


def kernel_notebook() -> str:
    """The notebook this kernel runs for, as a stem such as ``04_shift_traffic``: papermill runs
    set ``WORKBOOK_NOTEBOOK``, Jupyter Server sets ``JPY_SESSION_NAME`` to the notebook's path;
    ``notebook`` when neither is known."""
    name = Path(os.environ.get(NOTEBOOK_ENV) or os.environ.get("JPY_SESSION_NAME", "")).name
    return name.removesuffix(".ipynb") or "notebook"


#: What to run first when a notebook finds nothing to work on.
RUN_FIRST = {
    "02_package_image": "01_workspace_setup",
    "03_deploy_helm": "02_package_image",
    "04_shift_traffic": DEPLOY_NOTEBOOK,
    "05_header_routing": DEPLOY_NOTEBOOK,
    "06_promote_or_rollback": DEPLOY_NOTEBOOK,
}
_CLI_HINT = re.compile(r"[:;,]?\s*run `workbook up`( first)?")


def _missing_prerequisite(error: BaseException) -> bool:
    if isinstance(error, NotRunningError | RegistryError):
        return True
    if isinstance(error, ConfigError):
        return error.field == "release"
    return isinstance(error, MeshError) and "nothing is deployed" in str(error)


def one_line(error: BaseException, notebook: str = "") -> str:
    """A workbook error as one line for a notebook: what went wrong and which notebook to run
    first when an earlier one is missing (instead of the CLI's ``workbook up``)."""
    notebook = notebook or kernel_notebook()
    message = " ".join(str(error).split())
    first = RUN_FIRST.get(notebook)
    if first and _missing_prerequisite(error):
        message = _CLI_HINT.sub("", message).rstrip(" .;:")
        return f"{type(error).__name__}: {message}. Run notebook {first} first."
    return f"{type(error).__name__}: {message}"


def _show_one_line(
    shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None
) -> list[str]:
    """IPython's custom exception handler: the error as one red line. IPython only asks the
    handler for the traceback lines, so it sends them itself (an ``error`` output, which fails the
    cell, stops Run All and fails a papermill run)."""
    stb = [f"\x1b[0;31m{one_line(value)}\x1b[0m"]
    shell._showtraceback(etype, value, stb)
    return stb


def setup() -> None:
    """In a Jupyter kernel: a ``WorkbookError`` ends the cell (and a papermill run) as failed,
    shown as one line instead of a traceback. Elsewhere: nothing."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((WorkbookError,), _show_one_line)


def history_table(target: Any) -> Any:
    """The release history as a table (pandas), one row per revision: status, the stable and
    canary versions, the canary's weight, what it did. The audit trail of every rollout."""
    import pandas as pd

    from workbook import canary, operations

    defaults = operations.defaults(target)
    rows = []
    for rel in target.releases.history():
        full = canary.merge(defaults, rel.values or {})
        on = canary.canary_enabled(full)
        rows.append(
            {
                "revision": rel.revision,
                "status": rel.status,
                "stable": canary.version_of(full, canary.STABLE),
                "canary": canary.version_of(full, canary.CANARY) if on else "-",
                "canary weight": canary.canary_weight(full) if on else 0,
                "description": rel.description,
            }
        )
    table = pd.DataFrame(
        rows, columns=["revision", "status", "stable", "canary", "canary weight", "description"]
    )
    return table.set_index("revision")


def found_state(status: Any) -> str:
    """What a notebook found deployed, in one line: ``revision 4: stable v2 100%, no canary``."""
    parts = [f"{v.track} {v.version} {v.weight}%" for v in status.versions]
    if not any(v.track == "canary" for v in status.versions):
        parts.append("no canary")
    return f"revision {status.revision}: " + ", ".join(parts)


#: Errors raised inside a notebook that mean bad input: the run exits 2, as the CLI does.
USAGE_ERRORS = ("ConfigError", "UnsupportedFieldError", "AlreadyRunningError")
#: Kernel options for papermill runs: the kernel's own log (its TCP-transport notice on every
#: start) is not the run's output; the notebook's errors still are.
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]


def check_parameters(name: str, parameters: dict[str, Any]) -> None:
    """ConfigError naming the notebook and the parameter unless each is one of its parameters."""
    import papermill as pm

    src = notebook_path(name)
    known = pm.inspect_notebook(str(src))
    for key in parameters:
        if key not in known:
            raise ConfigError(
                f"notebook {src.stem}", key, f"is not one of its parameters {sorted(known)}"
            )


def run_notebook(
    name: str,
    parameters: dict[str, Any] | None = None,
    *,
    run_dir: Path,
    timeout_s: int = 900,
    log_output: bool = False,
) -> Path:
    """Execute one notebook into ``run_dir`` (its working directory too); return the output.

    An unknown parameter is a ConfigError before anything runs; a notebook that fails on bad
    input (a ConfigError inside) raises a NotebookError with exit code 2."""
    import papermill as pm

    src = notebook_path(name)
    check_parameters(name, parameters or {})
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / src.name
    env_before = {k: os.environ.get(k) for k in ("WORKBOOK_RUN_DIR", NOTEBOOK_ENV)}
    os.environ["WORKBOOK_RUN_DIR"] = str(run_dir.resolve())
    os.environ[NOTEBOOK_ENV] = src.stem
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
            extra_arguments=list(KERNEL_ARGS),
        )
    except pm.PapermillExecutionError as e:
        # a workbook error shows as one line (``setup``): that line is the message
        shown = _strip_ansi(e.traceback[0]) if len(e.traceback or []) == 1 else ""
        err = NotebookError(
            f"notebook {src.name} failed in cell {e.exec_count}: "
            f"{shown or f'{e.ename}: {_strip_ansi(e.evalue)}'} (executed copy: {out})"
        )
        if e.ename in USAGE_ERRORS:
            err.exit_code = 2
        raise err from None
    finally:
        _relative_paths(out, src)  # while WORKBOOK_RUN_DIR still names this run
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return out


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def result_line(out: Path) -> str:
    """The one-line result of an executed notebook: its stage's line, else its recorded keys."""
    from workbook import record

    records = record.load(directory=out.parent)
    stage = records.get("stage")
    if isinstance(stage, dict) and stage.get("line"):
        return str(stage["line"])
    if not records:
        return f"{out.stem}: done"
    return "; ".join(record.summary(k, v, limit=100) for k, v in records.items())


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
    coalesce_streams(nb)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for field in ("text", "evalue"):
                if isinstance(output.get(field), str):
                    output[field] = machine_free(output[field])
            if "traceback" in output:
                output["traceback"] = [machine_free(line) for line in output["traceback"]]
    nbformat.write(nb, out)


_OVERWRITTEN = re.compile(r"[^\n]*\r(?=[^\n])")


def coalesce_streams(nb: Any) -> None:
    """Consecutive stream outputs of a cell as one, carriage returns applied, as a notebook shows
    them: a progress bar leaves its last state, or nothing when it cleared itself."""
    for cell in nb.get("cells", []):
        merged: list[Any] = []
        for output in cell.get("outputs", []):
            last = merged[-1] if merged else None
            if (
                last is not None
                and output.get("output_type") == "stream"
                and last.get("output_type") == "stream"
                and last.get("name") == output.get("name")
            ):
                last["text"] += output["text"]
            else:
                merged.append(output)
        for output in merged:
            if output.get("output_type") == "stream":
                output["text"] = _OVERWRITTEN.sub("", output["text"]).replace("\r", "")
        if "outputs" in cell:
            cell["outputs"] = [
                o for o in merged if o.get("output_type") != "stream" or o["text"].strip()
            ]


def machine_free(text: str) -> str:
    """Text with this machine's paths (checkout, environment, home, run dir) made relative."""

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
