"""The one seam between the canary flow and where it runs.

``Cluster`` has the verbs of the command line. ``LocalCluster`` drives the embedded mesh (a real
Envoy and azmlinfsrv processes), ``KubernetesCluster`` drives Helm + Istio on a real cluster.
Notebooks, the CLI and the pipeline only ever hold a ``Cluster``; ``connect`` picks one by target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from workbook.errors import ConfigError
from workbook.settings import Settings


@dataclass
class VersionStatus:
    """One track (stable or canary) as the cluster sees it."""

    track: str
    version: str
    image: str
    replicas: int
    ready: int
    weight: int


@dataclass
class Release:
    """One release revision: the values it was made from and what happened to it."""

    revision: int
    status: str  # deployed | superseded | failed
    description: str
    values: dict[str, Any]
    updated: str = ""
    manifest: str = ""

    def summary(self) -> dict[str, Any]:
        """The revision without its (large) manifest."""
        out = asdict(self)
        out.pop("manifest")
        return out


@dataclass
class Status:
    """What ``workbook status`` reports."""

    target: str
    namespace: str
    release: str
    revision: int
    gateway_url: str
    versions: list[VersionStatus] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def weights(self) -> dict[str, int]:
        """Configured weight per model version, e.g. ``{"v1": 90, "v2": 10}``."""
        out: dict[str, int] = {}
        for v in self.versions:
            out[v.version] = out.get(v.version, 0) + v.weight
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Cluster(Protocol):
    """What the canary flow needs from a target; every weight change is a new release revision."""

    settings: Settings

    def up(self, overrides: dict[str, Any] | None = None) -> Release:
        """Deploy stable and canary (install, or upgrade with these value overrides)."""

    def upgrade(self, overrides: dict[str, Any], description: str = "upgrade") -> Release:
        """A new revision from the deployed values plus these overrides (helm upgrade)."""

    def shift(self, canary_weight: int) -> Release:
        """Set the canary weight; return once the gateway serves it."""

    def status(self) -> Status:
        """Gateway URL, revision, and per track: image, ready pods, weight."""

    def apply(self, objects: list[dict[str, Any]]) -> list[str]:
        """Apply Istio networking objects over the release's own until the next release."""

    def get(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        """The live objects of a kind (rendered by the release, or applied)."""

    def rollback(self, revision: int | None = None) -> Release:
        """Return to a revision's values (the previous one by default) as a new revision."""

    def promote(self) -> Release:
        """Make the canary the stable version and return the canary weight to 0."""

    def history(self) -> list[Release]:
        """Release revisions, oldest first."""

    def down(self) -> None:
        """Remove the deployment (local: stop every process)."""


_TARGETS: dict[str, Callable[[Settings], Cluster]] = {}


def register_target(name: str, factory: Callable[[Settings], Cluster]) -> None:
    """Register a target by name, as papermill registers engines."""
    _TARGETS[name] = factory


def connect(settings: Settings | None = None, **overrides: Any) -> Cluster:
    """The cluster for ``settings.target`` (default: from the environment, target local)."""
    settings = settings or Settings.from_env(**overrides)
    _load_builtin_targets()
    try:
        factory = _TARGETS[settings.target]
    except KeyError:
        raise ConfigError(
            "settings", "target", f"must be one of {sorted(_TARGETS)}, got {settings.target!r}"
        ) from None
    return factory(settings)


def _local(settings: Settings) -> Cluster:
    from workbook.local.client import LocalCluster

    return LocalCluster(settings)


def _k8s(settings: Settings) -> Cluster:
    from workbook.kube.cluster import KubernetesCluster

    return KubernetesCluster(settings)


def _load_builtin_targets() -> None:
    """Built-in targets import their modules only when used (the kubernetes client is slow)."""
    _TARGETS.setdefault("local", _local)
    _TARGETS.setdefault("k8s", _k8s)
