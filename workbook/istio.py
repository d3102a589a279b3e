"""Istio networking objects, pure: one validation, problems as data; read weights.

Gateway, VirtualService and DestinationRule (``networking.istio.io`` v1, v1beta1, v1alpha3) are
checked field by field. ``problems`` returns every ``Problem`` found (object, field path, message;
flagged when the field is valid Istio that the local gateway does not implement, or when istiod
would only warn); ``validate`` raises the first error as ``ConfigError``. The local gateway refuses
every problem but warnings; the manifests check for the k8s target reports all but the
local-gateway ones. Messages read ``VirtualService canary-demo/scoring: spec.http[1].route[0].weight
must be 0..100, got 150``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from workbook import kinds
from workbook.errors import ConfigError, UnsupportedFieldError

#: The Istio release whose istiod the local gateway follows: the newest revision of the AKS Istio
#: add-on (asm-1-27). Its sources are the reference for every rule here and in ``envoy``:
#: validation in pkg/config/validation/{validation,virtualservice}.go, translation in
#: pilot/pkg/networking/core/route/{route,retry/retry}.go and pilot/pkg/networking/core/gateway.go.
ISTIO_VERSION = "1.27"
GROUP = kinds.ISTIO_GROUP
INT32_MAX = 2**31 - 1
API_VERSIONS = ("v1", "v1beta1", "v1alpha3")
#: The kinds the local gateway translates.
KINDS = kinds.GATEWAY_KINDS
DEFAULT_NAMESPACE = "default"
CLUSTER_DOMAIN = "svc.cluster.local"
MESH_GATEWAY = "mesh"
#: DestinationRule ``loadBalancer.simple`` values served (LEAST_CONN is the deprecated name of
#: LEAST_REQUEST; UNSPECIFIED is istiod's default, LEAST_REQUEST).
LB_POLICIES = ("UNSPECIFIED", "ROUND_ROBIN", "LEAST_REQUEST", "LEAST_CONN", "RANDOM")
#: ``consistentHash`` hash keys (one of), as istio/api destination_rule.proto names them.
HASH_KEYS = ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName")
STRING_MATCH_TYPES = ("exact", "prefix", "regex")

# Retry conditions istiod accepts in retryOn (``supportedRetryOnPolicies`` in
# pkg/config/validation/validation.go); a number in retryOn is a retriable HTTP status code.
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
#: istiod's limit on a regex (``validateStringRegexp``), a stand-in for RE2's program size.
MAX_REGEX_LENGTH = 1024
#: The status codes Go's ``net/http.StatusText`` knows: istiod reads a number in retryOn as a
#: retriable status code only if it is one of them (retry.go ``parseRetryOn``).
HTTP_STATUS_CODES = frozenset(
    {
        100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
        300, 301, 302, 303, 304, 305, 307, 308,
        *range(400, 419), 421, 422, 423, 424, 425, 426, 428, 429, 431, 451,
        500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
    }
)  # fmt: skip
#: Redirect codes route.go ``ApplyRedirect`` translates (0 means 301).
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
#: CORS methods istiod accepts (``supportedCORSMethods``: Go's net/http methods and ``*``).
CORS_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*"}
)
#: HTTP/2 pseudo headers a match may name (``pseudoHeaders`` in validation.go).
PSEUDO_HEADERS = (":method", ":scheme", ":authority", ":path", ":status")
_HEADER_VALUE = re.compile("^[^\u0000-\u0008\u000a-\u001f\u007f]*$")
# Header names Istio ignores in a match's headers map (they have their own match fields).
_RESERVED_MATCH_HEADERS = ("uri", "scheme", "method", "authority")

Obj = Mapping[str, Any]


# ---- names ------------------------------------------------------------------------------------


def namespace_of(obj: Obj, default: str = DEFAULT_NAMESPACE) -> str:
    """The object's namespace, or ``default`` when it has none."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    ns = meta.get("namespace") if isinstance(meta, Mapping) else None
    return ns if isinstance(ns, str) and ns else default


def ref(obj: Obj, namespace: str | None = None) -> str:
    """How errors name an object: ``VirtualService canary-demo/scoring``.

    ``namespace`` is the one assumed for an object that names none.
    """
    kind = obj.get("kind") or "object"
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        meta = {}
    name = meta.get("name") or "<unnamed>"
    ns = meta.get("namespace") or namespace
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
    """Split Istio's retryOn into Envoy's retry_on and retriable status codes, as istiod does
    (pilot/pkg/networking/core/route/retry/retry.go, ``parseRetryOn`` and ``ConvertPolicy``)."""
    conditions, codes = [], []
    for part in (p.strip() for p in retry_on.split(",")):
        if not part:
            continue
        if part.isdigit() and int(part) in HTTP_STATUS_CODES:
            codes.append(int(part))
        else:
            conditions.append(part)
    joined = ",".join(conditions)
    if codes and "retriable-status-codes" not in joined:
        joined = f"{joined},retriable-status-codes" if joined else "retriable-status-codes"
    return joined, codes


def re2_error(pattern: str) -> str | None:
    """Why RE2, the regex engine of Envoy and istiod, refuses ``pattern``; None if it compiles."""
    import re2  # google-re2

    options = re2.Options()
    options.log_errors = False
    try:
        re2.compile(pattern, options)
    except re2.error as err:
        reason = err.args[0] if err.args else err
        return reason.decode() if isinstance(reason, bytes) else str(reason)
    return None


def host_matches(a: str, b: str) -> bool:
    """Whether two hosts overlap, wildcards included (``host.Name.Matches`` in Istio)."""
    return host_subset(a, b) or host_subset(b, a)


def host_subset(a: str, b: str) -> bool:
    """Whether every name host ``a`` stands for is one ``b`` stands for (``host.Name.SubsetOf``)."""
    a, b = a.lower(), b.lower()
    if b == "*":
        return True
    if b.startswith("*"):
        return a[1:].endswith(b[1:]) if a.startswith("*") else a.endswith(b[1:])
    return not a.startswith("*") and a == b


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


# ---- problems ---------------------------------------------------------------------------------

UNSUPPORTED = "is not supported by the local gateway; remove it or run with --target k8s"


