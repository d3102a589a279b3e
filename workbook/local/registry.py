"""The local target's model registry and image store: folders in the project state directory.

``LocalModelRegistry`` keeps copies of registered model files the way an Azure ML workspace keeps
model versions; ``LocalImageStore`` keeps scoring image build contexts by ``registry/repo:tag`` the
way a container registry keeps images. The protocols they implement are in ``workbook.registry``;
the Azure ML counterparts in ``workbook.azure``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from workbook.errors import ConfigError, RegistryError
from workbook.files import write_json
from workbook.registry import (
    ImageBundle,
    ImageRef,
    ModelVersion,
    _files,
    parse_image_ref,
    tree_digest,
    validate_model_name,
    validate_model_version,
    version_key,
)

MODEL_METADATA = "model.json"


IMAGE_METADATA = "image.json"


_AUTO_VERSION_RE = re.compile(r"v(\d+)")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _copy_into(source: Path, dest: Path) -> None:
    """Copy a file (into ``dest/<name>``) or a directory's contents (into ``dest``)."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in _files(source):
        target = dest / (path.name if source.is_file() else path.relative_to(source))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _string_map(name: str, field_name: str, values: Mapping[str, str] | None) -> dict[str, str]:
    """``values`` as a plain dict of strings (what Azure ML accepts), or a ConfigError."""
    out = dict(values or {})
    bad = sorted(k for k, v in out.items() if not isinstance(k, str) or not isinstance(v, str))
    if bad:
        raise ConfigError(f"model {name}", f"{field_name}.{bad[0]}", "must be a string")
    return out


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RegistryError(f"{what}: cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{what}: {path} does not hold a JSON object")
    return data


