"""The local canary mesh for real: Envoy routing to azmlinfsrv pods, weights shifted live."""

from __future__ import annotations

import os
import signal
import time

import pytest

from workbook import analysis, operations, served, steps, traffic
from workbook.errors import WorkbookError
from workbook.local.target import LocalTarget

pytestmark = pytest.mark.integration

ALPHA = 1e-4  # significance of the goodness-of-fit test; a fitting split fails 0.01% of runs


def score_url(mesh: LocalTarget) -> str:
    return operations.status(mesh).gateway_url + "/score"


def test_up_deploys_both_versions_ready_at_weight_zero(mesh: LocalTarget) -> None:
    st = operations.status(mesh)
    by_track = {v.track: v for v in st.versions}
    assert set(by_track) == {"stable", "canary"}
    assert by_track["stable"].version == "v1" and by_track["canary"].version == "v2"
    assert all(v.ready == v.replicas >= 1 for v in st.versions)
    assert st.gateway_url.startswith("http://127.0.0.1:")
    assert st.revision >= 1


@pytest.mark.parametrize("weight", [0, 10, 37, 50, 90, 100])
def test_observed_split_fits_configured_weight(mesh: LocalTarget, weight: int) -> None:
    rel = operations.shift(mesh, weight)
    assert rel.status == "deployed"
    st = operations.status(mesh)
    assert st.weights() == {"v1": 100 - weight, "v2": weight}
    result = traffic.probe(score_url(mesh), 800, concurrency=8, show_progress=False)
    assert result.errors == 0, result.error_kinds
    check = analysis.check_split(result.counts, st.weights(), alpha=ALPHA)
    assert check.passed, check.reason
    if weight in (0, 100):  # exact: a zero-weight version gets nothing
        assert result.counts == {("v2" if weight == 100 else "v1"): 800}


@pytest.mark.parametrize(("pin", "version", "weight"), [("canary", "v2", 0), ("stable", "v1", 100)])
def test_header_pins_every_request(mesh: LocalTarget, pin: str, version: str, weight: int) -> None:
    operations.shift(mesh, weight)  # the pinned version gets no weighted traffic at all
    headers = {"x-model-version": pin}
    result = traffic.probe(score_url(mesh), 300, headers=headers, show_progress=False)
    assert result.counts == {version: 300}
    assert result.errors == 0


def test_no_failed_request_during_shifts_under_load(mesh: LocalTarget) -> None:
    operations.shift(mesh, 0)
    with traffic.LoadGenerator(score_url(mesh), concurrency=4, max_seconds=60) as load:
        for w in (10, 50, 100, 0, 37):
            time.sleep(0.4)
            operations.shift(mesh, w)
        time.sleep(0.4)
    summary = load.summary()
    assert summary.total > 100
    assert summary.errors == 0, summary.error_kinds
    assert set(summary.counts) == {"v1", "v2"}


def test_shift_returns_only_when_gateway_serves_new_weights(mesh: LocalTarget) -> None:
    operations.shift(mesh, 0)
    operations.shift(mesh, 100)
    route = mesh.traffic.served_routes()["virtual_hosts"][0]["routes"][-1][
        "route"
    ]  # the weighted one
    clusters = route.get("weighted_clusters", {}).get("clusters") or [
        {"name": route["cluster"], "weight": 100}
    ]
    weights = {served.subset_of_cluster(c["name"]): c["weight"] for c in clusters}
    assert {k: v for k, v in weights.items() if v} == {"canary": 100}
    assert {k: v for k, v in mesh.traffic.served_weights().items() if v} == {"canary": 100}
    # the very first requests after shift returns must all see the new weights
    result = traffic.probe(score_url(mesh), 50, concurrency=1, show_progress=False)
    assert result.counts == {"v2": 50}


