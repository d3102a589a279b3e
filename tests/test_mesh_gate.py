"""The stage gate on the real local mesh (Envoy + azmlinfsrv): gateway telemetry from Envoy's
``/stats/prometheus``, a sequential probe, a prediction replay through the header pins."""

from __future__ import annotations

import time

import pytest

from workbook import analysis, operations, predictions, telemetry, traffic
from workbook.local.target import LocalTarget
from workbook.sequential import SplitMonitor

pytestmark = pytest.mark.integration


def envoy_telemetry(mesh: LocalTarget) -> dict[str, telemetry.VersionTelemetry]:
    # the admin is a 0600 unix socket: its /stats/prometheus comes through the supervisor
    return telemetry.parse_envoy_prometheus(mesh.traffic.telemetry_mark())


def test_a_healthy_stage_passes_the_gate_on_gateway_and_probe_evidence(
    mesh: LocalTarget,
) -> None:
    operations.shift(mesh, 50)
    st = operations.status(mesh)
    url = st.gateway_url + "/score"
    tracks = {v.track: v.version for v in st.versions}
    time.sleep(1.5)  # one stats flush (1 s), so the snapshot holds every earlier request
    before = envoy_telemetry(mesh)

    monitor = SplitMonitor(st.weights())
    probe = traffic.probe_until(
        url, lambda r: monitor.update(r.counts).done, max_n=3000, batch=100, concurrency=4
    )
    pins = {
        version: traffic.probe(url, 40, headers={"x-model-version": track}, show_progress=False)
        for track, version in tracks.items()
    }
    rows = predictions.replay_inputs(200)
    replayed = traffic.replay(
        url, rows, {t: {"x-model-version": t} for t in tracks}, chunk=25, concurrency=2
    )
    time.sleep(1.5)
    stage = telemetry.rename(
        telemetry.by_subset(telemetry.delta(envoy_telemetry(mesh), before)), tracks
    )

    sent = probe.total + sum(p.total for p in pins.values()) + 2 * (200 // 25)
    assert sum(v.requests for v in stage.values()) == sent
    assert stage["v2"].requests == probe.requests_of("v2") + pins["v2"].total + 8
    assert all(v.buckets[-1][1] == v.requests for v in stage.values())

    evidence = analysis.StageEvidence(
        weights=st.weights(),
        stable=tracks["stable"],
        canary=tracks["canary"],
        probe=probe,
        telemetry=stage,
        predictions=predictions.compare_replays(
            replayed["stable"].scores, replayed["canary"].scores
        ),
        pins=pins,
        split=monitor.update(probe.counts),
    )
    verdict = analysis.judge(evidence)
    assert verdict.passed, verdict.text
    assert set(verdict.checks) == {
        "split",
        "pin v1",
        "pin v2",
        "errors (probe)",
        "latency (pinned, same load)",
        "unattributed errors",
        "errors (gateway)",
        "latency (gateway)",
        "predictions",
    }
