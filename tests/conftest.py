"""Shared fixtures: one real local mesh (Envoy + azmlinfsrv on loopback) per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from workbook import operations
from workbook.local.target import LocalTarget
from workbook.settings import Settings


@pytest.fixture(scope="session")
def mesh_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(state_dir=tmp_path_factory.mktemp("mesh-state"))


@pytest.fixture(scope="session")
def mesh(mesh_settings: Settings) -> Iterator[LocalTarget]:
    """One running local mesh shared by the integration tests (revision 1 at canary weight 0)."""
    cluster = LocalTarget(mesh_settings)
    operations.up(cluster, {})
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture
def state_args(mesh_settings: Settings) -> list[str]:
    """CLI arguments that point the command line at the session mesh."""
    return ["--state-dir", str(Path(mesh_settings.state_dir))]
