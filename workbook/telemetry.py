"""The gateway's own telemetry per version: requests, 5xx and a latency histogram.

Locally the gateway is Envoy: its admin ``/stats/prometheus`` text is parsed with the Prometheus
project's own parser (``prometheus_client.parser``) into one ``VersionTelemetry`` per upstream
cluster (``outbound|PORT|SUBSET|HOST``, the ``cluster_name`` tag the bootstrap sets the way
Istio's does). On a cluster the same figures come from Istio's standard metrics
(``istio_requests_total``, ``istio_request_duration_milliseconds``, by ``destination_version``;
https://istio.io/latest/docs/reference/config/metrics/) through the Prometheus HTTP API
(``GET /api/v1/query``; https://prometheus.io/docs/prometheus/latest/querying/api/).

Parsing, deltas, quantiles and query text are pure; ``PrometheusClient`` is the only I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from workbook import served
from workbook.errors import ConfigError, WorkbookError
from workbook.traffic import run_sync

#: Prometheus label the gateway bootstrap puts the full Envoy cluster name in (as Istio's does).
CLUSTER_LABEL = "cluster_name"
#: Envoy's metric names in Prometheus form (``cluster.<name>.upstream_rq_total`` and so on).
ENVOY_REQUESTS = "envoy_cluster_upstream_rq_total"
ENVOY_CODE_CLASS = "envoy_cluster_upstream_rq_xx"
ENVOY_LATENCY = "envoy_cluster_upstream_rq_time"
#: Istio's standard metrics (the histogram's series end in ``_bucket``).
ISTIO_REQUESTS = "istio_requests_total"
ISTIO_LATENCY = "istio_request_duration_milliseconds"


class TelemetryError(WorkbookError):
    """The gateway's metrics could not be read or did not make sense."""


