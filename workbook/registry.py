"""Models and images: a folder model registry and a folder image store, behind two protocols.

``LocalModelRegistry`` keeps copies of registered model files the way an Azure ML workspace keeps
model versions; ``LocalImageStore`` keeps scoring image build contexts by ``registry/repo:tag`` the
way a container registry keeps images. The Azure ML counterparts live in ``workbook.azure``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable
from urllib.parse import quote

from workbook.errors import ConfigError, RegistryError
from workbook.files import write_json

MODEL_METADATA = "model.json"
IMAGE_METADATA = "image.json"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_AUTO_VERSION_RE = re.compile(r"v(\d+)")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_TAG_CHARS_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_REPO_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_REGISTRY_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"(?::\d{1,5})?"
)
_IGNORED = {"__pycache__", ".DS_Store"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def version_key(version: str) -> tuple[Any, ...]:
    """Natural sort key: ``v2`` before ``v10``."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", version)
        if part
    )


def _files(root: Path) -> list[Path]:
    """Regular files under ``root`` (or ``root`` itself), sorted, caches ignored."""
    if root.is_file():
        return [root]
    out = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and not any(part in _IGNORED for part in p.relative_to(root).parts)
        and p.suffix != ".pyc"
    ]
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def tree_digest(root: Path) -> str:
    """``sha256:<hex>`` over the relative paths and bytes of the files under ``root``."""
    h = hashlib.sha256()
    for path in _files(root):
        rel = path.name if root.is_file() else path.relative_to(root).as_posix()
        h.update(rel.encode())
        h.update(b"\0")
        h.update(hashlib.sha256(path.read_bytes()).hexdigest().encode())
        h.update(b"\n")
    return "sha256:" + h.hexdigest()


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


# ---- models -------------------------------------------------------------------------------------


@dataclass
class ModelVersion:
    """One registered version of a model; ``path`` is the folder holding its files."""

    name: str
    version: str
    path: Path
    tags: dict[str, str] = field(default_factory=dict)
    registered: str = ""
    digest: str = ""
    #: Fixed at registration, as Azure ML model properties are (metrics, training facts).
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """``name:version``, as Azure ML writes a model id."""
        return f"{self.name}:{self.version}"


@runtime_checkable
class ModelRegistry(Protocol):
    """Where model versions are registered and found (a folder here, a workspace on Azure)."""

    def register(
        self,
        name: str,
        source: Path,
        version: str | None = None,
        tags: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> ModelVersion: ...

    def get(self, name: str, version: str | None = None) -> ModelVersion: ...

    def list(self, name: str | None = None) -> list[ModelVersion]: ...


def validate_model_name(name: str) -> str:
    """A model name Azure ML accepts: letters, digits, ``_.-``, starting with a letter or digit."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigError(
            "model", "name", f"must be letters, digits, '_', '.', '-' (max 255), got {name!r}"
        )
    return name


def validate_model_version(name: str, version: str) -> str:
    """A version usable as a folder name and an image tag: ``v1``, ``2``, ``2024.05-rc1``."""
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
        raise ConfigError(
            f"model {name}",
            "version",
            f"must be letters, digits, '_', '.', '-' (max 128), got {version!r}",
        )
    return version


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


class ImageRef(NamedTuple):
    """A parsed image reference ``[registry/]repository[:tag][@digest]``."""

    registry: str
    repository: str
    tag: str
    digest: str = ""

    @property
    def name(self) -> str:
        """``registry/repository`` (just ``repository`` without a registry)."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.name}{tag}{digest}"

    def chart_image(self) -> dict[str, str]:
        """The chart's per-track ``image`` values: registry, repository, tag, digest."""
        return {
            "registry": self.registry,
            "repository": self.repository,
            "tag": self.tag,
            "digest": self.digest,
        }


#: Digests the OCI image spec registers (descriptor.md, "Registered algorithms").
_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")


def parse_image_ref(ref: str) -> ImageRef:
    """Split and validate ``registry/repository:tag``, ``…@sha256:<hex>`` or ``…:tag@sha256:<hex>``.

    Docker's grammar (distribution/reference): the registry is the first path component when it
    looks like a host (has a '.' or a ':' or is ``localhost``), any host (``*.azurecr.io``,
    ``*.azurecr.cn``, ``*.azurecr.us``, a private one); the repository path is lowercase; the tag
    is ``[A-Za-z0-9_.-]{1,128}``; a digest is ``sha256:`` + 64 or ``sha512:`` + 128 lowercase hex
    digits (what ``Model.package`` returns as its location). A tag or a digest is required.
    """
    obj = f"image {ref!r}"
    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError("image", "reference", f"must be registry/repository:tag, got {ref!r}")
    rest, at, digest = ref.partition("@")
    if at and not _DIGEST_RE.fullmatch(digest):
        raise ConfigError(
            obj,
            "digest",
            f"must be sha256:<64 hex digits> (or sha512:<128>), lowercase, got {digest!r}",
        )
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon <= slash:
        if not digest:
            raise ConfigError(
                obj, "tag", "is missing: write registry/repository:tag (or @sha256:<digest>)"
            )
        name, tag = rest, ""
    else:
        name, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_CHARS_RE.fullmatch(tag) or not _TAG_RE.fullmatch(tag):
            raise ConfigError(
                obj,
                "tag",
                f"must match [A-Za-z0-9_.-]{{1,128}} and not start with '.' or '-', got {tag!r}",
            )
    parts = name.split("/")
    registry = ""
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry, parts = parts[0], parts[1:]
        if not _REGISTRY_RE.fullmatch(registry):
            raise ConfigError(
                obj, "registry", f"must be a host name with an optional :port, got {registry!r}"
            )
    repository = "/".join(parts)
    bad = [p for p in parts if not _REPO_COMPONENT_RE.fullmatch(p)]
    if bad or len(repository) > 255:
        raise ConfigError(
            obj,
            "repository",
            "must be a lowercase path of [a-z0-9] components separated by '.', '_', '__' or '-' "
            f"joined by '/', got {repository!r}",
        )
    return ImageRef(registry, repository, tag, digest)


@dataclass
class ImageBundle:
    """A scoring image stored locally: its build context plus what a pod needs to run it.

    ``entry_script`` and ``model_dir`` are relative to ``path`` (the build context);
    ``model_dir`` is the ``AZUREML_MODEL_DIR`` root that holds ``<name>/<version>/``.
    """

    ref: str
    path: Path
    entry_script: str
    model_dir: str
    env: dict[str, str]
    model: str
    digest: str
    created: str

    @property
    def entry_script_path(self) -> Path:
        """The absolute score.py path, for ``azmlinfsrv --entry_script``."""
        return (self.path / self.entry_script).resolve()

    @property
    def model_dir_path(self) -> Path:
        """The absolute model folder, for ``AZUREML_MODEL_DIR`` / ``--model_dir``."""
        return (self.path / self.model_dir).resolve()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("path")
        return data


@runtime_checkable
class ImageStore(Protocol):
    """Where scoring images are kept by reference (a folder here, a container registry on Azure)."""

    def put(self, context_dir: Path, ref: str, metadata: Mapping[str, Any]) -> ImageBundle: ...

    def resolve(self, ref: str) -> ImageBundle: ...

    def list(self) -> list[ImageBundle]: ...

    def exists(self, ref: str) -> bool: ...


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
                "package it first (workbook.packaging.package_local)"
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
