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
FAULT_FILTER = "envoy.filters.http.fault"
FAULT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
ROUTER_FILTER = "envoy.filters.http.router"
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
# Istio's defaults: connectTimeout 10s, LEAST_REQUEST balancing, no request timeout, and
# circuit-breaker thresholds lifted to the maximum (Envoy's own defaults allow 3 retries).
CONNECT_TIMEOUT = "10s"
DEFAULT_LB_POLICY = "LEAST_REQUEST"
MAX_THRESHOLD = 4294967295
# Istio's default retry policy, used when a route sets no ``retries`` (retry.DefaultPolicy).
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
DEFAULT_RETRIABLE_CODES = (503,)
DEFAULT_NUM_RETRIES = 2
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
    """The RouteConfiguration with no virtual hosts (every request gets 404)."""
    return {"@type": ROUTE_TYPE, "name": ROUTE_NAME, "virtual_hosts": []}


# ---- small conversions ------------------------------------------------------------------------


def duration(text: str) -> str:
    """An Istio duration (``1m``, ``500ms``) as an Envoy JSON duration (``60s``, ``0.5s``)."""
    ms = istio.parse_duration(text) // 1_000_000
    seconds, millis = divmod(ms, 1000)
    return f"{seconds}.{millis:03d}".rstrip("0").rstrip(".") + "s" if millis else f"{seconds}s"


def fraction(percent: float) -> dict[str, Any]:
    """A percentage 0..100 as a FractionalPercent per million (as Istio translates it)."""
    return {"numerator": round(percent * 10000), "denominator": "MILLION"}


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