@dataclass
class VersionTelemetry:
    """What the gateway saw for one version: requests, 5xx replies, and latency buckets.

    ``buckets`` are cumulative ``(upper bound in ms, count)`` pairs in ascending order, the last
    bound ``inf``; empty when no histogram was read.
    """

    requests: float = 0.0
    errors: float = 0.0
    buckets: list[tuple[float, float]] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else math.nan

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of latency, computed as Prometheus ``histogram_quantile`` does.

        Linear interpolation inside the bucket holding rank ``q·count`` (the lowest bucket starts
        at 0); a rank in the ``+Inf`` bucket answers the highest finite bound; NaN without
        observations or without a ``+Inf`` bucket (prometheus/prometheus ``promql/quantile.go``,
        ``BucketQuantile``).
        """
        if not 0.0 <= q <= 1.0:
            raise ConfigError("telemetry", "q", f"must be 0..1, got {q!r}")
        bs = self.buckets
        if len(bs) < 2 or not math.isinf(bs[-1][0]) or bs[-1][1] <= 0:
            return math.nan
        rank = q * bs[-1][1]
        b = next((i for i in range(len(bs) - 1) if bs[i][1] >= rank), len(bs) - 1)
        if b == len(bs) - 1:
            return bs[-2][0]
        if b == 0 and bs[0][0] <= 0:
            return bs[0][0]
        start, end, count = 0.0, bs[b][0], bs[b][1]
        if b > 0:
            start, count, rank = bs[b - 1][0], count - bs[b - 1][1], rank - bs[b - 1][1]
        return start + (end - start) * (rank / count) if count > 0 else math.nan

    def bucket_bound(self, q: float) -> float:
        """Upper bound of the bucket that holds the ``q`` quantile: the most it can be."""
        bs = self.buckets
        if not bs or bs[-1][1] <= 0:
            return math.nan
        rank = q * bs[-1][1]
        return next(b for b, c in bs if c >= rank)

    def minus(self, before: VersionTelemetry) -> VersionTelemetry:
        """What happened between ``before`` and this later snapshot (counters only grow).

        A counter that went down means the gateway restarted: the later value is the delta.
        """
        restarted = self.requests < before.requests
        if restarted:
            return VersionTelemetry(self.requests, self.errors, list(self.buckets))
        old = dict(before.buckets)
        buckets = [(b, max(c - old.get(b, 0.0), 0.0)) for b, c in self.buckets]
        return VersionTelemetry(
            self.requests - before.requests, max(self.errors - before.errors, 0.0), buckets
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": _finite(self.error_rate),
            "p50_ms": _finite(self.quantile(0.5)),
            "p99_ms": _finite(self.quantile(0.99)),
        }


# ---- Envoy (local target) ---------------------------------------------------------------------


def parse_envoy_prometheus(text: str) -> dict[str, VersionTelemetry]:
    """Envoy cluster name → its telemetry, from admin ``/stats/prometheus`` text.

    Reads ``envoy_cluster_upstream_rq_total``, ``envoy_cluster_upstream_rq_xx`` with
    ``envoy_response_code_class="5"`` and the ``envoy_cluster_upstream_rq_time`` histogram (ms),
    keyed by the ``cluster_name`` label. Clusters that are not ``outbound|…`` are skipped.
    """
    if not isinstance(text, str):
        raise ConfigError(
            "telemetry", "text", f"must be Prometheus text, got {type(text).__name__}"
        )
    out: dict[str, VersionTelemetry] = {}
    buckets: dict[str, dict[float, float]] = {}
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise TelemetryError(f"Envoy /stats/prometheus: not Prometheus text: {exc}") from None
    for family in families:
        for sample in family.samples:
            cluster = sample.labels.get(CLUSTER_LABEL, "")
            if not cluster.startswith("outbound|"):
                continue
            row = out.setdefault(cluster, VersionTelemetry())
            # prometheus_client names every counter sample ``<name>_total``: Envoy's
            # ``envoy_cluster_upstream_rq{envoy_response_code=...}`` arrives under the same name
            # as ``envoy_cluster_upstream_rq_total``, told apart by its response code label.
            if sample.name == ENVOY_REQUESTS and "envoy_response_code" not in sample.labels:
                row.requests = float(sample.value)
            elif (
                sample.name in (ENVOY_CODE_CLASS, ENVOY_CODE_CLASS + "_total")
                and sample.labels.get("envoy_response_code_class") == "5"
            ):
                row.errors = float(sample.value)
            elif sample.name == ENVOY_LATENCY + "_bucket":
                bound = _bound(sample.labels.get("le"))
                buckets.setdefault(cluster, {})[bound] = float(sample.value)
    for cluster, b in buckets.items():
        out[cluster].buckets = sorted(b.items())
    return out


def by_subset(
    clusters: Mapping[str, VersionTelemetry], host: str | None = None
) -> dict[str, VersionTelemetry]:
    """Subset (``stable``, ``canary``) → telemetry, summed over ports; only ``host`` if given."""
    out: dict[str, VersionTelemetry] = {}
    for name, row in clusters.items():
        subset = served.subset_of_cluster(name)
        if not subset or (host is not None and name.rsplit("|", 1)[-1] != host):
            continue
        out[subset] = _add(out[subset], row) if subset in out else row
    return dict(sorted(out.items()))


def delta(
    after: Mapping[str, VersionTelemetry], before: Mapping[str, VersionTelemetry]
) -> dict[str, VersionTelemetry]:
    """Per-key ``after.minus(before)``; a key new in ``after`` counts from zero."""
    return {k: v.minus(before.get(k, VersionTelemetry())) for k, v in sorted(after.items())}


def rename(
    telemetry: Mapping[str, VersionTelemetry], names: Mapping[str, str]
) -> dict[str, VersionTelemetry]:
    """Re-key by ``names`` (e.g. track → version, ``{"stable": "v1", "canary": "v2"}``); keys
    not in ``names`` are kept as they are."""
    out: dict[str, VersionTelemetry] = {}
    for key, row in telemetry.items():
        new = names.get(key, key)
        out[new] = _add(out[new], row) if new in out else row
    return dict(sorted(out.items()))


def envoy_stage(
    before_text: str,
    after_text: str,
    versions: Mapping[str, str],
    host: str | None = None,
) -> dict[str, VersionTelemetry]:
    """A stage's telemetry by version from two ``/stats/prometheus`` snapshots of the gateway.

    ``versions`` maps subset (track) to version, e.g. ``{"stable": "v1", "canary": "v2"}``;
    ``host`` keeps only one service's clusters. Take ``before`` after a stats flush (1 s) and
    ``after`` one flush after the stage's last request, so the latency histograms are complete.
    """
    after = parse_envoy_prometheus(after_text)
    before = parse_envoy_prometheus(before_text)
    return rename(by_subset(delta(after, before), host), versions)


# ---- Istio through Prometheus (k8s target) ----------------------------------------------------


def istio_selector(service_host: str, reporter: str = "source") -> str:
    """Label matchers for the requests to one service: ``reporter`` ``source`` counts what the
    ingress gateway sent (failures that never reached a pod included), ``destination`` what the
    pods' sidecars received."""
    if reporter not in ("source", "destination"):
        raise ConfigError(
            "telemetry", "reporter", f"must be source or destination, got {reporter!r}"
        )
    if not service_host or any(c in service_host for c in '"\\\n'):
        raise ConfigError("telemetry", "service", f"must be a host name, got {service_host!r}")
    return f'reporter="{reporter}",destination_service="{service_host}"'


