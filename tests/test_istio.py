"""Istio objects, pure: validation errors name object and field, weights read, hosts."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import fixtures
import pytest
import yaml

from workbook import istio
from workbook.errors import ConfigError, UnsupportedFieldError

EVERYTHING = """
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: everything, namespace: canary-demo}
spec:
  hosts: [scoring.example.com, scoring]
  gateways: [canary-demo/scoring-gateway, mesh]
  http:
  - name: all-features
    match:
    - name: first
      uri: {prefix: /score}
      headers: {x-a: {exact: "1"}, x-b: {prefix: b}, x-c: {regex: "c[0-9]+"}, x-d: {}}
      queryParams: {q: {exact: "yes"}, r: {regex: "[a-z]+"}, s: {}}
      method: {exact: POST}
      ignoreUriCase: false
    - uri: {exact: /exact}
    - uri: {regex: "/re/[a-z]+"}
    route:
    - destination: {host: scoring, subset: stable}
      weight: 50
    - destination: {host: scoring, subset: canary}
      weight: 50
    mirror: {host: scoring, subset: canary, port: {number: 80}}
    mirrorPercentage: {value: 12.5}
    fault:
      abort: {httpStatus: 503, percentage: {value: 0.5}}
      delay: {fixedDelay: 1.5s, percentage: {value: 100}}
    timeout: 1m
    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,503,reset"}
    headers:
      request: {set: {x-set: a}, add: {x-add: b}, remove: [x-remove]}
      response: {set: {X-Resp: c}, add: {x-resp-add: d}, remove: [server]}
"""

VS = "VirtualService canary-demo/scoring"
DR = "DestinationRule canary-demo/scoring"
GW = "Gateway canary-demo/scoring-gateway"


def objects() -> list[dict[str, Any]]:
    """The chart's Istio objects at canary weight 10, the DestinationRule with a load balancer."""
    objs = fixtures.istio_objects(canary_weight=10)
    dr = fixtures.of_kind(objs, "DestinationRule")
    dr["spec"]["trafficPolicy"] = {"loadBalancer": {"simple": "ROUND_ROBIN"}}
    return objs


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == kind)