class LocalModelRegistry:
    """Model versions as folders: ``root/models/<name>/<version>/{model.json,files/}``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.models_dir = self.root / "models"

    def __repr__(self) -> str:
        return f"LocalModelRegistry({str(self.root)!r})"

    def _version_dir(self, name: str, version: str) -> Path:
        return self.models_dir / name / version

    def _load(self, version_dir: Path) -> ModelVersion:
        meta = _read_json(version_dir / MODEL_METADATA, f"model {version_dir.parent.name}")
        return ModelVersion(
            name=meta["name"],
            version=meta["version"],
            path=version_dir / "files",
            tags=dict(meta.get("tags") or {}),
            registered=meta.get("registered", ""),
            digest=meta.get("digest", ""),
            properties=dict(meta.get("properties") or {}),
        )

    def _versions(self, name: str) -> list[str]:
        folder = self.models_dir / name
        if not folder.is_dir():
            return []
        found = [
            d.name
            for d in folder.iterdir()
            if not d.name.startswith(".") and (d / MODEL_METADATA).is_file()
        ]
        return sorted(found, key=version_key)

    def next_version(self, name: str) -> str:
        """``v<n+1>`` where ``n`` is the highest ``v<n>`` registered (``v1`` for a new model)."""
        numbers = [
            int(m.group(1)) for v in self._versions(name) if (m := _AUTO_VERSION_RE.fullmatch(v))
        ]
        return f"v{max(numbers, default=0) + 1}"

    def register(
        self,
        name: str,
        source: Path,
        version: str | None = None,
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        """Copy ``source`` (a file or folder) in as ``name:version`` (next ``v<n>`` when None).

        ``properties`` (string values, e.g. metrics) are stored with the version and never change.

        Registering an existing version again with the same files is a no-op that returns it;
        with other files it is a RegistryError: a version, once registered, never changes.
        """
        validate_model_name(name)
        source = Path(source)
        if not source.exists():
            raise RegistryError(f"model {name}: source {source} does not exist")
        if source.is_dir() and not _files(source):
            raise RegistryError(f"model {name}: source folder {source} holds no files")
        digest = tree_digest(source)
        version = validate_model_version(name, version) if version else self.next_version(name)
        final = self._version_dir(name, version)
        if (final / MODEL_METADATA).is_file():
            return self._same_or_conflict(self._load(final), digest, source)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=final.parent))
        try:
            _copy_into(source, staging / "files")
            meta = {
                "name": name,
                "version": version,
                "tags": dict(tags or {}),
                "properties": _string_map(name, "properties", properties),
                "registered": _now(),
                "digest": digest,
                "source": str(source.resolve()),
            }
            write_json(staging / MODEL_METADATA, meta)
            try:
                os.rename(staging, final)
            except OSError:
                if (final / MODEL_METADATA).is_file():  # registered concurrently
                    return self._same_or_conflict(self._load(final), digest, source)
                raise RegistryError(f"model {name}:{version}: cannot store it at {final}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self._load(final)

    @staticmethod
    def _same_or_conflict(existing: ModelVersion, digest: str, source: Path) -> ModelVersion:
        if existing.digest == digest:
            return existing
        raise RegistryError(
            f"model {existing.id} is already registered with other files "
            f"({existing.digest[:19]}, {source} is {digest[:19]}); register a new version"
        )

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        """One version, or the latest (highest in natural order: v10 after v9) when None."""
        versions = self._versions(name)
        if version is None:
            if not versions:
                known = ", ".join(sorted(self._names())) or "none"
                raise RegistryError(
                    f"model {name} is not registered in {self.root} (known models: {known})"
                )
            version = versions[-1]
        if version not in versions:
            known = ", ".join(versions) or "none"
            raise RegistryError(
                f"model {name}:{version} is not registered in {self.root} (known versions: {known})"
            )
        return self._load(self._version_dir(name, version))

    def _names(self) -> list[str]:
        if not self.models_dir.is_dir():
            return []
        return sorted(
            d.name for d in self.models_dir.iterdir() if d.is_dir() and not d.name.startswith(".")
        )

    def list(self, name: str | None = None) -> list[ModelVersion]:
        """Every version of one model (or of all models), by name then natural version order."""
        names = [name] if name is not None else self._names()
        return [self._load(self._version_dir(n, v)) for n in names for v in self._versions(n)]


# ---- images -------------------------------------------------------------------------------------


class LocalImageStore:
    """Image bundles as folders: ``root/images/<quoted registry/repository>/<tag>/``.

    Each tag folder holds ``image.json`` and ``context/`` (the build context, exactly what
    ``docker build`` would receive). Putting a tag again moves it, as ``docker push`` does.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.images_dir = self.root / "images"

    def __repr__(self) -> str:
        return f"LocalImageStore({str(self.root)!r})"

    def _tag_dir(self, ref: ImageRef) -> Path:
        if not ref.tag or ref.digest:
            raise ConfigError(
                f"image {str(ref)!r}",
                "digest" if ref.digest else "tag",
                "the local image store keeps images by tag: write registry/repository:tag",
            )
        return self.images_dir / quote(ref.name, safe="") / ref.tag

    @staticmethod
    def _load(tag_dir: Path) -> ImageBundle:
        meta = _read_json(tag_dir / IMAGE_METADATA, f"image in {tag_dir}")
        return ImageBundle(
            ref=meta["ref"],
            path=tag_dir / "context",
            entry_script=meta["entry_script"],
            model_dir=meta["model_dir"],
            env=dict(meta.get("env") or {}),
            model=meta.get("model", ""),
            digest=meta["digest"],
            created=meta.get("created", ""),
        )

    def put(self, context_dir: Path, ref: str, metadata: Mapping[str, Any]) -> ImageBundle:
        """Store a build context as ``ref``; ``metadata`` has ``entry_script``, ``model_dir``
        (both relative to the context), ``env`` and ``model``. The same content again is a no-op.
        """
        parsed = parse_image_ref(ref)
        context_dir = Path(context_dir)
        if not context_dir.is_dir():
            raise RegistryError(f"image {ref}: build context {context_dir} is not a folder")
        for key in ("entry_script", "model_dir"):
            rel = metadata.get(key)
            if not rel or Path(rel).is_absolute() or not (context_dir / rel).exists():
                raise RegistryError(
                    f"image {ref}: {key} {rel!r} must be a path inside the build context "
                    f"{context_dir}"
                )
        digest = tree_digest(context_dir)
        meta = {
            "ref": str(parsed),
            "entry_script": Path(metadata["entry_script"]).as_posix(),
            "model_dir": Path(metadata["model_dir"]).as_posix(),
            "env": {str(k): str(v) for k, v in (metadata.get("env") or {}).items()},
            "model": str(metadata.get("model", "")),
            "digest": digest,
        }
        tag_dir = self._tag_dir(parsed)
        if (tag_dir / IMAGE_METADATA).is_file():
            current = self._load(tag_dir)
            same = {k: v for k, v in current.to_json().items() if k != "created"}
            if same == meta:
                return current
        tag_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{parsed.tag}.", dir=tag_dir.parent))
        old = staging.with_name(staging.name + ".old")
        try:
            _copy_into(context_dir, staging / "context")
            write_json(staging / IMAGE_METADATA, {**meta, "created": _now()})
            if tag_dir.exists():
                os.rename(tag_dir, old)
            os.rename(staging, tag_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
        return self._load(tag_dir)

    def resolve(self, ref: str) -> ImageBundle:
        """The bundle stored as ``ref``; RegistryError naming it and the known refs when missing."""
        tag_dir = self._tag_dir(parse_image_ref(ref))
        if not (tag_dir / IMAGE_METADATA).is_file():
            known = ", ".join(b.ref for b in self.list()) or "none"
            raise RegistryError(
                f"image {ref} is not in the local image store {self.images_dir} (known: {known}); "
                "package it first (workbook.local.packaging.package_local)"
            )
        return self._load(tag_dir)

    def exists(self, ref: str) -> bool:
        """Whether ``ref`` is stored (False for a malformed reference, too)."""
        try:
            return (self._tag_dir(parse_image_ref(ref)) / IMAGE_METADATA).is_file()
        except ConfigError:
            return False

    def list(self) -> list[ImageBundle]:
        """Every stored bundle, by reference."""
        if not self.images_dir.is_dir():
            return []
        bundles = [
            self._load(meta.parent)
            for meta in self.images_dir.glob(f"*/*/{IMAGE_METADATA}")
            if not meta.parent.name.startswith(".")
        ]
        return sorted(bundles, key=lambda b: (b.ref.rpartition(":")[0], version_key(b.ref)))
