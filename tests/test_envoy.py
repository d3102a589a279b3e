"""Istio objects → Envoy resources, pure: golden CDS/RDS documents and per-feature translation.

The goldens translate the chart's own render (tests/fixtures.py); a change to the chart or the
translator shows up as a diff. ``UPDATE_GOLDEN=1 pytest tests/test_envoy.py`` rewrites
``tests/golden/envoy/*.yaml``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import fixtures
import pytest
import yaml

from workbook import envoy
from workbook.envoy import Endpoint
from workbook.errors import ConfigError

GOLDEN = Path(__file__).parent / "golden" / "envoy"
NS = "canary-demo"
HOST = "scoring.canary-demo.svc.cluster.local"
STABLE = f"outbound|80|stable|{HOST}"
CANARY = f"outbound|80|canary|{HOST}"
BASE = f"outbound|80||{HOST}"

ENDPOINTS = fixtures.endpoints({"stable": 18001, "canary": 18002})


def chart_objects(canary_weight: int = 0) -> list[dict[str, Any]]:
    """The chart's objects (Service, Deployments, Gateway, DR, VS) at a canary weight."""
    return fixtures.chart_objects(canary_weight=canary_weight)


def kind(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == name)


def vs_with(*http: dict[str, Any], **spec: Any) -> list[dict[str, Any]]:
    """Chart objects whose VirtualService has the given http routes (and spec fields)."""
    docs = chart_objects()
    kind(docs, "VirtualService")["spec"].update(http=list(http), **spec)
    return docs


def to(subset: str, weight: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"destination": {"host": "scoring", "subset": subset}}
    if weight is not None:
        d["weight"] = weight
    return d


def routes_of(docs: list[dict[str, Any]], endpoints: list[Endpoint] = ENDPOINTS) -> list[Any]:
    config = envoy.translate(docs, endpoints, namespace=NS)
    (vhost,) = config.routes["virtual_hosts"]
    return list(vhost["routes"])


def clusters_of(config: envoy.EnvoyConfig) -> dict[str, list[tuple[str, int]]]:
    out = {}
    for c in config.clusters:
        eps = c["load_assignment"]["endpoints"][0]["lb_endpoints"]
        out[c["name"]] = [
            (e["endpoint"]["address"]["socket_address"]["address"],
             e["endpoint"]["address"]["socket_address"]["port_value"])
            for e in eps
        ]  # fmt: skip
    return out


def check_golden(name: str, data: Any) -> None:
    path = GOLDEN / f"{name}.yaml"
    text = yaml.safe_dump(data, sort_keys=False, width=100)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1"
    assert text == path.read_text()


# ---- goldens ----------------------------------------------------------------------------------


@pytest.mark.parametrize("canary_weight", [0, 10, 100])
def test_golden_chart_translation(canary_weight: int) -> None:
    config = envoy.translate(chart_objects(canary_weight), ENDPOINTS, namespace=NS)
    check_golden(
        f"weight-{canary_weight}",
        {
            "cds": envoy.discovery_response(config.clusters, "golden"),
            "rds": envoy.rds_document(config, "golden"),
        },
    )


def test_golden_bootstrap() -> None:
    boot = envoy.bootstrap(
        admin_port=15000,
        listener_port=8080,
        cds_path="/state/envoy/cds/cds.yaml",
        cds_dir="/state/envoy/cds",
        rds_path="/state/envoy/rds/rds.yaml",
        rds_dir="/state/envoy/rds",
    )
    check_golden("bootstrap", boot)


def test_goldens_carry_the_weights() -> None:
    def weighted(name: str) -> Any:
        doc = yaml.safe_load((GOLDEN / f"{name}.yaml").read_text())
        (vhost,) = doc["rds"]["resources"][0]["virtual_hosts"]
        return vhost["routes"][2]["route"]["weighted_clusters"]["clusters"]

    assert weighted("weight-0") == [{"name": STABLE, "weight": 100}]
    assert weighted("weight-10") == [{"name": STABLE, "weight": 90}, {"name": CANARY, "weight": 10}]
    assert weighted("weight-100") == [{"name": CANARY, "weight": 100}]


def test_documents_are_yaml_without_anchors() -> None:
    config = envoy.translate(chart_objects(10), ENDPOINTS, namespace=NS)
    for doc in (envoy.discovery_response(config.clusters, "1"), envoy.rds_document(config, "1")):
        assert "&id" not in yaml.safe_dump(doc)


# ---- names and documents ----------------------------------------------------------------------


def test_cluster_names() -> None:
    assert envoy.cluster_name(HOST, 80, "canary") == CANARY
    assert envoy.cluster_name(HOST, 80) == BASE


def test_discovery_documents() -> None:
    config = envoy.translate(chart_objects(), ENDPOINTS, namespace=NS)
    assert envoy.discovery_response([{"a": 1}], "7") == {
        "version_info": "7",
        "resources": [{"a": 1}],
    }
    cds = envoy.discovery_response(config.clusters, "c1")
    assert cds["version_info"] == "c1"
    assert [c["@type"] for c in cds["resources"]] == [envoy.CLUSTER_TYPE] * 3
    rds = envoy.rds_document(config, "r1")
    assert rds["resources"] == [config.routes]
    assert config.routes["name"] == envoy.ROUTE_NAME == "gateway_routes"
    assert envoy.rds_document(envoy.EnvoyConfig(), "0")["resources"] == [envoy.empty_routes()]


