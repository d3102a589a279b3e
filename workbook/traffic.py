"""Asynchronous probe and load client: per-version counts, errors and latency through the gateway.

``probe`` sends exactly ``n`` scoring requests with bounded concurrency and tallies which model
version answered each; ``LoadGenerator`` keeps bounded background load on a loopback gateway while
a test or benchmark changes the routes, and records every request it completed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import aiohttp
import numpy as np

from workbook.errors import ConfigError

#: Body of a scoring request when the caller gives none: one row of four features.
DEFAULT_PAYLOAD: dict[str, Any] = {"data": [[0.1, 0.2, 0.3, 0.4]]}

#: Response header that names the answering version when the JSON body does not.
VERSION_HEADER = "x-model-version"

#: Version a successful reply is counted under when neither its body nor its headers name one.
UNKNOWN_VERSION = "unknown"

# RFC 9110 field-name: a token of tchar.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00\r\n]")

ProgressCallback = Callable[[int, int], None]
_T = TypeVar("_T")


class Record(NamedTuple):
    """One completed request: monotonic start and end, the version (``None`` if it failed), and
    the outcome: the HTTP status as text (``"200"``, ``"503"``) or the error kind (``"timeout"``,
    ``"ClientConnectorError"``). ``failed_version`` names the version that answered a failed
    request when its reply said so (body ``version`` or the ``x-model-version`` header)."""

    t_start: float
    t_end: float
    version: str | None
    outcome: str
    failed_version: str | None = None

    @property
    def ok(self) -> bool:
        """The request got a 2xx reply."""
        return self.version is not None

    @property
    def latency_ms(self) -> float:
        return (self.t_end - self.t_start) * 1000.0


@dataclass
class ProbeResult:
    """What a probe saw. Latencies are over successful requests only, in milliseconds.

    Percentiles are numpy's default linear interpolation between order statistics
    (``np.percentile(..., method="linear")``); with no successful request they are NaN
    (``None`` in ``to_dict``).
    """

    total: int
    counts: dict[str, int]
    errors: int
    status_codes: dict[str, int] = field(default_factory=dict)
    error_kinds: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    latency_by_version: dict[str, dict[str, float]] = field(default_factory=dict)
    duration_s: float = 0.0
    rps: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    url: str = ""
    errors_by_version: dict[str, int] = field(default_factory=dict)
    unattributed_errors: int = 0
    latencies: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def shares(self) -> dict[str, float]:
        """Fraction of the successful requests each version answered."""
        ok = sum(self.counts.values())
        return {v: n / ok for v, n in self.counts.items()} if ok else {}

    def requests_of(self, version: str) -> int:
        """Requests ``version`` answered, failed ones included when the reply named it."""
        return self.counts.get(version, 0) + self.errors_by_version.get(version, 0)

    def to_dict(self, with_latencies: bool = False) -> dict[str, Any]:
        """JSON-friendly (NaN → ``None``): the keys ``probe --json`` promises, then the rest.

        The per-request ``latencies`` are left out unless ``with_latencies``.
        """
        out = _finite(asdict(self))
        if not with_latencies:
            del out["latencies"]
        out["shares"] = self.shares()
        return out


def parse_header(text: str) -> tuple[str, str]:
    """``'name: value'`` as given to ``-H`` → ``(name, value)``; the name must be an HTTP token."""
    name, sep, value = text.partition(":")
    if not sep:
        raise ConfigError("-H", text, "must look like 'name: value'")
    value = value.strip(" \t")
    _check_header(name, value, "-H", text)
    return name, value


async def probe_async(
    url: str,
    n: int,
    *,
    concurrency: int = 8,
    headers: Mapping[str, str] | None = None,
    payload: Any = None,
    timeout_s: float = 10.0,
    progress: ProgressCallback | None = None,
) -> ProbeResult:
    """Send exactly ``n`` POST requests to ``url`` with at most ``concurrency`` in flight.

    Failures (non-2xx replies, timeouts after ``timeout_s`` per request, connection errors) are
    counted in the result, never raised. ``progress(done, n)`` is called after each request.
    """
    _check_url(url, "probe")
    n = _positive_int(n, "probe", "n")
    concurrency = _positive_int(concurrency, "probe", "concurrency")
    timeout_s = _positive_float(timeout_s, "probe", "timeout_s")
    hdrs = _check_headers(headers, "probe")
    body = _encode(payload, "probe")

    records: list[Record] = []
    issued = 0

    async with _session(concurrency, hdrs) as session:
        timeout = aiohttp.ClientTimeout(total=timeout_s)

        async def worker() -> None:
            nonlocal issued
            while issued < n:
                issued += 1
                records.append(await _send(session, url, body, timeout))
                if progress is not None:
                    progress(len(records), n)

        started = time.monotonic()
        await _gather(worker for _ in range(min(concurrency, n)))
        duration = time.monotonic() - started
    return summarize(records, duration, headers=hdrs, url=url)


def probe(
    url: str,
    n: int,
    *,
    concurrency: int = 8,
    headers: Mapping[str, str] | None = None,
    payload: Any = None,
    timeout_s: float = 10.0,
    show_progress: bool | None = None,
) -> ProbeResult:
    """Blocking ``probe_async``; callable from plain Python and from inside a running event loop
    (a Jupyter kernel), where it runs on a fresh loop in a helper thread.

    ``show_progress=None`` shows a tqdm bar only when stderr is a terminal.
    """
    n = _positive_int(n, "probe", "n")
    if show_progress is None:
        show_progress = _stderr_is_tty()
    bar = None
    callback: ProgressCallback | None = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="req", desc="probe", file=sys.stderr, leave=False)
        callback = _bar_callback(bar)
    try:
        return run_sync(
            lambda: probe_async(
                url,
                n,
                concurrency=concurrency,
                headers=headers,
                payload=payload,
                timeout_s=timeout_s,
                progress=callback,
            )
        )
    finally:
        if bar is not None:
            bar.close()


async def probe_until_async(
    url: str,
    decide: Callable[[ProbeResult], bool],
    *,
    max_n: int,
    batch: int = 100,
    concurrency: int = 8,
    headers: Mapping[str, str] | None = None,
    payload: Any = None,
    timeout_s: float = 10.0,
    max_seconds: float = 120.0,
) -> ProbeResult:
    """Probe in batches of ``batch`` until ``decide(result so far)`` is true, or at the bounds.

    Bounded in count (``max_n`` requests at most) and in time (no new batch after
    ``max_seconds``; a batch in flight then completes, each request bounded by ``timeout_s``).
    ``decide`` sees the cumulative result after each batch, e.g. a sequential split test:

        monitor = sequential.SplitMonitor(weights)
        result = await probe_until_async(url, lambda r: monitor.update(r.counts).done, max_n=5000)
    """
    obj = "probe_until"
    _check_url(url, obj)
    max_n = _positive_int(max_n, obj, "max_n")
    batch = _positive_int(batch, obj, "batch")
    concurrency = _positive_int(concurrency, obj, "concurrency")
    timeout_s = _positive_float(timeout_s, obj, "timeout_s")
    max_seconds = _positive_float(max_seconds, obj, "max_seconds")
    if not callable(decide):
        raise ConfigError(obj, "decide", f"must be callable, got {decide!r}")
    hdrs = _check_headers(headers, obj)
    body = _encode(payload, obj)

    records: list[Record] = []
    started = time.monotonic()
    async with _session(concurrency, hdrs) as session:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        while True:
            size = min(batch, max_n - len(records))
            records += await _send_batch(session, url, body, timeout, size, concurrency)
            result = summarize(records, time.monotonic() - started, headers=hdrs, url=url)
            if decide(result) or len(records) >= max_n:
                return result
            if time.monotonic() - started >= max_seconds:
                return result


def probe_until(
    url: str,
    decide: Callable[[ProbeResult], bool],
    *,
    max_n: int,
    batch: int = 100,
    concurrency: int = 8,
    headers: Mapping[str, str] | None = None,
    payload: Any = None,
    timeout_s: float = 10.0,
    max_seconds: float = 120.0,
) -> ProbeResult:
    """Blocking ``probe_until_async`` (also from inside a running event loop, like ``probe``)."""
    return run_sync(
        lambda: probe_until_async(
            url,
            decide,
            max_n=max_n,
            batch=batch,
            concurrency=concurrency,
            headers=headers,
            payload=payload,
            timeout_s=timeout_s,
            max_seconds=max_seconds,
        )
    )


@dataclass
class Replay:
    """One version's answers to a replayed input set: a score per row (NaN where its request
    failed), which versions answered, and how many requests failed."""

    scores: list[float]
    answered_by: dict[str, int]
    errors: int


async def replay_async(
    url: str,
    rows: list[list[float]],
    pins: Mapping[str, Mapping[str, str]],
    *,
    chunk: int = 50,
    concurrency: int = 4,
    timeout_s: float = 10.0,
) -> dict[str, Replay]:
    """Send the same ``rows`` once per pin (name → request headers, e.g. ``{"stable":
    {"x-model-version": "stable"}}``) in requests of ``chunk`` rows; each pin's scores in row
    order. The answer's ``predictions`` list must have one number per row sent."""
    obj = "replay"
    _check_url(url, obj)
    chunk = _positive_int(chunk, obj, "chunk")
    concurrency = _positive_int(concurrency, obj, "concurrency")
    timeout_s = _positive_float(timeout_s, obj, "timeout_s")
    if not isinstance(rows, list) or not rows:
        raise ConfigError(obj, "rows", "must be a non-empty list of rows")
    if not pins:
        raise ConfigError(obj, "pins", "must name at least one version to pin")
    slices = [(i, rows[i : i + chunk]) for i in range(0, len(rows), chunk)]
    checked = {name: _check_headers(pin, f"{obj} {name}") for name, pin in pins.items()}
    out: dict[str, Replay] = {}
    for name, hdrs in checked.items():
        out[name] = await _replay_one(url, slices, len(rows), hdrs, concurrency, timeout_s)
    return out


