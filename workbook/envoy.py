"""Envoy configuration from Istio objects, pure: what istiod would send the ingress gateway.

``translate`` turns Gateway/VirtualService/DestinationRule/Service objects and the ready pods
(``Endpoint``) into CDS clusters (one per Service port and DestinationRule subset, named as Istio
names them) and one RDS RouteConfiguration. ``bootstrap`` is the static part: admin, one listener
whose routes come from a watched file, and clusters from another. No I/O happens here; the
gateway process manager writes the documents: each file is replaced by rename, clusters
before the routes that use them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workbook import istio
from workbook.errors import ConfigError

ROUTE_NAME = "gateway_routes"
LISTENER_NAME = "gateway"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
CORS_FILTER = "envoy.filters.http.cors"
CORS_TYPE = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
CORS_POLICY_TYPE = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
FAULT_FILTER = "envoy.filters.http.fault"
FAULT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
ROUTER_FILTER = "envoy.filters.http.router"
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
# Istio's defaults: connectTimeout 10s, LEAST_REQUEST balancing, no request timeout, and
# circuit-breaker thresholds lifted to the maximum (Envoy's own defaults allow 3 retries).
CONNECT_TIMEOUT = "10s"
DEFAULT_LB_POLICY = "LEAST_REQUEST"
MAX_THRESHOLD = 4294967295
# istiod's default retry policy, used when a route sets no ``retries``
# (pilot/pkg/networking/core/route/retry/retry.go ``DefaultPolicy``): since Istio 1.24 it lists
# no retriable status code, so an upstream 503 is not retried.
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
DEFAULT_NUM_RETRIES = 2
# route.go ``DefaultMaxDirectResponseBodySizeBytes``: 1MB, the limit istiod validates.
MAX_DIRECT_RESPONSE_BYTES = 1024 * 1024
PREVIOUS_HOSTS = {
    "name": "envoy.retry_host_predicates.previous_hosts",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3."
        "PreviousHostsPredicate"
    },
}
COUNTERS = (
    "upstream_rq_total",
    "upstream_rq_2xx",
    "upstream_rq_5xx",
    "upstream_cx_connect_fail",
    "upstream_rq_retry",
)


#: Tag the full cluster name as ``cluster_name``, with the regex Istio's own proxy bootstrap uses
#: (istio/istio ``tools/packaging/common/envoy_bootstrap.json``): Envoy's default extractor takes
#: only the first dot-separated token, so ``outbound|80|canary|scoring.ns.svc.cluster.local``
#: would lose its host to the metric name in ``/stats/prometheus``.
STATS_CONFIG: dict[str, Any] = {
    "stats_tags": [
        {
            "tag_name": "cluster_name",
            "regex": r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)",
        }
    ]
}
#: Histograms (latency) reach the admin endpoint at each flush: 1 s instead of Envoy's 5 s, so a
#: stage's telemetry delta includes its last requests.
STATS_FLUSH_INTERVAL = "1s"


@dataclass(frozen=True)
class Endpoint:
    """A ready pod: its labels, address, and containerPort → local port it listens on."""

    name: str
    labels: Mapping[str, str]
    address: str
    ports: Mapping[int, int]


@dataclass(frozen=True)
class EnvoyConfig:
    """What the gateway serves: CDS clusters and the RDS RouteConfiguration ``gateway_routes``."""

    clusters: list[dict[str, Any]] = field(default_factory=list)
    routes: dict[str, Any] = field(default_factory=lambda: empty_routes())


# ---- names ------------------------------------------------------------------------------------


def cluster_name(host_fqdn: str, port: int, subset: str = "") -> str:
    """Istio's cluster name: ``outbound|80|canary|scoring.canary-demo.svc.cluster.local``."""
    return f"outbound|{port}|{subset}|{host_fqdn}"


def empty_routes() -> dict[str, Any]:
    """The RouteConfiguration with no virtual hosts (every request gets 404). Hosts match
    whatever the port, as istiod sets it for gateways (``ignore_port_in_host_matching``)."""
    return {
        "@type": ROUTE_TYPE,
        "name": ROUTE_NAME,
        "ignore_port_in_host_matching": True,
        "max_direct_response_body_size_bytes": MAX_DIRECT_RESPONSE_BYTES,
        "virtual_hosts": [],
    }


# ---- small conversions ------------------------------------------------------------------------


def duration(text: str) -> str:
    """An Istio duration (``1m``, ``500ms``) as an Envoy JSON duration (``60s``, ``0.5s``)."""
    ms = istio.parse_duration(text) // 1_000_000
    seconds, millis = divmod(ms, 1000)
    return f"{seconds}.{millis:03d}".rstrip("0").rstrip(".") + "s" if millis else f"{seconds}s"