def istio_queries(service_host: str, window_s: int, reporter: str = "source") -> dict[str, str]:
    """PromQL for one stage window: requests, 5xx and latency buckets, each by version.

    ``increase(...[window])`` over counters, summed by ``destination_version`` (and ``le`` for the
    histogram), evaluated at the window's end.
    """
    if isinstance(window_s, bool) or not isinstance(window_s, int) or window_s < 1:
        raise ConfigError(
            "telemetry", "window_s", f"must be a whole number of seconds >= 1, got {window_s!r}"
        )
    sel = istio_selector(service_host, reporter)
    return {
        "requests": (
            f"sum by (destination_version) (increase({ISTIO_REQUESTS}{{{sel}}}[{window_s}s]))"
        ),
        "errors": (
            f"sum by (destination_version) "
            f'(increase({ISTIO_REQUESTS}{{{sel},response_code=~"5.."}}[{window_s}s]))'
        ),
        "latency": (
            f"sum by (destination_version, le) "
            f"(increase({ISTIO_LATENCY}_bucket{{{sel}}}[{window_s}s]))"
        ),
    }


def from_istio_vectors(
    requests: Iterable[Mapping[str, Any]],
    errors: Iterable[Mapping[str, Any]],
    latency: Iterable[Mapping[str, Any]],
) -> dict[str, VersionTelemetry]:
    """Version → telemetry from the ``result`` lists of the three ``istio_queries`` (vectors)."""
    out: dict[str, VersionTelemetry] = {}
    for sample in requests:
        out.setdefault(_label(sample, "destination_version"), VersionTelemetry()).requests = _value(
            sample
        )
    for sample in errors:
        out.setdefault(_label(sample, "destination_version"), VersionTelemetry()).errors = _value(
            sample
        )
    buckets: dict[str, dict[float, float]] = {}
    for sample in latency:
        version = _label(sample, "destination_version")
        buckets.setdefault(version, {})[_bound(_label(sample, "le"))] = _value(sample)
    for version, b in buckets.items():
        out.setdefault(version, VersionTelemetry()).buckets = sorted(b.items())
    return dict(sorted(out.items()))