@dataclass(frozen=True)
class Problem:
    """One finding: the object, the field path and what is wrong with it.

    ``unsupported``: valid Istio that the local gateway does not implement (the k8s target takes
    it). ``warning``: istiod accepts the object and only warns.
    """

    object: str
    field: str
    message: str
    unsupported: bool = False
    warning: bool = False

    def __str__(self) -> str:
        where = f"{self.object}: {self.field}" if self.field else self.object
        return f"{where} {self.message}"

    def error(self) -> ConfigError:
        """The problem as the error the CLI reports (exit code 2)."""
        if self.unsupported:
            return UnsupportedFieldError(self.object, self.field)
        return ConfigError(self.object, self.field, self.message)


def _problem(err: ConfigError) -> Problem:
    return Problem(
        err.obj, err.field, err.detail, unsupported=isinstance(err, UnsupportedFieldError)
    )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


# ---- the shape every Istio object has -------------------------------------------------------


def shape_problem(obj: Any, index: int, namespace: str | None = None) -> Problem | None:
    """Whether document ``index`` is an Istio object: kind, apiVersion, metadata.name, spec.

    Checked before anything else reads the object, by every path that takes Istio objects
    (``apply`` on both targets, the manifests check, the local gateway). ``namespace`` is the one
    assumed for an object that names none (it only changes how the object is named).
    """
    where = f"document {index}"
    if not isinstance(obj, Mapping):
        return Problem(where, "", f"must be a mapping, got {_show(obj)}")
    kind = obj.get("kind")
    if not kinds.is_istio_kind(kind):
        return Problem(
            where, "kind", f"must be one of {', '.join(kinds.ISTIO_KINDS)}, got {kind!r}"
        )
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return Problem(f"{where} ({kind})", "metadata", "must be a mapping with a name")
    if not isinstance(meta.get("name"), str) or not meta["name"]:
        return Problem(f"{where} ({kind})", "metadata.name", "is required")
    where = ref(obj, namespace)
    if "namespace" in meta and (not isinstance(meta["namespace"], str) or not meta["namespace"]):
        return Problem(where, "metadata.namespace", "must be a non-empty string")
    version = str(obj.get("apiVersion", "")).removeprefix(f"{GROUP}/")
    if not is_istio(obj) or version not in API_VERSIONS:
        wanted = ", ".join(f"{GROUP}/{v}" for v in API_VERSIONS)
        got = obj.get("apiVersion")
        return Problem(where, "apiVersion", f"must be one of {wanted}, got {got!r}")
    if not isinstance(obj.get("spec"), Mapping):
        return Problem(where, "spec", f"must be a mapping, got {_show(obj.get('spec'))}")
    return None


def check_object_shape(obj: Any, index: int) -> None:
    """Raise ``ConfigError`` unless document ``index`` has the shape of an Istio object."""
    found = shape_problem(obj, index)
    if found is not None:
        raise found.error()


# ---- field checks -----------------------------------------------------------------------------