def vs_of(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(objs, "VirtualService")


def http(objs: list[dict[str, Any]], i: int) -> dict[str, Any]:
    return vs_of(objs)["spec"]["http"][i]


def match0(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return http(objs, 0)["match"][0]


Mutation = Callable[[list[dict[str, Any]]], Any]


def _set(
    getter: Callable[[list[dict[str, Any]]], dict[str, Any]], key: str, value: Any
) -> Mutation:
    return lambda objs: getter(objs).__setitem__(key, value)


def _del(getter: Callable[[list[dict[str, Any]]], dict[str, Any]], key: str) -> Mutation:
    return lambda objs: getter(objs).pop(key)


def dest(i: int, k: int) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    return lambda objs: http(objs, i)["route"][k]


def spec(kind: str) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    return lambda objs: by_kind(objs, kind)["spec"]


def subsets(objs: list[dict[str, Any]]) -> Any:
    return by_kind(objs, "DestinationRule")["spec"]["subsets"]


# (id, mutation, object ref, field path, needle in the message, unsupported?)
BAD: list[tuple[str, Mutation, str, str, str, bool]] = [
    ("weight-negative", _set(dest(2, 1), "weight", -1), VS, "spec.http[2].route[1].weight",
     "got -1", False),
    ("weight-float", _set(dest(2, 0), "weight", 12.5), VS, "spec.http[2].route[0].weight",
     "must be an integer, got 12.5", False),
    ("weights-all-zero", lambda o: [d.__setitem__("weight", 0) for d in http(o, 2)["route"]], VS,
     "spec.http[2].route", "total destination weight = 0", False),
    ("weight-bool", _set(dest(2, 0), "weight", True), VS, "spec.http[2].route[0].weight",
     "got True", False),
    ("weight-string", _set(dest(2, 0), "weight", "90"), VS, "spec.http[2].route[0].weight",
     "got '90'", False),
    ("redirect-and-route", _set(lambda o: http(o, 0), "redirect", {"uri": "/x"}), VS,
     "spec.http[0].route", "cannot contain both route and redirect", False),
    ("redirect-empty", lambda o: (http(o, 0).pop("route"), http(o, 0).__setitem__("redirect", {})),
     VS, "spec.http[0].redirect", "must specify uri, authority, scheme, or port", False),
    ("redirect-code", lambda o: (http(o, 0).pop("route"), http(o, 0).__setitem__(
        "redirect", {"uri": "/x", "redirectCode": 304})), VS, "spec.http[0].redirect.redirectCode",
     "istiod cannot translate", False),
    ("redirect-scheme", lambda o: (http(o, 0).pop("route"), http(o, 0).__setitem__(
        "redirect", {"scheme": "ftp"})), VS, "spec.http[0].redirect.scheme", "http", False),
    ("cors-method", _set(lambda o: http(o, 0), "corsPolicy", {"allowMethods": ["FETCH"]}), VS,
     "spec.http[0].corsPolicy.allowMethods[0]", "not a supported HTTP method", False),
    ("cors-max-age", _set(lambda o: http(o, 0), "corsPolicy", {"maxAge": "1500ms"}), VS,
     "spec.http[0].corsPolicy.maxAge", "seconds precision", False),
    ("cors-origin-empty", _set(lambda o: http(o, 0), "corsPolicy",
     {"allowOrigins": [{"exact": "a"}, {}]}), VS, "spec.http[0].corsPolicy.allowOrigins[1]",
     "must set one of exact, prefix or regex", False),
    ("delegate", _set(lambda o: http(o, 0), "delegate", {}), VS, "spec.http[0].delegate", "", True),
    ("mirrors", _set(lambda o: http(o, 0), "mirrors", []), VS, "spec.http[0].mirrors", "", True),
    ("tcp", _set(spec("VirtualService"), "tcp", []), VS, "spec.tcp", "", True),
    ("tls", _set(spec("VirtualService"), "tls", []), VS, "spec.tls", "", True),
    ("export-to", _set(spec("VirtualService"), "exportTo", ["."]), VS, "spec.exportTo", "", True),
    ("source-labels", _set(match0, "sourceLabels", {"a": "b"}), VS,
     "spec.http[0].match[0].sourceLabels", "", True),
    ("abort-grpc", _set(lambda o: http(o, 0), "fault", {"abort": {"grpcStatus": "UNAVAILABLE"}}),
     VS, "spec.http[0].fault.abort.grpcStatus", "", True),
    ("retry-localities", _set(lambda o: http(o, 0)["retries"], "retryRemoteLocalities", True), VS,
     "spec.http[0].retries.retryRemoteLocalities", "", True),
    ("dr-subset-policy-empty", lambda o: subsets(o)[0].__setitem__("trafficPolicy", {}), DR,
     "spec.subsets[0].trafficPolicy", "traffic policy must have at least one field", False),
    ("dr-subset-pool", lambda o: subsets(o)[0].__setitem__("trafficPolicy",
     {"connectionPool": {}}), DR, "spec.subsets[0].trafficPolicy.connectionPool", "", True),
    ("outlier-local-origin", _set(lambda o: spec("DestinationRule")(o)["trafficPolicy"],
     "outlierDetection", {"consecutiveLocalOriginFailures": 3}), DR,
     "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
     "splitExternalLocalOriginErrors is false", False),
    ("outlier-interval", _set(lambda o: spec("DestinationRule")(o)["trafficPolicy"],
     "outlierDetection", {"interval": "0s"}), DR, "spec.trafficPolicy.outlierDetection.interval",
     "at least 1ms", False),
    ("outlier-percent", _set(lambda o: spec("DestinationRule")(o)["trafficPolicy"],
     "outlierDetection", {"maxEjectionPercent": 101}), DR,
     "spec.trafficPolicy.outlierDetection.maxEjectionPercent", "must be 0..100", False),
    ("lb-simple-and-hash", _set(lambda o: spec("DestinationRule")(o)["trafficPolicy"],
     "loadBalancer", {"simple": "RANDOM", "consistentHash": {"useSourceIp": True}}), DR,
     "spec.trafficPolicy.loadBalancer", "one of simple or consistentHash", False),
    ("lb-passthrough", _set(lambda o: spec("DestinationRule")(o)["trafficPolicy"],
     "loadBalancer", {"simple": "PASSTHROUGH"}), DR, "spec.trafficPolicy.loadBalancer.simple",
     "", True),
    ("hash-cookie-name", _set(lambda o: spec("DestinationRule")(o)["trafficPolicy"],
     "loadBalancer", {"consistentHash": {"httpCookie": {"ttl": "0s"}}}), DR,
     "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name",
     "name required for HttpCookie", False),
    ("hash-two-keys", _set(lambda o: spec("DestinationRule")(o)["trafficPolicy"],
     "loadBalancer", {"consistentHash": {"httpHeaderName": "x", "useSourceIp": True}}), DR,
     "spec.trafficPolicy.loadBalancer.consistentHash", "one hash key", False),
    ("maglev-not-prime", _set(lambda o: spec("DestinationRule")(o)["trafficPolicy"],
     "loadBalancer", {"consistentHash": {"useSourceIp": True, "maglev": {"tableSize": 1000}}}),
     DR, "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
     "must be a prime number", False),
    ("ring-size-twice", _set(lambda o: spec("DestinationRule")(o)["trafficPolicy"],
     "loadBalancer", {"consistentHash": {"minimumRingSize": 8, "ringHash": {}}}), DR,
     "spec.trafficPolicy.loadBalancer.consistentHash", "only one of minimumRingSize", False),
    ("dr-connection-pool", _set(lambda o: spec("DestinationRule")(o)["trafficPolicy"],
     "connectionPool", {}), DR, "spec.trafficPolicy.connectionPool", "", True),
    ("dr-export-to", _set(spec("DestinationRule"), "exportTo", ["."]), DR, "spec.exportTo", "",
     True),
    ("gw-tls", lambda o: spec("Gateway")(o)["servers"][0].__setitem__("tls", {}), GW,
     "spec.servers[0].tls", "", True),
    ("gw-https",
     lambda o: spec("Gateway")(o)["servers"][0]["port"].__setitem__("protocol", "HTTPS"), GW,
     "spec.servers[0].port.protocol", "must be HTTP", False),
    ("header-not-token", _set(match0, "headers", {"x model": {"exact": "a"}}), VS,
     "spec.http[0].match[0].headers", "not a valid HTTP header name", False),
    ("header-two-kinds", _set(match0, "headers", {"x-a": {"exact": "a", "prefix": "b"}}), VS,
     "spec.http[0].match[0].headers.x-a", "exactly one of exact, prefix or regex", False),
    ("header-unknown-kind", _set(match0, "headers", {"x-a": {"suffix": "a"}}), VS,
     "spec.http[0].match[0].headers.x-a.suffix", "", True),
    ("uri-empty", _set(match0, "uri", {}), VS, "spec.http[0].match[0].uri",
     "must set one of exact, prefix or regex", False),
    ("header-empty-prefix", _set(match0, "headers", {"x-a": {"prefix": ""}}), VS,
     "spec.http[0].match[0].headers.x-a.prefix", "must not be empty", False),
    ("regex-empty", _set(match0, "uri", {"regex": ""}), VS, "spec.http[0].match[0].uri.regex",
     "must not be empty", False),
    ("regex-too-long", _set(match0, "uri", {"regex": "a" * 1025}), VS,
     "spec.http[0].match[0].uri.regex", "max length allowed is 1024", False),
    ("regex-backreference", _set(match0, "uri", {"regex": "/(a)\\1"}), VS,
     "spec.http[0].match[0].uri.regex", "invalid escape sequence", False),
    ("regex-python-only", _set(match0, "uri", {"regex": "/score\\Z"}), VS,
     "spec.http[0].match[0].uri.regex", "not a valid RE2 regex", False),
    ("regex-broken", _set(match0, "uri", {"regex": "/a(["}), VS, "spec.http[0].match[0].uri.regex",
     "not a valid RE2 regex", False),
    ("regex-lookahead", _set(match0, "uri", {"regex": "/(?!admin).*"}), VS,
     "spec.http[0].match[0].uri.regex", "RE2", False),
    ("method-number", _set(match0, "method", {"exact": 5}), VS,
     "spec.http[0].match[0].method.exact", "must be a string", False),
    ("timeout-number", _set(lambda o: http(o, 0), "timeout", 10), VS, "spec.http[0].timeout",
     "must be a duration string", False),
    ("timeout-words", _set(lambda o: http(o, 0), "timeout", "ten seconds"), VS,
     "spec.http[0].timeout", "'ten seconds'", False),
    ("timeout-microseconds", _set(lambda o: http(o, 0), "timeout", "1.0005s"), VS,
     "spec.http[0].timeout", "millisecond precision", False),
    ("per-try-zero", _set(lambda o: http(o, 0)["retries"], "perTryTimeout", "0s"), VS,
     "spec.http[0].retries.perTryTimeout", "at least 1ms", False),
    ("attempts-missing", _del(lambda o: http(o, 0)["retries"], "attempts"), VS,
     "spec.http[0].retries.attempts", "is 0 (retries disabled)", False),
    ("attempts-zero-retry-on", _set(lambda o: http(o, 0), "retries",
     {"attempts": 0, "retryOn": "5xx"}), VS, "spec.http[0].retries.attempts", "retry policy",
     False),
    ("retry-on-unknown", _set(lambda o: http(o, 0)["retries"], "retryOn", "5xx,sometimes"), VS,
     "spec.http[0].retries.retryOn", "'sometimes' is not a valid retryOn policy", False),
    ("retry-on-space", _set(lambda o: http(o, 0)["retries"], "retryOn", "5xx, reset"), VS,
     "spec.http[0].retries.retryOn", "' reset' is not a valid retryOn policy", False),
    ("retry-on-trailing-comma", _set(lambda o: http(o, 0)["retries"], "retryOn", "5xx,"), VS,
     "spec.http[0].retries.retryOn", "'' is not a valid retryOn policy", False),
    ("retry-on-unknown-code", _set(lambda o: http(o, 0)["retries"], "retryOn", "599"), VS,
     "spec.http[0].retries.retryOn", "'599' is not a valid retryOn policy", False),
    ("timeout-zero", _set(lambda o: http(o, 0), "timeout", "0s"), VS, "spec.http[0].timeout",
     "must be at least 1ms", False),
    ("abort-percent-tiny", _set(lambda o: http(o, 0), "fault",
     {"abort": {"httpStatus": 503, "percentage": {"value": 0.00001}}}), VS,
     "spec.http[0].fault.abort.percentage.value", "0.0001..100", False),
    ("mesh-wildcard", _set(spec("VirtualService"), "gateways", ["mesh"]), VS, "spec.hosts[0]",
     "wildcard host * is not allowed for virtual services bound to the mesh gateway", False),
    ("mesh-wildcard-no-gateways", _del(spec("VirtualService"), "gateways"), VS, "spec.hosts[0]",
     "wildcard host *", False),
    ("duplicate-hosts", _set(spec("VirtualService"), "hosts", ["*.example.com", "a.example.com"]),
     VS, "spec.hosts", "duplicate hosts in virtual service", False),
    ("destination-wildcard", lambda o: dest(2, 0)(o)["destination"].__setitem__("host", "*"), VS,
     "spec.http[2].route[0].destination.host", "invalid destination host *", False),
    ("header-op-pseudo", _set(lambda o: http(o, 0), "headers",
     {"request": {"set": {":path": "/"}}}), VS, "spec.http[0].headers.request.set",
     "cannot have a ':' prefix", False),
    ("authority-twice", _set(lambda o: http(o, 0), "headers",
     {"request": {"set": {"host": "a"}, "add": {":authority": "b"}}}), VS,
     "spec.http[0].headers.request.add.:authority", "authority header cannot be set", False),
    ("direct-response-and-route", _set(lambda o: http(o, 0), "directResponse", {"status": 503}),
     VS, "spec.http[0].route", "cannot contain both route and directResponse", False),
    ("direct-response-status", lambda o: (http(o, 0).pop("route"), http(o, 0).__setitem__(
        "directResponse", {"status": 99})), VS, "spec.http[0].directResponse.status",
     "must be 200..599, got 99", False),
    ("direct-response-bytes", lambda o: (http(o, 0).pop("route"), http(o, 0).__setitem__(
        "directResponse", {"status": 200, "body": {"bytes": "not base64!"}})), VS,
     "spec.http[0].directResponse.body.bytes", "must be base64", False),
    ("rewrite-empty", _set(lambda o: http(o, 0), "rewrite", {}), VS, "spec.http[0].rewrite",
     "at least one of uri, uriRegexRewrite or authority", False),
    ("rewrite-both", _set(lambda o: http(o, 0), "rewrite",
     {"uri": "/a", "uriRegexRewrite": {"match": "a", "rewrite": "b"}}), VS,
     "spec.http[0].rewrite", "only contain one of uri or uriRegexRewrite", False),
    ("rewrite-authority-twice", lambda o: http(o, 0).update(rewrite={"authority": "a"},
     headers={"request": {"set": {"host": "b"}}}), VS, "spec.http[0].headers.request",
     "authority header cannot be set multiple times", False),
    ("match-authority-empty-prefix", _set(match0, "authority", {"prefix": ""}), VS,
     "spec.http[0].match[0].authority.prefix", "must not be empty", False),
    ("dr-tls-simple", _set(lambda o: spec("DestinationRule")(o)["trafficPolicy"], "tls",
     {"mode": "SIMPLE"}), DR, "spec.trafficPolicy.tls.mode", "", True),
    ("destination-header-pseudo", _set(dest(2, 1), "headers",
     {"response": {"set": {":status": "200"}}}), VS, "spec.http[2].route[1].headers.response.set",
     "cannot have a ':' prefix", False),
    ("gw-port-name", lambda o: spec("Gateway")(o)["servers"][0]["port"].pop("name"), GW,
     "spec.servers[0].port.name", "is required", False),
    ("gw-port-names-unique", lambda o: spec("Gateway")(o)["servers"].append(
        copy.deepcopy(spec("Gateway")(o)["servers"][0])), GW, "spec.servers[1].port.name",
     "port names in servers must be unique", False),
    ("fault-empty", _set(lambda o: http(o, 0), "fault", {}), VS, "spec.http[0].fault",
     "must have an abort and/or a delay", False),
    ("abort-status", _set(lambda o: http(o, 0), "fault", {"abort": {"httpStatus": 99}}), VS,
     "spec.http[0].fault.abort.httpStatus", "must be 200..599, got 99", False),
    ("abort-percent", _set(lambda o: http(o, 0), "fault",
     {"abort": {"httpStatus": 503, "percentage": {"value": 101}}}), VS,
     "spec.http[0].fault.abort.percentage.value", "must be 0 or in 0.0001..100, got 101", False),
    ("mirror-percent-string", lambda o: http(o, 2).update(
        mirror={"host": "scoring", "subset": "canary"}, mirrorPercentage={"value": "5"}), VS,
     "spec.http[2].mirrorPercentage.value", "must be a number 0..100", False),
    ("mirror-percent-alone", _set(lambda o: http(o, 2), "mirrorPercentage", {"value": 5}), VS,
     "spec.http[2].mirrorPercentage", "needs mirror", False),
    ("mirror-unknown-subset", _set(lambda o: http(o, 2), "mirror", {"host": "scoring",
     "subset": "shadow"}), VS, "spec.http[2].mirror.subset", "'shadow' is not a subset", False),
    ("unknown-subset", lambda o: dest(2, 1)(o)["destination"].__setitem__("subset", "shadow"), VS,
     "spec.http[2].route[1].destination.subset",
     "'shadow' is not a subset of host scoring.canary-demo.svc.cluster.local", False),
    ("subset-without-rule", lambda o: dest(2, 1)(o)["destination"].__setitem__("host", "other"),
     VS, "spec.http[2].route[1].destination.subset",
     "needs a DestinationRule for host other.canary-demo.svc.cluster.local", False),
    ("duplicate-subset", lambda o: subsets(o).append({"name": "stable", "labels": {}}), DR,
     "spec.subsets[2].name", "duplicate subset 'stable'", False),
    ("subset-not-dns", lambda o: subsets(o)[0].__setitem__("name", "Stable_1"), DR,
     "spec.subsets[0].name", "not a DNS label", False),
    ("lb-unknown", _set(lambda o: spec("DestinationRule")(o)["trafficPolicy"], "loadBalancer",
     {"simple": "FASTEST"}), DR, "spec.trafficPolicy.loadBalancer.simple", "FASTEST", False),
    ("missing-gateway", _set(spec("VirtualService"), "gateways", ["nope"]), VS, "spec.gateways[0]",
     "names Gateway canary-demo/nope, which does not exist", False),
    ("gateway-other-namespace", _set(spec("VirtualService"), "gateways",
     ["istio-system/scoring-gateway"]), VS, "spec.gateways[0]",
     "istio-system/scoring-gateway", False),
    ("route-names-twice", _set(lambda o: http(o, 1), "name", "pin-canary"), VS,
     "spec.http[1].name", "already the name of spec.http[0]", False),
    ("route-missing", _del(lambda o: http(o, 0), "route"), VS, "spec.http[0].route",
     "is required", False),
    ("route-empty", _set(lambda o: http(o, 0), "route", []), VS, "spec.http[0].route",
     "must not be empty", False),
    ("http-missing", _del(spec("VirtualService"), "http"), VS, "spec.http", "is required", False),
    ("hosts-missing", _del(spec("VirtualService"), "hosts"), VS, "spec.hosts", "is required",
     False),
    ("header-op-value", _set(lambda o: http(o, 0), "headers", {"request": {"set": {"x-a": True}}}),
     VS, "spec.http[0].headers.request.set.x-a", "must be a string", False),
    ("header-op-remove-host", _set(lambda o: http(o, 0), "headers",
     {"request": {"remove": ["host"]}}), VS, "spec.http[0].headers.request.remove[0]",
     "the Host header cannot be changed", False),
    ("port-zero", lambda o: dest(0, 0)(o)["destination"].__setitem__("port", {"number": 0}), VS,
     "spec.http[0].route[0].destination.port.number", "must be 1..65535, got 0", False),
    ("dr-same-host", lambda o: o.append({**copy.deepcopy(by_kind(o, "DestinationRule")),
     "metadata": {"name": "again", "namespace": "canary-demo"}, "spec": {"host": "scoring"}}),
     "DestinationRule canary-demo/again", "spec.host",
     "scoring.canary-demo.svc.cluster.local is already covered by " + DR, False),
    ("defined-twice", lambda o: o.append(copy.deepcopy(vs_of(o))), VS, "metadata.name",
     "is defined twice", False),
    ("no-name", lambda o: vs_of(o)["metadata"].pop("name"), "document 2 (VirtualService)",
     "metadata.name", "is required", False),
    ("api-version", _set(vs_of, "apiVersion", "networking.istio.io/v2"), VS, "apiVersion",
     "networking.istio.io/v1", False),
    ("service-entry", lambda o: o.append({"apiVersion": "networking.istio.io/v1",
     "kind": "ServiceEntry", "metadata": {"name": "ext"}, "spec": {}}), "ServiceEntry default/ext",
     "kind",
     "", True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "obj", "field", "needle", "unsupported"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD],
)
def test_bad_input_names_object_and_field(
    mutate: Mutation, obj: str, field: str, needle: str, unsupported: bool
) -> None:
    objs = objects()
    mutate(objs)
    with pytest.raises(ConfigError) as err:
        istio.validate(objs)
    assert (err.value.obj, err.value.field) == (obj, field), str(err.value)
    assert str(err.value).startswith(f"{obj}: {field} ")
    assert needle in str(err.value)
    assert isinstance(err.value, UnsupportedFieldError) is unsupported
    if unsupported:
        assert "not supported by the local gateway" in str(err.value)


def test_valid_objects_pass() -> None:
    istio.validate(objects())


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_every_supported_field_passes(version: str) -> None:
    vs = yaml.safe_load(EVERYTHING)
    vs["apiVersion"] = f"networking.istio.io/{version}"
    istio.validate([*objects(), vs])


def test_other_api_groups_are_ignored() -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "scoring"}, "spec": {}}
    istio.validate([svc, None, *objects()])  # type: ignore[list-item]