def fraction(percent: float) -> dict[str, Any]:
    """A Percent as a FractionalPercent per million, truncated as istiod does
    (route.go ``translatePercentToFractionalPercent``)."""
    return {"numerator": int(percent * 10000), "denominator": "MILLION"}


def hundredths(percent: int) -> dict[str, Any]:
    """An integer percentage as a FractionalPercent per hundred
    (route.go ``translateIntegerToFractionalPercent``)."""
    return {"numerator": percent, "denominator": "HUNDRED"}


def _selects(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


# ---- clusters ---------------------------------------------------------------------------------


@dataclass
class _Service:
    obj: Mapping[str, Any]
    fqdn: str
    ports: list[Mapping[str, Any]]


def _services(objects: Iterable[Mapping[str, Any]], namespace: str) -> dict[str, _Service]:
    out: dict[str, _Service] = {}
    for o in objects:
        name = (o.get("metadata") or {}).get("name")
        if o.get("kind") == "Service" and o.get("apiVersion") == "v1" and name:
            ns = istio.namespace_of(o, namespace)
            fqdn = f"{name}.{ns}.{istio.CLUSTER_DOMAIN}"
            ports = [p for p in (o.get("spec") or {}).get("ports") or [] if "port" in p]
            out.setdefault(fqdn, _Service(o, fqdn, ports))
    return out


def _named_ports(
    objects: Iterable[Mapping[str, Any]],
) -> list[tuple[dict[str, str], dict[str, int]]]:
    """(pod labels, port name → containerPort) of every Deployment's and Pod's pod template."""
    out = []
    for o in objects:
        if o.get("kind") == "Deployment":
            template = (o.get("spec") or {}).get("template") or {}
        elif o.get("kind") == "Pod":
            template = o
        else:
            continue
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        names = {
            p["name"]: int(p["containerPort"])
            for c in (template.get("spec") or {}).get("containers") or []
            for p in c.get("ports") or []
            if p.get("name") and "containerPort" in p
        }
        out.append((labels, names))
    return out


def _target_port(
    port: Mapping[str, Any], ep: Endpoint, named: list[tuple[dict[str, str], dict[str, int]]]
) -> int | None:
    """The endpoint's local port for a Service port: port → targetPort (int or named) → ports."""
    target = port.get("targetPort", port["port"])
    if isinstance(target, str) and not target.isdigit():
        numbers = [
            names[target]
            for labels, names in named
            if labels and target in names and _selects(labels, ep.labels)
        ]
        if not numbers:
            return None
        target = numbers[0]
    return ep.ports.get(int(target))


def _cluster(name: str, lb: Mapping[str, Any], endpoints: list[tuple[str, int]]) -> dict[str, Any]:
    return {
        "@type": CLUSTER_TYPE,
        "name": name,
        "type": "STATIC",
        "connect_timeout": CONNECT_TIMEOUT,
        **lb,
        "circuit_breakers": {
            "thresholds": [
                {
                    "max_connections": MAX_THRESHOLD,
                    "max_pending_requests": MAX_THRESHOLD,
                    "max_requests": MAX_THRESHOLD,
                    "max_retries": MAX_THRESHOLD,
                }
            ]
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": address, "port_value": port}
                                }
                            }
                        }
                        for address, port in endpoints
                    ]
                }
            ],
        },
    }


def _clusters(
    objects: list[Mapping[str, Any]],
    services: dict[str, _Service],
    rules: Mapping[str, Mapping[str, Any]],
    endpoints: list[Endpoint],
) -> list[dict[str, Any]]:
    named = _named_ports(objects)
    out = []
    for svc in services.values():
        selector = (svc.obj.get("spec") or {}).get("selector")
        rule = rules.get(svc.fqdn)
        spec = (rule or {}).get("spec") or {}
        subsets = [("", {})] + [
            (s["name"], s.get("labels") or {}) for s in spec.get("subsets") or []
        ]
        for port in svc.ports:
            for subset, labels in subsets:
                members = []
                for ep in endpoints:
                    if selector and _selects(selector, ep.labels) and _selects(labels, ep.labels):
                        local = _target_port(port, ep, named)
                        if local is not None:
                            members.append((ep.address, local))
                name = cluster_name(svc.fqdn, int(port["port"]), subset)
                policy = {**load_balancer(rule, subset), **outlier_detection(rule, subset)}
                out.append(_cluster(name, policy, members))
    return out