async def _replay_one(
    url: str,
    slices: list[tuple[int, list[list[float]]]],
    n_rows: int,
    headers: Mapping[str, str],
    concurrency: int,
    timeout_s: float,
) -> Replay:
    scores = [math.nan] * n_rows
    answered: Counter[str] = Counter()
    errors = 0
    queue = list(slices)
    async with _session(concurrency, headers) as session:
        timeout = aiohttp.ClientTimeout(total=timeout_s)

        async def worker() -> None:
            nonlocal errors
            while queue:
                start, part = queue.pop()
                got = await _score(session, url, _encode({"data": part}, "replay"), timeout)
                if got is None or len(got[1]) != len(part):
                    errors += 1
                    continue
                answered[got[0]] += 1
                scores[start : start + len(part)] = got[1]

        await _gather(worker for _ in range(min(concurrency, len(slices))))
    return Replay(scores, dict(sorted(answered.items())), errors)


async def _send_batch(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    timeout: aiohttp.ClientTimeout,
    size: int,
    concurrency: int,
) -> list[Record]:
    """Exactly ``size`` requests with at most ``concurrency`` in flight, in completion order."""
    records: list[Record] = []
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while issued < size:
            issued += 1
            records.append(await _send(session, url, body, timeout))

    await _gather(worker for _ in range(min(concurrency, size)))
    return records


