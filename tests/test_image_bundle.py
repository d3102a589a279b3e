"""An image does not change once built: running its pods writes nothing into the bundle."""

from __future__ import annotations

import hashlib

import pytest

from workbook import operations, traffic
from workbook.files import read_json
from workbook.local.registry import IMAGE_METADATA
from workbook.local.target import LocalTarget
from workbook.registry import tree_digest

pytestmark = pytest.mark.integration


def _every_file(root) -> str:
    """A digest over every file under ``root``, caches included (``tree_digest`` skips them)."""
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def test_running_pods_leave_their_image_bundles_unchanged(mesh: LocalTarget) -> None:
    images = mesh.settings.state_dir / "images"
    contexts = sorted(p.parent for p in images.rglob(IMAGE_METADATA))
    assert contexts, f"no image bundles under {images}"
    before = {c: _every_file(c) for c in contexts}
    result = traffic.probe(operations.status(mesh).gateway_url + "/score", 40, show_progress=False)
    assert result.errors == 0 and sum(result.counts.values()) == 40
    for c in contexts:
        cached = [p for p in c.rglob("*") if p.name == "__pycache__" or p.suffix == ".pyc"]
        assert not cached, f"a pod wrote {cached[0]} into its image"
        assert _every_file(c) == before[c]
        assert read_json(c / IMAGE_METADATA, {})["digest"] == tree_digest(c / "context")
