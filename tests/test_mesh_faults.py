"""Each rehearsed fault, through the whole flow on the real local mesh (Envoy + azmlinfsrv): the
stage gate catches it at the first stage that sees it, the rollout rolls back to stable 100%,
and stable answers every request it gets throughout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from workbook import flow, operations, rollout, served, steps
from workbook.local.target import LocalTarget

pytestmark = pytest.mark.integration


def wait_ready(mesh: LocalTarget, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(v.ready == v.replicas >= 1 for v in operations.status(mesh).versions):
        assert time.monotonic() < deadline, operations.status(mesh)
        time.sleep(0.5)


@pytest.fixture
def faulty(mesh: LocalTarget) -> Iterator[LocalTarget]:
    yield mesh
    operations.upgrade(mesh, {"canary": {"env": []}}, "clear faults")
    wait_ready(mesh)


def stable_errors(counters: dict[str, dict[str, int]]) -> int:
    return sum(
        c.get("upstream_rq_5xx", 0) + c.get("upstream_cx_connect_fail", 0)
        for name, c in counters.items()
        if served.subset_of_cluster(name) == "stable"
    )


@pytest.mark.parametrize(
    ("spec", "caught_by"),
    [
        ("latency=50ms", "latency (pinned, same load)"),
        ("errors=0.05", "errors"),
        # the worker exits; gunicorn's master keeps the listening socket and starts a new worker,
        # so the requests waiting meanwhile are answered seconds late or not at all
        ("crash-after=40", ""),
        ("drift=0.3", "predictions"),
    ],
)
def test_a_fault_is_caught_and_the_rollout_rolls_back(
    faulty: LocalTarget, spec: str, caught_by: str
) -> None:
    target = LocalTarget(replace(faulty.settings, stages=(10, 50), canary_fault=spec))
    before = target.traffic.counters()
    result = rollout.run(target, requests=400)
    after = target.traffic.counters()
    assert result.outcome == "rolled_back", result.to_dict()
    failed = [s for s in result.steps if not s.passed]
    assert [s.step for s in failed] in (["smoke"], ["shift-10"]), result.to_dict()
    if failed[0].step == "shift-10" and caught_by:
        checks = failed[0].data["checks"]
        failing = [name for name, c in checks.items() if not c["passed"]]
        assert any(name.startswith(caught_by) for name in failing), failing
    assert result.steps[-1].step == flow.ROLLBACK and result.steps[-1].passed
    assert {k: v for k, v in target.traffic.served_weights().items() if v} == {"stable": 100}
    assert stable_errors(steps.stats_delta(before, after)) == 0  # stable answered everything