def _cluster(name: str, lb_policy: str, endpoints: list[tuple[str, int]]) -> dict[str, Any]:
    return {
        "@type": CLUSTER_TYPE,
        "name": name,
        "type": "STATIC",
        "connect_timeout": CONNECT_TIMEOUT,
        "lb_policy": lb_policy,
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
        lb = ((spec.get("trafficPolicy") or {}).get("loadBalancer") or {}).get("simple")
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
                out.append(_cluster(name, lb or DEFAULT_LB_POLICY, members))
    return out


# ---- routes -----------------------------------------------------------------------------------


def _string_match(m: Mapping[str, str]) -> dict[str, Any]:
    ((kind, value),) = m.items()
    return {"safe_regex": {"regex": value}} if kind == "regex" else {kind: value}


def _route_match(block: Mapping[str, Any]) -> dict[str, Any]:
    """One Istio HTTPMatchRequest as one Envoy RouteMatch (conditions AND-ed)."""
    out: dict[str, Any] = {}
    uri = block.get("uri")
    if uri:
        ((kind, value),) = uri.items()
        key = {"exact": "path", "prefix": "prefix", "regex": "safe_regex"}[kind]
        out[key] = {"regex": value} if kind == "regex" else value
    else:
        out["prefix"] = "/"
    headers = []
    for name, sm in (block.get("headers") or {}).items():
        if sm:
            headers.append({"name": name, "string_match": _string_match(sm)})
        else:
            headers.append({"name": name, "present_match": True})
    if block.get("method"):
        headers.append({"name": ":method", "string_match": _string_match(block["method"])})
    if headers:
        out["headers"] = headers
    params = []
    for name, sm in (block.get("queryParams") or {}).items():
        if sm:
            params.append({"name": name, "string_match": _string_match(sm)})
        else:
            params.append({"name": name, "present_match": True})
    if params:
        out["query_parameters"] = params
    return out


class _Resolver:
    """Maps a VirtualService destination to its Envoy cluster name, or says what is missing."""

    def __init__(self, services: dict[str, _Service]) -> None:
        self.services = services

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


def _retry_policy(retries: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Istio's retry translation: default policy when unset, none when attempts is 0."""
    policy: dict[str, Any] = {
        "retry_on": DEFAULT_RETRY_ON,
        "num_retries": DEFAULT_NUM_RETRIES,
        "retry_host_predicate": [copy.deepcopy(PREVIOUS_HOSTS)],
        "host_selection_retry_max_attempts": 5,
        "retriable_status_codes": list(DEFAULT_RETRIABLE_CODES),
    }
    if retries is None:
        return policy
    if retries["attempts"] <= 0:
        return None
    policy["num_retries"] = retries["attempts"]
    if retries.get("retryOn"):
        policy["retry_on"], policy["retriable_status_codes"] = istio.parse_retry_on(
            retries["retryOn"]
        )
    if "perTryTimeout" in retries:
        policy["per_try_timeout"] = duration(retries["perTryTimeout"])
    if not policy["retriable_status_codes"]:
        del policy["retriable_status_codes"]
    return policy


def _fault(fault: Mapping[str, Any]) -> dict[str, Any]:
    """Istio fault → HTTPFault; a missing percentage means every request, as Istio documents."""
    out: dict[str, Any] = {"@type": FAULT_TYPE}
    if "delay" in fault:
        d = fault["delay"]
        out["delay"] = {
            "fixed_delay": duration(d["fixedDelay"]),
            "percentage": fraction(d.get("percentage", {}).get("value", 100)),
        }
    if "abort" in fault:
        a = fault["abort"]
        out["abort"] = {
            "http_status": a["httpStatus"],
            "percentage": fraction(a.get("percentage", {}).get("value", 100)),
        }
    return out


def _header_ops(ops: Mapping[str, Any], side: str, out: dict[str, Any]) -> None:
    add = [
        {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        for k, v in (ops.get("set") or {}).items()
    ] + [
        {"header": {"key": k, "value": v}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}
        for k, v in (ops.get("add") or {}).items()
    ]
    if add:
        out[f"{side}_headers_to_add"] = add
    if ops.get("remove"):
        out[f"{side}_headers_to_remove"] = list(ops["remove"])


def _routes(vs: Mapping[str, Any], resolve: _Resolver, namespace: str) -> list[dict[str, Any]]:
    """Envoy routes of one VirtualService, in order: one per match block (match blocks OR-ed)."""
    where, ns = istio.ref(vs), istio.namespace_of(vs, namespace)
    version = str(vs.get("apiVersion", "")).rpartition("/")[2]
    config = (
        f"/apis/{istio.GROUP}/{version}/namespaces/{ns}/virtual-service/{vs['metadata']['name']}"
    )
    out = []
    for i, http in enumerate(vs["spec"]["http"]):
        path = f"spec.http[{i}]"
        action: dict[str, Any] = {}
        dests = http["route"]
        if len(dests) == 1:
            action["cluster"] = resolve(
                where, f"{path}.route[0].destination", dests[0]["destination"], ns
            )
        else:
            weights: dict[str, int] = {}
            for k, d in enumerate(dests):
                name = resolve(where, f"{path}.route[{k}].destination", d["destination"], ns)
                weights[name] = weights.get(name, 0) + int(d.get("weight") or 0)
            kept = [{"name": n, "weight": w} for n, w in weights.items() if w > 0]
            action["weighted_clusters"] = {"clusters": kept}
        action["timeout"] = duration(http["timeout"]) if "timeout" in http else "0s"
        retry = _retry_policy(http.get("retries"))
        if retry is not None:
            action["retry_policy"] = retry
        if "mirror" in http:
            percent = (http.get("mirrorPercentage") or {}).get("value", 100)
            action["request_mirror_policies"] = [
                {
                    "cluster": resolve(where, f"{path}.mirror", http["mirror"], ns),
                    "runtime_fraction": {"default_value": fraction(percent)},
                }
            ]
        extra: dict[str, Any] = {}
        if "fault" in http:
            extra["typed_per_filter_config"] = {FAULT_FILTER: _fault(http["fault"])}
        for side in ("request", "response"):
            _header_ops((http.get("headers") or {}).get(side) or {}, side, extra)
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
                "route": action,
                **extra,
                "metadata": {"filter_metadata": {"istio": {"config": config}}},
            }
            out.append(copy.deepcopy(route))  # no shared dicts: YAML dumps stay anchor-free
    return out


def _domains(hosts: Iterable[str]) -> list[str]:
    """Envoy domains for gateway hosts: each host and ``host:*`` (any port); ``*`` stays ``*``."""
    out: list[str] = []
    for h in hosts:
        for d in (h,) if h == "*" else (h, f"{h}:*"):
            if d not in out:
                out.append(d)
    return out


def _virtual_hosts(
    objects: list[Mapping[str, Any]], resolve: _Resolver, namespace: str
) -> list[dict[str, Any]]:
    gateways = {
        (istio.namespace_of(g, namespace), g["metadata"]["name"])
        for g in objects
        if g.get("kind") == "Gateway" and istio.is_istio(g)
    }
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    owner: dict[str, tuple[str, tuple[str, ...]]] = {}
    for vs in objects:
        if vs.get("kind") != "VirtualService" or not istio.is_istio(vs):
            continue
        if not set(istio.gateway_refs(vs, namespace)) & gateways:
            continue
        ns = istio.namespace_of(vs, namespace)
        hosts = tuple(dict.fromkeys(istio.normalize_host(h, ns) for h in vs["spec"]["hosts"]))
        for d in _domains(hosts):
            if d in owner and owner[d][1] != hosts:
                raise ConfigError(
                    istio.ref(vs),
                    "spec.hosts",
                    f"host {d} is also bound by {owner[d][0]} with other hosts; "
                    "a gateway needs the same host list on VirtualServices that share a host",
                )
            owner.setdefault(d, (istio.ref(vs), hosts))
        groups.setdefault(hosts, []).extend(_routes(vs, resolve, namespace))
    return [
        {"name": ",".join(hosts), "domains": _domains(hosts), "routes": routes}
        for hosts, routes in groups.items()
    ]


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
        "virtual_hosts": _virtual_hosts(objs, _Resolver(services), namespace),
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