def test_gateway_names_checked_only_when_gateways_are_given() -> None:
    objs = [o for o in objects() if o["kind"] != "Gateway"]
    vs_of(objs)["spec"]["gateways"] = ["nope"]
    istio.validate(objs)


def test_short_hosts_resolve_in_the_rule_namespace() -> None:
    objs = objects()
    by_kind(objs, "DestinationRule")["spec"]["host"] = "scoring"
    for route in vs_of(objs)["spec"]["http"]:
        for d in route["route"]:
            d["destination"]["host"] = "scoring"
    istio.validate(objs)
    # The same short name in another namespace is another host.
    by_kind(objs, "DestinationRule")["metadata"]["namespace"] = "elsewhere"
    with pytest.raises(ConfigError, match=r"needs a DestinationRule for host scoring\.canary-demo"):
        istio.validate(objs)


def test_objects_without_namespace_use_the_given_one() -> None:
    objs = objects()
    for o in objs:
        del o["metadata"]["namespace"]
    by_kind(objs, "DestinationRule")["spec"]["host"] = "scoring"
    istio.validate(objs, namespace="canary-demo")
    with pytest.raises(ConfigError, match=r"needs a DestinationRule for host scoring\.canary-demo"):
        istio.validate(objs, namespace="other")


def test_single_destination_weight_is_not_summed() -> None:
    objs = objects()
    dest(0, 0)(objs)["weight"] = 30
    istio.validate(objs)
    assert istio.route_weights(vs_of(objs))["pin-canary"] == {"canary": 100}