class _Check:
    """The field checks of one object; collects its problems.

    A structural error ends the section it is in (one route, one server, one subset), since what
    follows cannot be read; an unsupported field is recorded and the check goes on without it.
    """

    def __init__(self, obj: str) -> None:
        self.obj = obj
        self.found: list[Problem] = []

    def fail(self, path: str, message: str) -> NoReturn:
        raise ConfigError(self.obj, path, message)

    def warn(self, path: str, message: str) -> None:
        self.found.append(Problem(self.obj, path, message, warning=True))

    def section(self, check: Callable[..., Any], *args: Any) -> None:
        try:
            check(*args)
        except ConfigError as err:
            self.found.append(_problem(err))

    # -- shapes

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if value is None:
            self.fail(path, "is required")
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping, got {_show(value)}")
        return value

    def fields(
        self, value: Any, path: str, allowed: Iterable[str], required: Iterable[str] = ()
    ) -> Mapping[str, Any]:
        """``value`` as a mapping of ``allowed`` keys (others are recorded as unsupported)."""
        m = self.mapping(value, path)
        allowed = set(allowed)
        for key in m:
            if key not in allowed:
                self.found.append(
                    Problem(self.obj, _join(path, str(key)), UNSUPPORTED, unsupported=True)
                )
        for key in required:
            if m.get(key) is None:
                self.fail(_join(path, key), "is required")
        return {k: v for k, v in m.items() if k in allowed}

    def sequence(self, value: Any, path: str, non_empty: bool = False) -> list[Any]:
        if value is None and non_empty:
            self.fail(path, "is required")
        if not isinstance(value, list):
            self.fail(path, f"must be a list, got {_show(value)}")
        if non_empty and not value:
            self.fail(path, "must not be empty")
        return value

    def string(self, value: Any, path: str, non_empty: bool = True) -> str:
        if value is None:
            self.fail(path, "is required")
        if not isinstance(value, str):
            self.fail(path, f"must be a string, got {_show(value)}")
        if non_empty and not value:
            self.fail(path, "must not be empty")
        return value

    def integer(self, value: Any, path: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"must be an integer {lo}..{hi}, got {value!r}")
        if not lo <= value <= hi:
            self.fail(path, f"must be {lo}..{hi}, got {value}")
        return value

    def labels(self, value: Any, path: str) -> None:
        for k, v in self.mapping(value, path).items():
            self.string(k, path)
            self.string(v, _join(path, str(k)), non_empty=False)

    def duration(self, value: Any, path: str, minimum_ns: int) -> int:
        if not isinstance(value, str):
            self.fail(path, f"must be a duration string like '10s', got {_show(value)}")
        try:
            ns = parse_duration(value)
        except ValueError:
            self.fail(
                path, f"must be a duration like '10s', '500ms', '1.5s' or '1m', got {value!r}"
            )
        if ns % 1_000_000:
            self.fail(path, f"only millisecond precision is supported, got {value!r}")
        if ns < minimum_ns:
            self.fail(path, f"must be at least {minimum_ns // 1_000_000}ms, got {value!r}")
        return ns

    def percent(self, value: Any, path: str, *, smallest: float = 0.0001) -> float:
        """A Percent: 0, or ``smallest``..100 (validation.go ``validatePercentage``)."""
        m = self.fields(value, path, ["value"])
        v = m.get("value", 0)
        vpath = _join(path, "value")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(vpath, f"must be a number 0..100, got {v!r}")
        if not 0 <= v <= 100 or 0 < v < smallest:
            self.fail(vpath, f"must be 0 or in {smallest:g}..100, got {v}")
        return float(v)

    def header_name(self, name: Any, path: str) -> str:
        """A header a match names: an HTTP token or a pseudo header
        (validation.go ``ValidateHTTPHeaderNameOrJwtClaimRoute``)."""
        self.string(name, path)
        if name.startswith("@request.auth.claims"):
            self.found.append(Problem(self.obj, _join(path, name), UNSUPPORTED, unsupported=True))
        elif name not in PSEUDO_HEADERS and not _TOKEN.match(name):
            self.fail(path, f"{name!r} is not a valid HTTP header name")
        return str(name)

    def header_operation(self, name: Any, path: str, *, authority: bool) -> str:
        """A header a route sets, adds or removes: never a pseudo header, and Host only where
        istiod turns it into an authority rewrite (request set/add)."""
        self.string(name, path)
        if authority and name.lower() in ("host", ":authority"):
            return str(name)
        if name.lower() == "host":
            self.fail(path, f"{name!r}: the Host header cannot be changed here")
        if name.startswith(":"):
            self.fail(path, f"{name!r}: a header cannot have a ':' prefix")
        return str(name)

    def regex(self, pattern: str, path: str) -> None:
        """A regex as Envoy runs it: RE2 syntax (google-re2), at most ``MAX_REGEX_LENGTH``
        characters (validation.go ``validateStringRegexp``)."""
        if len(pattern) > MAX_REGEX_LENGTH:
            self.fail(path, f"regex is too large, max length allowed is {MAX_REGEX_LENGTH}")
        error = re2_error(pattern)
        if error is not None:
            self.fail(
                path,
                f"{pattern!r} is not a valid RE2 regex ({error}); Istio and Envoy use RE2 syntax",
            )

    def string_match(
        self, value: Any, path: str, *, presence: bool, empty_prefix: bool = False
    ) -> None:
        """Istio StringMatch: one of exact|prefix|regex (``{}`` = presence where allowed);
        a prefix may be empty only for uri (virtualservice.go ``validateHTTPRouteMatchRequest``).
        Where presence is allowed, regex ``*`` means presence too (route.go
        ``canBeConvertedToPresentMatch``)."""
        m = self.fields(value, path, STRING_MATCH_TYPES)
        if not m:
            if presence:
                return
            self.fail(path, "must set one of exact, prefix or regex")
        if len(m) > 1:
            self.fail(path, f"must set exactly one of exact, prefix or regex, got {list(m)}")
        kind, pattern = next(iter(m.items()))
        kpath = _join(path, kind)
        required = kind == "regex" or (kind == "prefix" and not empty_prefix)
        self.string(pattern, kpath, non_empty=required)
        if kind == "regex" and not (presence and pattern == "*"):
            self.regex(pattern, kpath)

    # -- VirtualService parts

    def destination(self, value: Any, path: str) -> None:
        m = self.fields(value, path, ["host", "subset", "port"], ["host"])
        self.string(m["host"], _join(path, "host"))
        if m["host"] == "*":
            self.fail(_join(path, "host"), "invalid destination host *")
        if "subset" in m:
            self.string(m["subset"], _join(path, "subset"))
        if "port" in m:
            p = self.fields(m["port"], _join(path, "port"), ["number"], ["number"])
            self.integer(p["number"], _join(path, "port.number"), 1, 65535)

    def match(self, value: Any, path: str) -> None:
        # An empty block is valid: it matches every request (route.go ``TranslateRouteMatch``).
        m = self.fields(
            value,
            path,
            ["name", "uri", "headers", "withoutHeaders", "queryParams", "method", "authority",
             "scheme", "ignoreUriCase"],
        )  # fmt: skip
        if "name" in m:
            self.string(m["name"], _join(path, "name"))
        if "ignoreUriCase" in m and not isinstance(m["ignoreUriCase"], bool):
            self.fail(_join(path, "ignoreUriCase"), "must be true or false")
        if "uri" in m:
            self.string_match(m["uri"], _join(path, "uri"), presence=False, empty_prefix=True)
        for key in ("method", "authority", "scheme"):
            if key in m:
                self.string_match(m[key], _join(path, key), presence=False)
        if "withoutHeaders" in m:
            wpath = _join(path, "withoutHeaders")
            for name, sm in self.mapping(m["withoutHeaders"], wpath).items():
                self.header_name(name, wpath)
                self.string_match(sm, _join(wpath, name), presence=True)
        if "headers" in m:
            hpath = _join(path, "headers")
            for name, sm in self.mapping(m["headers"], hpath).items():
                self.header_name(name, hpath)
                if name in _RESERVED_MATCH_HEADERS:
                    self.fail(_join(hpath, name), f"use match.{name}, Istio ignores it in headers")
                self.string_match(sm, _join(hpath, name), presence=True)
        if "queryParams" in m:
            qpath = _join(path, "queryParams")
            for name, sm in self.mapping(m["queryParams"], qpath).items():
                self.string(name, qpath)
                self.string_match(sm, _join(qpath, name), presence=True)

    def header_ops(self, value: Any, path: str) -> None:
        """Header manipulation as virtualservice.go ``validateHTTPRoute`` checks it; setting the
        Host (or :authority) header of the request is an authority rewrite, set once."""
        m = self.fields(value, path, ["request", "response"])
        authorities = []
        for side, ops in m.items():
            spath = _join(path, side)
            o = self.fields(ops, spath, ["set", "add", "remove"])
            for verb in ("set", "add"):
                if verb in o:
                    vpath = _join(spath, verb)
                    for name, val in self.mapping(o[verb], vpath).items():
                        self.header_operation(name, vpath, authority=side == "request")
                        self.string(val, _join(vpath, name), non_empty=False)
                        if not _HEADER_VALUE.match(val):
                            self.fail(_join(vpath, name), "has control characters")
                        if side == "request" and name.lower() in ("host", ":authority"):
                            authorities.append(_join(vpath, name))
            if "remove" in o:
                rpath = _join(spath, "remove")
                for k, name in enumerate(self.sequence(o["remove"], rpath)):
                    self.header_operation(name, f"{rpath}[{k}]", authority=False)
        if len(authorities) > 1:
            self.fail(authorities[1], "authority header cannot be set multiple times")

    def weight(self, weight: Any, path: str) -> None:
        """A relative weight: the destination gets weight/sum (validation.go ``validateWeight``
        refuses only negatives; istio/api virtual_service.proto ``HTTPRouteDestination.weight``)."""
        if isinstance(weight, bool) or not isinstance(weight, int):
            self.fail(path, f"must be an integer, got {weight!r}")
        if not 0 <= weight <= INT32_MAX:
            self.fail(path, f"must not be negative, got {weight}")

    def http_route(self, route: Any, path: str) -> None:
        allowed = [
            "name", "match", "route", "mirror", "mirrorPercentage", "fault", "timeout",
            "retries", "headers", "rewrite", "directResponse", "redirect", "corsPolicy",
        ]  # fmt: skip
        m = self.fields(route, path, allowed)
        if "name" in m:
            self.string(m["name"], _join(path, "name"))
        if "match" in m:
            for j, block in enumerate(self.sequence(m["match"], _join(path, "match"))):
                self.match(block, f"{path}.match[{j}]")
        # virtualservice.go ``validateHTTPRouteConflict``
        if "redirect" in m:
            for other in ("route", "fault", "rewrite", "directResponse"):
                if other in m:
                    self.fail(
                        _join(path, other), f"HTTP route cannot contain both {other} and redirect"
                    )
            self.redirect(m["redirect"], _join(path, "redirect"))
        elif "directResponse" in m:
            for other in ("route", "fault", "rewrite"):
                if other in m:
                    self.fail(
                        _join(path, other),
                        f"HTTP route cannot contain both {other} and directResponse",
                    )
            self.direct_response(m["directResponse"], _join(path, "directResponse"))
        elif m.get("route") is None:
            self.fail(_join(path, "route"), "is required (HTTP route, redirect or directResponse)")
        if "corsPolicy" in m:
            self.cors_policy(m["corsPolicy"], _join(path, "corsPolicy"))
        if "rewrite" in m:
            self.rewrite(m["rewrite"], _join(path, "rewrite"))
            if (m["rewrite"] or {}).get("authority") and any(
                k.lower() in ("host", ":authority")
                for verb in ("set", "add")
                for k in (((m.get("headers") or {}).get("request") or {}).get(verb) or {})
            ):
                # virtualservice.go ``validateAuthorityRewrite``
                self.fail(
                    _join(path, "headers.request"), "authority header cannot be set multiple times"
                )
        dests = self.sequence(m.get("route", []), _join(path, "route"), non_empty="route" in m)
        for k, dest in enumerate(dests):
            dpath = f"{path}.route[{k}]"
            d = self.fields(dest, dpath, ["destination", "weight", "headers"], ["destination"])
            self.destination(d["destination"], _join(dpath, "destination"))
            if "headers" in d:
                self.header_ops(d["headers"], _join(dpath, "headers"))
            if "weight" in d:
                self.weight(d["weight"], _join(dpath, "weight"))
        if len(dests) > 1 and sum(int(d.get("weight") or 0) for d in dests) == 0:
            # validation.go ``validateHTTPRouteDestinations``
            self.fail(_join(path, "route"), "total destination weight = 0")
        if "mirror" in m:
            self.destination(m["mirror"], _join(path, "mirror"))
        if "mirrorPercentage" in m:
            if "mirror" not in m:
                self.fail(_join(path, "mirrorPercentage"), "needs mirror")
            self.percent(m["mirrorPercentage"], _join(path, "mirrorPercentage"), smallest=0)
        if "fault" in m:
            self.fault(m["fault"], _join(path, "fault"))
        if "timeout" in m:
            # agent.ValidateDuration: at least 1ms, so ``0s`` is refused as istiod refuses it.
            self.duration(m["timeout"], _join(path, "timeout"), 1_000_000)
        if "retries" in m:
            self.retries(m["retries"], _join(path, "retries"))
        if "headers" in m:
            self.header_ops(m["headers"], _join(path, "headers"))

    def redirect(self, value: Any, path: str) -> None:
        """validation.go ``validateHTTPRedirect``: something to change, a 3xx code, scheme http or
        https, a valid port. Codes route.go ``ApplyRedirect`` cannot express (a 3xx other than
        301, 302, 303, 307, 308) leave istiod's route without an action: refused here."""
        m = self.fields(
            value, path, ["uri", "authority", "port", "derivePort", "scheme", "redirectCode"]
        )
        for key in ("uri", "authority", "scheme"):
            if key in m:
                self.string(m[key], _join(path, key), non_empty=False)
        if "port" in m and "derivePort" in m:
            self.fail(path, "must set one of port or derivePort")
        if not any(m.get(k) for k in ("uri", "authority", "scheme", "port", "derivePort")):
            self.fail(path, "redirect must specify uri, authority, scheme, or port")
        code = m.get("redirectCode", 0)
        self.integer(code, _join(path, "redirectCode"), 0, 399)
        if code and not 300 <= code <= 399:
            self.fail(
                _join(path, "redirectCode"), f"{code} is not a valid redirect code, must be 3xx"
            )
        if code not in (0, *REDIRECT_CODES):
            self.fail(
                _join(path, "redirectCode"),
                f"{code} is a 3xx istiod cannot translate (it drops the route's action); use one "
                f"of {sorted(REDIRECT_CODES)}",
            )
        if m.get("scheme") not in (None, "", "http", "https"):
            self.fail(_join(path, "scheme"), 'invalid redirect scheme, must be "http" or "https"')
        if "port" in m:
            self.integer(m["port"], _join(path, "port"), 1, 65535)
        if m.get("derivePort") not in (None, "FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"):
            self.fail(
                _join(path, "derivePort"), "must be FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT"
            )

    def cors_policy(self, value: Any, path: str) -> None:
        """validation.go ``validateCORSPolicy``: origins as non-empty string matches, methods
        Go knows (or ``*``), header names or ``*``, maxAge in whole seconds."""
        allowed = [
            "allowOrigins", "allowOrigin", "allowMethods", "allowHeaders", "exposeHeaders",
            "maxAge", "allowCredentials", "unmatchedPreflights",
        ]  # fmt: skip
        m = self.fields(value, path, allowed)
        for k, origin in enumerate(
            self.sequence(m.get("allowOrigins", []), _join(path, "allowOrigins"))
        ):
            opath = f"{path}.allowOrigins[{k}]"
            self.string_match(origin, opath, presence=False)
        for k, origin in enumerate(
            self.sequence(m.get("allowOrigin", []), _join(path, "allowOrigin"))
        ):
            self.string(origin, f"{path}.allowOrigin[{k}]")
        for k, method in enumerate(
            self.sequence(m.get("allowMethods", []), _join(path, "allowMethods"))
        ):
            if method not in CORS_METHODS:
                self.fail(f"{path}.allowMethods[{k}]", f"{method!r} is not a supported HTTP method")
        for key in ("allowHeaders", "exposeHeaders"):
            for k, name in enumerate(self.sequence(m.get(key, []), _join(path, key))):
                self.string(name, f"{path}.{key}[{k}]")
                if name != "*" and not _TOKEN.match(name):
                    self.fail(
                        f"{path}.{key}[{k}]", f"header name {name} is not a valid header name"
                    )
        if "maxAge" in m:
            ns = self.duration(m["maxAge"], _join(path, "maxAge"), 1_000_000)
            if ns % 1_000_000_000:
                self.fail(
                    _join(path, "maxAge"), "max_age duration is accurate only to seconds precision"
                )
        if "allowCredentials" in m and not isinstance(m["allowCredentials"], bool):
            self.fail(_join(path, "allowCredentials"), "must be true or false")
        if m.get("unmatchedPreflights") not in (None, "UNSPECIFIED", "FORWARD", "IGNORE"):
            self.fail(_join(path, "unmatchedPreflights"), "must be UNSPECIFIED, FORWARD or IGNORE")

    def direct_response(self, value: Any, path: str) -> None:
        """validation.go ``validateHTTPDirectResponse``: a status 200..599, a body below 1MB."""
        m = self.fields(value, path, ["status", "body"], ["status"])
        self.integer(m["status"], _join(path, "status"), 200, 599)
        if "body" in m:
            bpath = _join(path, "body")
            b = self.fields(m["body"], bpath, ["string", "bytes"])
            if len(b) != 1:
                self.fail(bpath, "must set one of string or bytes")
            ((kind, text),) = b.items()
            self.string(text, _join(bpath, kind), non_empty=False)
            size = len(text.encode())
            if kind == "bytes":
                try:
                    size = len(base64.b64decode(text, validate=True))
                except ValueError:
                    self.fail(_join(bpath, kind), "must be base64")
            if size > 1024 * 1024:
                self.fail(bpath, "must be less than 1MB")
            if size > 100 * 1024:
                self.warn(bpath, "large direct_responses may impact control plane performance")

    def rewrite(self, value: Any, path: str) -> None:
        """validation.go ``validateHTTPRewrite``: uri or uriRegexRewrite (not both), or an
        authority; a regex rewrite needs both match (RE2) and rewrite."""
        m = self.fields(value, path, ["uri", "authority", "uriRegexRewrite"])
        for key in ("uri", "authority"):
            if key in m:
                self.string(m[key], _join(path, key), non_empty=False)
        if m.get("uri") and "uriRegexRewrite" in m:
            self.fail(path, "rewrite may only contain one of uri or uriRegexRewrite")
        if not m.get("uri") and "uriRegexRewrite" not in m and not m.get("authority"):
            self.fail(
                path, "rewrite must specify at least one of uri, uriRegexRewrite or authority"
            )
        if "uriRegexRewrite" in m:
            rpath = _join(path, "uriRegexRewrite")
            r = self.fields(m["uriRegexRewrite"], rpath, ["match", "rewrite"])
            if not r.get("match") or not r.get("rewrite"):
                self.fail(rpath, "requires both rewrite and match")
            self.string(r["match"], _join(rpath, "match"))
            self.string(r["rewrite"], _join(rpath, "rewrite"))
            self.regex(r["match"], _join(rpath, "match"))

    def fault(self, value: Any, path: str) -> None:
        """validation.go ``validateHTTPFaultInjection``: abort and/or delay, percentages 0 or
        0.0001..100; an abort without a status and a delay without fixedDelay inject nothing."""
        m = self.fields(value, path, ["abort", "delay"])
        if not m and isinstance(value, Mapping) and not value:
            self.fail(path, "HTTP fault injection must have an abort and/or a delay")
        if "abort" in m:
            apath = _join(path, "abort")
            a = self.fields(m["abort"], apath, ["httpStatus", "percentage"])
            if "percentage" in a:
                self.percent(a["percentage"], _join(apath, "percentage"))
            if "httpStatus" in a:
                self.integer(a["httpStatus"], _join(apath, "httpStatus"), 200, 599)
            else:
                self.warn(apath, "abort configured, but error type not set: nothing is aborted")
        if "delay" in m:
            dpath = _join(path, "delay")
            d = self.fields(m["delay"], dpath, ["fixedDelay", "percentage"])
            if "percentage" in d:
                self.percent(d["percentage"], _join(dpath, "percentage"))
            if "fixedDelay" in d:
                self.duration(d["fixedDelay"], _join(dpath, "fixedDelay"), 1_000_000)
            else:
                self.warn(dpath, "delay configured without fixedDelay: nothing is delayed")

    def retries(self, value: Any, path: str) -> None:
        """validation.go ``validateHTTPRetry``: attempts 0 disables retries and then nothing else
        may be set; each comma-separated retryOn part is a known policy or HTTP status code."""
        m = self.fields(value, path, ["attempts", "perTryTimeout", "retryOn"])
        attempts = m.get("attempts", 0)
        self.integer(attempts, _join(path, "attempts"), 0, INT32_MAX)
        if attempts == 0 and ("perTryTimeout" in m or m.get("retryOn")):
            self.fail(
                _join(path, "attempts"),
                "is 0 (retries disabled), yet a retry policy is configured "
                "(perTryTimeout or retryOn)",
            )
        if "perTryTimeout" in m:
            self.duration(m["perTryTimeout"], _join(path, "perTryTimeout"), 1_000_000)
        if "retryOn" in m:
            rpath = _join(path, "retryOn")
            self.string(m["retryOn"], rpath, non_empty=False)
            for part in m["retryOn"].split(",") if m["retryOn"] else []:
                known = part.isdigit() and int(part) in HTTP_STATUS_CODES
                if not known and part not in RETRY_ON:
                    self.fail(rpath, f"{part!r} is not a valid retryOn policy")

    # -- objects

    def gateway_server(self, server: Any, path: str) -> None:
        """validation.go ``validateServer``/``validateServerPort``: a named port, a protocol,
        one host at least, each ``host`` or ``namespace/host``."""
        s = self.fields(server, path, ["port", "hosts", "name"], ["port", "hosts"])
        p = self.fields(s["port"], f"{path}.port", ["number", "name", "protocol"], ["number"])
        self.integer(p["number"], f"{path}.port.number", 1, 65535)
        self.string(p.get("name"), f"{path}.port.name")
        protocol = self.string(p.get("protocol"), f"{path}.port.protocol")
        if protocol.upper() != "HTTP":
            self.fail(
                f"{path}.port.protocol", f"must be HTTP on the local gateway, got {protocol!r}"
            )
        for h, host in enumerate(self.sequence(s["hosts"], f"{path}.hosts", non_empty=True)):
            self.string(host, f"{path}.hosts[{h}]")
            ns, _, name = host.rpartition("/")
            if "/" in host and (not ns or not name):
                self.fail(f"{path}.hosts[{h}]", f"{host!r} must be host or namespace/host")
        if "name" in s:
            self.string(s["name"], f"{path}.name")

    def gateway(self, spec: Mapping[str, Any]) -> None:
        if "selector" in spec:
            self.section(self.labels, spec["selector"], "spec.selector")
        try:
            servers = self.sequence(spec.get("servers"), "spec.servers", non_empty=True)
        except ConfigError as err:
            self.found.append(_problem(err))
            return
        names: dict[str, int] = {}
        for k, server in enumerate(servers):
            self.section(self.gateway_server, server, f"spec.servers[{k}]")
            port = server.get("port") if isinstance(server, Mapping) else None
            name = port.get("name") if isinstance(port, Mapping) else None
            if isinstance(name, str) and name in names:
                self.section(
                    self.fail,
                    f"spec.servers[{k}].port.name",
                    f"port names in servers must be unique: {name!r} is also "
                    f"spec.servers[{names[name]}]",
                )
            elif isinstance(name, str):
                names[name] = k

    def virtual_service(self, spec: Mapping[str, Any]) -> None:
        def hosts() -> None:
            """validation.go ``ValidateVirtualService``: no ``*`` for the mesh gateway (no
            gateways, or ``mesh`` among them), no host twice (wildcards included)."""
            listed = self.sequence(spec.get("hosts"), "spec.hosts", non_empty=True)
            gateways = spec.get("gateways") or []
            to_mesh = not gateways or MESH_GATEWAY in gateways
            for h, host in enumerate(listed):
                self.string(host, f"spec.hosts[{h}]")
                if host == "*" and to_mesh:
                    self.fail(
                        f"spec.hosts[{h}]",
                        "wildcard host * is not allowed for virtual services bound to the mesh "
                        "gateway",
                    )
            for i, a in enumerate(listed):
                for b in listed[i + 1 :]:
                    if host_matches(a, b):
                        self.fail("spec.hosts", f"duplicate hosts in virtual service: {a} & {b}")

        def gateways() -> None:
            for g, gw in enumerate(self.sequence(spec["gateways"], "spec.gateways")):
                self.string(gw, f"spec.gateways[{g}]")

        self.section(hosts)
        if "gateways" in spec:
            self.section(gateways)
        try:
            http = self.sequence(spec.get("http"), "spec.http", non_empty=True)
        except ConfigError as err:
            self.found.append(_problem(err))
            return
        seen: dict[str, int] = {}
        for i, route in enumerate(http):
            self.section(self.http_route, route, f"spec.http[{i}]")
            name = route.get("name") if isinstance(route, Mapping) else None
            if isinstance(name, str) and name:
                if name in seen:
                    self.section(
                        self.fail,
                        f"spec.http[{i}].name",
                        f"{name!r} is already the name of spec.http[{seen[name]}]",
                    )
                seen.setdefault(name, i)
        self.unreachable(http)

    def unreachable(self, http: list[Any]) -> None:
        """istiod's warning for rules after a catch-all (pkg/config/validation/validation.go,
        ``analyzeUnreachableHTTPRules``): only the last rule can have no matches."""
        catch_all: int | None = None
        for i, route in enumerate(http):
            if not isinstance(route, Mapping):
                continue
            if catch_all is not None:
                first = route_label(catch_all, http[catch_all])
                self.warn(
                    f"spec.http[{i}]",
                    f"is never used: {first} before it has no match and takes every request",
                )
            elif not route.get("match"):
                catch_all = i

    def destination_rule(self, spec: Mapping[str, Any]) -> None:
        self.section(self.string, spec.get("host"), "spec.host")
        if "trafficPolicy" in spec:
            self.section(self.traffic_policy, spec["trafficPolicy"], "spec.trafficPolicy")
        try:
            subsets = self.sequence(spec.get("subsets", []), "spec.subsets")
        except ConfigError as err:
            self.found.append(_problem(err))
            return
        seen: dict[str, int] = {}
        for k, subset in enumerate(subsets):
            self.section(self.subset, subset, f"spec.subsets[{k}]", seen, k)

    def traffic_policy(self, value: Any, path: str) -> None:
        """validation.go ``validateTrafficPolicy``: at least one field; the load balancer and
        TLS are served, the rest is refused as unsupported."""
        tp = self.fields(value, path, ["loadBalancer", "tls", "outlierDetection"])
        if isinstance(value, Mapping) and not value:
            self.fail(path, "traffic policy must have at least one field")
        if "tls" in tp:
            # Without sidecars there is no mesh TLS to originate: ISTIO_MUTUAL and DISABLE are
            # taken and mean plain HTTP to the pods; other modes need certificates we lack.
            t = self.fields(tp["tls"], f"{path}.tls", ["mode"])
            if t.get("mode", "DISABLE") not in ("ISTIO_MUTUAL", "DISABLE"):
                self.found.append(
                    Problem(self.obj, f"{path}.tls.mode", UNSUPPORTED, unsupported=True)
                )
        if "loadBalancer" in tp:
            self.load_balancer(tp["loadBalancer"], f"{path}.loadBalancer")
        if "outlierDetection" in tp:
            self.outlier_detection(tp["outlierDetection"], f"{path}.outlierDetection")

    def outlier_detection(self, value: Any, path: str) -> None:
        """validation.go ``validateOutlierDetection``: durations of 1ms at least, percentages
        0..100, local-origin failures only when split; ``consecutiveErrors`` is deprecated and
        istiod ignores it (a warning)."""
        fields = [
            "consecutive5xxErrors", "consecutiveGatewayErrors", "consecutiveErrors",
            "interval", "baseEjectionTime", "maxEjectionPercent", "minHealthPercent",
            "splitExternalLocalOriginErrors", "consecutiveLocalOriginFailures",
        ]  # fmt: skip
        m = self.fields(value, path, fields)
        for key in ("consecutive5xxErrors", "consecutiveGatewayErrors", "consecutiveErrors",
                    "consecutiveLocalOriginFailures"):  # fmt: skip
            if key in m:
                self.integer(m[key], _join(path, key), 0, 2**32 - 1)
        if m.get("consecutiveErrors"):
            self.warn(
                _join(path, "consecutiveErrors"),
                "is deprecated and has no effect, use consecutiveGatewayErrors or "
                "consecutive5xxErrors instead",
            )
        for key in ("interval", "baseEjectionTime"):
            if key in m:
                self.duration(m[key], _join(path, key), 1_000_000)
        for key in ("maxEjectionPercent", "minHealthPercent"):
            if key in m:
                self.integer(m[key], _join(path, key), 0, 100)
        split = m.get("splitExternalLocalOriginErrors", False)
        if not isinstance(split, bool):
            self.fail(_join(path, "splitExternalLocalOriginErrors"), "must be true or false")
        if not split and m.get("consecutiveLocalOriginFailures"):
            self.fail(
                _join(path, "consecutiveLocalOriginFailures"),
                "is set, but splitExternalLocalOriginErrors is false",
            )

    def load_balancer(self, value: Any, path: str) -> None:
        """validation.go ``validateLoadBalancer``: ``simple`` or ``consistentHash`` (a oneof);
        a cookie needs a name; maglev needs a prime tableSize below 5000011; the deprecated
        minimumRingSize warns and excludes ringHash/maglev."""
        lb = self.fields(value, path, ["simple", "consistentHash"])
        if len(lb) > 1:
            self.fail(path, "must set one of simple or consistentHash")
        if "simple" in lb:
            if lb["simple"] == "PASSTHROUGH":
                self.found.append(
                    Problem(self.obj, f"{path}.simple", UNSUPPORTED, unsupported=True)
                )
            elif lb["simple"] not in LB_POLICIES:
                self.fail(
                    f"{path}.simple", f"must be one of {list(LB_POLICIES)}, got {lb['simple']!r}"
                )
        if "consistentHash" in lb:
            cpath = f"{path}.consistentHash"
            ch = self.fields(
                lb["consistentHash"], cpath, [*HASH_KEYS, "ringHash", "maglev", "minimumRingSize"]
            )
            keys = [k for k in HASH_KEYS if k in ch]
            if len(keys) > 1:
                self.fail(cpath, f"must set one hash key, got {keys}")
            for key in ("httpHeaderName", "httpQueryParameterName"):
                if key in ch:
                    self.string(ch[key], f"{cpath}.{key}")
            if "useSourceIp" in ch and not isinstance(ch["useSourceIp"], bool):
                self.fail(f"{cpath}.useSourceIp", "must be true or false")
            if "httpCookie" in ch:
                kpath = f"{cpath}.httpCookie"
                cookie = self.fields(ch["httpCookie"], kpath, ["name", "path", "ttl"])
                if not cookie.get("name"):
                    self.fail(f"{kpath}.name", "name required for HttpCookie")
                self.string(cookie["name"], f"{kpath}.name")
                if "path" in cookie:
                    self.string(cookie["path"], f"{kpath}.path", non_empty=False)
                if "ttl" in cookie:
                    self.duration(cookie["ttl"], f"{kpath}.ttl", 0)
            algorithms = [k for k in ("ringHash", "maglev") if k in ch]
            if len(algorithms) > 1:
                self.fail(cpath, "must set one of ringHash or maglev")
            if "minimumRingSize" in ch:
                self.integer(ch["minimumRingSize"], f"{cpath}.minimumRingSize", 0, 2**63 - 1)
                if algorithms:
                    self.fail(cpath, "only one of minimumRingSize or maglev/ringHash can be set")
                self.warn(f"{cpath}.minimumRingSize", "is deprecated, use ringHash instead")
            if "ringHash" in ch:
                r = self.fields(ch["ringHash"], f"{cpath}.ringHash", ["minimumRingSize"])
                if "minimumRingSize" in r:
                    self.integer(
                        r["minimumRingSize"], f"{cpath}.ringHash.minimumRingSize", 0, 2**63 - 1
                    )
            if "maglev" in ch:
                m = self.fields(ch["maglev"], f"{cpath}.maglev", ["tableSize"])
                size = self.integer(m.get("tableSize", 0), f"{cpath}.maglev.tableSize", 0, 2**63)
                if size == 0:
                    self.fail(f"{cpath}.maglev.tableSize", "tableSize must be set for maglev")
                if size >= 5000011:
                    self.fail(f"{cpath}.maglev.tableSize", "must be less than 5000011")
                if size < 2 or any(size % d == 0 for d in range(2, int(size**0.5) + 1)):
                    self.fail(f"{cpath}.maglev.tableSize", "must be a prime number for maglev")

    def subset(self, subset: Any, path: str, seen: dict[str, int], k: int) -> None:
        s = self.fields(subset, path, ["name", "labels", "trafficPolicy"], ["name"])
        name = self.string(s["name"], f"{path}.name")
        if not _DNS_LABEL.match(name):
            self.fail(f"{path}.name", f"{name!r} is not a DNS label")
        if name in seen:
            self.fail(
                f"{path}.name", f"duplicate subset {name!r} (also spec.subsets[{seen[name]}])"
            )
        seen[name] = k
        if "labels" in s:
            self.labels(s["labels"], f"{path}.labels")
        if "trafficPolicy" in s:
            self.traffic_policy(s["trafficPolicy"], f"{path}.trafficPolicy")