@pytest.mark.parametrize(
    ("text", "out"),
    [("10s", "10s"), ("500ms", "0.5s"), ("1.5s", "1.5s"), ("1m", "60s"), ("10ms", "0.01s"),
     ("1m30s", "90s"), ("0s", "0s")],
)  # fmt: skip
def test_duration(text: str, out: str) -> None:
    assert envoy.duration(text) == out


# ---- clusters ---------------------------------------------------------------------------------


def test_clusters_select_service_and_subset_labels() -> None:
    other = Endpoint("other-0", {"app": "other", "track": "stable"}, "127.0.0.1", {5001: 18009})
    second = Endpoint("scoring-stable-1", fixtures.pod_labels("stable"), "127.0.0.2", {5001: 18003})
    config = envoy.translate(chart_objects(), [*ENDPOINTS, other, second], namespace=NS)
    assert clusters_of(config) == {
        BASE: [("127.0.0.1", 18001), ("127.0.0.1", 18002), ("127.0.0.2", 18003)],
        STABLE: [("127.0.0.1", 18001), ("127.0.0.2", 18003)],
        CANARY: [("127.0.0.1", 18002)],
    }


def test_cluster_without_ready_endpoint_is_still_emitted() -> None:
    config = envoy.translate(chart_objects(), ENDPOINTS[:1], namespace=NS)
    assert clusters_of(config)[CANARY] == []
    canary = next(c for c in config.clusters if c["name"] == CANARY)
    assert canary["load_assignment"] == {
        "cluster_name": CANARY,
        "endpoints": [{"lb_endpoints": []}],
    }


def test_cluster_defaults_follow_istio() -> None:
    config = envoy.translate(chart_objects(), ENDPOINTS, namespace=NS)
    c = config.clusters[0]
    assert (c["type"], c["connect_timeout"], c["lb_policy"]) == ("STATIC", "10s", "LEAST_REQUEST")
    assert c["circuit_breakers"]["thresholds"][0]["max_retries"] == 4294967295


@pytest.mark.parametrize(
    ("policy", "lb_policy"),
    [("ROUND_ROBIN", "ROUND_ROBIN"), ("LEAST_REQUEST", "LEAST_REQUEST"), ("RANDOM", "RANDOM"),
     ("LEAST_CONN", "LEAST_REQUEST"), ("UNSPECIFIED", "LEAST_REQUEST")],
)  # fmt: skip
def test_cluster_lb_policy_from_destination_rule(policy: str, lb_policy: str) -> None:
    """cluster_traffic_policy.go ``applyLoadBalancer``."""
    docs = chart_objects()
    kind(docs, "DestinationRule")["spec"]["trafficPolicy"] = {"loadBalancer": {"simple": policy}}
    config = envoy.translate(docs, ENDPOINTS, namespace=NS)
    assert {c["lb_policy"] for c in config.clusters} == {lb_policy}


@pytest.mark.parametrize(
    ("hash_lb", "cluster", "route_hash"),
    [
        ({"httpHeaderName": "x-user"},
         {"lb_policy": "RING_HASH", "ring_hash_lb_config": {"minimum_ring_size": 1024}},
         {"header": {"header_name": "x-user"}}),
        ({"httpCookie": {"name": "u", "ttl": "1h", "path": "/"},
          "ringHash": {"minimumRingSize": 64}},
         {"lb_policy": "RING_HASH", "ring_hash_lb_config": {"minimum_ring_size": 64}},
         {"cookie": {"name": "u", "ttl": "3600s", "path": "/"}}),
        ({"useSourceIp": True, "maglev": {"tableSize": 65537}},
         {"lb_policy": "MAGLEV", "maglev_lb_config": {"table_size": 65537}},
         {"connection_properties": {"source_ip": True}}),
        ({"httpQueryParameterName": "user"},
         {"lb_policy": "RING_HASH", "ring_hash_lb_config": {"minimum_ring_size": 1024}},
         {"query_parameter": {"name": "user"}}),
    ],
)  # fmt: skip
def test_consistent_hash(
    hash_lb: dict[str, Any], cluster: dict[str, Any], route_hash: dict[str, Any]
) -> None:
    """cluster_traffic_policy.go ``ApplyRingHashLoadBalancer`` for the clusters; route.go
    ``consistentHashToHashPolicy`` for the routes; a route to one hashed destination retries
    without the previous-hosts predicate (retry.go ``DefaultConsistentHashPolicy``)."""
    docs = chart_objects(10)
    kind(docs, "DestinationRule")["spec"]["trafficPolicy"] = {
        "loadBalancer": {"consistentHash": hash_lb}
    }
    config = envoy.translate(docs, ENDPOINTS, namespace=NS)
    for c in config.clusters:
        assert {k: c[k] for k in cluster} == cluster
    (vhost,) = config.routes["virtual_hosts"]
    pin, _, weighted = vhost["routes"]
    assert pin["route"]["hash_policy"] == [route_hash]
    assert "retry_host_predicate" not in pin["route"]["retry_policy"]
    assert weighted["route"]["hash_policy"] == [route_hash, route_hash]  # one per destination
    assert "retry_host_predicate" in weighted["route"]["retry_policy"]


