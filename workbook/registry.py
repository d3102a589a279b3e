"""Models and images behind two protocols, and image references.

``ModelRegistry`` is where model versions are registered (``workbook.local.registry`` keeps them in
a folder, ``workbook.azure.registry`` in an Azure ML workspace); ``ImageStore`` is where scoring
images are kept by reference (a folder locally, the workspace's container registry on Azure).
``parse_image_ref`` reads ``[registry/]repository[:tag][@digest]`` as a container registry does.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

from workbook.errors import ConfigError

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_TAG_CHARS_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_REPO_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_REGISTRY_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"(?::\d{1,5})?"
)


_IGNORED = {"__pycache__", ".DS_Store"}


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
