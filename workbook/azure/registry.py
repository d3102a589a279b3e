"""``ModelRegistry`` over an Azure ML workspace.

Azure ML numbers model versions itself (1, 2, ...). The workbook names versions ``v1``, ``v2``
(chart values, image tags, ``MODEL_VERSION``), so each Azure version carries the workbook version
in the tag ``workbook.version`` and its file digest in ``workbook.digest``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from workbook.azure.workspace import MLWorkspace, RegisteredModel
from workbook.errors import RegistryError
from workbook.registry import (
    ModelVersion,
    tree_digest,
    validate_model_name,
    validate_model_version,
    version_key,
)

VERSION_TAG = "workbook.version"
DIGEST_TAG = "workbook.digest"
_AUTO = re.compile(r"v(\d+)")


def _version_of(model: RegisteredModel) -> str:
    return model.tags.get(VERSION_TAG) or f"v{model.version}"


def _to_version(model: RegisteredModel) -> ModelVersion:
    tags = {k: v for k, v in model.tags.items() if k not in (VERSION_TAG, DIGEST_TAG)}
    tags["azureml.id"] = model.id or f"{model.name}:{model.version}"
    return ModelVersion(
        name=model.name,
        version=_version_of(model),
        # The files live in the workspace: the path only names them (there is no local copy).
        path=Path(f"azureml:{model.name}:{model.version}"),
        tags=tags,
        registered=model.created,
        digest=model.tags.get(DIGEST_TAG, ""),
        properties=dict(model.properties),
    )


class AzureModelRegistry:
    """Model versions in an Azure ML workspace, named the way ``LocalModelRegistry`` names them."""

    def __init__(self, workspace: MLWorkspace) -> None:
        self.workspace = workspace

    def __repr__(self) -> str:
        return f"AzureModelRegistry({getattr(self.workspace, 'name', '')!r})"

    def _all(self, name: str) -> list[RegisteredModel]:
        return [m for m in self.workspace.list_models(name) if m.name == name]

    def _find(self, name: str, version: str) -> RegisteredModel | None:
        for model in self._all(name):
            if _version_of(model) == version:
                return model
        return None

    def register(
        self,
        name: str,
        source: Path,
        version: str | None = None,
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        """Upload ``source`` as ``name:version`` (the next ``v<n>`` when None).

        ``properties`` become the Azure ML model's properties (fixed once registered).

        The same version with the same files returns the existing one; with other files it is a
        ``RegistryError``: a version, once registered, never changes.
        """
        validate_model_name(name)
        source = Path(source)
        if not source.exists():
            raise RegistryError(f"model {name}: source {source} does not exist")
        digest = tree_digest(source)
        existing = self._all(name)
        if version is None:
            numbers = [int(m[1]) for e in existing if (m := _AUTO.fullmatch(_version_of(e)))]
            version = f"v{max(numbers, default=0) + 1}"
        validate_model_version(name, version)
        for model in existing:
            if _version_of(model) == version:
                if model.tags.get(DIGEST_TAG) == digest:
                    return _to_version(model)
                raise RegistryError(
                    f"model {name}:{version} is already registered in workspace "
                    f"{getattr(self.workspace, 'name', '')} (Azure ML version {model.version}) "
                    "with other files; register a new version"
                )
        version_tags = {**dict(tags or {}), VERSION_TAG: version, DIGEST_TAG: digest}
        if properties:
            model = self.workspace.register_model(
                name, source, version_tags, properties=dict(properties)
            )
        else:
            model = self.workspace.register_model(name, source, version_tags)
        return _to_version(model)

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        """One version (the highest by ``version_key`` when None)."""
        if version is None:
            found = self.list(name)
            if not found:
                raise RegistryError(f"model {name} is not registered in the workspace")
            return found[-1]
        model = self._find(name, version)
        if model is None:
            known = [v.version for v in self.list(name)]
            raise RegistryError(f"model {name}:{version} is not registered; known: {known}")
        return _to_version(model)

    def list(self, name: str | None = None) -> list[ModelVersion]:
        """Every version, sorted by name, then naturally by version."""
        out = [_to_version(m) for m in self.workspace.list_models(name)]
        return sorted(out, key=lambda v: (v.name, version_key(v.version)))
