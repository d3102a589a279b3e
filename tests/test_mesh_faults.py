"""Each rehearsed fault on the real local mesh is caught by the gate at a 50% stage, while
stable answers every request it gets."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from workbook import analysis, faults, operations, predictions, telemetry, traffic
from workbook.local.target import LocalTarget

pytestmark = pytest.mark.integration


def envoy_telemetry(mesh: LocalTarget) -> dict[str, telemetry.VersionTelemetry]:
    # the admin is a 0600 unix socket: its /stats/prometheus comes through the supervisor
    return telemetry.parse_envoy_prometheus(mesh.traffic.telemetry_mark())


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


@pytest.mark.parametrize(
    ("spec", "failed_check"),
    [
        ("latency=50ms", "latency (probe)"),
        ("errors=0.05", "errors (probe)"),
        # the worker exits; gunicorn's master keeps the listening socket and starts a new worker,
        # so the requests waiting meanwhile are answered seconds late rather than failed
        ("crash-after=40", "latency (probe)"),
        ("drift=0.3", "predictions"),
    ],
)
def test_fault_is_caught_at_the_first_stage(
    faulty: LocalTarget, spec: str, failed_check: str
) -> None:
    mesh = faulty
    operations.upgrade(
        mesh, {"canary": {"env": faults.chart_env(faults.parse(spec))}}, f"fault {spec}"
    )
    operations.shift(mesh, 50)
    wait_ready(mesh)
    st = operations.status(mesh)
    url = st.gateway_url + "/score"
    tracks = {v.track: v.version for v in st.versions}
    time.sleep(1.5)
    before = envoy_telemetry(mesh)
    probe = traffic.probe(url, 600, concurrency=4, show_progress=False, timeout_s=10)
    replayed = traffic.replay(
        url, predictions.replay_inputs(200), {t: {"x-model-version": t} for t in tracks}, chunk=25
    )
    time.sleep(1.5)
    stage = telemetry.rename(
        telemetry.by_subset(telemetry.delta(envoy_telemetry(mesh), before)), tracks
    )
    verdict = analysis.judge(
        analysis.StageEvidence(
            weights=st.weights(),
            stable=tracks["stable"],
            canary=tracks["canary"],
            probe=probe,
            telemetry=stage,
            predictions=predictions.compare_replays(
                replayed["stable"].scores, replayed["canary"].scores
            ),
        )
    )
    assert not verdict.passed, verdict.text
    assert verdict.checks[failed_check]["passed"] is False, verdict.text
    # stable served every request it got
    assert probe.errors_by_version.get(tracks["stable"], 0) == 0
    assert stage[tracks["stable"]].errors == 0