_SPEC_FIELDS: dict[str, tuple[list[str], Callable[[_Check, Mapping[str, Any]], None]]] = {
    "Gateway": (["selector", "servers"], _Check.gateway),
    "VirtualService": (["hosts", "gateways", "http"], _Check.virtual_service),
    "DestinationRule": (["host", "subsets", "trafficPolicy"], _Check.destination_rule),
}


def is_istio(obj: Any) -> bool:
    """Whether the object belongs to the ``networking.istio.io`` API group."""
    return isinstance(obj, Mapping) and str(obj.get("apiVersion", "")).startswith(f"{GROUP}/")


def _object_problems(i: int, obj: Any, namespace: str) -> list[Problem]:
    found = shape_problem(obj, i, namespace)
    if found is not None:
        if found.field == "kind" and isinstance(obj, Mapping) and isinstance(obj.get("kind"), str):
            # Another kind of the group (or a kind of none): the local gateway cannot serve it.
            return [Problem(ref(obj, namespace), "kind", UNSUPPORTED, unsupported=True)]
        return [found]
    where = ref(obj, namespace)
    kind = obj["kind"]
    if kind not in KINDS:
        return [Problem(where, "kind", UNSUPPORTED, unsupported=True)]
    check = _Check(where)
    allowed, spec_check = _SPEC_FIELDS[kind]
    spec = check.fields(obj["spec"], "spec", allowed)
    spec_check(check, spec)
    return check.found