def test_outlier_detection() -> None:
    """cluster_traffic_policy.go ``applyOutlierDetection``: consecutive errors enforced at 100%,
    success-rate ejection off, the panic threshold at minHealthPercent (0 when unset)."""
    docs = chart_objects(10)
    kind(docs, "DestinationRule")["spec"]["subsets"][1]["trafficPolicy"] = {
        "outlierDetection": {"consecutive5xxErrors": 2, "consecutiveGatewayErrors": 0,
                             "interval": "5s", "baseEjectionTime": "30s",
                             "maxEjectionPercent": 100}
    }  # fmt: skip
    clusters = {c["name"]: c for c in envoy.translate(docs, ENDPOINTS, namespace=NS).clusters}
    assert "outlier_detection" not in clusters[STABLE]
    assert clusters[CANARY]["outlier_detection"] == {
        "enforcing_success_rate": 0,
        "consecutive_5xx": 2,
        "enforcing_consecutive_5xx": 100,
        "consecutive_gateway_failure": 0,
        "enforcing_consecutive_gateway_failure": 0,
        "interval": "5s",
        "base_ejection_time": "30s",
        "max_ejection_percent": 100,
    }
    assert clusters[CANARY]["common_lb_config"] == {"healthy_panic_threshold": {"value": 0.0}}


def test_subset_traffic_policy_overrides_the_rule() -> None:
    """A subset's own loadBalancer replaces the rule's (istiod ``MergeTrafficPolicy``)."""
    docs = chart_objects(10)
    dr = kind(docs, "DestinationRule")["spec"]
    dr["trafficPolicy"] = {"loadBalancer": {"simple": "RANDOM"}}
    dr["subsets"][1]["trafficPolicy"] = {"loadBalancer": {"consistentHash": {"useSourceIp": True}}}
    lbs = {
        c["name"]: c["lb_policy"] for c in envoy.translate(docs, ENDPOINTS, namespace=NS).clusters
    }
    assert lbs == {BASE: "RANDOM", STABLE: "RANDOM", CANARY: "RING_HASH"}


@pytest.mark.parametrize(
    ("target", "ports", "expected"),
    [
        (5001, {5001: 18001}, [("127.0.0.1", 18001)]),
        ("http", {5001: 18001}, [("127.0.0.1", 18001)]),  # named: the Deployment's port "http"
        ("5001", {5001: 18001}, [("127.0.0.1", 18001)]),
        (None, {80: 18080}, [("127.0.0.1", 18080)]),  # no targetPort: same as port
        (5002, {5001: 18001}, []),  # the pod does not listen there
        ("metrics", {5001: 18001}, []),  # no container port of that name
    ],
)
def test_service_target_port(target: Any, ports: dict[int, int], expected: list[Any]) -> None:
    docs = chart_objects()
    port = kind(docs, "Service")["spec"]["ports"][0]
    if target is None:
        del port["targetPort"]
    else:
        port["targetPort"] = target
    ep = Endpoint("scoring-stable-0", fixtures.pod_labels("stable"), "127.0.0.1", ports)
    assert clusters_of(envoy.translate(docs, [ep], namespace=NS))[STABLE] == expected


def test_multi_port_service_needs_destination_port() -> None:
    docs = vs_with({"name": "r", "route": [to("stable")]})
    kind(docs, "Service")["spec"]["ports"].append(
        {"name": "grpc", "port": 9000, "targetPort": 9000}
    )
    with pytest.raises(ConfigError) as err:
        envoy.translate(docs, ENDPOINTS, namespace=NS)
    assert err.value.field == "spec.http[0].route[0].destination.port.number"
    assert "has ports [80, 9000]" in str(err.value)
    names = [c["name"] for c in envoy.translate(chart_objects(), ENDPOINTS, namespace=NS).clusters]
    assert names == [BASE, STABLE, CANARY]


def test_destination_must_be_a_service() -> None:
    docs = vs_with({"name": "r", "route": [{"destination": {"host": "elsewhere"}}]})
    with pytest.raises(ConfigError) as err:
        envoy.translate(docs, ENDPOINTS, namespace=NS)
    assert str(err.value) == (
        "VirtualService canary-demo/scoring: spec.http[0].route[0].destination.host "
        "elsewhere.canary-demo.svc.cluster.local is not a Service among the objects"
    )


def test_destination_port_must_exist() -> None:
    d = {"destination": {"host": "scoring", "subset": "stable", "port": {"number": 8080}}}
    with pytest.raises(ConfigError, match="has no port 8080"):
        envoy.translate(vs_with({"route": [d]}), ENDPOINTS, namespace=NS)


def test_translate_validates_first() -> None:
    docs = chart_objects()
    kind(docs, "VirtualService")["spec"]["http"][2]["route"][1]["weight"] = -1
    with pytest.raises(ConfigError, match=r"spec.http\[2\].route\[1\].weight must not be negative"):
        envoy.translate(docs, ENDPOINTS, namespace=NS)


