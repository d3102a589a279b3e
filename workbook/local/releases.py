"""Release history on disk, kept the way Helm keeps it: one record per revision.

A change is one transaction with the gateway: the revision is written ``pending`` before anything
is served (write ahead), marked ``deployed`` only once the gateway serves it, else ``failed``. On
start, ``reconcile`` settles what a crash left behind, so the history always names what to serve.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import Any

from workbook.errors import ConfigError, MeshError
from workbook.files import read_json, write_json
from workbook.seam import Release

PENDING, DEPLOYED, SUPERSEDED, FAILED = "pending", "deployed", "superseded", "failed"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class ReleaseStore:
    """Revisions 1..n under ``root``; one is ``deployed`` once a release has succeeded."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, revision: int) -> Path:
        return self.root / f"{revision:05d}.json"

    def _write(self, rel: Release) -> None:
        try:
            write_json(self._path(rel.revision), rel.__dict__)
        except OSError as e:
            raise MeshError(
                f"release history: revision {rel.revision} could not be written to {self.root} "
                f"({e.strerror or e}); nothing was changed"
            ) from None

    def history(self) -> list[Release]:
        out = []
        for p in sorted(self.root.glob("*.json")):
            try:
                data = read_json(p)
            except (OSError, ValueError):  # a torn or unreadable record is no revision
                continue
            if isinstance(data, dict):
                out.append(Release(**data))
        return out

    def deployed(self) -> Release | None:
        """The revision that is serving now."""
        for rel in reversed(self.history()):
            if rel.status == DEPLOYED:
                return rel
        return None

    def get(self, revision: int) -> Release:
        try:
            data = read_json(self._path(revision))
        except (OSError, ValueError):
            data = None
        if not data:
            known = [r.revision for r in self.history()]
            raise ConfigError("rollback", "revision", f"{revision} does not exist; known: {known}")
        return Release(**data)

    def next_revision(self) -> int:
        hist = self.history()
        return hist[-1].revision + 1 if hist else 1

    def begin(self, values: dict[str, Any], manifest: str, description: str) -> Release:
        """Write ahead: the new revision as ``pending``; MeshError (nothing changed) if not."""
        rel = Release(
            revision=self.next_revision(),
            status=PENDING,
            description=description,
            values=values,
            updated=_now(),
            manifest=manifest,
        )
        self._write(rel)
        return rel

    def commit(self, rel: Release) -> Release:
        """The pending revision serves now: it becomes ``deployed``, the previous one superseded.

        Written in that order, so a crash in between leaves two ``deployed`` records, of which
        the newest counts (and ``reconcile`` supersedes the other).
        """
        prev = self.deployed()
        rel.status, rel.updated = DEPLOYED, _now()
        self._write(rel)
        if prev is not None and prev.revision != rel.revision:
            prev.status = SUPERSEDED
            with contextlib.suppress(MeshError):  # the newer deployed record already wins
                self._write(prev)
        return rel

    def fail(self, rel: Release, reason: str) -> Release:
        """The pending revision did not serve: ``failed``, with the reason (best effort on disk)."""
        rel.status, rel.updated = FAILED, _now()
        rel.description = f"{rel.description} (failed: {reason})"
        with contextlib.suppress(MeshError):  # reconcile fails a leftover pending record
            self._write(rel)
        return rel

    def reconcile(self) -> list[str]:
        """Settle what a crash left: pending → failed, older duplicate deployed → superseded.

        Returns one line per record changed (for the log).
        """
        changed = []
        hist = self.history()
        deployed = [r for r in hist if r.status == DEPLOYED]
        for rel in deployed[:-1]:
            rel.status = SUPERSEDED
            self._write(rel)
            changed.append(f"revision {rel.revision}: deployed → superseded")
        for rel in hist:
            if rel.status == PENDING:
                rel.status = FAILED
                rel.description += " (failed: interrupted before the gateway served it)"
                rel.updated = _now()
                self._write(rel)
                changed.append(f"revision {rel.revision}: pending → failed")
        return changed
