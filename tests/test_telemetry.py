"""Gateway telemetry: Envoy's Prometheus text (recorded from a real Envoy 1.40), histogram
quantiles as Prometheus computes them, Istio queries, and the Prometheus HTTP API client against
a loopback fake that answers the documented JSON
(https://prometheus.io/docs/prometheus/latest/querying/api/)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from workbook import telemetry as tm
from workbook.errors import ConfigError

GOLDEN = Path(__file__).parent / "golden" / "telemetry"
CANARY = "outbound|80|canary|scoring.canary-demo.svc.cluster.local"
STABLE = "outbound|80|stable|scoring.canary-demo.svc.cluster.local"
INF = math.inf


def envoy_text(name: str) -> str:
    """Admin ``/stats/prometheus`` of Envoy 1.40.0 with the bootstrap's ``cluster_name`` tag,
    routing 50/50 to a stable backend (3 ms) and a canary (40 ms, every 5th reply a 500); the
    ``envoy_cluster_upstream_rq*`` families, before and after 60 requests."""
    return (GOLDEN / f"envoy_stats_prometheus_{name}.txt").read_text()


def test_envoy_text_parses_per_cluster() -> None:
    after = tm.parse_envoy_prometheus(envoy_text("after"))
    assert sorted(after) == [CANARY, STABLE]
    canary, stable = after[CANARY], after[STABLE]
    assert (canary.requests, canary.errors) == (28, 5)
    assert (stable.requests, stable.errors) == (32, 0)
    assert canary.buckets[-1] == (INF, 28) and stable.buckets[-1] == (INF, 32)
    assert 25 < canary.quantile(0.5) <= 50 and stable.quantile(0.5) <= 5


def test_delta_and_subsets_of_two_snapshots() -> None:
    before = tm.parse_envoy_prometheus(envoy_text("before"))
    after = tm.parse_envoy_prometheus(envoy_text("after"))
    stage = tm.by_subset(tm.delta(after, before))
    assert sorted(stage) == ["canary", "stable"]
    assert stage["canary"].to_dict()["error_rate"] == pytest.approx(5 / 28)
    named = tm.rename(stage, {"stable": "v1", "canary": "v2"})
    assert named["v2"].requests == 28 and named["v1"].requests == 32


def test_envoy_stage_by_version_and_host() -> None:
    stage = tm.envoy_stage(
        envoy_text("before"), envoy_text("after"), {"stable": "v1", "canary": "v2"}
    )
    assert {v: (t.requests, t.errors) for v, t in stage.items()} == {"v1": (32, 0), "v2": (28, 5)}
    other = tm.envoy_stage(envoy_text("before"), envoy_text("after"), {}, host="other.svc")
    assert other == {}


def test_delta_after_a_gateway_restart_counts_from_zero() -> None:
    before = {"c": tm.VersionTelemetry(100, 5, [(10, 90), (INF, 100)])}
    after = {"c": tm.VersionTelemetry(20, 1, [(10, 19), (INF, 20)]), "new": tm.VersionTelemetry(3)}
    d = tm.delta(after, before)
    assert (d["c"].requests, d["c"].errors, d["c"].buckets) == (20, 1, [(10, 19), (INF, 20)])
    assert d["new"].requests == 3


def test_not_prometheus_text_is_a_telemetry_error() -> None:
    with pytest.raises(tm.TelemetryError, match="not Prometheus text"):
        tm.parse_envoy_prometheus('envoy_cluster_upstream_rq_total{cluster_name="x" 1\n')


# (le, cumulative count) pairs and the answers of Prometheus' BucketQuantile
# (prometheus/prometheus promql/quantile.go): interpolate inside the bucket, 0 below the first,
# the highest finite bound for a rank in +Inf, NaN without observations or without +Inf.
@pytest.mark.parametrize(
    ("buckets", "q", "expected"),
    [
        ([(10, 50), (20, 100), (INF, 100)], 0.5, 10.0),
        ([(10, 50), (20, 100), (INF, 100)], 0.75, 15.0),
        ([(10, 50), (20, 100), (INF, 100)], 0.25, 5.0),
        ([(10, 50), (20, 90), (INF, 100)], 0.99, 20.0),
        ([(0, 10), (20, 100), (INF, 100)], 0.05, 0.0),
        ([(10, 0), (INF, 0)], 0.5, math.nan),
        ([(10, 5), (20, 10)], 0.5, math.nan),
        ([], 0.5, math.nan),
    ],
)
def test_quantile_as_prometheus(
    buckets: list[tuple[float, float]], q: float, expected: float
) -> None:
    got = tm.VersionTelemetry(buckets=buckets).quantile(q)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_istio_queries_are_promql_by_destination_version() -> None:
    q = tm.istio_queries("scoring.canary-demo.svc.cluster.local", 300)
    sel = 'reporter="source",destination_service="scoring.canary-demo.svc.cluster.local"'
    assert q == {
        "requests": f"sum by (destination_version) (increase(istio_requests_total{{{sel}}}[300s]))",
        "errors": "sum by (destination_version) "
        f'(increase(istio_requests_total{{{sel},response_code=~"5.."}}[300s]))',
        "latency": "sum by (destination_version, le) "
        f"(increase(istio_request_duration_milliseconds_bucket{{{sel}}}[300s]))",
    }


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("svc", 0), "window_s"),
        (("svc", 1.5), "window_s"),
        (('svc"} or vector(1) #', 60), "service"),
        (("svc", 60, "gateway"), "reporter"),
    ],
)
def test_istio_queries_reject_bad_input(args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        tm.istio_queries(*args)
    assert err.value.field == field


def vector(*samples: tuple[dict[str, str], str]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": m, "value": [1764500000.0, v]} for m, v in samples],
        },
    }


class FakePrometheus:
    """``POST /api/v1/query`` on 127.0.0.1 answering the Istio queries with fixed vectors."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.seen.append({k: str(v) for k, v in form.items()})
        query = str(form.get("query", ""))
        if "broken" in query:
            return web.json_response(
                {"status": "error", "errorType": "bad_data", "error": "parse error"}, status=400
            )
        if "_bucket" in query:
            return web.json_response(
                vector(
                    *[
                        ({"destination_version": v, "le": le}, n)
                        for v, counts in (("v1", ("80", "100", "100")), ("v2", ("1", "4", "10")))
                        for le, n in zip(("10", "100", "+Inf"), counts, strict=True)
                    ]
                )
            )
        if "response_code" in query:
            return web.json_response(vector(({"destination_version": "v2"}, "2")))
        return web.json_response(
            vector(({"destination_version": "v1"}, "100"), ({"destination_version": "v2"}, "10"))
        )


