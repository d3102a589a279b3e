"""Which weights a gateway really serves, read from its Envoy route configuration (pure).

Istio names each Envoy route after its VirtualService ``http[].name`` and each cluster
``outbound|PORT|SUBSET|HOST``; the chart names its split route ``weighted``. So the same reading
works on the local gateway's config dump and on an Istio ingress gateway's
(``/config_dump?resource=dynamic_route_configs``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: Name of the chart's VirtualService route that carries the stable/canary split.
WEIGHTED_ROUTE = "weighted"


def subset_of_cluster(name: str) -> str | None:
    """``outbound|80|canary|scoring.ns.svc.cluster.local`` → ``canary``; None for other names."""
    parts = name.split("|")
    if len(parts) != 4 or parts[0] != "outbound" or not parts[1].isdigit():
        return None
    return parts[2]


def route_weights(route: Mapping[str, Any]) -> dict[str, int]:
    """Subset → weight of one Envoy route (a single cluster is weight 100)."""
    action = route.get("route") or {}
    if "cluster" in action:
        subset = subset_of_cluster(str(action["cluster"]))
        return {subset: 100} if subset is not None else {}
    out: dict[str, int] = {}
    for c in (action.get("weighted_clusters") or {}).get("clusters") or []:
        subset = subset_of_cluster(str(c.get("name", "")))
        if subset is not None:
            out[subset] = out.get(subset, 0) + int(c.get("weight") or 0)
    return out


def _routes(route_configs: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for rc in route_configs:
        for vh in rc.get("virtual_hosts") or []:
            yield from vh.get("routes") or []


def served_weights(
    route_configs: Iterable[Mapping[str, Any]], route_name: str = WEIGHTED_ROUTE
) -> dict[str, int]:
    """Subset → weight of the first route named ``route_name``; {} when none is served.

    Weights are normalised to percentages the way Envoy splits them (weight / sum), so a
    configuration of 1:3 reads as 25/75.
    """
    for route in _routes(route_configs):
        if route.get("name") == route_name:
            raw = route_weights(route)
            total = sum(raw.values())
            if not total:
                return {k: 0 for k in raw}
            return {k: round(100 * v / total) for k, v in raw.items()}
    return {}


def config_dump_routes(dump: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The RouteConfigurations in an Envoy admin ``/config_dump`` (dynamic and static)."""
    out = []
    for cfg in dump.get("configs") or []:
        for key in ("dynamic_route_configs", "static_route_configs"):
            for item in cfg.get(key) or []:
                if isinstance(item.get("route_config"), Mapping):
                    out.append(dict(item["route_config"]))
        if isinstance(cfg.get("route_config"), Mapping):  # ?resource=dynamic_route_configs
            out.append(dict(cfg["route_config"]))
    return out
