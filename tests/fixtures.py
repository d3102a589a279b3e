"""Test fixtures from the chart's own render: the objects tests feed the translator and validator.

Never hand-copied chart YAML: ``chart_objects`` renders charts/scoring-canary with
``workbook.chart.render``, so a change to the chart reaches every test that stands in for it.
Purpose-built YAML that exercises one Istio feature stays in the test that uses it.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from typing import Any

import yaml

from workbook import chart
from workbook.envoy import Endpoint
from workbook.istio import KINDS as ISTIO_KINDS

NAMESPACE = "canary-demo"
RELEASE = "scoring"
HOST = f"scoring.{NAMESPACE}.svc.cluster.local"
#: The container port azmlinfsrv listens on (the chart's ``service.targetPort``).
TARGET_PORT = 5001


@functools.lru_cache(maxsize=32)
def _render(values_yaml: str) -> str:
    docs = chart.render(yaml.safe_load(values_yaml), release=RELEASE, namespace=NAMESPACE)
    return yaml.safe_dump_all(docs, sort_keys=False)


def _nested(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``canary__weight=10`` style keys → ``{"canary": {"weight": 10}}``; dicts pass through."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        node = out
        *parents, leaf = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def chart_docs(values: Mapping[str, Any] | None = None, **overrides: Any) -> list[dict[str, Any]]:
    """Every object the chart renders (a fresh copy), with chart values ``values`` and
    ``overrides`` (``canary_weight=10`` sets ``canary.weight``; ``a__b=x`` sets ``a.b``)."""
    merged = chart.merge_values(dict(values or {}), _nested(_aliases(overrides)))
    return [d for d in yaml.safe_load_all(_render(yaml.safe_dump(merged, sort_keys=True))) if d]


def _aliases(overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(overrides)
    if "canary_weight" in out:
        out["canary__weight"] = out.pop("canary_weight")
    return out


def chart_objects(
    values: Mapping[str, Any] | None = None, **overrides: Any
) -> list[dict[str, Any]]:
    """What the local gateway translates: the chart's Service, Deployments and Istio objects."""
    keep = ("Service", "Deployment", *ISTIO_KINDS)
    return [d for d in chart_docs(values, **overrides) if d.get("kind") in keep]


def istio_objects(
    values: Mapping[str, Any] | None = None, **overrides: Any
) -> list[dict[str, Any]]:
    """The chart's Gateway, DestinationRule and VirtualService."""
    return [d for d in chart_docs(values, **overrides) if d.get("kind") in ISTIO_KINDS]


def deployments(values: Mapping[str, Any] | None = None, **overrides: Any) -> list[dict[str, Any]]:
    """The chart's Deployments."""
    return [d for d in chart_docs(values, **overrides) if d.get("kind") == "Deployment"]


def of_kind(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The first object of ``kind`` (and ``name``) in ``docs`` (the object itself, to mutate)."""
    for doc in docs:
        if doc.get("kind") == kind and (name is None or doc["metadata"]["name"] == name):
            return doc
    raise AssertionError(f"no {kind} {name or ''} among {[d.get('kind') for d in docs]}")


def pod_labels(track: str, values: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The pod labels of the chart's Deployment for ``track`` (stable or canary)."""
    dep = of_kind(deployments(values), "Deployment", f"{RELEASE}-{track}")
    return dict(copy.deepcopy(dep["spec"]["template"]["metadata"]["labels"]))


def endpoints(ports: Mapping[str, int], address: str = "127.0.0.1") -> list[Endpoint]:
    """One ready pod per track in ``ports`` (track → local port), labelled as the chart labels
    its pods, listening on the chart's container port."""
    return [
        Endpoint(f"{RELEASE}-{track}-0", pod_labels(track), address, {TARGET_PORT: port})
        for track, port in ports.items()
    ]