class PrometheusClient:
    """A small client for the Prometheus HTTP API (``/api/v1/query``), instant queries only.

    ``address`` comes from settings (``prometheus_url``), e.g. a port-forward
    ``http://127.0.0.1:9090`` to the cluster's Prometheus.
    """

    def __init__(self, address: str, timeout_s: float = 10.0) -> None:
        parts = urlsplit(address) if isinstance(address, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("prometheus", "url", f"must be an http(s) URL, got {address!r}")
        self.address = address.rstrip("/")
        self.timeout_s = timeout_s

    async def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """The ``result`` of an instant query that returns a vector; errors raise TelemetryError."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"{self.address}/api/v1/query"
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout, trust_env=False) as session,
                session.post(url, data=params) as resp,
            ):
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TelemetryError(f"Prometheus {self.address}: query failed: {exc!r}") from None
        return parse_query_response(body, promql)

    async def istio_telemetry(
        self, service_host: str, window_s: int, at: float | None = None, reporter: str = "source"
    ) -> dict[str, VersionTelemetry]:
        """Per-version telemetry for the ``window_s`` seconds up to ``at`` (default: now)."""
        q = istio_queries(service_host, window_s, reporter)
        results = {k: await self.query(v, at) for k, v in q.items()}
        return from_istio_vectors(results["requests"], results["errors"], results["latency"])

    def istio_telemetry_blocking(
        self, service_host: str, window_s: int, at: float | None = None, reporter: str = "source"
    ) -> dict[str, VersionTelemetry]:
        """``istio_telemetry`` from plain code (or a notebook's running loop)."""
        return run_sync(lambda: self.istio_telemetry(service_host, window_s, at, reporter))


def parse_query_response(body: Any, promql: str = "") -> list[dict[str, Any]]:
    """The vector ``result`` of a ``/api/v1/query`` answer, or TelemetryError with its error.

    Success: ``{"status": "success", "data": {"resultType": "vector", "result": [...]}}``;
    failure: ``{"status": "error", "errorType": ..., "error": ...}``.
    """
    if not isinstance(body, dict):
        raise TelemetryError(
            f"Prometheus answered something that is not a JSON object for {promql!r}"
        )
    if body.get("status") != "success":
        raise TelemetryError(
            f"Prometheus refused {promql!r}: "
            f"{body.get('errorType', 'error')}: {body.get('error', body)}"
        )
    data = body.get("data") or {}
    if data.get("resultType") != "vector":
        raise TelemetryError(
            f"Prometheus answered a {data.get('resultType')!r} for {promql!r}, expected a vector"
        )
    result = data.get("result")
    if not isinstance(result, list):
        raise TelemetryError(f"Prometheus answer for {promql!r} has no result list")
    return result


def _label(sample: Mapping[str, Any], name: str) -> str:
    metric = sample.get("metric")
    if not isinstance(metric, Mapping) or name not in metric:
        raise TelemetryError(f"Prometheus sample {sample!r} has no label {name!r}")
    return str(metric[name])


def _value(sample: Mapping[str, Any]) -> float:
    value = sample.get("value")
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise TelemetryError(f"Prometheus sample {sample!r} has no [time, value] pair")
    try:
        x = float(value[1])  # the value is a string: "12", "NaN", "+Inf"
    except (TypeError, ValueError):
        raise TelemetryError(f"Prometheus sample value {value[1]!r} is not a number") from None
    return 0.0 if math.isnan(x) else x


def _bound(le: Any) -> float:
    try:
        return float(le)  # "+Inf" parses as inf
    except (TypeError, ValueError):
        raise TelemetryError(f"histogram bucket bound {le!r} is not a number") from None


def _add(a: VersionTelemetry, b: VersionTelemetry) -> VersionTelemetry:
    merged: dict[float, float] = dict(a.buckets)
    for bound, count in b.buckets:
        merged[bound] = merged.get(bound, 0.0) + count
    return VersionTelemetry(a.requests + b.requests, a.errors + b.errors, sorted(merged.items()))


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
