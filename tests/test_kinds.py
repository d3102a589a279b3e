"""One kind list and one alias map for both targets; one shape check for every Istio object."""

from __future__ import annotations

from typing import Any

import pytest

from workbook import istio, kinds
from workbook.errors import ConfigError
from workbook.kube import client


@pytest.mark.parametrize(
    ("alias", "kind"),
    [
        ("vs", "VirtualService"), ("virtualservice", "VirtualService"),
        ("VirtualServices", "VirtualService"), ("VirtualService", "VirtualService"),
        ("dr", "DestinationRule"), ("destinationrules", "DestinationRule"),
        ("gw", "Gateway"), ("gateways", "Gateway"), ("se", "ServiceEntry"),
        ("serviceentries", "ServiceEntry"), ("sidecar", "Sidecar"),
        ("deploy", "Deployment"), ("deployments", "Deployment"), ("svc", "Service"),
        ("services", "Service"), ("po", "Pod"), ("pods", "Pod"), ("pod", "Pod"),
        ("ns", "Namespace"), ("namespaces", "Namespace"), (" Pods ", "Pod"),
    ],
)  # fmt: skip
def test_canonical_kind(alias: str, kind: str) -> None:
    assert kinds.canonical_kind(alias) == kind
    assert client.canonical_kind(alias) == kind  # the k8s target reads the same map


@pytest.mark.parametrize("alias", ["secret", "secrets", "", "virtualservicess", "envoyfilter"])
def test_unknown_kind_names_the_argument(alias: str) -> None:
    with pytest.raises(ConfigError) as err:
        kinds.canonical_kind(alias)
    assert (err.value.obj, err.value.field) == ("get", "KIND")
    assert "VirtualService" in str(err.value) and repr(alias) in str(err.value)


def test_one_list() -> None:
    assert client.ISTIO_KINDS is kinds.ISTIO_KINDS
    assert set(istio.KINDS) <= set(kinds.ISTIO_KINDS)
    assert "Secret" not in kinds.CORE_KINDS


def vs(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "scoring", "namespace": "canary-demo"},
        "spec": {},
    }
    obj.update(changes)
    return obj


@pytest.mark.parametrize(
    ("obj", "where", "field", "needle"),
    [
        (["a"], "document 3", "", "must be a mapping, got list"),
        ({"kind": "Deployment"}, "document 3", "kind", "got 'Deployment'"),
        (vs(metadata=None), "document 3 (VirtualService)", "metadata", "must be a mapping"),
        (vs(metadata={"namespace": "x"}), "document 3 (VirtualService)", "metadata.name",
         "is required"),
        (vs(metadata={"name": ""}), "document 3 (VirtualService)", "metadata.name", "is required"),
        (vs(apiVersion="v1"), "VirtualService canary-demo/scoring", "apiVersion",
         "networking.istio.io/v1"),
        (vs(spec=[]), "VirtualService canary-demo/scoring", "spec", "must be a mapping"),
    ],
)  # fmt: skip
def test_shape(obj: Any, where: str, field: str, needle: str) -> None:
    problem = istio.shape_problem(obj, 3)
    assert problem is not None
    assert (problem.object, problem.field) == (where, field)
    assert needle in problem.message
    with pytest.raises(ConfigError) as err:
        istio.check_object_shape(obj, 3)
    assert str(err.value) == str(problem)


def test_shape_accepts_every_istio_kind() -> None:
    for kind in kinds.ISTIO_KINDS:
        assert istio.shape_problem(vs(kind=kind), 0) is None