def replay(
    url: str,
    rows: list[list[float]],
    pins: Mapping[str, Mapping[str, str]],
    *,
    chunk: int = 50,
    concurrency: int = 4,
    timeout_s: float = 10.0,
) -> dict[str, Replay]:
    """Blocking ``replay_async``."""
    return run_sync(
        lambda: replay_async(
            url, rows, pins, chunk=chunk, concurrency=concurrency, timeout_s=timeout_s
        )
    )


async def _score(
    session: aiohttp.ClientSession, url: str, body: bytes, timeout: aiohttp.ClientTimeout
) -> tuple[str, list[float]] | None:
    """(answering version, predictions) of one scoring request, or None if it failed."""
    try:
        async with session.post(url, data=body, timeout=timeout) as resp:
            reply = await resp.read()
            status, header_version = resp.status, resp.headers.get(VERSION_HEADER)
    except Exception:  # counted by the caller, never raised
        return None
    if not 200 <= status < 300:
        return None
    try:
        doc = json.loads(reply)
    except ValueError:
        return None
    predictions = doc.get("predictions") if isinstance(doc, dict) else None
    if not isinstance(predictions, list) or not all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in predictions
    ):
        return None
    return _version(reply, header_version), [float(x) for x in predictions]


def summarize(
    records: Iterable[Record],
    duration_s: float,
    *,
    headers: Mapping[str, str] | None = None,
    url: str = "",
) -> ProbeResult:
    """Tally completed requests into a ``ProbeResult``."""
    records = list(records)
    ok = [r for r in records if r.ok]
    by_version: dict[str, list[float]] = {}
    for r in ok:
        by_version.setdefault(str(r.version), []).append(r.latency_ms)
    failed = [r for r in records if not r.ok]
    return ProbeResult(
        total=len(records),
        counts={v: len(lat) for v, lat in sorted(by_version.items())},
        errors=len(records) - len(ok),
        status_codes=_tally(r.outcome for r in records if r.outcome.isdigit()),
        error_kinds=_tally(r.outcome for r in records if not r.ok),
        latency_ms=latency_stats([r.latency_ms for r in ok]),
        latency_by_version={v: latency_stats(lat) for v, lat in sorted(by_version.items())},
        duration_s=duration_s,
        rps=len(records) / duration_s if duration_s > 0 else 0.0,
        headers=dict(headers or {}),
        url=url,
        errors_by_version=_tally(r.failed_version for r in failed if r.failed_version),
        unattributed_errors=sum(1 for r in failed if not r.failed_version),
        latencies={v: lat for v, lat in sorted(by_version.items())},
    )