def load_balancer(rule: Mapping[str, Any] | None, subset: str = "") -> dict[str, Any]:
    """The DestinationRule's loadBalancer for a subset (the subset's own trafficPolicy replaces
    the top-level one field by field, as istiod's ``MergeTrafficPolicy``), as cluster fields:
    cluster_traffic_policy.go ``applyLoadBalancer`` and ``ApplyRingHashLoadBalancer``."""
    lb = _policy(rule, subset).get("loadBalancer") or {}
    ch = lb.get("consistentHash")
    if ch is None:
        simple = {"ROUND_ROBIN": "ROUND_ROBIN", "RANDOM": "RANDOM"}
        return {"lb_policy": simple.get(lb.get("simple", ""), DEFAULT_LB_POLICY)}
    if "maglev" in ch:
        return {
            "lb_policy": "MAGLEV",
            "maglev_lb_config": {"table_size": ch["maglev"]["tableSize"]},
        }
    size = (ch.get("ringHash") or {}).get("minimumRingSize") or ch.get("minimumRingSize") or 1024
    return {"lb_policy": "RING_HASH", "ring_hash_lb_config": {"minimum_ring_size": size}}


def outlier_detection(rule: Mapping[str, Any] | None, subset: str = "") -> dict[str, Any]:
    """The DestinationRule's outlierDetection as cluster fields (cluster_traffic_policy.go
    ``applyOutlierDetection``): success-rate ejection off, consecutive errors enforced at 100%,
    the panic threshold at minHealthPercent (0 unless set)."""
    od = _policy(rule, subset).get("outlierDetection")
    if od is None:
        return {}
    out: dict[str, Any] = {"enforcing_success_rate": 0}
    for key, name in (("consecutive5xxErrors", "consecutive_5xx"),
                      ("consecutiveGatewayErrors", "consecutive_gateway_failure")):  # fmt: skip
        if key in od:
            out[name] = od[key]
            out[f"enforcing_{name}"] = 100 if od[key] > 0 else 0
    for key, name in (("interval", "interval"), ("baseEjectionTime", "base_ejection_time")):
        if key in od:
            out[name] = duration(od[key])
    if od.get("maxEjectionPercent", 0) > 0:
        out["max_ejection_percent"] = od["maxEjectionPercent"]
    if od.get("splitExternalLocalOriginErrors"):
        out["split_external_local_origin_errors"] = True
        if od.get("consecutiveLocalOriginFailures", 0) > 0:
            out["consecutive_local_origin_failure"] = od["consecutiveLocalOriginFailures"]
            out["enforcing_consecutive_local_origin_failure"] = 100
        out["enforcing_local_origin_success_rate"] = 0
    panic = {"healthy_panic_threshold": {"value": float(od.get("minHealthPercent", 0))}}
    return {"outlier_detection": out, "common_lb_config": panic}


def _policy(rule: Mapping[str, Any] | None, subset: str) -> dict[str, Any]:
    spec = (rule or {}).get("spec") or {}
    merged = dict(spec.get("trafficPolicy") or {})
    for s in spec.get("subsets") or []:
        if s["name"] == subset and subset:
            merged.update(s.get("trafficPolicy") or {})
    return merged


def hash_policy(rule: Mapping[str, Any] | None, subset: str) -> dict[str, Any] | None:
    """route.go ``HashForHTTPDestination`` and ``consistentHashToHashPolicy``: the hash a route
    to this destination carries (the subset's consistentHash first, then the rule's)."""
    ch = (_policy(rule, subset).get("loadBalancer") or {}).get("consistentHash")
    if not ch:
        return None
    if "httpHeaderName" in ch:
        return {"header": {"header_name": ch["httpHeaderName"]}}
    if "httpCookie" in ch:
        c = ch["httpCookie"]
        cookie: dict[str, Any] = {"name": c["name"]}
        if "ttl" in c:
            cookie["ttl"] = duration(c["ttl"])
        if c.get("path"):
            cookie["path"] = c["path"]
        return {"cookie": cookie}
    if ch.get("useSourceIp"):
        return {"connection_properties": {"source_ip": True}}
    if "httpQueryParameterName" in ch:
        return {"query_parameter": {"name": ch["httpQueryParameterName"]}}
    return None


# ---- routes -----------------------------------------------------------------------------------


def _string_match(m: Mapping[str, str]) -> dict[str, Any]:
    ((kind, value),) = m.items()
    return {"safe_regex": {"regex": value}} if kind == "regex" else {kind: value}


def _is_presence(sm: Mapping[str, str] | None) -> bool:
    """route.go ``canBeConvertedToPresentMatch``: no match type, or the regex ``*``."""
    return not sm or dict(sm) == {"regex": "*"}


