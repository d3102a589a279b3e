"""Bounded sequential probing and prediction replay against a loopback two-version server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from workbook import traffic
from workbook.errors import ConfigError
from workbook.sequential import SplitMonitor


class TwoVersions:
    """``POST /score`` on 127.0.0.1: ``x-model-version: stable|canary`` pins v1|v2; unpinned,
    every 4th request goes to v2. v2 answers every 10th of
    its requests with a 500 that names it; ``/lost`` answers every 5th with a bare 503.
    Predictions: v1 scores ``0.01·sum(row)``, v2 adds 0.1."""

    def __init__(self) -> None:
        self.hits = 0
        self.v2_hits = 0
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    def url(self, path: str = "/score") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        i = self.hits
        self.hits += 1
        body = await request.json()
        pin = request.headers.get("x-model-version")
        version = {"stable": "v1", "canary": "v2"}.get(pin or "", "v2" if i % 4 == 0 else "v1")
        if request.path == "/lost" and i % 5 == 0:
            return web.Response(status=503, text="upstream connect error")
        if version == "v2":
            self.v2_hits += 1
            if self.v2_hits % 10 == 0:
                return web.json_response(
                    {"message": "injected"}, status=500, headers={"x-model-version": "v2"}
                )
        shift = 0.1 if version == "v2" else 0.0
        scores = [0.01 * sum(row) + shift for row in body.get("data", [])]
        return web.json_response({"version": version, "predictions": scores})

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{name}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> TwoVersions:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def server() -> Iterator[TwoVersions]:
    with TwoVersions() as s:
        yield s


def test_errors_are_kept_per_version_with_latencies(server: TwoVersions) -> None:
    result = traffic.probe(server.url(), 400, concurrency=4, show_progress=False)
    assert result.errors_by_version == {"v2": 10}
    assert result.unattributed_errors == 0
    assert result.requests_of("v2") == 100 and result.counts["v2"] == 90
    assert len(result.latencies["v1"]) == 300 and len(result.latencies["v2"]) == 90
    assert "latencies" not in result.to_dict()
    assert len(result.to_dict(with_latencies=True)["latencies"]["v2"]) == 90


def test_errors_without_a_version_are_counted_apart(server: TwoVersions) -> None:
    result = traffic.probe(server.url("/lost"), 100, concurrency=2, show_progress=False)
    assert result.unattributed_errors == 20
    assert result.error_kinds["503"] == 20


def test_probe_until_stops_when_the_split_is_clearly_wrong(server: TwoVersions) -> None:
    """The server sends 25% to v2 against configured 10%: the mixture SPRT stops early."""
    monitor = SplitMonitor({"v1": 90, "v2": 10})
    result = traffic.probe_until(
        server.url(), lambda r: monitor.update(r.counts).done, max_n=5000, batch=50
    )
    assert monitor.update(result.counts).state == "mismatch"
    assert result.total < 1000 and result.total % 50 == 0
    assert server.hits == result.total


def test_probe_until_is_bounded_in_count(server: TwoVersions) -> None:
    seen = []

    def never(r: traffic.ProbeResult) -> bool:
        seen.append(r.total)
        return False

    result = traffic.probe_until(server.url(), never, max_n=130, batch=50, concurrency=3)
    assert seen == [50, 100, 130]
    assert result.total == server.hits == 130


def test_probe_until_is_bounded_in_time(server: TwoVersions) -> None:
    """No new batch once ``max_seconds`` have passed: with a tiny bound, one batch only."""
    result = traffic.probe_until(
        server.url(), lambda r: False, max_n=10_000, batch=20, max_seconds=1e-6
    )
    assert result.total == server.hits == 20


def test_probe_until_sends_headers(server: TwoVersions) -> None:
    result = traffic.probe_until(
        server.url(), lambda r: True, max_n=100, batch=10, headers={"x-model-version": "stable"}
    )
    assert result.counts == {"v1": 10}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_n": 0}, "max_n"),
        ({"max_n": 10, "batch": 0}, "batch"),
        ({"max_n": 10, "max_seconds": 0}, "max_seconds"),
        ({"max_n": 10, "decide": "yes"}, "decide"),
    ],
)
def test_probe_until_rejects_bad_arguments(kwargs: dict[str, Any], field: str) -> None:
    args = {"decide": lambda r: True, **kwargs}
    with pytest.raises(ConfigError) as err:
        traffic.probe_until("http://127.0.0.1:9/score", **args)
    assert err.value.field == field


def test_replay_sends_the_same_rows_to_each_pin(server: TwoVersions) -> None:
    rows = [[float(i), 1.0] for i in range(25)]
    pins = {"stable": {"x-model-version": "stable"}, "canary": {"x-model-version": "canary"}}
    got = traffic.replay(server.url(), rows, pins, chunk=4)
    assert got["stable"].answered_by == {"v1": 7} and got["stable"].errors == 0
    assert got["stable"].scores == pytest.approx([0.01 * (i + 1) for i in range(25)])
    canary = got["canary"]
    # 7 requests of up to 4 rows; none is v2's 10th, so all answer
    assert canary.answered_by == {"v2": 7}
    assert canary.scores == pytest.approx([0.01 * (i + 1) + 0.1 for i in range(25)])


def test_replay_marks_rows_of_failed_requests_nan(server: TwoVersions) -> None:
    server.v2_hits = 9  # the next v2 request is its 10th: a 500
    rows = [[1.0]] * 6
    got = traffic.replay(
        server.url(), rows, {"canary": {"x-model-version": "canary"}}, chunk=3, concurrency=1
    )
    canary = got["canary"]
    assert canary.errors == 1 and canary.answered_by == {"v2": 1}
    assert sum(s != s for s in canary.scores) == 3  # NaN != NaN


def test_replay_rejects_empty_input() -> None:
    with pytest.raises(ConfigError, match="replay: rows"):
        traffic.replay("http://127.0.0.1:9/score", [], {"a": {}})
