"""Notebook 01/02's facade: registry by target, idempotent registration, local packaging."""

from __future__ import annotations

from pathlib import Path

from workbook import workspace
from workbook.local.registry import LocalImageStore, LocalModelRegistry
from workbook.settings import Settings


def test_local_registry_register_twice_is_a_no_op(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    registry = workspace.open_registry(settings)
    assert isinstance(registry, LocalModelRegistry)
    first = workspace.register_versions(settings, registry, ["v1", "v2"])
    again = workspace.register_versions(settings, registry, ["v1", "v2"])
    assert [m.version for m in first] == ["v1", "v2"]
    assert [m.registered for m in again] == [m.registered for m in first]
    rows = workspace.models_table(registry, settings.model_name)
    assert [r["version"] for r in rows] == ["v1", "v2"]


def test_local_package_image_is_stored_under_its_reference(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    registry = workspace.open_registry(settings)
    workspace.register_versions(settings, registry, ["v2"])
    image = workspace.package_image(settings, registry, "v2")
    assert image["ref"] == "canaryworkbook.azurecr.io/scoring:v2"
    assert "src/score.py" in image["files"] and "Dockerfile" in image["files"]
    assert "azmlinfsrv" in image["dockerfile"]
    assert LocalImageStore(tmp_path).resolve(image["ref"]).env["MODEL_VERSION"] == "v2"