def latency_stats(latencies_ms: Iterable[float]) -> dict[str, float]:
    """p50, p90, p99 (linear interpolation), mean and max; NaN for an empty sample."""
    arr = np.asarray(list(latencies_ms), dtype=float)
    if arr.size == 0:
        return dict.fromkeys(("p50", "p90", "p99", "mean", "max"), math.nan)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99], method="linear")
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(arr.mean()),
        "max": float(arr.max()),
    }


class LoadGenerator:
    """Continuous, bounded background load on a loopback URL, in its own thread and event loop.

    It always stops by itself after ``max_requests`` requests or ``max_seconds`` (a request in
    flight then completes, bounded by ``timeout_s``). Only loopback URLs are accepted: a load test
    must never leave the machine.

        with LoadGenerator(url, concurrency=4) as load:
            ...  # shift weights
        assert load.summary().errors == 0
    """

    def __init__(
        self,
        url: str,
        *,
        concurrency: int = 4,
        headers: Mapping[str, str] | None = None,
        max_requests: int = 50_000,
        max_seconds: float = 60,
        payload: Any = None,
        timeout_s: float = 10.0,
    ) -> None:
        obj = "LoadGenerator"
        _check_url(url, obj)
        host = urlsplit(url).hostname or ""
        if not _is_loopback(host):
            raise ConfigError(
                obj, "url", f"must be a loopback URL (127.0.0.0/8, ::1, localhost), got {url!r}"
            )
        self.url = url
        self.concurrency = _positive_int(concurrency, obj, "concurrency")
        self.max_requests = _positive_int(max_requests, obj, "max_requests")
        self.max_seconds = _positive_float(max_seconds, obj, "max_seconds")
        self.timeout_s = _positive_float(timeout_s, obj, "timeout_s")
        self.headers = _check_headers(headers, obj)
        self._body = _encode(payload, obj)
        self._records: list[Record] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._started_at = self._ended_at = 0.0

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LoadGenerator:
        """Start sending in the background; a generator runs once."""
        if self._thread is not None:
            raise ConfigError("LoadGenerator", "", "was already started; create a new one")
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="workbook-load", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the generator stopped by itself (or was stopped); True if it has."""
        return self._done.wait(timeout)

    def stop(self) -> list[Record]:
        """Stop sending, let requests in flight finish, and return every completed record."""
        if self._thread is not None:
            self._stopping.set()
            self._thread.join(self.timeout_s + 5.0)
            if self._thread.is_alive() and self._loop is not None and self._task is not None:
                self._loop.call_soon_threadsafe(self._task.cancel)
                self._thread.join(5.0)
        if self._error is not None:
            raise self._error
        return self.records()

    def records(self) -> list[Record]:
        """Completed requests so far, in completion order."""
        with self._lock:
            return list(self._records)

    def records_between(self, t0: float, t1: float) -> list[Record]:
        """Completed requests that started in ``[t0, t1)`` (``time.monotonic()`` values)."""
        return [r for r in self.records() if t0 <= r.t_start < t1]

    def summary(self) -> ProbeResult:
        """Everything completed so far as a ``ProbeResult`` (duration: start to stop, or now)."""
        end = self._ended_at if self._done.is_set() else time.monotonic()
        duration = end - self._started_at if self._thread is not None else 0.0
        return summarize(self.records(), duration, headers=self.headers, url=self.url)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # re-raised by stop() in the caller's thread
            self._error = exc
        finally:
            self._ended_at = time.monotonic()
            self._done.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        deadline = self._started_at + self.max_seconds
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        issued = 0

        async with _session(self.concurrency, self.headers) as session:

            async def worker() -> None:
                nonlocal issued
                while (
                    issued < self.max_requests
                    and not self._stopping.is_set()
                    and time.monotonic() < deadline
                ):
                    issued += 1
                    record = await _send(session, self.url, self._body, timeout)
                    with self._lock:
                        self._records.append(record)

            await _gather(worker for _ in range(self.concurrency))


async def _send(
    session: aiohttp.ClientSession, url: str, body: bytes, timeout: aiohttp.ClientTimeout
) -> Record:
    t_start = time.monotonic()
    try:
        async with session.post(url, data=body, timeout=timeout) as resp:
            reply = await resp.read()
            status, header_version = resp.status, resp.headers.get(VERSION_HEADER)
    except TimeoutError:  # asyncio's and aiohttp's (ServerTimeoutError) timeouts alike
        return Record(t_start, time.monotonic(), None, "timeout")
    except Exception as exc:  # counted, never raised: the probe reports what the gateway did
        return Record(t_start, time.monotonic(), None, type(exc).__name__)
    t_end = time.monotonic()
    if not 200 <= status < 300:
        named = _version(reply, header_version)
        return Record(
            t_start, t_end, None, str(status), None if named == UNKNOWN_VERSION else named
        )
    return Record(t_start, t_end, _version(reply, header_version), str(status))


async def _gather(workers: Iterable[Callable[[], Coroutine[Any, Any, None]]]) -> None:
    """Run workers to completion; the first failure cancels the rest and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            for worker in workers:
                group.create_task(worker())
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None


