"""Notebook 01 and 02 in a few calls: open the model registry, register versions, package images.

``target="local"`` uses the folder registry and image store in the state directory;
``target="k8s"`` uses the Azure ML workspace (azureml-core, imported only on that path).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from workbook.errors import RegistryError
from workbook.packaging import dummy_model_source, package_local, render_dockerfile
from workbook.registry import LocalImageStore, LocalModelRegistry, ModelRegistry, ModelVersion
from workbook.settings import Settings


def open_registry(settings: Settings) -> ModelRegistry:
    """The model registry of the target: local folder, or the Azure ML workspace."""
    if settings.target == "local":
        return LocalModelRegistry(settings.state_dir)
    from workbook.azure.registry import AzureModelRegistry
    from workbook.azure.workspace import AzureMLWorkspace

    return AzureModelRegistry(AzureMLWorkspace.connect())


def register_versions(
    settings: Settings, registry: ModelRegistry, versions: list[str]
) -> list[ModelVersion]:
    """Register each version of the model unless it exists: for the dummy app a model that
    reports its version, for safe-driver the trained LightGBM version (metrics as properties)."""
    if settings.scoring_app == "safe-driver":
        from workbook.safedriver.publish import register_models

        return register_models(registry, versions, name=settings.model_name)
    out = []
    for version in versions:
        try:
            out.append(registry.get(settings.model_name, version))
            continue
        except RegistryError:
            pass
        with tempfile.TemporaryDirectory(prefix="workbook-model-") as tmp:
            source = dummy_model_source(version, Path(tmp), name=settings.model_name)
            out.append(
                registry.register(settings.model_name, source, version, tags={"kind": "dummy"})
            )
    return out


def models_table(registry: ModelRegistry, name: str) -> list[dict[str, Any]]:
    """What is registered under ``name``: one row per version (properties hold the metrics)."""
    return [
        {
            "model": m.name,
            "version": m.version,
            "registered": m.registered,
            "tags": m.tags,
            "properties": m.properties,
        }
        for m in registry.list(name)
    ]


def package_image(settings: Settings, registry: ModelRegistry, version: str) -> dict[str, Any]:
    """Package the scoring image of one model version; return its reference and build context.

    Local: an image bundle in the state directory's image store. k8s: ``Model.package`` into the
    workspace's container registry (the reference is what the chart values take).
    """
    model = registry.get(settings.model_name, version)
    if settings.target == "local":
        bundle = package_local(
            registry,
            LocalImageStore(settings.state_dir),
            settings.model_name,
            version,
            settings.image(version),
            scoring_app=settings.scoring_app,
        )
        files = sorted(
            str(p.relative_to(bundle.path)) for p in bundle.path.rglob("*") if p.is_file()
        )
        return {
            "ref": bundle.ref,
            "digest": bundle.digest,
            "model": bundle.model,
            "files": files,
            "dockerfile": (bundle.path / "Dockerfile").read_text(),
        }
    from workbook.azure.packaging import package_image as azure_package

    ws = registry.workspace  # type: ignore[attr-defined]  # AzureModelRegistry
    aml_version = int(model.tags["azureml.id"].rsplit(":", 1)[1])
    ref = azure_package(
        ws,
        ws.get_model(model.name, aml_version),
        settings,
        version,
        scoring_app=settings.scoring_app,
    )
    # the model files live in the workspace; the Dockerfile is what the local bundle would hold
    dockerfile = render_dockerfile(model, settings.scoring_app, {})
    return {"ref": ref, "digest": "", "model": model.id, "files": [], "dockerfile": dockerfile}