def _route_match(block: Mapping[str, Any]) -> dict[str, Any]:
    """One Istio HTTPMatchRequest as one Envoy RouteMatch (route.go ``TranslateRouteMatch``):
    conditions AND-ed, headers sorted by name, then the method."""
    out: dict[str, Any] = {}
    uri = block.get("uri")
    if uri:
        ((kind, value),) = uri.items()
        key = {"exact": "path", "prefix": "prefix", "regex": "safe_regex"}[kind]
        out[key] = {"regex": value} if kind == "regex" else value
    else:
        out["prefix"] = "/"
    if block.get("ignoreUriCase"):
        out["case_sensitive"] = False
    headers = []
    for name, sm in sorted((block.get("headers") or {}).items()):
        if _is_presence(sm):
            headers.append({"name": name, "present_match": True})
        else:
            headers.append({"name": name, "string_match": _string_match(sm)})
    for name, sm in sorted((block.get("withoutHeaders") or {}).items()):
        inverted: dict[str, Any] = {"name": name, "invert_match": True}
        if _is_presence(sm):
            inverted["present_match"] = True
        else:
            inverted["string_match"] = _string_match(sm)
            inverted["treat_missing_header_as_empty"] = True
        headers.append(inverted)
    headers.sort(key=lambda h: str(h["name"]))
    for key, header in (("method", ":method"), ("authority", ":authority"), ("scheme", ":scheme")):
        if block.get(key):
            headers.append({"name": header, "string_match": _string_match(block[key])})
    if headers:
        out["headers"] = headers
    params = []
    for name, sm in (block.get("queryParams") or {}).items():
        if _is_presence(sm):
            params.append({"name": name, "present_match": True})
        else:
            params.append({"name": name, "string_match": _string_match(sm)})
    if params:
        out["query_parameters"] = params
    return out


def is_catch_all(match: Mapping[str, Any]) -> bool:
    """route.go ``IsCatchAllRoute``: prefix ``/`` (or regex ``.*``), no header or query match."""
    path = match.get("prefix") == "/" or (match.get("safe_regex") or {}).get("regex") == ".*"
    return path and not match.get("headers") and not match.get("query_parameters")


class _Resolver:
    """Maps a VirtualService destination to its Envoy cluster name, or says what is missing."""

    def __init__(
        self, services: dict[str, _Service], rules: Mapping[str, Mapping[str, Any]]
    ) -> None:
        self.services = services
        self.rules = rules

    def hash(self, dest: Mapping[str, Any], ns: str) -> dict[str, Any] | None:
        """The hash policy of the destination's DestinationRule, if it hashes consistently."""
        rule = self.rules.get(istio.normalize_host(dest["host"], ns))
        return hash_policy(rule, dest.get("subset") or "")

    def __call__(self, where: str, path: str, dest: Mapping[str, Any], ns: str) -> str:
        host = istio.normalize_host(dest["host"], ns)
        svc = self.services.get(host)
        if svc is None:
            raise ConfigError(where, f"{path}.host", f"{host} is not a Service among the objects")
        numbers = [int(p["port"]) for p in svc.ports]
        port = (dest.get("port") or {}).get("number")
        if port is None:
            if len(numbers) != 1:
                raise ConfigError(
                    where,
                    f"{path}.port.number",
                    f"is required: Service {host} has ports {numbers}",
                )
            port = numbers[0]
        elif port not in numbers:
            raise ConfigError(
                where, f"{path}.port.number", f"Service {host} has no port {port} (has {numbers})"
            )
        return cluster_name(host, port, dest.get("subset") or "")


def _retry_policy(
    retries: Mapping[str, Any] | None, *, consistent_hash: bool = False
) -> dict[str, Any] | None:
    """retry.go ``ConvertPolicy``: the default policy when unset, none when attempts is 0 (or
    unset), else the default with attempts, retryOn and perTryTimeout from the route. A route to
    one consistently hashed destination retries without the previous-hosts predicate
    (``DefaultConsistentHashPolicy``)."""
    policy: dict[str, Any] = {
        "retry_on": DEFAULT_RETRY_ON,
        "num_retries": DEFAULT_NUM_RETRIES,
        "retry_host_predicate": [copy.deepcopy(PREVIOUS_HOSTS)],
        "host_selection_retry_max_attempts": 5,
    }
    if consistent_hash:
        del policy["retry_host_predicate"]
    if retries is None:
        return policy
    if retries.get("attempts", 0) <= 0:
        return None
    policy["num_retries"] = retries["attempts"]
    if retries.get("retryOn"):
        policy["retry_on"], codes = istio.parse_retry_on(retries["retryOn"])
        if codes:
            policy["retriable_status_codes"] = codes
    if "perTryTimeout" in retries:
        policy["per_try_timeout"] = duration(retries["perTryTimeout"])
    return policy


def _fault(fault: Mapping[str, Any]) -> dict[str, Any] | None:
    """route.go ``TranslateFault``: a missing percentage injects nothing (delay 0 per hundred,
    abort without a percentage), as istio/api documents; a delay without fixedDelay and an abort
    without httpStatus are dropped; None when nothing is left."""
    out: dict[str, Any] = {"@type": FAULT_TYPE}
    delay, abort = fault.get("delay") or {}, fault.get("abort") or {}
    if "fixedDelay" in delay:
        pct = delay.get("percentage")
        out["delay"] = {
            "fixed_delay": duration(delay["fixedDelay"]),
            "percentage": fraction(pct.get("value", 0)) if pct is not None else hundredths(0),
        }
    if "httpStatus" in abort:
        out["abort"] = {"http_status": abort["httpStatus"]}
        if abort.get("percentage") is not None:
            out["abort"]["percentage"] = fraction(abort["percentage"].get("value", 0))
    return out if len(out) > 1 else None


