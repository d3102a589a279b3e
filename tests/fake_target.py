"""An in-memory fake of the target seam (``workbook.seam``), for testing the flow in milliseconds.

Like Flagger's fake clientset: the real canary core and operations run against it, and the test
reads the state back. Revisions are kept as Helm keeps them; the gateway serves what the deployed
values say (optionally a few reads late, as a real proxy may be).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbook import canary, chart
from workbook.errors import ConflictError, ReadinessError
from workbook.seam import Release, VersionStatus
from workbook.settings import Settings


@dataclass
class FakeState:
    history: list[Release] = field(default_factory=list)
    lag: int = 0  # reads of served_weights that still see the previous revision
    fail_next: list[str] = field(default_factory=list)  # descriptions that fail to deploy
    _stale: dict[str, int] | None = None
    _reads_left: int = 0


class FakeReleases:
    def __init__(self, state: FakeState, defaults: dict[str, Any]) -> None:
        self.state, self.defaults = state, defaults

    def deployed(self) -> Release | None:
        for rel in reversed(self.state.history):
            if rel.status == "deployed":
                return rel
        return None

    def _record(self, values: dict[str, Any], description: str) -> Release:
        previous = self.deployed()
        rev = len(self.state.history) + 1
        if any(description.startswith(d) for d in self.state.fail_next):
            self.state.history.append(Release(rev, "failed", description, copy.deepcopy(values)))
            raise ReadinessError(f"revision {rev} ({description}): pods did not become ready")
        if previous is not None:
            previous.status = "superseded"
            self.state._stale = canary.expected_weights(
                canary.merge(self.defaults, previous.values)
            )
            self.state._reads_left = self.state.lag
        rel = Release(rev, "deployed", description, copy.deepcopy(values))
        self.state.history.append(rel)
        return rel

    def upgrade(
        self, values: dict[str, Any], description: str, *, expect_revision: int | None = None
    ) -> Release:
        current = self.deployed()
        if expect_revision is not None and (current.revision if current else 0) != expect_revision:
            raise ConflictError(f"revision {current.revision if current else 0} is deployed")
        return self._record(values, description)

    def rollback(self, revision: int) -> Release:
        (target,) = [r for r in self.state.history if r.revision == revision]
        return self._record(target.values, f"rollback to {revision}")

    def history(self) -> list[Release]:
        return list(self.state.history)

    def uninstall(self) -> None:
        self.state.history.clear()

    def readiness(self) -> list[VersionStatus]:
        rel = self.deployed()
        if rel is None:
            return []
        full = canary.merge(self.defaults, rel.values)
        tracks = [canary.STABLE] + ([canary.CANARY] if canary.canary_enabled(full) else [])
        return [
            VersionStatus(t, canary.version_of(full, t), canary.image_ref(full, t), 1, 1)
            for t in tracks
        ]


class FakeTraffic:
    def __init__(self, state: FakeState, releases: FakeReleases) -> None:
        self.state, self.releases = state, releases

    def gateway_url(self) -> str:
        return "http://127.0.0.1:9"

    def host(self) -> str:
        return ""

    def served_weights(self) -> dict[str, int]:
        if self.state._reads_left > 0 and self.state._stale is not None:
            self.state._reads_left -= 1
            return dict(self.state._stale)
        rel = self.releases.deployed()
        if rel is None:
            return {}
        return canary.expected_weights(canary.merge(self.releases.defaults, rel.values))

    def counters(self) -> dict[str, dict[str, int]]:
        return {}

    def telemetry_mark(self) -> Any:
        return None

    def telemetry_since(self, mark: Any, versions: dict[str, str]) -> dict[str, Any] | None:
        return None


class FakeObjects:
    def get(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        return []

    def apply(self, objects: list[dict[str, Any]]) -> list[str]:
        return []


class FakeTarget:
    """A target whose releases and gateway live in memory."""

    name = "fake"

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings(state_dir=Path("/nonexistent"))
        self.state = FakeState()
        self.prepared = 0
        defaults = chart.default_values(self.settings.chart_dir)
        self.releases = FakeReleases(self.state, defaults)
        self.traffic = FakeTraffic(self.state, self.releases)
        self.objects = FakeObjects()

    def prepare(self, values: dict[str, Any]) -> dict[str, Any]:
        self.prepared += 1
        return values

    def abandon(self) -> None:
        pass