# ---- routes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "match"),
    [
        ({"uri": {"exact": "/score"}}, {"path": "/score"}),
        ({"uri": {"prefix": "/score"}}, {"prefix": "/score"}),
        ({"uri": {"regex": "/s[a-z]+"}}, {"safe_regex": {"regex": "/s[a-z]+"}}),
        ({"headers": {"x-a": {"exact": "1"}}},
         {"prefix": "/", "headers": [{"name": "x-a", "string_match": {"exact": "1"}}]}),
        ({"headers": {"x-a": {"prefix": "b"}}},
         {"prefix": "/", "headers": [{"name": "x-a", "string_match": {"prefix": "b"}}]}),
        ({"headers": {"x-a": {"regex": "c+"}}},
         {"prefix": "/",
          "headers": [{"name": "x-a", "string_match": {"safe_regex": {"regex": "c+"}}}]}),
        ({"headers": {"x-a": {}}},
         {"prefix": "/", "headers": [{"name": "x-a", "present_match": True}]}),
        ({"method": {"exact": "PUT"}},
         {"prefix": "/", "headers": [{"name": ":method", "string_match": {"exact": "PUT"}}]}),
        ({"queryParams": {"v": {"exact": "2"}, "w": {"regex": "[0-9]+"}, "x": {}}},
         {"prefix": "/", "query_parameters": [
             {"name": "v", "string_match": {"exact": "2"}},
             {"name": "w", "string_match": {"safe_regex": {"regex": "[0-9]+"}}},
             {"name": "x", "present_match": True}]}),
        ({"uri": {"prefix": "/a"}, "headers": {"x-a": {"exact": "1"}}, "method": {"exact": "GET"}},
         {"prefix": "/a", "headers": [{"name": "x-a", "string_match": {"exact": "1"}},
                                      {"name": ":method", "string_match": {"exact": "GET"}}]}),
    ],
)  # fmt: skip
def test_match_translation(block: dict[str, Any], match: dict[str, Any]) -> None:
    (route,) = routes_of(vs_with({"name": "r", "match": [block], "route": [to("canary")]}))
    assert route["match"] == match
    assert route["route"]["cluster"] == CANARY


def test_match_blocks_are_ored_and_routes_keep_order() -> None:
    routes = routes_of(
        vs_with(
            {"name": "or",
             "match": [{"uri": {"exact": "/a"}}, {"headers": {"x-b": {"exact": "1"}}}],
             "route": [to("canary")]},
            {"name": "named", "match": [{"name": "m", "uri": {"prefix": "/n"}}],
             "route": [to("canary")]},
            {"match": [{"uri": {"prefix": "/u"}}], "route": [to("stable")]},
            {"name": "rest", "route": [to("stable")]},
        )
    )  # fmt: skip
    assert [r["name"] for r in routes] == ["or.0", "or.1", "named.m", "http[2]", "rest"]
    assert routes[0]["match"] == {"path": "/a"}
    assert routes[1]["match"]["headers"] == [{"name": "x-b", "string_match": {"exact": "1"}}]
    assert routes[0]["route"] == routes[1]["route"]
    assert routes[-1]["match"] == {"prefix": "/"}
    assert routes[0]["metadata"]["filter_metadata"]["istio"]["config"] == (
        "/apis/networking.istio.io/v1/namespaces/canary-demo/virtual-service/scoring"
    )


@pytest.mark.parametrize(
    ("dests", "action"),
    [
        ([to("stable")], {"cluster": STABLE}),
        ([to("stable", 100)], {"cluster": STABLE}),
        ([to("stable", 70), to("canary", 30)],
         {"weighted_clusters": {"clusters": [{"name": STABLE, "weight": 70},
                                             {"name": CANARY, "weight": 30}]}}),
        ([to("stable", 0), to("canary", 100)],
         {"weighted_clusters": {"clusters": [{"name": CANARY, "weight": 100}]}}),
        ([to("stable", 50), to("stable", 25), to("canary", 25)],
         {"weighted_clusters": {"clusters": [{"name": STABLE, "weight": 75},
                                             {"name": CANARY, "weight": 25}]}}),
        ([{"destination": {"host": HOST}}], {"cluster": BASE}),
    ],
)  # fmt: skip
def test_destinations(dests: list[Any], action: dict[str, Any]) -> None:
    (route,) = routes_of(vs_with({"name": "r", "route": dests}))
    picked = {k: route["route"][k] for k in ("cluster", "weighted_clusters") if k in route["route"]}
    assert picked == action


@pytest.mark.parametrize(
    ("percentage", "runtime"),
    [
        (None, {"numerator": 100, "denominator": "HUNDRED"}),
        (12.5, {"numerator": 125_000, "denominator": "MILLION"}),
        (0.00005, {"numerator": 0, "denominator": "MILLION"}),  # truncated, as uint32() does
        (0, None),
    ],
)
def test_mirror(percentage: float | None, runtime: dict[str, Any] | None) -> None:
    """route.go ``MirrorPercent``: 100% when unset, none when 0, value x 10000 per million."""
    http: dict[str, Any] = {
        "name": "r",
        "route": [to("stable")],
        "mirror": {"host": "scoring", "subset": "canary"},
    }
    if percentage is not None:
        http["mirrorPercentage"] = {"value": percentage}
    (route,) = routes_of(vs_with(http))
    if runtime is None:
        assert "request_mirror_policies" not in route["route"]
        return
    assert route["route"]["request_mirror_policies"] == [
        {"cluster": CANARY, "runtime_fraction": {"default_value": runtime}}
    ]


