"""The Azure path of image packaging: Environment + InferenceConfig, then ``Model.package``.

The objects are built offline (nothing here calls the service until ``package_image``), so the
notebook and the tests can inspect exactly what would be sent to Azure ML.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workbook.azure.workspace import MLWorkspace, require_azureml
from workbook.errors import ConfigError
from workbook.settings import Settings

#: Where the scoring apps ship inside the package: ``workbook/scoring/<app>/score.py``.
SCORING_ROOT = Path(__file__).resolve().parent.parent / "scoring"

#: Always in the image's pip list: the server the image runs (azmlinfsrv) at the version the
#: local target runs, and azureml-defaults, which Azure ML's inference images expect (Microsoft
#: Learn, "Deploy models with Azure Machine Learning": "azureml-defaults" is a required pip
#: dependency of an inference environment). azureml-defaults 1.61.0 asks for
#: azureml-inference-server-http~=1.4, so the two pins agree; its minor follows azureml-core's.
INFERENCE_PACKAGES = ("azureml-defaults==1.61.0", "azureml-inference-server-http==1.5.1")
#: InferenceConfig warns about azureml-defaults whenever it is absent, even with the server listed.
_DEFAULTS_WARNING = "azureml-defaults not detected"
PYTHON_VERSION = "3.11"


def scoring_source(scoring_dir: str | Path | None = None, scoring_app: str = "dummy") -> Path:
    """The folder holding ``score.py``: ``<dir>/<app>``, ``<dir>``, or a build context's ``src``."""
    root = Path(scoring_dir) if scoring_dir is not None else SCORING_ROOT
    for candidate in (root / scoring_app, root, root / "src"):
        if (candidate / "score.py").is_file():
            return candidate
    raise ConfigError(
        "scoring app",
        scoring_app,
        f"has no score.py under {root} (looked in {scoring_app}/, ./, src/)",
    )


def staged_source(source: Path) -> Path:
    """The app's folder plus the modules every app imports from next to its ``score.py``
    (``workbook.packaging.SHARED_MODULES``), staged in a new folder that ``Model.package``
    uploads as the source directory; an already staged folder is returned as it is."""
    from workbook.packaging import SCORING_DIR, SHARED_MODULES

    if all((source / m).is_file() for m in SHARED_MODULES):
        return source
    staged = Path(tempfile.mkdtemp(prefix="workbook-aml-source-")) / source.name
    shutil.copytree(source, staged, ignore=shutil.ignore_patterns("__pycache__"))
    for module in SHARED_MODULES:
        shutil.copyfile(SCORING_DIR / module, staged / module)
    if (source.parent / "requirements.txt").is_file() and not (
        source / "requirements.txt"
    ).exists():
        shutil.copyfile(source.parent / "requirements.txt", staged.parent / "requirements.txt")
    return staged


def pip_requirements(source: Path) -> list[str]:
    """The app's requirements (requirements.txt next to score.py or one level up) plus the stack."""
    lines: list[str] = []
    for candidate in (source / "requirements.txt", source.parent / "requirements.txt"):
        if candidate.is_file():
            lines = [
                ln.split("#", 1)[0].strip()
                for ln in candidate.read_text().splitlines()
                if ln.split("#", 1)[0].strip()
            ]
            break
    names = {_dist_name(ln) for ln in lines}
    return [*(p for p in INFERENCE_PACKAGES if _dist_name(p) not in names), *lines]


def _dist_name(requirement: str) -> str:
    for sep in ("==", ">=", "<=", "~=", "!=", ">", "<", "[", ";", " "):
        requirement = requirement.split(sep, 1)[0]
    return requirement.strip().lower().replace("_", "-")


class _Drop(logging.Filter):
    """Drops log records whose message contains any of the given texts."""

    def __init__(self, *texts: str) -> None:
        super().__init__()
        self.texts = texts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(t in message for t in self.texts)


@contextlib.contextmanager
def _without(logger: str, *texts: str) -> Iterator[None]:
    """Hide azureml's known false alarms (and only those) for one block."""
    drop = _Drop(*texts)
    target = logging.getLogger(logger)
    target.addFilter(drop)
    try:
        yield
    finally:
        target.removeFilter(drop)


def environment(source: Path, *, scoring_app: str, model_version: str) -> Any:
    """``Environment.from_pip_requirements`` with the inference stack and ``MODEL_VERSION``."""
    require_azureml()
    from azureml.core import Environment

    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text("\n".join(pip_requirements(source)) + "\n")
        env = Environment.from_pip_requirements(name=f"{scoring_app}-scoring", file_path=str(req))
    env.python.conda_dependencies.set_python_version(PYTHON_VERSION)
    # Deprecated for training runs; for inference images it is how env vars reach the container.
    with _without("azureml.core.environment", "environment_variables is deprecated"):
        env.environment_variables = {"MODEL_VERSION": str(model_version)}
    return env


def inference_config(
    scoring_dir: str | Path | None = None, *, scoring_app: str = "dummy", model_version: str
) -> Any:
    """``InferenceConfig(entry_script="score.py")`` over the scoring app, built offline."""
    require_azureml()
    from azureml.core.model import InferenceConfig

    source = staged_source(scoring_source(scoring_dir, scoring_app))
    env = environment(source, scoring_app=scoring_app, model_version=model_version)
    with _without("azureml.core.model", _DEFAULTS_WARNING):
        return InferenceConfig(
            entry_script="score.py", source_directory=str(source), environment=env
        )


def split_image(ref: str) -> dict[str, str]:
    """An image reference (by tag, digest or both) as one track's chart image values:
    ``registry``, ``repository``, ``tag``, ``digest`` (``parse_image_ref``'s grammar)."""
    from workbook.registry import parse_image_ref

    return parse_image_ref(ref).chart_image()


def package_image(
    workspace: MLWorkspace,
    model: Any,
    settings: Settings,
    version: str,
    *,
    scoring_dir: str | Path | None = None,
    scoring_app: str = "dummy",
    timeout_s: float = 1800,
) -> str:
    """Build the scoring image of ``model`` as ``<acr>/<settings.repository>:<version>``.

    Returns the image reference the chart values take (``split_image`` cuts it up). Model.package
    reports its location by digest (``<acr>/<name>@sha256:...``); that reference is kept as it
    is, since a digest names exactly the image built.
    """
    config = inference_config(scoring_dir, scoring_app=scoring_app, model_version=version)
    ref = workspace.package(
        model, config, image_name=settings.repository, image_label=version, timeout_s=timeout_s
    )
    if "@" not in ref and ":" not in ref.rsplit("/", 1)[-1]:
        ref = f"{ref}:{version}"
    return ref
