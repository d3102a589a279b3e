"""Scoring image build contexts: the local counterpart of Azure ML ``Model.package``.

A context holds what ``docker build`` needs and what a local pod runs: ``Dockerfile`` (from
``workbook/scoring/Dockerfile``), ``src/`` (the scoring app, e.g. ``score.py``), ``model/`` in the
AML layout ``<name>/<version>/...`` and ``requirements.txt``. Same inputs, same bytes, same digest.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workbook.errors import ConfigError, RegistryError
from workbook.registry import (
    ImageBundle,
    ImageStore,
    LocalImageStore,
    LocalModelRegistry,
    ModelRegistry,
    ModelVersion,
    parse_image_ref,
)
from workbook.settings import Settings

SCORING_DIR = Path(__file__).resolve().parent / "scoring"
DOCKERFILE_TEMPLATE = SCORING_DIR / "Dockerfile"
ENTRY_SCRIPT = "score.py"
REQUIREMENTS = "requirements.txt"
#: Debian packages an app needs besides its pip requirements, one per line (e.g. LightGBM's wheel
#: links the system OpenMP runtime, libgomp1, which slim base images may lack).
SYSTEM_PACKAGES = "system-packages.txt"

#: Paths inside a build context (and inside a stored bundle, relative to its ``path``).
CONTEXT_SRC = "src"
CONTEXT_MODEL = "model"
CONTEXT_ENTRY_SCRIPT = f"{CONTEXT_SRC}/{ENTRY_SCRIPT}"

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER_RE = re.compile(r"\{\{([A-Z_]+)\}\}")
#: Modules every scoring app imports from its own folder (stdlib only), copied next to score.py.
SHARED_MODULES = ("fault_injection.py",)
_SKIP = {"__pycache__", REQUIREMENTS, SYSTEM_PACKAGES}
_DEB_NAME_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")


def scoring_apps() -> list[str]:
    """The scoring apps shipped in ``workbook/scoring/`` (folders with a score.py)."""
    return sorted(d.name for d in SCORING_DIR.iterdir() if (d / ENTRY_SCRIPT).is_file())


def scoring_app_dir(name: str) -> Path:
    """The folder of one scoring app, or a ConfigError listing the apps there are."""
    folder = SCORING_DIR / name
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name) or not (folder / ENTRY_SCRIPT).is_file():
        raise ConfigError(
            "packaging", "scoring_app", f"must be one of {scoring_apps()}, got {name!r}"
        )
    return folder


def system_packages(scoring_app: str) -> list[str]:
    """The Debian packages listed in the app's ``system-packages.txt`` (none without one)."""
    path = scoring_app_dir(scoring_app) / SYSTEM_PACKAGES
    if not path.is_file():
        return []
    names = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
    names = [n for n in names if n]
    for name in names:
        if not _DEB_NAME_RE.fullmatch(name):
            raise ConfigError(
                f"scoring app {scoring_app}", SYSTEM_PACKAGES, f"{name!r} is not a package name"
            )
    return names


def _system_packages_block(scoring_app: str) -> str:
    names = system_packages(scoring_app)
    if not names:
        return ""
    return "\n".join(
        [
            f"# System libraries the app needs ({SYSTEM_PACKAGES}), installed as root.",
            "USER root",
            "RUN apt-get update \\",
            f" && apt-get install -y --no-install-recommends {' '.join(names)} \\",
            " && rm -rf /var/lib/apt/lists/*",
        ]
    )


def render_dockerfile(model: ModelVersion, scoring_app: str, env: Mapping[str, str]) -> str:
    """The Dockerfile template filled for one model version; extra ``env`` as sorted ENV lines."""
    extra = []
    for key in sorted(env):
        value = str(env[key])
        if not _ENV_NAME_RE.fullmatch(key):
            raise ConfigError(
                "packaging", f"env.{key}", "must be a valid environment variable name"
            )
        if "\n" in value or "\r" in value:
            raise ConfigError("packaging", f"env.{key}", "must be a single line")
        extra.append(f"ENV {key}={json.dumps(value)}")
    values = {
        "MODEL": model.id,
        "MODEL_NAME": model.name,
        "MODEL_VERSION": model.version,
        "SCORING_APP": scoring_app,
        "SYSTEM_PACKAGES": _system_packages_block(scoring_app),
        "EXTRA_ENV": "\n".join(extra),
    }
    text = _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], DOCKERFILE_TEMPLATE.read_text())
    return re.sub(r"\n{3,}", "\n\n", text)


def _copy_tree(source: Path, dest: Path, skip: set[str]) -> None:
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for path in files:
        rel = Path(path.name) if source.is_file() else path.relative_to(source)
        if any(part in skip for part in rel.parts) or path.suffix == ".pyc":
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def build_context(
    model: ModelVersion,
    dest: Path,
    *,
    scoring_app: str = "dummy",
    env: Mapping[str, str] | None = None,
) -> Path:
    """Write the image build context for ``model`` into ``dest`` (absent or empty) and return it."""
    app = scoring_app_dir(scoring_app)
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise RegistryError(f"build context {dest} must be an empty or new folder")
    if not Path(model.path).exists():
        raise RegistryError(f"model {model.id}: its files are missing at {model.path}")
    dest.mkdir(parents=True, exist_ok=True)
    _copy_tree(app, dest / CONTEXT_SRC, _SKIP)
    for shared in SHARED_MODULES:  # next to every app's score.py
        shutil.copyfile(SCORING_DIR / shared, dest / CONTEXT_SRC / shared)
    requirements = app / REQUIREMENTS
    if not requirements.is_file():
        raise RegistryError(f"scoring app {scoring_app} has no {REQUIREMENTS} at {requirements}")
    shutil.copyfile(requirements, dest / REQUIREMENTS)
    _copy_tree(Path(model.path), dest / CONTEXT_MODEL / model.name / model.version, {"__pycache__"})
    (dest / "Dockerfile").write_text(render_dockerfile(model, scoring_app, env or {}))
    return dest