@pytest.mark.parametrize(
    ("host", "namespace", "fqdn"),
    [
        ("scoring", "canary-demo", "scoring.canary-demo.svc.cluster.local"),
        ("scoring", "ns", "scoring.ns.svc.cluster.local"),
        ("scoring.canary-demo.svc.cluster.local", "other", "scoring.canary-demo.svc.cluster.local"),
        ("scoring.example.com", "ns", "scoring.example.com"),
        ("*", "ns", "*"),
        ("*.example.com", "ns", "*.example.com"),
    ],
)
def test_normalize_host(host: str, namespace: str, fqdn: str) -> None:
    assert istio.normalize_host(host, namespace) == fqdn


@pytest.mark.parametrize(
    ("text", "ns"),
    [("10s", 10 * 10**9), ("500ms", 5 * 10**8), ("1.5s", 15 * 10**8), ("1m", 60 * 10**9),
     ("1h", 3600 * 10**9), ("1m30s", 90 * 10**9), ("0s", 0)],
)  # fmt: skip
def test_parse_duration(text: str, ns: int) -> None:
    assert istio.parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "10", "s", "-1s", "1 s", "1d", "1.s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        istio.parse_duration(text)


@pytest.mark.parametrize(
    ("retry_on", "conditions", "codes"),
    [
        ("5xx,reset", "5xx,reset", []),
        ("503,connect-failure", "connect-failure,retriable-status-codes", [503]),
        ("retriable-status-codes, 502 ,504", "retriable-status-codes", [502, 504]),
    ],
)
def test_parse_retry_on(retry_on: str, conditions: str, codes: list[int]) -> None:
    assert istio.parse_retry_on(retry_on) == (conditions, codes)


