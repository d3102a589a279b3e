"""Istio networking objects, pure: validate the subset the local gateway honours; read/set weights.

Gateway, VirtualService and DestinationRule (``networking.istio.io`` v1, v1beta1, v1alpha3) are
checked field by field; a field outside the supported subset is an ``UnsupportedFieldError`` naming
it, never silently ignored. Errors name the object (``VirtualService canary-demo/scoring``) and the
field path (``spec.http[1].route[0].weight``). The semantics follow Istio's own reference.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

from workbook.errors import ConfigError, UnsupportedFieldError

GROUP = "networking.istio.io"
API_VERSIONS = ("v1", "v1beta1", "v1alpha3")
KINDS = ("Gateway", "VirtualService", "DestinationRule")
DEFAULT_NAMESPACE = "default"
CLUSTER_DOMAIN = "svc.cluster.local"
MESH_GATEWAY = "mesh"
LB_POLICIES = ("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM")
STRING_MATCH_TYPES = ("exact", "prefix", "regex")

# Retry conditions Envoy's router understands (x-envoy-retry-on and x-envoy-retry-grpc-on);
# a number in retryOn is a retriable HTTP status code, as Istio parses it.
RETRY_ON = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "envoy-ratelimited",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_DURATION_NS = {"h": 3600e9, "m": 60e9, "s": 1e9, "ms": 1e6, "us": 1e3, "µs": 1e3, "ns": 1.0}
# Constructs Python's re accepts but RE2 (Envoy's and Istio's regex engine) rejects.
_NOT_RE2 = re.compile(r"\(\?[=!]|\(\?<[=!]|\(\?>|\\[1-9]|\(\?P=")
# Header names Istio ignores in a match's headers map (they have their own match fields).
_RESERVED_MATCH_HEADERS = ("uri", "scheme", "method", "authority")

Obj = Mapping[str, Any]


# ---- names ------------------------------------------------------------------------------------


def namespace_of(obj: Obj, default: str = DEFAULT_NAMESPACE) -> str:
    """The object's namespace, or ``default`` when it has none."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    ns = meta.get("namespace") if isinstance(meta, Mapping) else None
    return ns if isinstance(ns, str) and ns else default


def ref(obj: Obj) -> str:
    """How errors name an object: ``VirtualService canary-demo/scoring``."""
    kind = obj.get("kind") or "object"
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        meta = {}
    name = meta.get("name") or "<unnamed>"
    ns = meta.get("namespace")
    return f"{kind} {ns}/{name}" if ns else f"{kind} {name}"


def normalize_host(host: str, namespace: str) -> str:
    """FQDN of a host: a short name (no dot) becomes ``name.<namespace>.svc.cluster.local``.

    Istio interprets short names in the namespace of the rule; ``*``, wildcards and names with a
    dot are left as they are.
    """
    if host == "*" or "." in host or "*" in host:
        return host
    return f"{host}.{namespace}.{CLUSTER_DOMAIN}"


def parse_duration(text: str) -> int:
    """Nanoseconds of an Istio duration: ``10s``, ``500ms``, ``1.5s``, ``1m``, ``1m30s``."""
    if not isinstance(text, str) or not text or _DURATION.sub("", text) != "":
        raise ValueError(f"not a duration: {text!r}")
    return round(sum(float(n) * _DURATION_NS[u] for n, u in _DURATION.findall(text)))


def parse_retry_on(retry_on: str) -> tuple[str, list[int]]:
    """Split Istio's retryOn into Envoy's retry_on and retriable status codes (as Istio does)."""
    conditions, codes = [], []
    for part in (p.strip() for p in retry_on.split(",")):
        if not part:
            continue
        if part.isdigit():
            codes.append(int(part))
        else:
            conditions.append(part)
    if codes and "retriable-status-codes" not in conditions:
        conditions.append("retriable-status-codes")
    return ",".join(conditions), codes


# ---- weights ----------------------------------------------------------------------------------