def bundle_env(model: ModelVersion) -> dict[str, str]:
    """What a pod running the bundle sets: paths relative to the bundle's context folder."""
    return {
        "MODEL_VERSION": model.version,
        "AZUREML_MODEL_DIR": CONTEXT_MODEL,
        "AZUREML_ENTRY_SCRIPT": CONTEXT_ENTRY_SCRIPT,
    }


def package_local(
    registry: ModelRegistry,
    store: ImageStore,
    model_name: str,
    model_version: str | None,
    image_ref: str,
    *,
    scoring_app: str = "dummy",
) -> ImageBundle:
    """Package one registered model version as ``image_ref`` in the image store (no Docker needed).

    The local counterpart of Azure ML ``Model.package``: same Dockerfile, score.py, model files and
    requirements as the real image; packaging the same inputs again is a no-op.
    """
    parse_image_ref(image_ref)
    model = registry.get(model_name, model_version)
    with tempfile.TemporaryDirectory(prefix="workbook-context-") as tmp:
        context = build_context(model, Path(tmp) / "context", scoring_app=scoring_app)
        metadata = {
            "entry_script": CONTEXT_ENTRY_SCRIPT,
            "model_dir": CONTEXT_MODEL,
            "env": bundle_env(model),
            "model": model.id,
        }
        return store.put(context, image_ref, metadata)


def dummy_bias(version: str) -> float:
    """A per-version bias, so two dummy versions predict visibly different values."""
    m = re.fullmatch(r"v?(\d+)", version)
    if m:
        return round(-2.0 + 0.5 * ((int(m.group(1)) - 1) % 8), 3)
    return round(-2.5 + (sum(version.encode()) % 31) / 10, 3)


def dummy_model_source(version: str, dest: Path, *, name: str = "dummy") -> Path:
    """Write ``dest/model.json`` for a dummy model version (what score.py loads); return it."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "model.json"
    data = {"name": name, "version": version, "bias": dummy_bias(version)}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def probe_payload(scoring_app: str, n_rows: int = 1) -> dict[str, Any]:
    """A scoring request body the app accepts: what the traffic probe sends to it.

    The dummy takes any rows of numbers (``traffic.DEFAULT_PAYLOAD``); safe-driver takes rows of
    the Porto Seguro schema (synthetic drivers, the same for the same ``n_rows``).
    """
    scoring_app_dir(scoring_app)
    if scoring_app == "safe-driver":
        from workbook.safedriver.publish import sample_payload

        return sample_payload(n_rows)
    from workbook.traffic import DEFAULT_PAYLOAD

    return {"data": [list(DEFAULT_PAYLOAD["data"][0]) for _ in range(n_rows)]}


def ensure_demo_images(
    settings: Settings,
    registry: ModelRegistry | None = None,
    store: ImageStore | None = None,
) -> list[ImageBundle]:
    """Register stable and canary model versions of ``settings.scoring_app`` and package their
    images, when missing.

    dummy: versions that report their version; safe-driver: the trained LightGBM versions
    (``workbook.safedriver``). A model version or image already there (perhaps a real one) is kept
    as it is; returns the bundles of ``settings.image(stable_version)`` and
    ``settings.image(canary_version)``.
    """
    registry = registry if registry is not None else LocalModelRegistry(settings.state_dir)
    store = store if store is not None else LocalImageStore(settings.state_dir)
    app = settings.scoring_app
    versions = list(dict.fromkeys((settings.stable_version, settings.canary_version)))
    missing = [v for v in versions if not store.exists(settings.image(v))]
    if app == "safe-driver" and missing:
        from workbook.safedriver.publish import register_models

        register_models(registry, missing, name=settings.model_name)
    bundles = []
    for version in versions:
        ref = settings.image(version)
        if version not in missing:
            bundles.append(store.resolve(ref))
            continue
        try:
            registry.get(settings.model_name, version)
        except RegistryError:
            with tempfile.TemporaryDirectory(prefix="workbook-dummy-") as tmp:
                source = dummy_model_source(version, Path(tmp), name=settings.model_name)
                registry.register(settings.model_name, source, version, tags={"kind": "dummy"})
        bundles.append(
            package_local(registry, store, settings.model_name, version, ref, scoring_app=app)
        )
    return bundles


def ensure_safe_driver_images(
    settings: Settings,
    registry: ModelRegistry | None = None,
    store: ImageStore | None = None,
) -> list[ImageBundle]:
    """``ensure_demo_images`` for the safe-driver app: ``<registry>/scoring-safe-driver:v1`` and
    ``:v2`` (unless ``settings`` names another repository or model explicitly)."""
    return ensure_demo_images(settings.for_app("safe-driver"), registry, store)