@pytest_asyncio.fixture
async def prometheus() -> AsyncIterator[tuple[FakePrometheus, str]]:
    fake = FakePrometheus()
    app = web.Application()
    app.router.add_post("/api/v1/query", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_client_reads_istio_telemetry(prometheus: tuple[FakePrometheus, str]) -> None:
    fake, url = prometheus
    client = tm.PrometheusClient(url)
    got = await client.istio_telemetry("scoring.canary-demo.svc.cluster.local", 120, at=1764500000)
    assert sorted(got) == ["v1", "v2"]
    assert (got["v1"].requests, got["v1"].errors) == (100, 0)
    assert (got["v2"].requests, got["v2"].errors) == (10, 2)
    assert got["v2"].buckets == [(10, 1), (100, 4), (INF, 10)]
    assert got["v2"].quantile(0.99) == 100.0
    assert [s["time"] for s in fake.seen] == ["1764500000.000"] * 3
    assert fake.seen[0]["query"].startswith("sum by (destination_version) (increase(")


@pytest.mark.asyncio
async def test_blocking_call_from_plain_code(prometheus: tuple[FakePrometheus, str]) -> None:
    """The fake serves on this loop; the blocking call runs from a plain thread."""
    _, url = prometheus
    client = tm.PrometheusClient(url)
    got = await asyncio.to_thread(
        client.istio_telemetry_blocking, "scoring.ns.svc.cluster.local", 60
    )
    assert got["v2"].errors == 2


@pytest.mark.asyncio
async def test_client_raises_prometheus_errors(prometheus: tuple[FakePrometheus, str]) -> None:
    _, url = prometheus
    with pytest.raises(tm.TelemetryError, match="bad_data: parse error"):
        await tm.PrometheusClient(url).query("broken(")


@pytest.mark.asyncio
async def test_client_unreachable_is_a_telemetry_error() -> None:
    with pytest.raises(tm.TelemetryError, match="query failed"):
        await tm.PrometheusClient("http://127.0.0.1:9", timeout_s=2).query("up")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([], "not a JSON object"),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "'matrix'"),
        ({"status": "success", "data": {"resultType": "vector"}}, "no result list"),
    ],
)
def test_unexpected_answers_are_telemetry_errors(body: Any, words: str) -> None:
    with pytest.raises(tm.TelemetryError, match=words):
        tm.parse_query_response(body, "up")


def test_bad_prometheus_address_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="prometheus: url"):
        tm.PrometheusClient("localhost:9090")
