"""The narrow seam between the canary flow and where it runs: types and three small interfaces.

Like Flagger's router interface, a target only does I/O: a **release backend** stores and deploys
chart values as numbered revisions (Helm on a cluster, the local supervisor on a laptop), a
**traffic view** reports what the gateway really serves, and an **object store** reads and
applies Istio objects. The canary rules (which values a shift, promote or rollback sets, and which
weights the gateway must then serve) live once, in ``workbook.canary``; the verbs that combine the
two live in ``workbook.operations``. The factory that picks a target is ``workbook.targets``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from workbook.settings import Settings


@dataclass
class VersionStatus:
    """One track (stable or canary) as the target sees it; ``weight`` is what the gateway serves."""

    track: str
    version: str
    image: str
    replicas: int
    ready: int
    weight: int = 0


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
        """Served weight per model version, e.g. ``{"v1": 90, "v2": 10}`` (after a promote both
        tracks may run one version: their weights add up)."""
        out: dict[str, int] = {}
        for v in self.versions:
            out[v.version] = out.get(v.version, 0) + v.weight
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReleaseBackend(Protocol):
    """Chart values in, numbered revisions out (``helm upgrade --install`` and friends)."""

    def deployed(self) -> Release | None:
        """The revision serving now (with its full user values), or None before the first."""

    def upgrade(
        self, values: dict[str, Any], description: str, *, expect_revision: int | None = None
    ) -> Release:
        """Deploy these values as a new revision (install when there is none); return when every
        Deployment is ready. ``expect_revision``: refuse if another revision was deployed since."""

    def rollback(self, revision: int) -> Release:
        """Deploy an earlier revision's values again, as a new revision."""

    def history(self) -> list[Release]:
        """Revisions, oldest first."""

    def uninstall(self) -> None:
        """Remove what the release created (local: also stop the mesh)."""

    def readiness(self) -> list[VersionStatus]:
        """Per track: version, image, desired and ready pods (``weight`` left 0)."""


class TrafficView(Protocol):
    """What the gateway really does, read from the proxy's own state."""

    def gateway_url(self) -> str:
        """Base URL of the scoring endpoint ("" when the target cannot tell)."""

    def host(self) -> str:
        """The Host header a caller sends through the gateway ("" when any host is served)."""

    def served_weights(self) -> dict[str, int]:
        """Track → weight of the weighted (catch-all) route that the gateway serves now."""

    def counters(self) -> dict[str, dict[str, int]]:
        """Cumulative request counters per Istio cluster (``outbound|80|canary|host``); {} when the
        target has no such telemetry."""

    def telemetry_mark(self) -> Any:
        """The start of a telemetry window (an opaque mark for ``telemetry_since``)."""

    def telemetry_since(self, mark: Any, versions: dict[str, str]) -> dict[str, Any] | None:
        """The gateway's own per-version telemetry since ``mark`` (``workbook.telemetry``
        ``VersionTelemetry`` by model version; ``versions`` maps track to version); None when the
        target has none."""


class ObjectStore(Protocol):
    """Istio and workload objects of the release's namespace."""

    def get(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        """Live objects of a kind (kubectl names and short names work the same on every target)."""

    def apply(self, objects: list[dict[str, Any]]) -> list[str]:
        """Apply Istio objects over the release's own until the next release (kubectl apply)."""


class Target(Protocol):
    """Where the canary runs: the three interfaces plus the settings they were made from."""

    @property
    def name(self) -> str: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def releases(self) -> ReleaseBackend: ...

    @property
    def traffic(self) -> TrafficView: ...

    @property
    def objects(self) -> ObjectStore: ...

    def prepare(self, values: dict[str, Any]) -> dict[str, Any]:
        """Before the first revision: local starts the mesh; k8s readies namespace and secret and
        adds what the cluster needs to the values (its Istio flavour). Returns the values."""

    def abandon(self) -> None:
        """After a failed first revision: undo what ``prepare`` started, keep the history."""