def _is_internal(name: str) -> bool:
    return name.startswith(":") or name.lower() == "host"


def _header_ops(ops: Mapping[str, Any], side: str, out: dict[str, Any]) -> str:
    """route.go ``TranslateHeadersOperations``: set overwrites, add appends; the Host header of
    the request becomes an authority rewrite (returned; set wins over add)."""
    authority = {"set": "", "add": ""}
    add = []
    for verb, action in (("set", "OVERWRITE_IF_EXISTS_OR_ADD"), ("add", "APPEND_IF_EXISTS_OR_ADD")):
        for k, v in (ops.get(verb) or {}).items():
            if k.lower() in ("host", ":authority"):
                authority[verb] = v
            if not _is_internal(k):
                add.append({"header": {"key": k, "value": v}, "append_action": action})
    if add:
        out[f"{side}_headers_to_add"] = add
    remove = [k for k in ops.get("remove") or [] if not _is_internal(k)]
    if remove:
        out[f"{side}_headers_to_remove"] = remove
    return authority["set"] or authority["add"]


def _routes(
    vs: Mapping[str, Any], resolve: _Resolver, namespace: str, port: int = 80
) -> list[dict[str, Any]]:
    """Envoy routes of one VirtualService, in order: one per match block (match blocks OR-ed),
    none after its first catch-all (route.go ``BuildHTTPRoutesForVirtualService``)."""
    where, ns = istio.ref(vs), istio.namespace_of(vs, namespace)
    version = str(vs.get("apiVersion", "")).rpartition("/")[2]
    config = (
        f"/apis/{istio.GROUP}/{version}/namespaces/{ns}/virtual-service/{vs['metadata']['name']}"
    )
    out = []
    for i, http in enumerate(vs["spec"]["http"]):
        path = f"spec.http[{i}]"
        action: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        authority = ""
        for side in ("request", "response"):
            found = _header_ops((http.get("headers") or {}).get(side) or {}, side, extra)
            authority = authority or (found if side == "request" else "")
        rewrite = http.get("rewrite") or {}
        if rewrite.get("uri"):
            action["prefix_rewrite"] = rewrite["uri"]
        elif "uriRegexRewrite" in rewrite:
            action["regex_rewrite"] = {
                "pattern": {"regex": rewrite["uriRegexRewrite"]["match"]},
                "substitution": rewrite["uriRegexRewrite"]["rewrite"],
            }
        authority = rewrite.get("authority") or authority
        if authority:
            action["host_rewrite_literal"] = authority
        dests = http.get("route") or []
        if "directResponse" in http or "redirect" in http:
            pass
        elif len(dests) == 1:
            action["cluster"] = resolve(
                where, f"{path}.route[0].destination", dests[0]["destination"], ns
            )
            # route.go processDestination: the destination's header operations join the
            # route's; its authority applies unless the route rewrites it already.
            own: dict[str, Any] = {}
            for side in ("request", "response"):
                found = _header_ops((dests[0].get("headers") or {}).get(side) or {}, side, own)
                if side == "request" and found and "host_rewrite_literal" not in action:
                    action["host_rewrite_literal"] = found
            for key, values in own.items():
                extra[key] = [*extra.get(key, []), *values]
        else:
            names = [
                resolve(where, f"{path}.route[{k}].destination", d["destination"], ns)
                for k, d in enumerate(dests)
            ]
            action["weighted_clusters"] = {"clusters": _weighted(dests, names)}
        hashes = [resolve.hash(d["destination"], ns) for d in dests]
        if dests:
            kept_hashes = [h for d, h in zip(dests, hashes, strict=True) if h is not None and (
                len(dests) == 1 or int(d.get("weight") or 0) > 0)]  # fmt: skip
            if kept_hashes:
                action["hash_policy"] = kept_hashes
        action["timeout"] = duration(http["timeout"]) if "timeout" in http else "0s"
        retry = _retry_policy(
            http.get("retries"), consistent_hash=len(dests) == 1 and hashes[0] is not None
        )
        if retry is not None:
            action["retry_policy"] = retry
        mirror = http.get("mirror")
        percent = (http.get("mirrorPercentage") or {}).get("value")
        if mirror is not None and percent != 0:  # route.go MirrorPercent
            runtime = hundredths(100) if percent is None else fraction(percent)
            action["request_mirror_policies"] = [
                {
                    "cluster": resolve(where, f"{path}.mirror", mirror, ns),
                    "runtime_fraction": {"default_value": runtime},
                }
            ]
        filters: dict[str, Any] = {}
        fault = _fault(http["fault"]) if "fault" in http else None
        if fault is not None:
            filters[FAULT_FILTER] = fault
        if "corsPolicy" in http:
            filters[CORS_FILTER] = _cors(http["corsPolicy"])
        if filters:
            extra["typed_per_filter_config"] = filters
        label = istio.route_label(i, http)
        blocks = http.get("match") or [{}]
        for j, block in enumerate(blocks):
            name = label
            if block.get("name"):
                name = f"{label}.{block['name']}"
            elif len(blocks) > 1:
                name = f"{label}.{j}"
            route = {
                "name": name,
                "match": _route_match(block),
                **_action(http, action, port),
                **extra,
                "metadata": {"filter_metadata": {"istio": {"config": config}}},
            }
            out.append(copy.deepcopy(route))  # no shared dicts: YAML dumps stay anchor-free
            if is_catch_all(route["match"]):
                return out
    return out