# ---- cross-object checks ----------------------------------------------------------------------


def subsets_by_host(objects: Iterable[Obj], namespace: str = DEFAULT_NAMESPACE) -> dict[str, Obj]:
    """FQDN host → its DestinationRule (objects assumed valid; the first one wins)."""
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


def _reference_problems(objects: list[Obj], known: list[Obj], namespace: str) -> list[Problem]:
    """Names defined twice, hosts with two DestinationRules, gateways and subsets that a
    VirtualService names but that do not exist (among ``objects``, then ``known``)."""
    out: list[Problem] = []
    seen: set[tuple[str, str, str]] = set()
    for o in objects:
        key = (o["kind"], namespace_of(o, namespace), o["metadata"]["name"])
        if key in seen:
            out.append(Problem(ref(o, namespace), "metadata.name", "is defined twice"))
        seen.add(key)
    rules: dict[str, Obj] = {}
    for dr in (o for o in objects if o["kind"] == "DestinationRule"):
        host = normalize_host(dr["spec"]["host"], namespace_of(dr, namespace))
        if host in rules:
            out.append(
                Problem(
                    ref(dr, namespace),
                    "spec.host",
                    f"{host} is already covered by {ref(rules[host], namespace)}",
                )
            )
        rules.setdefault(host, dr)
    for host, dr in subsets_by_host(known, namespace).items():
        rules.setdefault(host, dr)
    gateways = {
        (namespace_of(g, namespace), g["metadata"]["name"])
        for g in objects
        if g["kind"] == "Gateway"
    }
    for vs in (o for o in objects if o["kind"] == "VirtualService"):
        where, ns = ref(vs, namespace), namespace_of(vs, namespace)
        for k, gw in enumerate(vs["spec"].get("gateways") or [] if gateways else []):
            gns, _, name = gw.rpartition("/")
            if gw != MESH_GATEWAY and (gns or ns, name) not in gateways:
                out.append(
                    Problem(
                        where,
                        f"spec.gateways[{k}]",
                        f"names Gateway {gns or ns}/{name}, which does not exist",
                    )
                )
        for i, route in enumerate(vs["spec"]["http"]):
            targets = [
                (f"spec.http[{i}].route[{k}].destination", d["destination"])
                for k, d in enumerate(route.get("route") or [])
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
                    out.append(
                        Problem(
                            where,
                            f"{path}.subset",
                            f"{subset!r} needs a DestinationRule for host {host}, "
                            "and there is none",
                        )
                    )
                    continue
                names = [s["name"] for s in rule["spec"].get("subsets") or []]
                if subset not in names:
                    out.append(
                        Problem(
                            where,
                            f"{path}.subset",
                            f"{subset!r} is not a subset of host {host} "
                            f"({ref(rule, namespace)} defines {names})",
                        )
                    )
    return out


# ---- entry points -----------------------------------------------------------------------------


def _is_candidate(obj: Any) -> bool:
    """Objects the Istio checks look at: Istio's API group, or claiming one of its kinds."""
    return not isinstance(obj, Mapping) or is_istio(obj) or kinds.is_istio_kind(obj.get("kind"))


def _readable(found: list[Problem]) -> bool:
    """Whether an object with these problems has the structure the cross-object checks read:
    warnings and fields the local gateway does not implement leave it intact."""
    return all(p.warning or p.unsupported for p in found)


def problems(
    objects: Iterable[Any], *, namespace: str = DEFAULT_NAMESPACE, known: Iterable[Obj] = ()
) -> list[Problem]:
    """Every problem of the Istio objects among ``objects`` (others are ignored), pure.

    ``namespace`` is assumed for objects without one; ``known`` are objects already live (say
    the DestinationRules of a cluster) that references may point at besides ``objects``.
    Cross-object checks run over the objects whose own fields are free of errors (fields the
    local gateway does not implement aside: the k8s target takes them).
    """
    out: list[Problem] = []
    clean: list[Obj] = []
    for i, obj in enumerate(objects):
        if obj is None or not _is_candidate(obj):
            continue
        found = _object_problems(i, obj, namespace)
        out += found
        if _readable(found):
            clean.append(obj)
    usable = [
        k for k in known if isinstance(k, Mapping) and _readable(_object_problems(0, k, namespace))
    ]
    out += _reference_problems(clean, usable, namespace)
    return out


def validate(objects: list[dict[str, Any]], *, namespace: str = DEFAULT_NAMESPACE) -> list[Problem]:
    """Refuse what the local gateway cannot serve as istiod would; the warnings otherwise.

    Objects of other API groups are ignored; ``namespace`` is assumed for objects without one.
    Raises the first problem that is not a warning as ``ConfigError`` (``UnsupportedFieldError``
    for a field the local gateway does not implement), naming the object and the field path.
    """
    found = problems(objects, namespace=namespace)
    for p in found:
        if not p.warning:
            raise p.error()
    return found