def test_ref() -> None:
    assert istio.ref(vs_of(objects())) == VS
    assert istio.ref({"kind": "Gateway", "metadata": {"name": "gw"}}) == "Gateway gw"


# ---- weights ----------------------------------------------------------------------------------


def test_route_weights() -> None:
    assert istio.route_weights(vs_of(objects())) == {
        "pin-canary": {"canary": 100},
        "pin-stable": {"stable": 100},
        "weighted": {"stable": 90, "canary": 10},
    }


def test_route_weights_of_unnamed_routes_and_hosts_without_subsets() -> None:
    vs = {
        "kind": "VirtualService",
        "spec": {
            "http": [
                {"route": [{"destination": {"host": "a"}}]},
                {"route": [{"destination": {"host": "a"}, "weight": 25},
                           {"destination": {"host": "b"}, "weight": 75}]},
            ]
        },
    }  # fmt: skip
    assert istio.route_weights(vs) == {"http[0]": {"a": 100}, "http[1]": {"a": 25, "b": 75}}


# ---- problems as data -------------------------------------------------------------------------


def test_problems_are_data_and_validate_raises_the_first() -> None:
    objs = objects()
    dest(2, 0)(objs)["weight"] = -5
    http(objs, 0)["mirrors"] = []
    subsets(objs)[0]["name"] = "Stable_1"
    found = istio.problems(objs, namespace="canary-demo")
    assert [(p.object, p.field, p.unsupported) for p in found] == [
        (DR, "spec.subsets[0].name", False),
        (VS, "spec.http[0].mirrors", True),
        (VS, "spec.http[2].route[0].weight", False),
    ]
    assert str(found[2]) == f"{VS}: spec.http[2].route[0].weight must not be negative, got -5"
    with pytest.raises(ConfigError) as err:
        istio.validate(objs, namespace="canary-demo")
    assert str(err.value) == str(found[0])