def test_fault() -> None:
    """route.go ``TranslateFault``: a delay without percentage gets 0 per hundred."""
    fault = {
        "abort": {"httpStatus": 418, "percentage": {"value": 0.5}},
        "delay": {"fixedDelay": "250ms"},
    }
    (route,) = routes_of(vs_with({"name": "r", "route": [to("stable")], "fault": fault}))
    assert route["typed_per_filter_config"] == {
        "envoy.filters.http.fault": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
            "delay": {"fixed_delay": "0.25s",
                      "percentage": {"numerator": 0, "denominator": "HUNDRED"}},
            "abort": {"http_status": 418,
                      "percentage": {"numerator": 5_000, "denominator": "MILLION"}},
        }
    }  # fmt: skip


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"abort": {"httpStatus": 503}}, {"abort": {"http_status": 503}}),
        ({"delay": {"fixedDelay": "1s"}},
         {"delay": {"fixed_delay": "1s",
                    "percentage": {"numerator": 0, "denominator": "HUNDRED"}}}),
        ({"abort": {"percentage": {"value": 50}}}, None),  # no error type: dropped
        ({"delay": {"percentage": {"value": 50}}}, None),  # no fixedDelay: dropped
    ],
)  # fmt: skip
def test_fault_without_percentage_injects_nothing(
    fault: dict[str, Any], expected: dict[str, Any] | None
) -> None:
    """route.go ``TranslateFault`` leaves a missing abort percentage unset (Envoy: 0%) and gives
    a delay 0 per hundred; istio/api virtual_service.proto: "If not specified, no request will be
    aborted/delayed". A fault with nothing left is not configured at all."""
    (route,) = routes_of(vs_with({"name": "r", "route": [to("stable")], "fault": fault}))
    got = route.get("typed_per_filter_config", {}).get(envoy.FAULT_FILTER)
    if expected is None:
        assert got is None
    else:
        assert got == {"@type": envoy.FAULT_TYPE, **expected}


def test_timeout_defaults_to_none_as_in_istio() -> None:
    (plain,) = routes_of(vs_with({"name": "r", "route": [to("stable")]}))
    (timed,) = routes_of(vs_with({"name": "r", "route": [to("stable")], "timeout": "1.5s"}))
    assert plain["route"]["timeout"] == "0s"  # Envoy's own default would be 15s
    assert timed["route"]["timeout"] == "1.5s"


@pytest.mark.parametrize(
    ("retries", "policy"),
    [
        (None, {"retry_on": envoy.DEFAULT_RETRY_ON, "num_retries": 2}),  # no 503 since 1.24
        ({"attempts": 0}, None),
        ({}, None),  # attempts unset is 0: retries off
        ({"attempts": 3}, {"retry_on": envoy.DEFAULT_RETRY_ON, "num_retries": 3}),
        ({"attempts": 2, "retryOn": "503"},
         {"retry_on": "retriable-status-codes", "num_retries": 2,
          "retriable_status_codes": [503]}),
        ({"attempts": 1, "retryOn": "5xx,reset", "perTryTimeout": "500ms"},
         {"retry_on": "5xx,reset", "num_retries": 1, "per_try_timeout": "0.5s"}),
        ({"attempts": 2, "retryOn": "502,connect-failure"},
         {"retry_on": "connect-failure,retriable-status-codes", "num_retries": 2,
          "retriable_status_codes": [502]}),
    ],
)  # fmt: skip
def test_retries_follow_istio(
    retries: dict[str, Any] | None, policy: dict[str, Any] | None
) -> None:
    """pilot/pkg/networking/core/route/retry/retry.go ``DefaultPolicy``/``ConvertPolicy``."""
    http: dict[str, Any] = {"name": "r", "route": [to("stable")]}
    if retries is not None:
        http["retries"] = retries
    (route,) = routes_of(vs_with(http))
    got = route["route"].get("retry_policy")
    if policy is None:
        assert got is None
        return
    assert got.pop("retry_host_predicate") == [envoy.PREVIOUS_HOSTS]
    assert got.pop("host_selection_retry_max_attempts") == 5
    assert got == policy


