"""Promotion on the local mesh: no failed request while it rolls out, and the next canary builds
on the promoted stable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from workbook import operations, steps, traffic, workspace
from workbook.local.target import LocalTarget
from workbook.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTarget]:
    cluster = LocalTarget(Settings(state_dir=tmp_path_factory.mktemp("promote-state")))
    operations.up(cluster, {})
    try:
        yield cluster
    finally:
        cluster.down()


def test_promote_serves_every_request_and_the_next_canary_keeps_the_promoted_stable(
    fresh: LocalTarget,
) -> None:
    operations.shift(fresh, 100)
    url = operations.status(fresh).gateway_url + "/score"
    with traffic.LoadGenerator(url, concurrency=4, max_seconds=90) as load:
        operations.promote(fresh)
    summary = load.summary()
    assert summary.total > 50 and summary.errors == 0, summary.error_kinds
    assert set(summary.counts) == {"v2"}  # v1 never came back while stable rolled to v2
    assert [h.description for h in fresh.releases.history()[-3:]] == [
        "promote v2: stable runs the canary's image",
        "promote v2: stable takes all traffic",
        "promote v2: canary retired",
    ]
    st = operations.status(fresh)
    assert [(v.track, v.version, v.weight) for v in st.versions] == [("stable", "v2", 100)]

    # the next rollout: package v3 and deploy it next to the promoted v2
    settings = fresh.settings
    registry = workspace.open_registry(settings)
    workspace.register_versions(settings, registry, ["v3"])
    workspace.package_image(settings, registry, "v3")
    steps.deploy_canary(fresh, canary_version="v3")
    st = operations.status(fresh)
    assert {v.track: (v.version, v.weight) for v in st.versions} == {
        "stable": ("v2", 100),
        "canary": ("v3", 0),
    }
    pinned = traffic.probe(url, 50, headers={"x-model-version": "canary"}, show_progress=False)
    assert pinned.counts == {"v3": 50}
