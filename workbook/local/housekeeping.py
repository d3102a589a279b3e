"""Bounded disk use of the local mesh: logs rotated, folders of stopped pods removed."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

#: A log grows to this size before it is rotated (one older copy, ``NAME.1``, is kept).
LOG_MAX_BYTES = 5 * 1024 * 1024

#: Folders of stopped pods kept for their logs (the newest); older ones are removed.
KEEP_POD_DIRS = 10


def rotate(path: Path, max_bytes: int = LOG_MAX_BYTES) -> bool:
    """Copy a log that outgrew ``max_bytes`` to ``NAME.1`` and truncate it in place.

    Copy-and-truncate, because the writer (Envoy, a pod, the supervisor itself) keeps the file
    open in append mode: it goes on writing at the new end. True when rotated.
    """
    try:
        if path.stat().st_size <= max_bytes:
            return False
        shutil.copyfile(path, path.with_name(path.name + ".1"))
        os.truncate(path, 0)
    except OSError:
        return False
    return True


def prune_pod_dirs(root: Path, active: Iterable[str], keep: int = KEEP_POD_DIRS) -> list[str]:
    """Remove the folders of pods not in ``active`` beyond the ``keep`` newest; their names."""
    active = set(active)
    try:
        stopped = [p for p in root.iterdir() if p.is_dir() and p.name not in active]
    except OSError:
        return []
    stopped.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    removed = []
    for p in stopped[keep:]:
        with contextlib.suppress(OSError):
            shutil.rmtree(p)
            removed.append(p.name)
    return removed