def route_label(i: int, route: Obj) -> str:
    """Name of an http route: its ``name``, else ``http[i]``."""
    name = route.get("name") if isinstance(route, Mapping) else None
    return name if isinstance(name, str) and name else f"http[{i}]"


def destination_key(dest: Obj) -> str:
    """Key of a route destination in weight maps: its subset, else its host."""
    d = dest.get("destination") or {}
    return str(d.get("subset") or d.get("host") or "")


def route_weights(vs: Obj) -> dict[str, dict[str, int]]:
    """Route name (or ``http[i]``) → {subset: weight}; a lone destination gets 100, as in Istio."""
    out: dict[str, dict[str, int]] = {}
    for i, route in enumerate((vs.get("spec") or {}).get("http") or []):
        dests = route.get("route") or []
        weights: dict[str, int] = {}
        for dest in dests:
            weight = dest.get("weight")
            w = 100 if len(dests) == 1 else weight if isinstance(weight, int) else 0
            key = destination_key(dest)
            weights[key] = weights.get(key, 0) + w
        out[route_label(i, route)] = weights
    return out


def set_weights(vs: Obj, route_name: str, weights: Mapping[str, int]) -> dict[str, Any]:
    """A copy of ``vs`` with the weights of ``route_name``'s destinations replaced (pure).

    Destinations not named in ``weights`` keep theirs; with two or more destinations the result
    must sum to 100. Errors name the route and the subset.
    """
    new = copy.deepcopy(dict(vs))
    obj = ref(new)
    http = (new.get("spec") or {}).get("http") or []
    found = [(i, r) for i, r in enumerate(http) if route_label(i, r) == route_name]
    if not found:
        names = [route_label(i, r) for i, r in enumerate(http)]
        raise ConfigError(obj, "spec.http", f"has no route named {route_name!r} (routes: {names})")
    i, route = found[0]
    dests = route.get("route") or []
    path = f"spec.http[{i}]"
    for key, weight in weights.items():
        matches = [k for k, d in enumerate(dests) if destination_key(d) == key]
        if not matches:
            have = [destination_key(d) for d in dests]
            raise ConfigError(
                obj,
                f"{path}.route",
                f"route {route_name!r} has no destination with subset {key!r} (has {have})",
            )
        if len(matches) > 1:
            raise ConfigError(
                obj, f"{path}.route", f"route {route_name!r} names subset {key!r} more than once"
            )
        k = matches[0]
        _check_weight(obj, weight, f"{path}.route[{k}].weight")
        dests[k]["weight"] = weight
    _check_weight_sum(obj, dests, f"{path}.route", route_name)
    return new


def _check_weight(obj: str, weight: Any, path: str) -> None:
    if isinstance(weight, bool) or not isinstance(weight, int):
        raise ConfigError(obj, path, f"must be an integer 0..100, got {weight!r}")
    if not 0 <= weight <= 100:
        raise ConfigError(obj, path, f"must be 0..100, got {weight}")


def _check_weight_sum(obj: str, dests: list[Any], path: str, label: str) -> None:
    if len(dests) < 2:
        return
    total = sum(int(d.get("weight") or 0) for d in dests)
    if total != 100:
        raise ConfigError(obj, path, f"weights must sum to 100, got {total} (route {label!r})")


# ---- structural checks ------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _mapping(obj: str, value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        raise ConfigError(obj, path, "is required")
    if not isinstance(value, Mapping):
        raise ConfigError(obj, path, f"must be a mapping, got {_show(value)}")
    return value


def _fields(
    obj: str, value: Any, path: str, allowed: Iterable[str], required: Iterable[str] = ()
) -> Mapping[str, Any]:
    """``value`` as a mapping with only ``allowed`` keys and all ``required`` ones."""
    m = _mapping(obj, value, path)
    allowed = set(allowed)
    for key in m:
        if key not in allowed:
            raise UnsupportedFieldError(obj, _join(path, str(key)))
    for key in required:
        if m.get(key) is None:
            raise ConfigError(obj, _join(path, key), "is required")
    return m