def _weighted(dests: list[Mapping[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """route.go ``processWeightedDestination``: one entry per destination with a weight above
    0, raw weights (Envoy sends weight/sum to each), the destination's header operations on its
    entry. Entries of one cluster without header operations are added up."""
    out: list[dict[str, Any]] = []
    for d, name in zip(dests, names, strict=True):
        weight = int(d.get("weight") or 0)
        entry: dict[str, Any] = {"name": name, "weight": weight}
        for side in ("request", "response"):
            found = _header_ops((d.get("headers") or {}).get(side) or {}, side, entry)
            if side == "request" and found:
                entry["host_rewrite_literal"] = found
        same = [e for e in out if e["name"] == name and len(e) == 2]
        if weight <= 0:
            continue
        if len(entry) == 2 and same:
            same[0]["weight"] += weight
        else:
            out.append(entry)
    return out


def _cors(policy: Mapping[str, Any]) -> dict[str, Any]:
    """route.go ``TranslateCORSPolicy``: always enabled; unmatched preflights forwarded unless
    IGNORE; lists joined by commas; maxAge in seconds."""
    origins = [_string_match(o) for o in policy.get("allowOrigins") or []]
    if "allowOrigins" not in policy:
        origins = [{"exact": o} for o in policy.get("allowOrigin") or []]
    out: dict[str, Any] = {
        "@type": CORS_POLICY_TYPE,
        "forward_not_matching_preflights": policy.get("unmatchedPreflights") != "IGNORE",
        "filter_enabled": {"default_value": hundredths(100)},
    }
    if origins:
        out["allow_origin_string_match"] = origins
    for key, name in (("allowMethods", "allow_methods"), ("allowHeaders", "allow_headers"),
                      ("exposeHeaders", "expose_headers")):  # fmt: skip
        if policy.get(key):
            out[name] = ",".join(policy[key])
    if "maxAge" in policy:
        out["max_age"] = str(istio.parse_duration(policy["maxAge"]) // 1_000_000_000)
    if "allowCredentials" in policy:
        out["allow_credentials"] = policy["allowCredentials"]
    return out


def _redirect(redirect: Mapping[str, Any], port: int) -> dict[str, Any]:
    """route.go ``ApplyRedirect``: authority, path, scheme, port (FROM_REQUEST_PORT is the
    Gateway server's port; none for http:80 and https:443), response code (0 is 301)."""
    out: dict[str, Any] = {}
    if redirect.get("authority"):
        out["host_redirect"] = redirect["authority"]
    if redirect.get("uri"):
        out["path_redirect"] = redirect["uri"]
    if redirect.get("scheme"):
        out["scheme_redirect"] = redirect["scheme"]
    if "port" in redirect or "derivePort" in redirect:
        number = redirect.get("port", 0)
        if redirect.get("derivePort") == "FROM_REQUEST_PORT":
            number = port
        scheme = redirect.get("scheme") or "http"
        if (number, scheme) not in ((80, "http"), (443, "https")) and number:
            out["port_redirect"] = number
    codes = {301: "MOVED_PERMANENTLY", 302: "FOUND", 303: "SEE_OTHER",
             307: "TEMPORARY_REDIRECT", 308: "PERMANENT_REDIRECT"}  # fmt: skip
    out["response_code"] = codes[redirect.get("redirectCode") or 301]
    return out


def _action(http: Mapping[str, Any], route: dict[str, Any], port: int) -> dict[str, Any]:
    """The route's action: a redirect (route.go ``ApplyRedirect``), a direct response
    (``ApplyDirectResponse``), else ``route``."""
    if "redirect" in http:
        return {"redirect": _redirect(http["redirect"], port)}
    direct = http.get("directResponse")
    if direct is None:
        return {"route": route}
    out: dict[str, Any] = {"status": direct["status"]}
    body = direct.get("body") or {}
    if "string" in body:
        out["body"] = {"inline_string": body["string"]}
    elif "bytes" in body:
        out["body"] = {"inline_bytes": body["bytes"]}
    return {"direct_response": out}


def _creation_order(vs: Mapping[str, Any], namespace: str) -> tuple[str, str, str]:
    """model/config.go ``sortConfigByCreationTime``: creation time, then name, then namespace
    (objects without a creationTimestamp sort first, by name, as istiod sorts a same-second tie)."""
    meta = vs.get("metadata") or {}
    return str(meta.get("creationTimestamp") or ""), meta["name"], istio.namespace_of(vs, namespace)


def _server_hosts(server: Mapping[str, Any], vs_ns: str, gw_ns: str) -> list[str]:
    """host.NamesForNamespace: the server's hosts a VirtualService of ``vs_ns`` may bind."""
    out = []
    for h in server["hosts"]:
        ns, slash, name = h.partition("/")
        if slash:
            if (gw_ns if ns == "." else ns) not in (vs_ns, "*"):
                continue
            h = name
        out.append(h.lower())
    return out


def _intersection(server_hosts: list[str], vs_hosts: list[str]) -> list[str]:
    """host.Names.Intersection: for each overlapping pair, the narrower host."""
    out: list[str] = []
    for a in server_hosts:
        for b in vs_hosts:
            pick = a if istio.host_subset(a, b) else b if istio.host_subset(b, a) else None
            if pick is not None and pick not in out:
                out.append(pick)
    return out


def _virtual_hosts(
    objects: list[Mapping[str, Any]], resolve: _Resolver, namespace: str
) -> list[dict[str, Any]]:
    """The gateway's virtual hosts as istiod builds them (pilot/pkg/networking/core/gateway.go
    ``buildGatewayHTTPRouteConfig``): for each server of each Gateway, each VirtualService bound
    to it (in creation order) adds its routes to every host both list; each host's routes keep
    that order with catch-all routes moved last (route.go ``SortVHostRoutes``). A request whose
    Host no virtual host takes gets Envoy's 404, as at the Istio ingress gateway."""
    gateways = [g for g in objects if g.get("kind") == "Gateway" and istio.is_istio(g)]
    ports: dict[int, str] = {}
    for g in gateways:
        for k, server in enumerate(g["spec"]["servers"]):
            ports.setdefault(int(server["port"]["number"]), f"{istio.ref(g)} spec.servers[{k}]")
    if len(ports) > 1:
        raise ConfigError(
            istio.ref(gateways[-1]),
            "spec.servers",
            f"use one port number: the local gateway has one listener, and the Gateways' "
            f"servers listen on {sorted(ports)}",
        )
    services = sorted(
        (vs for vs in objects if vs.get("kind") == "VirtualService" and istio.is_istio(vs)),
        key=lambda vs: _creation_order(vs, namespace),
    )
    built: dict[str, list[dict[str, Any]]] = {}
    vhosts: dict[str, list[dict[str, Any]]] = {}
    for g in gateways:
        gw_ns = istio.namespace_of(g, namespace)
        key = (gw_ns, g["metadata"]["name"])
        for server in g["spec"]["servers"]:
            for vs in services:
                if key not in istio.gateway_refs(vs, namespace):
                    continue
                vs_ns = istio.namespace_of(vs, namespace)
                vs_hosts = [istio.normalize_host(h, vs_ns).lower() for h in vs["spec"]["hosts"]]
                hosts = _intersection(_server_hosts(server, vs_ns, gw_ns), vs_hosts)
                if not hosts:
                    continue
                ref = istio.ref(vs, namespace)
                if ref not in built:
                    built[ref] = _routes(vs, resolve, namespace, int(server["port"]["number"]))
                for host in hosts:
                    vhosts.setdefault(host, []).extend(built[ref])
    out = []
    for host, routes in vhosts.items():
        ordered = [r for r in routes if not is_catch_all(r["match"])]
        ordered += [r for r in routes if is_catch_all(r["match"])]
        out.append({"name": host, "domains": [host], "routes": copy.deepcopy(ordered)})
    return out


def translate(
    objects: list[dict[str, Any]], endpoints: list[Endpoint], *, namespace: str
) -> EnvoyConfig:
    """Clusters and routes for the gateway from rendered objects and ready endpoints.

    Validates the Istio objects first (``istio.validate``). Objects without a namespace are taken
    to be in ``namespace``. Raises ``ConfigError`` naming the object and field it cannot serve.
    """
    istio.validate(objects, namespace=namespace)
    objs: list[Mapping[str, Any]] = [o for o in objects if isinstance(o, Mapping)]
    services = _services(objs, namespace)
    rules = {h: r for h, r in istio.subsets_by_host(objs, namespace).items() if istio.is_istio(r)}
    clusters = _clusters(objs, services, rules, endpoints)
    routes = {
        **empty_routes(),
        "virtual_hosts": _virtual_hosts(objs, _Resolver(services, rules), namespace),
    }
    return EnvoyConfig(clusters=clusters, routes=routes)


# ---- documents --------------------------------------------------------------------------------


def discovery_response(resources: Iterable[Mapping[str, Any]], version: str) -> dict[str, Any]:
    """A DiscoveryResponse document, the shape Envoy reads from a path_config_source file."""
    return {"version_info": str(version), "resources": [dict(r) for r in resources]}


def rds_document(config: EnvoyConfig, version: str) -> dict[str, Any]:
    """The RDS file: the one RouteConfiguration of ``config``."""
    return discovery_response([config.routes], version)


def _file_source(path: str, directory: str) -> dict[str, Any]:
    return {
        "resource_api_version": "V3",
        "path_config_source": {"path": path, "watched_directory": {"path": directory}},
    }


def bootstrap(
    *,
    admin_port: int,
    listener_port: int,
    cds_path: str,
    cds_dir: str,
    rds_path: str,
    rds_dir: str,
    node_id: str = "workbook-gateway",
    stat_prefix: str = "gateway",
) -> dict[str, Any]:
    """Bootstrap: admin and listener on 127.0.0.1, CDS and RDS from files in separate watched dirs.

    The listener's filter chain is fault then router, so VirtualService faults apply per route.
    Access logs are off; the runtime has an admin layer (``/runtime_modify``).
    """
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": stat_prefix,
        "rds": {"route_config_name": ROUTE_NAME, "config_source": _file_source(rds_path, rds_dir)},
        "use_remote_address": True,
        "normalize_path": True,
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "http_filters": [
            {"name": CORS_FILTER, "typed_config": {"@type": CORS_TYPE}},
            {"name": FAULT_FILTER, "typed_config": {"@type": FAULT_TYPE}},
            {"name": ROUTER_FILTER, "typed_config": {"@type": ROUTER_TYPE}},
        ],
    }
    return {
        "node": {"id": node_id, "cluster": node_id},
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "layered_runtime": {"layers": [{"name": "admin", "admin_layer": {}}]},
        "stats_config": STATS_CONFIG,
        "stats_flush_interval": STATS_FLUSH_INTERVAL,
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.resource_monitors."
                        "downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": 10000,
                    },
                }
            ]
        },
        "dynamic_resources": {"cds_config": _file_source(cds_path, cds_dir)},
        "static_resources": {
            "listeners": [
                {
                    "name": LISTENER_NAME,
                    "address": {
                        "socket_address": {"address": "127.0.0.1", "port_value": listener_port}
                    },
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ]
        },
    }


