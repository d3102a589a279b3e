"""Release history on disk, kept the way Helm keeps it: one record per revision."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from workbook.errors import ConfigError
from workbook.files import read_json, write_json
from workbook.seam import Release


class ReleaseStore:
    """Revisions 1..n under ``root``; one is ``deployed`` once a release has succeeded."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, revision: int) -> Path:
        return self.root / f"{revision:05d}.json"

    def history(self) -> list[Release]:
        out = []
        for p in sorted(self.root.glob("*.json")):
            data = read_json(p)
            if data:
                out.append(Release(**data))
        return out

    def deployed(self) -> Release | None:
        """The revision that is serving now."""
        for rel in reversed(self.history()):
            if rel.status == "deployed":
                return rel
        return None

    def get(self, revision: int) -> Release:
        data = read_json(self._path(revision))
        if not data:
            known = [r.revision for r in self.history()]
            raise ConfigError("rollback", "revision", f"{revision} does not exist; known: {known}")
        return Release(**data)

    def next_revision(self) -> int:
        hist = self.history()
        return hist[-1].revision + 1 if hist else 1

    def record(
        self, values: dict[str, Any], manifest: str, description: str, status: str
    ) -> Release:
        """Store a new revision; a deployed one supersedes the previous deployed revision."""
        rel = Release(
            revision=self.next_revision(),
            status=status,
            description=description,
            values=values,
            updated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            manifest=manifest,
        )
        prev = self.deployed() if status == "deployed" else None
        write_json(self._path(rel.revision), rel.__dict__)  # first: never nothing deployed
        if prev is not None:
            prev.status = "superseded"
            write_json(self._path(prev.revision), prev.__dict__)
        return rel