def test_killed_pod_process_comes_back(mesh: LocalTarget) -> None:
    operations.shift(mesh, 50)
    pods = {p["deployment"]: p for p in mesh.info()["pods"]}
    victim = pods["scoring-canary"]
    os.kill(victim["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 90
    while True:
        now = {p["name"]: p for p in mesh.info()["pods"]}
        back = now.get(victim["name"])
        if back and back["ready"] and back["pid"] != victim["pid"]:
            break
        assert time.monotonic() < deadline, f"pod {victim['name']} did not come back: {back}"
        time.sleep(0.2)
    assert back["restarts"] >= victim["restarts"] + 1
    result = traffic.probe(score_url(mesh), 400, show_progress=False)
    assert result.errors == 0
    assert analysis.check_split(
        result.counts, operations.status(mesh).weights(), alpha=ALPHA
    ).passed


def test_rollback_to_a_revision_restores_its_weights(mesh: LocalTarget) -> None:
    first = operations.shift(mesh, 10)
    second = operations.shift(mesh, 50)
    back = operations.rollback(mesh, first.revision)
    assert back.revision == second.revision + 1
    assert operations.status(mesh).weights() == {"v1": 90, "v2": 10}
    history = mesh.releases.history()
    assert history[-1].description == f"rollback to {first.revision}"
    assert [h.status for h in history].count("deployed") == 1
    result = traffic.probe(score_url(mesh), 600, show_progress=False)
    assert analysis.check_split(result.counts, {"v1": 90, "v2": 10}, alpha=ALPHA).passed


def test_gateway_counters_agree_with_the_probe(mesh: LocalTarget) -> None:
    stage = steps.run_stage(mesh, 30, 500, alpha=ALPHA, show_progress=False)
    by_subset = {
        served.subset_of_cluster(name): counters["upstream_rq_total"]
        for name, counters in stage.gateway.items()
    }
    # besides the probe, each track got its pinned requests and the replayed inputs (in chunks)
    extra = steps.PIN_REQUESTS + steps.REPLAY_ROWS // 25
    assert by_subset["stable"] == stage.probe["counts"].get("v1", 0) + extra
    assert by_subset["canary"] == stage.probe["counts"].get("v2", 0) + extra
    assert stage.versions == {"stable": "v1", "canary": "v2"}
    assert stage.passed, stage.reasons
    assert {"split", "pin v1", "pin v2", "errors (gateway)", "predictions"} <= set(stage.checks)


def test_apply_overrides_until_next_release(mesh: LocalTarget) -> None:
    operations.shift(mesh, 0)
    vs = mesh.objects.get("VirtualService", "scoring")[0]
    weighted = next(r for r in vs["spec"]["http"] if r["name"] == "weighted")
    weighted["route"][0]["weight"], weighted["route"][1]["weight"] = 0, 100
    assert mesh.objects.apply([vs]) == ["VirtualService canary-demo/scoring configured"]
    assert mesh.objects.get("VirtualService", "scoring")[0]["spec"] == vs["spec"]
    result = traffic.probe(score_url(mesh), 100, show_progress=False)
    assert result.counts == {"v2": 100}
    operations.shift(mesh, 0)  # the next release brings the chart's object back
    result = traffic.probe(score_url(mesh), 100, show_progress=False)
    assert result.counts == {"v1": 100}


def test_killed_gateway_comes_back_with_its_configuration(mesh: LocalTarget) -> None:
    operations.shift(mesh, 40)
    before = mesh.info()
    os.kill(before["gateway_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        now = mesh.info()
        if now["gateway_restarts"] > before["gateway_restarts"] and now["gateway_pid"]:
            result = traffic.probe(score_url(mesh), 50, concurrency=1, show_progress=False)
            if result.errors == 0:
                break
        assert time.monotonic() < deadline, "the gateway did not come back"
        time.sleep(0.2)
    assert now["gateway_pid"] != before["gateway_pid"]
    assert mesh.traffic.served_routes() != {}
    result = traffic.probe(score_url(mesh), 600, show_progress=False)
    assert result.errors == 0
    assert analysis.check_split(result.counts, {"v1": 60, "v2": 40}, alpha=ALPHA).passed


@pytest.mark.parametrize("kind", ["vs", "VirtualService", "virtualservices"])
def test_get_takes_kubectl_kind_names(mesh: LocalTarget, kind: str) -> None:
    assert [o["metadata"]["name"] for o in mesh.objects.get(kind)] == ["scoring"]


def test_get_unknown_kind_or_name_is_an_error(mesh: LocalTarget) -> None:
    with pytest.raises(WorkbookError, match="KIND must be one of"):
        mesh.objects.get("widgets")  # (pods are known: the pod processes)
    with pytest.raises(WorkbookError, match="VirtualService nope"):
        mesh.objects.get("vs", "nope")


def test_canary_rollback_means_stable_100_canary_0(mesh: LocalTarget) -> None:
    deploy = operations.shift(mesh, 0)
    operations.shift(mesh, 10)
    operations.shift(mesh, 60)
    back = operations.rollback(mesh)  # no revision: the flow's rollback
    assert back.description == f"rollback to {deploy.revision}"
    assert {k: v for k, v in mesh.traffic.served_weights().items() if v} == {"stable": 100}
    result = traffic.probe(score_url(mesh), 300, show_progress=False)
    assert result.counts == {"v1": 300}