def _list(obj: str, value: Any, path: str, non_empty: bool = False) -> list[Any]:
    if value is None and non_empty:
        raise ConfigError(obj, path, "is required")
    if not isinstance(value, list):
        raise ConfigError(obj, path, f"must be a list, got {_show(value)}")
    if non_empty and not value:
        raise ConfigError(obj, path, "must not be empty")
    return value


def _str(obj: str, value: Any, path: str, non_empty: bool = True) -> str:
    if value is None:
        raise ConfigError(obj, path, "is required")
    if not isinstance(value, str):
        raise ConfigError(obj, path, f"must be a string, got {_show(value)}")
    if non_empty and not value:
        raise ConfigError(obj, path, "must not be empty")
    return value


def _int(obj: str, value: Any, path: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(obj, path, f"must be an integer {lo}..{hi}, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(obj, path, f"must be {lo}..{hi}, got {value}")
    return value


def _labels(obj: str, value: Any, path: str) -> None:
    for k, v in _mapping(obj, value, path).items():
        _str(obj, k, path)
        _str(obj, v, _join(path, str(k)), non_empty=False)


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _duration(obj: str, value: Any, path: str, minimum_ns: int) -> int:
    if not isinstance(value, str):
        raise ConfigError(obj, path, f"must be a duration string like '10s', got {_show(value)}")
    try:
        ns = parse_duration(value)
    except ValueError:
        raise ConfigError(
            obj, path, f"must be a duration like '10s', '500ms', '1.5s' or '1m', got {value!r}"
        ) from None
    if ns % 1_000_000:
        raise ConfigError(obj, path, f"only millisecond precision is supported, got {value!r}")
    if ns < minimum_ns:
        raise ConfigError(obj, path, f"must be at least {minimum_ns // 1_000_000}ms, got {value!r}")
    return ns


def _percent(obj: str, value: Any, path: str) -> float:
    m = _fields(obj, value, path, ["value"], ["value"])
    v = m["value"]
    vpath = _join(path, "value")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(obj, vpath, f"must be a number 0..100, got {v!r}")
    if not 0 <= v <= 100:
        raise ConfigError(obj, vpath, f"must be 0..100, got {v}")
    return float(v)


def _header_name(obj: str, name: Any, path: str, lowercase: bool) -> str:
    _str(obj, name, path)
    if not _TOKEN.match(name):
        raise ConfigError(obj, path, f"{name!r} is not a valid HTTP header name")
    if lowercase and name != name.lower():
        raise ConfigError(obj, path, f"header names must be lowercase, got {name!r}")
    return str(name)


def _regex(obj: str, pattern: str, path: str) -> None:
    try:
        re.compile(pattern)
    except re.error as e:
        raise ConfigError(obj, path, f"is not a valid regular expression: {e}") from None
    if _NOT_RE2.search(pattern):
        raise ConfigError(
            obj,
            path,
            f"{pattern!r} uses lookaround, backreferences or atomic groups, "
            "which RE2 (Istio's and Envoy's regex engine) does not support",
        )


def _string_match(obj: str, value: Any, path: str, *, presence: bool, prefix: bool = True) -> None:
    """Istio StringMatch: exactly one of exact|prefix|regex (``{}`` = presence where allowed)."""
    m = _fields(obj, value, path, STRING_MATCH_TYPES)
    if not m:
        if presence:
            return
        raise ConfigError(obj, path, "must set one of exact, prefix or regex")
    if len(m) > 1:
        raise ConfigError(
            obj, path, f"must set exactly one of exact, prefix or regex, got {list(m)}"
        )
    kind, pattern = next(iter(m.items()))
    kpath = _join(path, kind)
    if kind == "prefix" and not prefix:
        raise UnsupportedFieldError(obj, kpath)
    _str(obj, pattern, kpath, non_empty=kind != "exact")
    if kind == "regex":
        _regex(obj, pattern, kpath)


def _destination(obj: str, value: Any, path: str) -> None:
    m = _fields(obj, value, path, ["host", "subset", "port"], ["host"])
    _str(obj, m["host"], _join(path, "host"))
    if "subset" in m:
        _str(obj, m["subset"], _join(path, "subset"))
    if "port" in m:
        p = _fields(obj, m["port"], _join(path, "port"), ["number"], ["number"])
        _int(obj, p["number"], _join(path, "port.number"), 1, 65535)


def _match(obj: str, value: Any, path: str) -> None:
    m = _fields(
        obj, value, path, ["name", "uri", "headers", "queryParams", "method", "ignoreUriCase"]
    )
    if not m:
        raise ConfigError(obj, path, "must not be empty (an HTTPMatchRequest needs a condition)")
    if "name" in m:
        _str(obj, m["name"], _join(path, "name"))
    if "ignoreUriCase" in m:
        if not isinstance(m["ignoreUriCase"], bool):
            raise ConfigError(obj, _join(path, "ignoreUriCase"), "must be true or false")
        if m["ignoreUriCase"]:
            raise UnsupportedFieldError(obj, _join(path, "ignoreUriCase"))
    if "uri" in m:
        _string_match(obj, m["uri"], _join(path, "uri"), presence=False)
    if "method" in m:
        _string_match(obj, m["method"], _join(path, "method"), presence=False)
    if "headers" in m:
        hpath = _join(path, "headers")
        for name, sm in _mapping(obj, m["headers"], hpath).items():
            _header_name(obj, name, hpath, lowercase=True)
            if name in _RESERVED_MATCH_HEADERS:
                raise ConfigError(
                    obj, _join(hpath, name), f"use match.{name}, Istio ignores it in headers"
                )
            _string_match(obj, sm, _join(hpath, name), presence=True)
    if "queryParams" in m:
        qpath = _join(path, "queryParams")
        for name, sm in _mapping(obj, m["queryParams"], qpath).items():
            _str(obj, name, qpath)
            # Istio documents that prefix matching is not supported for query parameters.
            _string_match(obj, sm, _join(qpath, name), presence=True, prefix=False)


def _header_ops(obj: str, value: Any, path: str) -> None:
    m = _fields(obj, value, path, ["request", "response"])
    for side, ops in m.items():
        spath = _join(path, side)
        o = _fields(obj, ops, spath, ["set", "add", "remove"])
        for verb in ("set", "add"):
            if verb in o:
                vpath = _join(spath, verb)
                for name, val in _mapping(obj, o[verb], vpath).items():
                    _header_name(obj, name, vpath, lowercase=False)
                    _str(obj, val, _join(vpath, name), non_empty=False)
        if "remove" in o:
            rpath = _join(spath, "remove")
            for k, name in enumerate(_list(obj, o["remove"], rpath)):
                _header_name(obj, name, f"{rpath}[{k}]", lowercase=False)
                if side == "request" and name.lower() == "host":
                    raise ConfigError(obj, f"{rpath}[{k}]", "is host, which Envoy cannot remove")


def _http_route(obj: str, route: Any, path: str) -> None:
    allowed = [
        "name", "match", "route", "mirror", "mirrorPercentage",
        "fault", "timeout", "retries", "headers",
    ]  # fmt: skip
    m = _fields(obj, route, path, allowed)
    if "name" in m:
        _str(obj, m["name"], _join(path, "name"))
    if "match" in m:
        for j, block in enumerate(_list(obj, m["match"], _join(path, "match"))):
            _match(obj, block, f"{path}.match[{j}]")
    if m.get("route") is None:
        raise ConfigError(obj, _join(path, "route"), "is required")
    dests = _list(obj, m["route"], _join(path, "route"), non_empty=True)
    for k, dest in enumerate(dests):
        dpath = f"{path}.route[{k}]"
        d = _fields(obj, dest, dpath, ["destination", "weight"], ["destination"])
        _destination(obj, d["destination"], _join(dpath, "destination"))
        if "weight" in d:
            _check_weight(obj, d["weight"], _join(dpath, "weight"))
    _check_weight_sum(obj, dests, _join(path, "route"), str(m.get("name") or path))
    if "mirror" in m:
        _destination(obj, m["mirror"], _join(path, "mirror"))
    if "mirrorPercentage" in m:
        if "mirror" not in m:
            raise ConfigError(obj, _join(path, "mirrorPercentage"), "needs mirror")
        _percent(obj, m["mirrorPercentage"], _join(path, "mirrorPercentage"))
    if "fault" in m:
        _fault(obj, m["fault"], _join(path, "fault"))
    if "timeout" in m:
        _duration(obj, m["timeout"], _join(path, "timeout"), 0)
    if "retries" in m:
        _retries(obj, m["retries"], _join(path, "retries"))
    if "headers" in m:
        _header_ops(obj, m["headers"], _join(path, "headers"))


def _fault(obj: str, value: Any, path: str) -> None:
    m = _fields(obj, value, path, ["abort", "delay"])
    if not m:
        raise ConfigError(obj, path, "must set abort, delay or both")
    if "abort" in m:
        apath = _join(path, "abort")
        a = _fields(obj, m["abort"], apath, ["httpStatus", "percentage"], ["httpStatus"])
        _int(obj, a["httpStatus"], _join(apath, "httpStatus"), 200, 599)
        if "percentage" in a:
            _percent(obj, a["percentage"], _join(apath, "percentage"))
    if "delay" in m:
        dpath = _join(path, "delay")
        d = _fields(obj, m["delay"], dpath, ["fixedDelay", "percentage"], ["fixedDelay"])
        _duration(obj, d["fixedDelay"], _join(dpath, "fixedDelay"), 1_000_000)
        if "percentage" in d:
            _percent(obj, d["percentage"], _join(dpath, "percentage"))


def _retries(obj: str, value: Any, path: str) -> None:
    m = _fields(obj, value, path, ["attempts", "perTryTimeout", "retryOn"], ["attempts"])
    _int(obj, m["attempts"], _join(path, "attempts"), 0, 1_000)
    if "perTryTimeout" in m:
        _duration(obj, m["perTryTimeout"], _join(path, "perTryTimeout"), 1_000_000)
    if "retryOn" in m:
        rpath = _join(path, "retryOn")
        _str(obj, m["retryOn"], rpath)
        for part in (p.strip() for p in m["retryOn"].split(",")):
            if part.isdigit():
                _int(obj, int(part), rpath, 100, 599)
            elif part and part not in RETRY_ON:
                raise ConfigError(
                    obj, rpath, f"{part!r} is not a retry condition (known: {sorted(RETRY_ON)})"
                )


def _check_gateway(obj: str, spec: Mapping[str, Any]) -> None:
    if "selector" in spec:
        _labels(obj, spec["selector"], "spec.selector")
    for k, server in enumerate(_list(obj, spec.get("servers"), "spec.servers", non_empty=True)):
        path = f"spec.servers[{k}]"
        s = _fields(obj, server, path, ["port", "hosts", "name"], ["port", "hosts"])
        p = _fields(obj, s["port"], f"{path}.port", ["number", "name", "protocol"], ["number"])
        _int(obj, p["number"], f"{path}.port.number", 1, 65535)
        if "name" in p:
            _str(obj, p["name"], f"{path}.port.name")
        protocol = _str(obj, p.get("protocol"), f"{path}.port.protocol")
        if protocol.upper() != "HTTP":
            raise ConfigError(
                obj, f"{path}.port.protocol", f"must be HTTP on the local gateway, got {protocol!r}"
            )
        for h, host in enumerate(_list(obj, s["hosts"], f"{path}.hosts", non_empty=True)):
            _str(obj, host, f"{path}.hosts[{h}]")
        if "name" in s:
            _str(obj, s["name"], f"{path}.name")


def _check_virtual_service(obj: str, spec: Mapping[str, Any]) -> None:
    for h, host in enumerate(_list(obj, spec.get("hosts"), "spec.hosts", non_empty=True)):
        _str(obj, host, f"spec.hosts[{h}]")
    if "gateways" in spec:
        for g, gw in enumerate(_list(obj, spec["gateways"], "spec.gateways")):
            _str(obj, gw, f"spec.gateways[{g}]")
    http = _list(obj, spec.get("http"), "spec.http", non_empty=True)
    seen: dict[str, int] = {}
    for i, route in enumerate(http):
        _http_route(obj, route, f"spec.http[{i}]")
        if "name" in route:
            if route["name"] in seen:
                raise ConfigError(
                    obj,
                    f"spec.http[{i}].name",
                    f"{route['name']!r} is already the name of spec.http[{seen[route['name']]}]",
                )
            seen[route["name"]] = i


def _check_destination_rule(obj: str, spec: Mapping[str, Any]) -> None:
    _str(obj, spec.get("host"), "spec.host")
    if "trafficPolicy" in spec:
        tp = _fields(obj, spec["trafficPolicy"], "spec.trafficPolicy", ["loadBalancer"])
        if "loadBalancer" in tp:
            lb = _fields(
                obj, tp["loadBalancer"], "spec.trafficPolicy.loadBalancer", ["simple"], ["simple"]
            )
            if lb["simple"] not in LB_POLICIES:
                raise ConfigError(
                    obj,
                    "spec.trafficPolicy.loadBalancer.simple",
                    f"must be one of {list(LB_POLICIES)}, got {lb['simple']!r}",
                )
    seen: dict[str, int] = {}
    for k, subset in enumerate(_list(obj, spec.get("subsets", []), "spec.subsets")):
        path = f"spec.subsets[{k}]"
        s = _fields(obj, subset, path, ["name", "labels"], ["name"])
        name = _str(obj, s["name"], f"{path}.name")
        if not _DNS_LABEL.match(name):
            raise ConfigError(obj, f"{path}.name", f"{name!r} is not a DNS label")
        if name in seen:
            raise ConfigError(
                obj, f"{path}.name", f"duplicate subset {name!r} (also spec.subsets[{seen[name]}])"
            )
        seen[name] = k
        if "labels" in s:
            _labels(obj, s["labels"], f"{path}.labels")


_SPEC_FIELDS = {
    "Gateway": (["selector", "servers"], _check_gateway),
    "VirtualService": (["hosts", "gateways", "http"], _check_virtual_service),
    "DestinationRule": (["host", "subsets", "trafficPolicy"], _check_destination_rule),
}


def is_istio(obj: Any) -> bool:
    """Whether the object belongs to the ``networking.istio.io`` API group."""
    return isinstance(obj, Mapping) and str(obj.get("apiVersion", "")).startswith(f"{GROUP}/")


def _check_object(i: int, obj: Any) -> None:
    if not isinstance(obj, Mapping):
        raise ConfigError(f"document {i}", "", f"must be a mapping, got {_show(obj)}")
    where = ref(obj)
    kind = obj.get("kind")
    if kind not in KINDS:
        raise UnsupportedFieldError(where, "kind")
    version = str(obj.get("apiVersion", "")).removeprefix(f"{GROUP}/")
    if not is_istio(obj) or version not in API_VERSIONS:
        wanted = ", ".join(f"{GROUP}/{v}" for v in API_VERSIONS)
        raise ConfigError(
            where, "apiVersion", f"must be one of {wanted}, got {obj.get('apiVersion')!r}"
        )
    meta = _mapping(f"{kind} (document {i})", obj.get("metadata"), "metadata")
    if not isinstance(meta.get("name"), str) or not meta["name"]:
        raise ConfigError(f"{kind} (document {i})", "metadata.name", "is required")
    if "namespace" in meta:
        _str(where, meta["namespace"], "metadata.namespace")
    allowed, check = _SPEC_FIELDS[kind]
    spec = _fields(where, obj.get("spec"), "spec", allowed)
    check(where, spec)


# ---- cross-object checks ----------------------------------------------------------------------


def subsets_by_host(objects: Iterable[Obj], namespace: str = DEFAULT_NAMESPACE) -> dict[str, Obj]:
    """FQDN host → its DestinationRule (objects assumed valid)."""
    out: dict[str, Obj] = {}
    for dr in objects:
        if dr.get("kind") == "DestinationRule":
            out.setdefault(normalize_host(dr["spec"]["host"], namespace_of(dr, namespace)), dr)
    return out


def gateway_refs(vs: Obj, namespace: str = DEFAULT_NAMESPACE) -> list[tuple[str, str]]:
    """(namespace, name) of each gateway a VirtualService names, ``mesh`` excluded."""
    ns = namespace_of(vs, namespace)
    out = []
    for gw in (vs.get("spec") or {}).get("gateways") or []:
        if gw == MESH_GATEWAY:
            continue
        gns, _, name = gw.rpartition("/")
        out.append((gns or ns, name))
    return out


def _check_references(objects: list[Any], namespace: str) -> None:
    seen: dict[tuple[str, str, str], str] = {}
    for o in objects:
        key = (o["kind"], namespace_of(o, namespace), o["metadata"]["name"])
        if key in seen:
            raise ConfigError(ref(o), "metadata.name", "is defined twice")
        seen[key] = ref(o)
    rules: dict[str, Obj] = {}
    for dr in (o for o in objects if o["kind"] == "DestinationRule"):
        host = normalize_host(dr["spec"]["host"], namespace_of(dr, namespace))
        if host in rules:
            raise ConfigError(
                ref(dr), "spec.host", f"{host} is already covered by {ref(rules[host])}"
            )
        rules[host] = dr
    gateways = {
        (namespace_of(g, namespace), g["metadata"]["name"])
        for g in objects
        if g["kind"] == "Gateway"
    }
    for vs in (o for o in objects if o["kind"] == "VirtualService"):
        where, ns = ref(vs), namespace_of(vs, namespace)
        for k, gw in enumerate(vs["spec"].get("gateways") or [] if gateways else []):
            gns, _, name = gw.rpartition("/")
            if gw != MESH_GATEWAY and (gns or ns, name) not in gateways:
                raise ConfigError(
                    where,
                    f"spec.gateways[{k}]",
                    f"names Gateway {gns or ns}/{name}, which does not exist",
                )
        for i, route in enumerate(vs["spec"]["http"]):
            targets = [
                (f"spec.http[{i}].route[{k}].destination", d["destination"])
                for k, d in enumerate(route["route"])
            ]
            if "mirror" in route:
                targets.append((f"spec.http[{i}].mirror", route["mirror"]))
            for path, dest in targets:
                subset = dest.get("subset")
                if not subset:
                    continue
                host = normalize_host(dest["host"], ns)
                rule = rules.get(host)
                if rule is None:
                    raise ConfigError(
                        where,
                        f"{path}.subset",
                        f"{subset!r} needs a DestinationRule for host {host}, and there is none",
                    )
                names = [s["name"] for s in rule["spec"].get("subsets") or []]
                if subset not in names:
                    raise ConfigError(
                        where,
                        f"{path}.subset",
                        f"{subset!r} is not a subset of host {host} ({ref(rule)} defines {names})",
                    )


def validate(objects: list[dict[str, Any]], *, namespace: str = DEFAULT_NAMESPACE) -> None:
    """Check Gateways, VirtualServices and DestinationRules against the supported subset.

    Objects of other API groups are ignored; ``namespace`` is assumed for objects without one.
    Raises ``ConfigError`` (or ``UnsupportedFieldError``) naming the object and the field path.
    """
    istio = []
    for i, obj in enumerate(objects):
        if obj is None:
            continue
        if not isinstance(obj, Mapping) or is_istio(obj) or obj.get("kind") in KINDS:
            _check_object(i, obj)
            istio.append(obj)
    _check_references(istio, namespace)