def test_header_operations() -> None:
    headers = {
        "request": {"set": {"x-set": "a"}, "add": {"x-add": "b"}, "remove": ["x-remove"]},
        "response": {"set": {"x-resp": "c"}, "remove": ["server"]},
    }
    (route,) = routes_of(vs_with({"name": "r", "route": [to("stable")], "headers": headers}))
    assert route["request_headers_to_add"] == [
        {"header": {"key": "x-set", "value": "a"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header": {"key": "x-add", "value": "b"}, "append_action": "APPEND_IF_EXISTS_OR_ADD"},
    ]
    assert route["request_headers_to_remove"] == ["x-remove"]
    assert route["response_headers_to_add"] == [
        {"header": {"key": "x-resp", "value": "c"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
    ]
    assert route["response_headers_to_remove"] == ["server"]
    assert "response_headers_to_add" not in routes_of(vs_with({"route": [to("stable")]}))[0]


# ---- virtual hosts ----------------------------------------------------------------------------


def second_vs(name: str, hosts: list[str], gateways: list[str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "hosts": hosts,
            "gateways": ["scoring-gateway"] if gateways is None else gateways,
            "http": [{"name": name, "route": [to("canary")]}],
        },
    }


def vhosts_of(docs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Virtual host domain → its route names."""
    config = envoy.translate(docs, ENDPOINTS, namespace=NS)
    out = {}
    for v in config.routes["virtual_hosts"]:
        (domain,) = v["domains"]
        out[domain] = [r["name"] for r in v["routes"]]
    return out


def test_one_virtual_host_per_host() -> None:
    """gateway.go ``buildGatewayHTTPRouteConfig``: a virtual host per host, named by it;
    ports are ignored in host matching."""
    docs = chart_objects()
    kind(docs, "VirtualService")["spec"]["hosts"] = ["scoring.example.com", "scoring"]
    config = envoy.translate(docs, ENDPOINTS, namespace=NS)
    assert [v["domains"] for v in config.routes["virtual_hosts"]] == [
        ["scoring.example.com"], [HOST],
    ]  # fmt: skip
    assert config.routes["ignore_port_in_host_matching"] is True


def test_virtual_services_for_one_host_merge_catch_all_last() -> None:
    """gateway.go merges the routes of every VirtualService bound to a host in creation order
    (model/config.go ``sortConfigByCreationTime``: then by name); route.go ``SortVHostRoutes``
    moves catch-all routes last, so the header route of a later VirtualService is reachable."""
    extra = second_vs("zz-extra", ["*"])  # sorts after the chart's "scoring"
    extra["spec"]["http"][0]["match"] = [{"headers": {"x-extra": {"exact": "1"}}}]
    docs = [*chart_objects(), extra, second_vs("api", ["api.example.com"])]
    assert vhosts_of(docs) == {
        "*": ["pin-canary", "pin-stable", "zz-extra", "weighted"],
        "api.example.com": ["api"],
    }


def test_creation_time_orders_merged_virtual_services() -> None:
    early, late = second_vs("zz-early", ["*"]), second_vs("aa-late", ["*"])
    for vs, t in ((early, "2026-01-01T00:00:00Z"), (late, "2026-02-01T00:00:00Z")):
        vs["metadata"]["creationTimestamp"] = t
        vs["spec"]["http"][0]["match"] = [{"uri": {"prefix": f"/{vs['metadata']['name']}"}}]
    docs = [*chart_objects(), late, early]
    assert vhosts_of(docs)["*"][:2] == ["pin-canary", "pin-stable"]  # no timestamp: first
    assert vhosts_of(docs)["*"][2:4] == ["zz-early", "aa-late"]


def test_routes_after_a_catch_all_of_the_same_virtual_service_are_dropped() -> None:
    """route.go ``BuildHTTPRoutesForVirtualService`` stops at a catch-all."""
    docs = vs_with(
        {"name": "all", "route": [to("stable")]},
        {"name": "late", "match": [{"uri": {"prefix": "/x"}}], "route": [to("canary")]},
    )
    assert vhosts_of(docs) == {"*": ["all"]}


def test_overlapping_host_sets_merge_per_host() -> None:
    docs = [
        *chart_objects(),
        second_vs("a", ["a.example.com"]),
        second_vs("b", ["a.example.com", "b.example.com"]),
    ]
    vhosts = vhosts_of(docs)
    assert vhosts["a.example.com"] == ["a", "b"] and vhosts["b.example.com"] == ["b"]


@pytest.mark.parametrize(
    ("server_hosts", "vs_hosts", "domains"),
    [
        (["*"], ["*"], ["*"]),
        (["*"], ["scoring.example.com"], ["scoring.example.com"]),
        (["*.example.com"], ["*"], ["*.example.com"]),
        (["scoring.example.com"], ["*.example.com"], ["scoring.example.com"]),
        (["other.example.com"], ["scoring.example.com"], []),
        ([f"{NS}/scoring.example.com"], ["scoring.example.com"], ["scoring.example.com"]),
        (["elsewhere/scoring.example.com"], ["scoring.example.com"], []),
        (["*/scoring.example.com"], ["scoring.example.com"], ["scoring.example.com"]),
        (["./scoring.example.com"], ["scoring.example.com"], ["scoring.example.com"]),
    ],
)
def test_gateway_server_hosts_bound_the_virtual_hosts(
    server_hosts: list[str], vs_hosts: list[str], domains: list[str]
) -> None:
    """gateway.go: hosts served = server hosts (host.NamesForNamespace) ∩ VirtualService hosts
    (host.Names.Intersection keeps the narrower one); a Host outside them gets 404."""
    docs = chart_objects()
    kind(docs, "Gateway")["spec"]["servers"][0]["hosts"] = server_hosts
    kind(docs, "VirtualService")["spec"]["hosts"] = vs_hosts
    assert list(vhosts_of(docs)) == domains


def test_servers_on_several_ports_are_refused() -> None:
    docs = chart_objects()
    servers = kind(docs, "Gateway")["spec"]["servers"]
    servers.append({**copy.deepcopy(servers[0]), "port": {"number": 8080, "name": "alt",
                                                          "protocol": "HTTP"}})  # fmt: skip
    with pytest.raises(ConfigError, match=r"one listener.*\[80, 8080\]"):
        envoy.translate(docs, ENDPOINTS, namespace=NS)


@pytest.mark.parametrize(
    ("weights", "clusters"),
    [((1, 3), [(STABLE, 1), (CANARY, 3)]), ((150, 50), [(STABLE, 150), (CANARY, 50)]),
     ((0, 7), [(CANARY, 7)])],
)  # fmt: skip
def test_weights_are_relative(weights: tuple[int, int], clusters: list[Any]) -> None:
    """istio/api virtual_service.proto: a destination gets weight/(sum of all weights); route.go
    passes the raw weights (dropping zeros) and Envoy divides by their sum."""
    (route,) = routes_of(vs_with({"name": "r", "route": [to("stable", weights[0]),
                                                         to("canary", weights[1])]}))  # fmt: skip
    got = route["route"]["weighted_clusters"]["clusters"]
    assert [(c["name"], c["weight"]) for c in got] == clusters


def test_match_details_follow_istiod() -> None:
    """route.go ``TranslateRouteMatch``: ignoreUriCase → case_sensitive false; headers sorted by
    name; regex ``*`` is a presence match (``canBeConvertedToPresentMatch``); a query prefix."""
    block = {
        "uri": {"prefix": "/Score"},
        "ignoreUriCase": True,
        "headers": {"x-b": {"regex": "*"}, "x-a": {"exact": "1"}},
        "queryParams": {"v": {"prefix": "ca"}, "w": {"regex": "*"}},
    }
    (route,) = routes_of(vs_with({"name": "r", "match": [block], "route": [to("canary")]}))
    assert route["match"] == {
        "prefix": "/Score",
        "case_sensitive": False,
        "headers": [{"name": "x-a", "string_match": {"exact": "1"}},
                    {"name": "x-b", "present_match": True}],
        "query_parameters": [{"name": "v", "string_match": {"prefix": "ca"}},
                             {"name": "w", "present_match": True}],
    }  # fmt: skip


def test_rewrite() -> None:
    """route.go ``applyHTTPRouteDestination``: uri → prefix_rewrite, uriRegexRewrite →
    regex_rewrite, authority → host_rewrite_literal (over a Host header set)."""
    (plain,) = routes_of(
        vs_with(
            {
                "name": "r",
                "route": [to("stable")],
                "rewrite": {"uri": "/v2/", "authority": "b.example.com"},
            }
        )
    )
    assert plain["route"]["prefix_rewrite"] == "/v2/"
    assert plain["route"]["host_rewrite_literal"] == "b.example.com"
    regex = {"uriRegexRewrite": {"match": "^/a/(.*)", "rewrite": "/b/\\1"}}
    (route,) = routes_of(vs_with({"name": "r", "route": [to("stable")], "rewrite": regex}))
    assert route["route"]["regex_rewrite"] == {
        "pattern": {"regex": "^/a/(.*)"}, "substitution": "/b/\\1"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("redirect", "action"),
    [
        ({"uri": "/v2"}, {"path_redirect": "/v2", "response_code": "MOVED_PERMANENTLY"}),
        ({"authority": "a.example.com", "redirectCode": 307},
         {"host_redirect": "a.example.com", "response_code": "TEMPORARY_REDIRECT"}),
        ({"scheme": "https", "port": 443}, {"scheme_redirect": "https",
                                            "response_code": "MOVED_PERMANENTLY"}),
        ({"port": 8443, "redirectCode": 308}, {"port_redirect": 8443,
                                               "response_code": "PERMANENT_REDIRECT"}),
        ({"derivePort": "FROM_REQUEST_PORT"}, {"response_code": "MOVED_PERMANENTLY"}),  # :80
    ],
)  # fmt: skip
def test_redirect(redirect: dict[str, Any], action: dict[str, Any]) -> None:
    """route.go ``ApplyRedirect`` (the Gateway server's port stands for the request port)."""
    (route,) = routes_of(vs_with({"name": "r", "redirect": redirect}))
    assert "route" not in route
    assert route["redirect"] == action


def test_cors_policy() -> None:
    """route.go ``TranslateCORSPolicy``; the listener runs the CORS filter before fault."""
    cors = {"allowOrigins": [{"exact": "https://a.example.com"}], "allowMethods": ["GET", "POST"],
            "allowHeaders": ["x-a", "x-b"], "maxAge": "24h", "allowCredentials": True,
            "unmatchedPreflights": "IGNORE"}  # fmt: skip
    (route,) = routes_of(vs_with({"name": "r", "route": [to("stable")], "corsPolicy": cors}))
    assert route["typed_per_filter_config"][envoy.CORS_FILTER] == {
        "@type": envoy.CORS_POLICY_TYPE,
        "forward_not_matching_preflights": False,
        "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "allow_origin_string_match": [{"exact": "https://a.example.com"}],
        "allow_methods": "GET,POST",
        "allow_headers": "x-a,x-b",
        "max_age": "86400",
        "allow_credentials": True,
    }


def test_direct_response() -> None:
    """route.go ``ApplyDirectResponse``: status and inline body, no upstream."""
    http = {"name": "r", "directResponse": {"status": 418, "body": {"string": "teapot"}}}
    (route,) = routes_of(vs_with(http))
    assert "route" not in route
    assert route["direct_response"] == {"status": 418, "body": {"inline_string": "teapot"}}


def test_without_headers_authority_and_scheme() -> None:
    """route.go ``TranslateRouteMatch``: withoutHeaders invert (treating a missing header as
    empty unless it is a presence match), then :method, :authority and :scheme."""
    block = {
        "withoutHeaders": {"x-b": {"exact": "1"}, "x-a": {}},
        "headers": {"x-c": {"exact": "2"}},
        "authority": {"prefix": "scoring."},
        "scheme": {"exact": "http"},
    }
    (route,) = routes_of(vs_with({"name": "r", "match": [block], "route": [to("canary")]}))
    assert route["match"]["headers"] == [
        {"name": "x-a", "invert_match": True, "present_match": True},
        {"name": "x-b", "invert_match": True, "string_match": {"exact": "1"},
         "treat_missing_header_as_empty": True},
        {"name": "x-c", "string_match": {"exact": "2"}},
        {"name": ":authority", "string_match": {"prefix": "scoring."}},
        {"name": ":scheme", "string_match": {"exact": "http"}},
    ]  # fmt: skip


def test_destination_headers() -> None:
    """route.go ``processWeightedDestination``: a weighted destination's header operations go on
    its cluster entry; ``processDestination``: a lone destination's join the route's."""
    canary = {
        **to("canary", 10),
        "headers": {
            "request": {"set": {"x-track": "canary"}},
            "response": {"add": {"x-served-by": "canary"}},
        },
    }
    (route,) = routes_of(vs_with({"name": "r", "route": [to("stable", 90), canary]}))
    assert route["route"]["weighted_clusters"]["clusters"] == [
        {"name": STABLE, "weight": 90},
        {"name": CANARY, "weight": 10,
         "request_headers_to_add": [{"header": {"key": "x-track", "value": "canary"},
                                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
         "response_headers_to_add": [{"header": {"key": "x-served-by", "value": "canary"},
                                      "append_action": "APPEND_IF_EXISTS_OR_ADD"}]},
    ]  # fmt: skip
    lone = {**to("canary"), "headers": {"request": {"set": {"x-b": "2", "host": "c.example"}}}}
    http = {"name": "r", "route": [lone], "headers": {"request": {"set": {"x-a": "1"}}}}
    (route,) = routes_of(vs_with(http))
    assert [h["header"]["key"] for h in route["request_headers_to_add"]] == ["x-a", "x-b"]
    assert route["route"]["host_rewrite_literal"] == "c.example"


def test_host_header_is_an_authority_rewrite() -> None:
    """route.go ``TranslateHeadersOperations``: Host in request set/add rewrites the authority
    (set wins) and is not added as a header."""
    headers = {"request": {"set": {"host": "a.example.com", "x-a": "1"}}}
    (route,) = routes_of(vs_with({"name": "r", "route": [to("stable")], "headers": headers}))
    assert route["route"]["host_rewrite_literal"] == "a.example.com"
    assert [h["header"]["key"] for h in route["request_headers_to_add"]] == ["x-a"]


def test_only_virtual_services_bound_to_a_gateway_are_served() -> None:
    docs = [
        *chart_objects(),
        second_vs("mesh-only", ["x"], ["mesh"]),
        second_vs("no-gw", ["y"], []),
    ]
    vhosts = envoy.translate(docs, ENDPOINTS, namespace=NS).routes["virtual_hosts"]
    assert [v["domains"] for v in vhosts] == [["*"]]
    no_gateway = [d for d in chart_objects() if d["kind"] != "Gateway"]
    assert envoy.translate(no_gateway, ENDPOINTS, namespace=NS).routes == envoy.empty_routes()


def test_translate_is_pure() -> None:
    docs = chart_objects(10)
    before = copy.deepcopy(docs)
    first = envoy.translate(docs, ENDPOINTS, namespace=NS)
    assert docs == before
    assert envoy.translate(docs, ENDPOINTS, namespace=NS) == first


# ---- bootstrap and stats ----------------------------------------------------------------------


def test_bootstrap() -> None:
    boot = envoy.bootstrap(admin_port=1, listener_port=2, cds_path="/c/cds.yaml", cds_dir="/c",
                           rds_path="/r/rds.yaml", rds_dir="/r", stat_prefix="gw")  # fmt: skip
    assert boot["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 1}
    assert "access_log" not in boot["admin"]
    assert boot["dynamic_resources"]["cds_config"]["path_config_source"] == {
        "path": "/c/cds.yaml", "watched_directory": {"path": "/c"}
    }  # fmt: skip
    (listener,) = boot["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 2}
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["stat_prefix"] == "gw" and "access_log" not in hcm
    assert hcm["rds"]["route_config_name"] == "gateway_routes"
    assert hcm["rds"]["config_source"]["path_config_source"]["watched_directory"] == {"path": "/r"}
    assert [f["name"] for f in hcm["http_filters"]] == [
        "envoy.filters.http.cors",
        "envoy.filters.http.fault",
        "envoy.filters.http.router",
    ]
    assert boot["layered_runtime"]["layers"] == [{"name": "admin", "admin_layer": {}}]
    (monitor,) = boot["overload_manager"]["resource_monitors"]
    assert monitor["name"] == "envoy.resource_monitors.global_downstream_max_connections"


STATS = {
    "stats": [
        {"name": f"cluster.{CANARY}.upstream_rq_total", "value": 12},
        {"name": f"cluster.{CANARY}.upstream_rq_2xx", "value": 10},
        {"name": f"cluster.{CANARY}.external.upstream_rq_2xx", "value": 10},
        {"name": f"cluster.{CANARY}.upstream_rq_5xx", "value": 2},
        {"name": f"cluster.{CANARY}.upstream_rq_retry", "value": 1},
        {"name": f"cluster.{CANARY}.membership_total", "value": 1},
        {"name": f"cluster.{STABLE}.membership_total", "value": 1},
        {"name": f"cluster.{STABLE}.upstream_cx_connect_fail", "value": 3},
        {"name": "cluster_manager.cds.version_text", "value": "c1"},
        {"name": "http.gateway.downstream_rq_total", "value": 15},
        {"histograms": {"computed_quantiles": []}},
    ]
}


def test_admin_stats_by_cluster() -> None:
    zero = dict.fromkeys(envoy.COUNTERS, 0)
    assert envoy.admin_stats_by_cluster(STATS) == {
        CANARY: {**zero, "upstream_rq_total": 12, "upstream_rq_2xx": 10, "upstream_rq_5xx": 2,
                 "upstream_rq_retry": 1},
        STABLE: {**zero, "upstream_cx_connect_fail": 3},
    }  # fmt: skip
    assert envoy.admin_stats_by_cluster({}) == {}
