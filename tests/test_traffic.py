"""The probe and load client against a real loopback aiohttp server started by each test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from workbook import traffic
from workbook.errors import ConfigError


class ScoringServer:
    """A scoring server on 127.0.0.1 (its own thread and loop) that answers by request number.

    ``/score``: every 4th request (0, 4, 8, ...) is v2, the rest v1.
    ``/flaky``: every 5th request is a 503, the rest v1.
    ``/mixed``: version in the body, in the ``x-model-version`` header only, or nowhere (text).
    ``/gate``: holds requests until ``gate`` are in flight at once (or 5 s), then answers v1
    after a short delay; shows a concurrency bound is reached and never passed.
    ``/hang``: answers only when the test ends.
    """

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.gate = 0
        self.headers: list[dict[str, str]] = []
        self.bodies: list[Any] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._opened: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self.port = 0

    def url(self, path: str = "/score") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        i = self.hits.get(path, 0)
        self.hits[path] = i + 1
        self.headers.append(dict(request.headers))
        self.bodies.append(await request.json())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(path, i)
        finally:
            self.in_flight -= 1

    async def _answer(self, path: str, i: int) -> web.StreamResponse:
        assert self._stop is not None and self._opened is not None
        if path == "/score":
            return web.json_response({"version": "v2" if i % 4 == 0 else "v1", "result": [0.5]})
        if path == "/flaky":
            if i % 5 == 0:
                return web.json_response({"error": "overloaded"}, status=503)
            return web.json_response({"version": "v1"})
        if path == "/mixed":
            if i % 3 == 0:
                return web.json_response({"result": [1]}, headers={"x-model-version": "v9"})
            if i % 3 == 1:
                return web.Response(text="ok")
            return web.json_response({"version": "v1"})
        if path == "/gate":
            if self.in_flight >= self.gate:
                self._opened.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._opened.wait(), 5.0)
            await asyncio.sleep(0.005)
            return web.json_response({"version": "v1"})
        if path == "/hang":
            await self._stop.wait()
            return web.json_response({"version": "v1"})
        raise web.HTTPNotFound()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop, self._opened = asyncio.Event(), asyncio.Event()
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> ScoringServer:
        self._thread.start()
        assert self._ready.wait(10), "test server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def server() -> Iterator[ScoringServer]:
    with ScoringServer() as srv:
        yield srv


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_counts_follow_the_server_pattern(server: ScoringServer) -> None:
    result = traffic.probe(server.url(), 100, concurrency=8, show_progress=False)
    assert result.total == 100
    assert result.counts == {"v1": 75, "v2": 25}
    assert result.errors == 0
    assert result.status_codes == {"200": 100}
    assert result.error_kinds == {}
    assert result.shares() == {"v1": 0.75, "v2": 0.25}
    assert set(result.latency_by_version) == {"v1", "v2"}
    lat = result.latency_ms
    assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert server.bodies == [traffic.DEFAULT_PAYLOAD] * 100


def test_non_2xx_replies_are_counted_as_errors(server: ScoringServer) -> None:
    result = traffic.probe(server.url("/flaky"), 50, concurrency=4, show_progress=False)
    assert (result.total, result.errors) == (50, 10)
    assert result.counts == {"v1": 40}
    assert result.status_codes == {"200": 40, "503": 10}
    assert result.error_kinds == {"503": 10}


def test_version_from_body_then_header_then_unknown(server: ScoringServer) -> None:
    result = traffic.probe(server.url("/mixed"), 30, show_progress=False)
    assert result.counts == {"v9": 10, "unknown": 10, "v1": 10}
    assert result.errors == 0


@pytest.mark.parametrize(("n", "concurrency"), [(37, 5), (3, 8), (1, 1), (64, 64)])
def test_exactly_n_requests_are_sent(server: ScoringServer, n: int, concurrency: int) -> None:
    done: list[tuple[int, int]] = []
    result = traffic.probe_async(
        server.url(), n, concurrency=concurrency, progress=lambda d, t: done.append((d, t))
    )
    result = asyncio.run(result)
    assert result.total == n
    assert server.hits == {"/score": n}
    assert done == [(i, n) for i in range(1, n + 1)]


@pytest.mark.parametrize("concurrency", [1, 3, 6])
def test_concurrency_bound_is_reached_and_never_passed(
    server: ScoringServer, concurrency: int
) -> None:
    server.gate = concurrency
    result = traffic.probe(server.url("/gate"), 40, concurrency=concurrency, show_progress=False)
    assert result.counts == {"v1": 40}
    assert server.max_in_flight == concurrency


def test_headers_and_payload_are_sent(server: ScoringServer) -> None:
    headers = {"x-model-version": "canary", "X-Trace": "abc 1"}
    payload = {"data": [[1, 2, 3, 4], [5, 6, 7, 8]]}
    result = traffic.probe(server.url(), 12, headers=headers, payload=payload, show_progress=False)
    assert result.headers == headers
    assert len(server.headers) == 12
    for seen in server.headers:
        assert seen["x-model-version"] == "canary"
        assert seen["X-Trace"] == "abc 1"
        assert seen["Content-Type"] == "application/json"
    assert server.bodies == [payload] * 12


def test_timeout_is_counted_as_error_kind_timeout(server: ScoringServer) -> None:
    result = traffic.probe(
        server.url("/hang"), 3, concurrency=3, timeout_s=0.2, show_progress=False
    )
    assert (result.total, result.errors) == (3, 3)
    assert result.counts == {}
    assert result.error_kinds == {"timeout": 3}
    assert result.status_codes == {}
    assert result.to_dict()["latency_ms"]["p50"] is None  # no successful request: no latency


def test_connection_refused_is_counted_not_raised() -> None:
    url = f"http://127.0.0.1:{closed_port()}/score"
    result = traffic.probe(url, 5, concurrency=2, show_progress=False)
    assert (result.total, result.errors, result.counts) == (5, 5, {})
    assert result.error_kinds == {"ClientConnectorError": 5}


@pytest.mark.asyncio
async def test_probe_works_inside_a_running_event_loop(server: ScoringServer) -> None:
    asyncio.get_running_loop()  # as in a Jupyter kernel
    result = traffic.probe(server.url(), 20, show_progress=False)
    assert result.counts == {"v1": 15, "v2": 5}


def test_probe_with_progress_bar(server: ScoringServer, capsys: pytest.CaptureFixture[str]) -> None:
    result = traffic.probe(server.url(), 10, show_progress=True)
    assert result.total == 10
    assert "probe" in capsys.readouterr().err


def test_to_dict_has_the_cli_contract_keys_and_is_json(server: ScoringServer) -> None:
    data = traffic.probe(server.url("/flaky"), 10, show_progress=False).to_dict()
    assert {"total", "counts", "errors", "latency_ms"} <= set(data)
    assert {"p50", "p99"} <= set(data["latency_ms"])
    assert {"status_codes", "error_kinds", "latency_by_version", "duration_s", "rps"} <= set(data)
    assert data["total"] == 10 and data["errors"] == 2 and data["counts"] == {"v1": 8}
    json.dumps(data, allow_nan=False)


def test_empty_latency_sample_gives_nan() -> None:
    stats = traffic.latency_stats([])
    assert set(stats) == {"p50", "p90", "p99", "mean", "max"}
    assert all(v != v for v in stats.values())
    assert traffic.latency_stats([1.0, 2.0, 3.0, 4.0])["p50"] == 2.5  # linear interpolation


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n": 0}, "n"),
        ({"n": True}, "n"),
        ({"concurrency": 0}, "concurrency"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"headers": {"bad name": "x"}}, "headers['bad name']"),
        ({"headers": {"x-a": "1\r\nx-b: 2"}}, "headers['x-a']"),
        ({"payload": {"x": object()}}, "payload"),
        ({"url": "ftp://127.0.0.1/score"}, "url"),
    ],
)
def test_probe_rejects_bad_arguments(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"url": "http://127.0.0.1:9/score", "n": 1, **kwargs}
    with pytest.raises(ConfigError) as err:
        traffic.probe(args.pop("url"), args.pop("n"), show_progress=False, **args)
    assert err.value.obj == "probe" and err.value.field == field


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x-model-version: canary", ("x-model-version", "canary")),
        ("X-Trace:abc", ("X-Trace", "abc")),
        ("x-empty:", ("x-empty", "")),
        ("x-a:  b: c  ", ("x-a", "b: c")),
    ],
)
def test_parse_header_good(text: str, expected: tuple[str, str]) -> None:
    assert traffic.parse_header(text) == expected


@pytest.mark.parametrize(
    "text", ["x-model-version canary", "", ": value", "x model: v", "x-a : v", "x(a): v", "é: v"]
)
def test_parse_header_bad(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        traffic.parse_header(text)
    assert err.value.obj == "-H" and err.value.field == text


def test_parse_header_rejects_line_breaks_in_values() -> None:
    with pytest.raises(ConfigError, match="CR, LF"):
        traffic.parse_header("x-a: b\r\nx-b: c")


def test_load_generator_stops_by_itself_at_max_requests(server: ScoringServer) -> None:
    load = traffic.LoadGenerator(server.url(), concurrency=3, max_requests=25, max_seconds=60)
    load.start()
    assert load.wait(30), "load generator did not stop by itself"
    assert not load.running
    records = load.stop()
    assert len(records) == 25
    assert server.hits == {"/score": 25}
    summary = load.summary()
    assert summary.total == 25 and summary.errors == 0
    assert summary.counts == {"v1": 18, "v2": 7}
    assert all(r.t_start <= r.t_end and r.ok and r.outcome == "200" for r in records)


def test_load_generator_stops_by_itself_at_max_seconds(server: ScoringServer) -> None:
    load = traffic.LoadGenerator(server.url("/gate"), concurrency=2, max_seconds=0.3)
    server.gate = 2
    load.start()
    assert load.wait(30), "load generator did not stop by itself"
    records = load.stop()
    assert server.hits["/gate"] == len(records) > 0


def test_load_generator_context_manager_and_windows(server: ScoringServer) -> None:
    with traffic.LoadGenerator(server.url("/flaky"), concurrency=2, max_requests=40) as load:
        assert load.wait(30)
    records = load.records()
    assert len(records) == 40
    summary = load.summary()
    assert summary.error_kinds == {"503": 8} and summary.counts == {"v1": 32}
    assert [r for r in records if not r.ok] == [r for r in records if r.version is None]
    starts = sorted(r.t_start for r in records)
    mid, end = starts[20], starts[-1] + 1.0
    early, late = load.records_between(starts[0], mid), load.records_between(mid, end)
    assert len(early) == 20 and len(late) == 20
    assert all(r.t_start < mid for r in early) and all(r.t_start >= mid for r in late)
    assert load.records_between(end, end + 1.0) == []


def test_load_generator_stop_early_keeps_completed_records(server: ScoringServer) -> None:
    with traffic.LoadGenerator(server.url(), concurrency=2, max_requests=10_000) as load:
        while len(load.records()) < 10:
            assert load.running
            threading.Event().wait(0.01)
    assert len(load.records()) >= 10
    assert load.summary().errors == 0
    assert not load.running


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/score",
        "http://10.0.0.1:8080/score",
        "http://0.0.0.0:8080/score",
        "http://localhost.example.com/score",
        "http://[2001:db8::1]/score",
    ],
)
def test_load_generator_rejects_non_loopback_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="loopback") as err:
        traffic.LoadGenerator(url)
    assert err.value.obj == "LoadGenerator" and err.value.field == "url"


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:1/score", "http://127.0.0.2:1/", "http://[::1]:1/", "http://localhost/"],
)
def test_load_generator_accepts_loopback_urls(url: str) -> None:
    assert not traffic.LoadGenerator(url).running  # constructing sends nothing


def test_a_failing_progress_callback_is_raised_as_itself(server: ScoringServer) -> None:
    def progress(done: int, total: int) -> None:
        if done == 3:
            raise RuntimeError("callback broke")

    with pytest.raises(RuntimeError, match="callback broke"):
        asyncio.run(traffic.probe_async(server.url(), 10, concurrency=2, progress=progress))