def test_unsupported_field_does_not_hide_other_problems_of_its_route() -> None:
    objs = objects()
    http(objs, 2)["mirrors"] = []
    dest(2, 1)(objs)["weight"] = -1
    assert [p.field for p in istio.problems(objs)] == [
        "spec.http[2].mirrors",
        "spec.http[2].route[1].weight",
    ]


def test_known_objects_resolve_subsets() -> None:
    objs = objects()
    dr = by_kind(objs, "DestinationRule")
    rest = [o for o in objs if o is not dr]
    assert any("needs a DestinationRule" in p.message for p in istio.problems(rest))
    assert istio.problems(rest, known=[dr]) == []


def test_unreachable_route_is_a_warning() -> None:
    """istiod warns, it does not refuse (pkg/config/validation/validation.go,
    ``analyzeUnreachableHTTPRules``: "only the last rule can have no matches")."""
    objs = objects()
    spec_http = vs_of(objs)["spec"]["http"]
    spec_http.append(spec_http.pop(0))
    (warning,) = istio.validate(objs)
    assert warning.warning and warning.field == "spec.http[2]"
    assert "weighted" in warning.message


# ---- what istiod accepts, the local gateway accepts ----------------------------------------------


def direct_response(route: dict[str, Any]) -> None:
    del route["route"]
    route["directResponse"] = {"status": 503, "body": {"string": "down"}}


