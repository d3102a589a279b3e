"""Rendered manifests through ``validate_manifests``: clean renders pass, each mutation is named."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from workbook import chart, istio
from workbook.manifests import manifest_warnings, unknown_fields, validate_manifests

Docs = list[dict[str, Any]]


def render(overrides: dict[str, Any] | None = None) -> Docs:
    return chart.render(overrides or {}, release="scoring", namespace="canary-demo")


def find(docs: Docs, kind: str, name: str | None = None) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name):
            return doc
    raise AssertionError(f"no {kind} {name or ''} in the render")


def route(docs: Docs, name: str) -> dict[str, Any]:
    vs = find(docs, "VirtualService")
    return next(r for r in vs["spec"]["http"] if r.get("name") == name)


@pytest.mark.parametrize(
    "overrides",
    [
        {"canary": {"weight": 0}},
        {"canary": {"weight": 10}},
        {"canary": {"weight": 37}},
        {"canary": {"weight": 100}},
        {"canary": {"enabled": False}},
        {"namespace": {"create": True}},
        {"gateway": {"create": False, "name": "istio-system/shared"}},
        {"routing": {"timeout": None, "retries": None}},
        {"imagePullSecrets": [], "env": [{"name": "LOG_LEVEL", "value": "debug"}]},
    ],
    ids=lambda o: ",".join(o) + "=" + str(next(iter(o.values()))),
)
def test_chart_renders_validate_clean(overrides: dict[str, Any]) -> None:
    docs = render(overrides)
    assert validate_manifests(docs) == []


def test_namespace_create_renders_a_namespace_that_validates() -> None:
    docs = render({"namespace": {"create": True}})
    assert find(docs, "Namespace")["metadata"]["labels"]["istio-injection"] == "enabled"
    assert validate_manifests(docs) == []


def _typo_in_container(docs: Docs) -> None:
    container = find(docs, "Deployment", "scoring-stable")["spec"]["template"]["spec"]
    container["containers"][0]["imagePullPolicyy"] = "Always"


def _typo_in_route(docs: Docs) -> None:
    dest = route(docs, "weighted")["route"][1]
    dest["wieght"] = dest.pop("weight")
    route(docs, "weighted")["route"][0]["weight"] = 100


def _weights_90_30(docs: Docs) -> None:
    r = route(docs, "weighted")["route"]
    r[0]["weight"], r[1]["weight"] = 90, 30


def _missing_subset(docs: Docs) -> None:
    dr = find(docs, "DestinationRule")
    dr["spec"]["subsets"] = [s for s in dr["spec"]["subsets"] if s["name"] != "canary"]


def _no_destination_rule(docs: Docs) -> None:
    docs.remove(find(docs, "DestinationRule"))


def _header_route_after_weighted(docs: Docs) -> None:
    http = find(docs, "VirtualService")["spec"]["http"]
    http.append(http.pop(0))  # pin-canary now comes last


def _replicas_two(docs: Docs) -> None:
    find(docs, "Deployment", "scoring-stable")["spec"]["replicas"] = "two"


def _weight_heavy(docs: Docs) -> None:
    route(docs, "weighted")["route"][1]["weight"] = "heavy"


def _weight_150(docs: Docs) -> None:
    r = route(docs, "weighted")["route"]
    r[0]["weight"], r[1]["weight"] = -50, 150


def _hosts_string(docs: Docs) -> None:
    find(docs, "VirtualService")["spec"]["hosts"] = "*"


MUTATIONS: list[tuple[str, Callable[[Docs], None], str]] = [
    (
        "typo field in a Deployment",
        _typo_in_container,
        "Deployment canary-demo/scoring-stable: spec.template.spec.containers[0]: "
        "Additional properties are not allowed ('imagePullPolicyy' was unexpected)",
    ),
    (
        "typo field in a VirtualService",
        _typo_in_route,
        "VirtualService canary-demo/scoring: spec.http[2].route[1].wieght: unknown field",
    ),
    (
        "missing subset",
        _missing_subset,
        "VirtualService canary-demo/scoring: spec.http[0].route[0].destination.subset 'canary' is "
        "not a subset of host scoring.canary-demo.svc.cluster.local "
        "(DestinationRule canary-demo/scoring defines ['stable'])",
    ),
    (
        "no DestinationRule",
        _no_destination_rule,
        "VirtualService canary-demo/scoring: spec.http[1].route[0].destination.subset 'stable' "
        "needs a DestinationRule for host scoring.canary-demo.svc.cluster.local",
    ),
    (
        "replicas two",
        _replicas_two,
        "Deployment canary-demo/scoring-stable: spec.replicas: 'two' is not of type 'integer', "
        "'null'",
    ),
    (
        "weight not an integer",
        _weight_heavy,
        "VirtualService canary-demo/scoring: spec.http[2].route[1].weight: Input should be a "
        "valid integer",
    ),
    (
        "weight out of range",
        _weight_150,
        "VirtualService canary-demo/scoring: spec.http[2].route[0].weight must not be negative, "
        "got -50",
    ),
    (
        "hosts as a string",
        _hosts_string,
        "VirtualService canary-demo/scoring: spec.hosts: Input should be a valid list",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [(m, e) for _, m, e in MUTATIONS], ids=[n for n, _, _ in MUTATIONS]
)
def test_each_mutation_is_named(mutate: Callable[[Docs], None], expected: str) -> None:
    docs = copy.deepcopy(render({"canary": {"weight": 10}}))
    mutate(docs)
    problems = validate_manifests(docs)
    assert any(p.startswith(expected) for p in problems), "\n".join(problems)


def test_unreachable_route_is_a_warning_as_in_istiod() -> None:
    """istiod accepts a route after a catch-all and warns (pkg/config/validation/validation.go,
    ``analyzeUnreachableHTTPRules``): an error would refuse what a cluster takes."""
    docs = copy.deepcopy(render({"canary": {"weight": 10}}))
    _header_route_after_weighted(docs)
    assert validate_manifests(docs) == []
    assert manifest_warnings(docs) == [
        "VirtualService canary-demo/scoring: spec.http[2] is never used: weighted before it has "
        "no match and takes every request"
    ]
    assert manifest_warnings(render({"canary": {"weight": 10}})) == []


def test_local_gateway_limits_do_not_apply_to_k8s() -> None:
    """Valid Istio the local gateway cannot serve (mirrors) passes the k8s manifests check."""
    docs = copy.deepcopy(render({"canary": {"weight": 10}}))
    host = "scoring.canary-demo.svc.cluster.local"
    route(docs, "weighted")["mirrors"] = [{"destination": {"host": host, "subset": "canary"}}]
    assert any(p.unsupported for p in istio.problems(docs))
    assert validate_manifests(docs) == []


def test_same_wording_as_the_local_gateway() -> None:
    from workbook import istio
    from workbook.errors import ConfigError

    docs = copy.deepcopy(render({"canary": {"weight": 10}}))
    _weight_150(docs)
    (problem,) = validate_manifests(docs)
    with pytest.raises(ConfigError) as err:
        istio.validate(docs)
    assert str(err.value) == problem


def test_weights_need_not_sum_to_100() -> None:
    """istio/api virtual_service.proto: a destination gets weight/(sum of weights); istiod's
    validation.go ``validateHTTPRouteDestinations`` has no sum rule."""
    docs = copy.deepcopy(render({"canary": {"weight": 10}}))
    _weights_90_30(docs)
    assert validate_manifests(docs) == []


def test_a_mutation_reports_only_its_own_problem() -> None:
    docs = copy.deepcopy(render({"canary": {"weight": 10}}))
    _weight_150(docs)
    assert len(validate_manifests(docs)) == 1


def test_every_problem_is_reported_not_only_the_first() -> None:
    docs = copy.deepcopy(render({"canary": {"weight": 10}}))
    _replicas_two(docs)
    _typo_in_container(docs)
    _weight_150(docs)
    problems = validate_manifests(docs)
    assert len(problems) == 3, problems


def test_subsets_may_live_in_known_objects() -> None:
    """``apply`` validates a lone VirtualService against the DestinationRules already live."""
    docs = render({"canary": {"weight": 10}})
    vs, dr = find(docs, "VirtualService"), find(docs, "DestinationRule")
    assert validate_manifests([vs], known=[dr]) == []
    assert any("needs a DestinationRule" in p for p in validate_manifests([vs]))


def test_short_host_names_resolve_in_the_object_namespace() -> None:
    docs = copy.deepcopy(render({"canary": {"weight": 10}}))
    for r in find(docs, "VirtualService")["spec"]["http"]:
        for dest in r["route"]:
            dest["destination"]["host"] = "scoring"
    assert validate_manifests(docs) == []


def test_missing_identity_fields() -> None:
    problems = validate_manifests([{"kind": "Service", "metadata": {}}])
    assert problems == ["Service <unnamed>: apiVersion, metadata.name is required"]


def test_unknown_kind_has_no_schema() -> None:
    doc = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert validate_manifests([doc], default_namespace="ns") == [
        "Widget ns/w: no Kubernetes 1.32.0 schema for kind Widget apiVersion example.com/v1"
    ]


def test_unknown_fields_walks_dicts_and_lists() -> None:
    source = {"a": 1, "b": {"c": 2, "d": [{"e": 1, "f": 2}]}}
    dumped = {"a": 1, "b": {"c": 2, "d": [{"e": 1}]}}
    assert list(unknown_fields(source, dumped)) == ["b.d[0].f"]


def test_live_rules_with_fields_the_local_gateway_lacks_still_resolve_subsets() -> None:
    """A live DestinationRule with a connectionPool (valid Istio, not served locally) still
    defines the subsets a VirtualService applied on k8s names."""
    docs = render({"canary": {"weight": 10}})
    vs, dr = find(docs, "VirtualService"), copy.deepcopy(find(docs, "DestinationRule"))
    dr["spec"]["trafficPolicy"] = {"connectionPool": {"tcp": {"maxConnections": 10}}}
    assert validate_manifests([vs], known=[dr]) == []