def _version(reply: bytes, header_version: str | None) -> str:
    try:
        doc = json.loads(reply)
    except ValueError:
        doc = None
    version = doc.get("version") if isinstance(doc, dict) else None
    if isinstance(version, str | int) and not isinstance(version, bool) and str(version):
        return str(version)
    return header_version or UNKNOWN_VERSION


def _session(concurrency: int, headers: Mapping[str, str]) -> aiohttp.ClientSession:
    # trust_env=False: never send through a proxy from the environment
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        headers={"Content-Type": "application/json", **headers},
        trust_env=False,
    )


def run_sync(make: Callable[[], Awaitable[_T]]) -> _T:
    """Run the coroutine ``make()`` returns to completion from plain code, or from inside a
    running event loop (a Jupyter kernel) on a fresh loop in a helper thread."""

    async def main() -> _T:
        return await make()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with ThreadPoolExecutor(1, thread_name_prefix="workbook-probe") as pool:
        return pool.submit(asyncio.run, main()).result()


def _bar_callback(bar: Any) -> ProgressCallback:
    def update(done: int, total: int) -> None:
        bar.update(done - bar.n)

    return update


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: Any, obj: str) -> None:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(obj, "url", f"must be an http(s) URL with a host, got {url!r}")


def _check_header(name: str, value: str, obj: str, field_name: str) -> None:
    if not _TOKEN.fullmatch(name):
        raise ConfigError(
            obj, field_name, f"header name {name!r} must be an HTTP token (no spaces or separators)"
        )
    if _BAD_VALUE.search(value):
        raise ConfigError(obj, field_name, "header value must not contain CR, LF or NUL")


def _check_headers(headers: Mapping[str, str] | None, obj: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ConfigError(obj, f"headers[{name!r}]", f"must be a string, got {value!r}")
        _check_header(name, value, obj, f"headers[{name!r}]")
        out[name] = value
    return out


def _encode(payload: Any, obj: str) -> bytes:
    try:
        return json.dumps(DEFAULT_PAYLOAD if payload is None else payload).encode()
    except (TypeError, ValueError) as exc:
        raise ConfigError(obj, "payload", f"must be JSON-serialisable: {exc}") from None


def _positive_int(value: Any, obj: str, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(obj, field_name, f"must be an integer of at least 1, got {value!r}")
    return value


def _positive_float(value: Any, obj: str, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(obj, field_name, f"must be a positive number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(obj, field_name, f"must be finite, got {value!r}")
    return float(value)


def _tally(items: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(items).items()))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
