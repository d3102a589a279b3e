"""Tasks the local runner knows, registered by name (``PublishPipelineArtifact@1``, ...).

A handler gets the task's inputs (macros expanded) and a ``StepContext`` and returns an
``Outcome``. Tasks that need Azure are skipped with the reason logged: the local target needs
no Azure. A task that is not registered fails its step, naming the task.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass
class Outcome:
    """What a step ended with: ``succeeded``, ``failed`` or ``skipped``, and why."""

    result: str
    reason: str = ""


class StepContext(Protocol):
    """What a task handler may do to the run."""

    workdir: Path

    def publish(self, path: Path, artifact: str) -> Outcome:
        """Copy ``path`` into the run's artifacts under ``artifact``."""

    def prepend_path(self, directory: Path) -> None:
        """Put ``directory`` first on PATH for the rest of the job."""


TaskHandler = Callable[[Mapping[str, str], StepContext], Outcome]

#: How a skipped task that needs Azure starts its reason; the run lists these as not rehearsed.
NEEDS_AZURE = "needs Azure"

_TASKS: dict[str, TaskHandler] = {}
_NAMES: dict[str, str] = {}


def register_task(name: str, handler: TaskHandler) -> None:
    """Make ``name`` (``Task@major``, case-insensitive) run ``handler`` locally."""
    _TASKS[name.casefold()] = handler
    _NAMES[name.casefold()] = name


def get_task(name: str) -> TaskHandler | None:
    return _TASKS.get(name.casefold())


def task_names() -> list[str]:
    return sorted(_NAMES.values(), key=str.casefold)


def _input(inputs: Mapping[str, str], *names: str, default: str = "") -> str:
    folded = {k.casefold(): v for k, v in inputs.items()}
    for n in names:
        if n.casefold() in folded:
            return str(folded[n.casefold()])
    return default


def publish_pipeline_artifact(inputs: Mapping[str, str], ctx: StepContext) -> Outcome:
    """PublishPipelineArtifact@1: copy ``targetPath`` to the run's artifact folder ``artifact``."""
    location = _input(inputs, "publishLocation", "artifactType", default="pipeline")
    if location.lower() != "pipeline":
        return Outcome("failed", f"publishLocation {location!r} is not supported locally")
    target = _input(inputs, "targetPath", "path")
    name = _input(inputs, "artifact", "artifactName")
    if not target or not name:
        return Outcome("failed", "PublishPipelineArtifact@1 needs targetPath and artifact")
    path = Path(target)
    return ctx.publish(path if path.is_absolute() else ctx.workdir / path, name)


def use_python_version(inputs: Mapping[str, str], ctx: StepContext) -> Outcome:
    """UsePythonVersion@0: locally, the runner's own interpreter goes first on PATH."""
    spec = _input(inputs, "versionSpec", default="3.x")
    here = ".".join(map(str, sys.version_info[:3]))
    ctx.prepend_path(Path(sys.executable).parent)
    note = f"uses the runner's Python {here} ({Path(sys.executable).parent})"
    wanted = spec.replace(".x", "").strip()
    if wanted and not here.startswith(wanted):
        return Outcome("succeeded", f"{note}; versionSpec {spec} differs")
    return Outcome("succeeded", note)


def azure_cli(inputs: Mapping[str, str], ctx: StepContext) -> Outcome:
    """AzureCLI@2: needs an Azure service connection, so it is skipped locally."""
    connection = _input(inputs, "azureSubscription", "connectedServiceNameARM")
    return Outcome("skipped", f"{NEEDS_AZURE}: the Azure service connection {connection!r}")


def pipeline_cache(inputs: Mapping[str, str], ctx: StepContext) -> Outcome:
    """Cache@2: the pipeline cache is an Azure DevOps service; pip here uses its own cache."""
    return Outcome("skipped", f"{NEEDS_AZURE}: the pipeline cache (key {_input(inputs, 'key')})")


def kubelogin_installer(inputs: Mapping[str, str], ctx: StepContext) -> Outcome:
    """KubeloginInstaller@0: installs kubelogin on an agent; the local target needs none."""
    version = _input(inputs, "kubeloginVersion", default="latest")
    return Outcome("skipped", f"{NEEDS_AZURE}: installs kubelogin {version} for an AKS cluster")


register_task("PublishPipelineArtifact@1", publish_pipeline_artifact)
register_task("UsePythonVersion@0", use_python_version)
register_task("AzureCLI@2", azure_cli)
register_task("Cache@2", pipeline_cache)
register_task("KubeloginInstaller@0", kubelogin_installer)
