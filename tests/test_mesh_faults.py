"""Each rehearsed fault, through the whole flow on the real local mesh (Envoy + azmlinfsrv): the
stage gate catches it at the first stage that sees it, the rollout rolls back to stable 100%,
and stable answers every request it gets throughout."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from workbook import flow, rollout, served, steps
from workbook.local.target import LocalTarget
from workbook.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[LocalTarget]:
    """A mesh of its own (the flow deploys, shifts and rolls back: no shared state)."""
    target = LocalTarget(Settings(state_dir=tmp_path / "state", stages=(10, 50)))
    try:
        yield target
    finally:
        target.down()


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
        # the worker exits mid-request; gunicorn starts a new one at once, and the gateway retries
        # the reset request on the other worker: the failure shows as the canary's retries
        ("crash-after=10", "errors (retried at the gateway)"),
        ("drift=0.3", "predictions"),
    ],
)
def test_a_fault_is_caught_and_the_rollout_rolls_back(
    fresh: LocalTarget, spec: str, caught_by: str
) -> None:
    target = LocalTarget(replace(fresh.settings, canary_fault=spec))
    counters: list[dict[str, dict[str, int]]] = []
    execute = rollout.DirectExecutor(target, requests=400)

    def note(outcome: flow.StepOutcome) -> None:
        if outcome.step == flow.DEPLOY:  # the mesh runs from the deploy step on
            counters.append(target.traffic.counters())

    result = flow.run(flow.plan(target.settings.stages), execute, on_step=note)
    (before,) = counters
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