# (id, mutation, cited source in istio/istio 1.27 or istio/api)
ACCEPTED: list[tuple[str, Mutation, str]] = [
    ("weights-not-100", lambda o: (_set(dest(2, 0), "weight", 150)(o), _set(dest(2, 1), "weight",
     50)(o)), "validation.go validateHTTPRouteDestinations; virtual_service.proto weight/sum"),
    ("one-weight-zero", _set(dest(2, 0), "weight", 0), "validation.go validateWeight"),
    ("ignore-uri-case", _set(match0, "ignoreUriCase", True), "route.go TranslateRouteMatch"),
    ("query-prefix", _set(match0, "queryParams", {"q": {"prefix": "a"}}),
     "virtual_service.proto HTTPMatchRequest.query_params; route.go translateQueryParamMatch"),
    ("header-uppercase", _set(match0, "headers", {"X-Model-Version": {"exact": "a"}}),
     "validation.go ValidateHTTPHeaderNameOrJwtClaimRoute"),
    ("pseudo-header", _set(match0, "headers", {":path": {"prefix": "/"}}),
     "validation.go pseudoHeaders"),
    ("uri-empty-prefix", _set(match0, "uri", {"prefix": ""}),
     "virtualservice.go validateHTTPRouteMatchRequest (uri allows an empty prefix)"),
    ("match-empty", lambda o: http(o, 0).__setitem__("match", [{}]),
     "route.go TranslateRouteMatch (no condition: prefix /)"),
    ("regex-unicode-class", _set(match0, "uri", {"regex": "/\\p{L}+"}),
     "validation.go validateStringRegexp (RE2 syntax)"),
    ("regex-end-of-text", _set(match0, "uri", {"regex": "/score\\z"}),
     "validation.go validateStringRegexp (RE2 syntax)"),
    ("header-regex-star", _set(match0, "headers", {"x-a": {"regex": "*"}}),
     "route.go canBeConvertedToPresentMatch"),
    ("retries-empty", _set(lambda o: http(o, 0), "retries", {}), "retry.go ConvertPolicy"),
    ("retries-attempts-only", _set(lambda o: http(o, 0), "retries", {"attempts": 3}),
     "retry.go ConvertPolicy"),
    ("retry-on-status", _set(lambda o: http(o, 0)["retries"], "retryOn", "503,gateway-error"),
     "validation.go validateHTTPRetry"),
    ("set-host", _set(lambda o: http(o, 0), "headers", {"request": {"set": {"Host": "a.b"}}}),
     "route.go TranslateHeadersOperations (authority rewrite)"),
    ("rewrite-uri", _set(lambda o: http(o, 0), "rewrite", {"uri": "/v2"}),
     "validation.go validateHTTPRewrite; route.go applyHTTPRouteDestination"),
    ("rewrite-regex", _set(lambda o: http(o, 0), "rewrite",
     {"uriRegexRewrite": {"match": "^/a/(.*)", "rewrite": "/b/\\1"}}),
     "validation.go validateURIRegexRewrite"),
    ("without-headers", _set(match0, "withoutHeaders", {"x-beta": {"exact": "1"}}),
     "route.go TranslateRouteMatch (invert_match)"),
    ("match-authority", _set(match0, "authority", {"prefix": "scoring."}),
     "virtualservice.go validateHTTPRouteMatchRequest"),
    ("direct-response", lambda o: direct_response(http(o, 0)),
     "validation.go validateHTTPDirectResponse; route.go ApplyDirectResponse"),
    ("dr-tls-istio-mutual", _set(lambda o: spec("DestinationRule")(o)["trafficPolicy"], "tls",
     {"mode": "ISTIO_MUTUAL"}), "no sidecars locally: plain HTTP to the pods"),
    ("lb-least-conn", _set(lambda o: spec("DestinationRule")(o)["trafficPolicy"], "loadBalancer",
     {"simple": "LEAST_CONN"}), "cluster_traffic_policy.go applyLoadBalancer"),
    ("hash-cookie", _set(lambda o: spec("DestinationRule")(o)["trafficPolicy"], "loadBalancer",
     {"consistentHash": {"httpCookie": {"name": "user", "ttl": "0s"}}}),
     "validation.go validateLoadBalancer"),
    ("subset-hash", lambda o: subsets(o)[1].__setitem__("trafficPolicy", {"loadBalancer": {
     "consistentHash": {"httpHeaderName": "x-user", "maglev": {"tableSize": 65537}}}}),
     "validation.go validateSubset / validateLoadBalancer"),
    ("destination-headers", _set(dest(2, 1), "headers", {"request": {"set": {"x-canary": "1"}}}),
     "validation.go validateHTTPRouteDestinations; route.go processWeightedDestination"),
    ("redirect", lambda o: (http(o, 0).pop("route"), http(o, 0).__setitem__("redirect", {
     "uri": "/v2", "authority": "a.example.com", "derivePort": "FROM_REQUEST_PORT",
     "redirectCode": 307})), "validation.go validateHTTPRedirect"),
    ("cors", _set(lambda o: http(o, 0), "corsPolicy", {
     "allowOrigins": [{"exact": "https://a.example.com"}, {"regex": "https://.*\\.b\\.com"}],
     "allowMethods": ["GET", "POST"], "allowHeaders": ["x-a"], "maxAge": "24h",
     "allowCredentials": True}), "validation.go validateCORSPolicy"),
    ("outlier-detection", _set(lambda o: spec("DestinationRule")(o)["trafficPolicy"],
     "outlierDetection", {"consecutive5xxErrors": 1, "interval": "1s", "baseEjectionTime": "30s",
                          "maxEjectionPercent": 100}), "validation.go validateOutlierDetection"),
    ("mirror-zero", lambda o: http(o, 2).update(mirror={"host": "scoring", "subset": "canary"},
     mirrorPercentage={"value": 0}), "route.go MirrorPercent"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "source"), [pytest.param(*case[1:], id=case[0]) for case in ACCEPTED]
)
def test_accepted_as_istiod_accepts(mutate: Mutation, source: str) -> None:
    objs = objects()
    mutate(objs)
    assert [p for p in istio.validate(objs) if not p.warning] == [], source


@pytest.mark.parametrize(
    ("fault", "field"),
    [({"abort": {"percentage": {"value": 50}}}, "spec.http[0].fault.abort"),
     ({"delay": {"percentage": {"value": 50}}}, "spec.http[0].fault.delay")],
)  # fmt: skip
def test_fault_without_its_kind_is_a_warning(fault: dict[str, Any], field: str) -> None:
    """validation.go validateHTTPFaultInjectionAbort warns; route.go TranslateFault drops it."""
    objs = objects()
    http(objs, 0)["fault"] = fault
    (warning,) = istio.validate(objs)
    assert (warning.warning, warning.field) == (True, field)


def test_reference_version() -> None:
    assert istio.ISTIO_VERSION == "1.27"