def validation_bootstrap(config: EnvoyConfig, stat_prefix: str = "gateway") -> dict[str, Any]:
    """A static bootstrap holding ``config`` inline, for ``envoy --mode validate`` (pure).

    Envoy checks what Python cannot (RE2 regexes, proto constraints) before any file is replaced.
    """
    boot = bootstrap(
        admin_port=0,
        listener_port=0,
        cds_path="",
        cds_dir="",
        rds_path="",
        rds_dir="",
        stat_prefix=stat_prefix,
    )
    del boot["dynamic_resources"], boot["admin"]
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    routes = {k: v for k, v in config.routes.items() if k != "@type"}
    del hcm["typed_config"]["rds"]
    hcm["typed_config"]["route_config"] = routes
    boot["static_resources"]["clusters"] = [
        {k: v for k, v in c.items() if k != "@type"} for c in config.clusters
    ]
    return boot


# ---- stats ------------------------------------------------------------------------------------


def admin_stats_by_cluster(
    stats_json: Mapping[str, Any], counters: Iterable[str] = COUNTERS
) -> dict[str, dict[str, int]]:
    """Cluster name → {counter: value} from admin ``/stats?format=json`` (missing counters are 0).

    Cluster names contain dots (``outbound|80|canary|scoring.ns.svc.cluster.local``), so names
    are found from stats that exist once per cluster, then counters are looked up exactly.
    """
    values: dict[str, Any] = {}
    for s in stats_json.get("stats") or []:
        if isinstance(s, Mapping) and "name" in s and "value" in s:
            values[str(s["name"])] = s["value"]
    markers = (".membership_total", ".upstream_cx_total", ".upstream_rq_total")
    clusters: list[str] = []
    for name in values:
        for marker in markers:
            if name.startswith("cluster.") and name.endswith(marker):
                c = name[len("cluster.") : -len(marker)]
                if c and c not in clusters:
                    clusters.append(c)
    counters = tuple(counters)
    out = {}
    for c in clusters:
        row = {}
        for k in counters:
            v = values.get(f"cluster.{c}.{k}", 0)
            row[k] = int(v) if isinstance(v, (int, float)) or str(v).isdigit() else 0
        out[c] = row
    return out
