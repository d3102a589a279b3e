"""Which weights a gateway really serves, read from its Envoy configuration dump (pure).

One reading for both targets: the local gateway's Envoy and an Istio ingress gateway's Envoy
(``/config_dump?resource=dynamic_route_configs`` on the admin port). How istiod writes a route
(istio/istio ``pilot/pkg/networking/core/route/route.go``), which our translator follows: the Envoy
route carries its VirtualService in ``metadata.filter_metadata.istio.config``
(``/apis/networking.istio.io/<version>/namespaces/<ns>/virtual-service/<name>``) and the http
route's ``name``; destinations become clusters named ``outbound|<port>|<subset>|<host>``
(``model.BuildSubsetKey``); with several destinations those of weight 0 are left out of
``weighted_clusters``. The chart names its split route ``weighted``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

#: Name of the chart's VirtualService route that carries the stable/canary split.
WEIGHTED_ROUTE = "weighted"


def subset_of_cluster(name: str) -> str | None:
    """``outbound|80|canary|scoring.ns.svc.cluster.local`` → ``canary``; None for other names."""
    parts = name.split("|")
    if len(parts) != 4 or parts[0] != "outbound" or not parts[1].isdigit():
        return None
    return parts[2]


def route_configs(dump: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every RouteConfiguration in a config dump, whole or filtered by resource."""
    for cfg in dump.get("configs") or []:
        if "route_config" in cfg:  # ?resource=dynamic_route_configs
            yield cfg["route_config"]
        for key in ("dynamic_route_configs", "static_route_configs"):  # a whole RoutesConfigDump
            for item in cfg.get(key) or []:
                if "route_config" in item:
                    yield item["route_config"]


def config_path(namespace: str, vs_name: str) -> str:
    """The suffix istiod's route metadata ends with for one VirtualService."""
    return f"/namespaces/{namespace}/virtual-service/{vs_name}"


def route_weights(route: Mapping[str, Any]) -> dict[str, int]:
    """Subset → weight of one Envoy route (a single cluster is weight 100)."""
    action = route.get("route") or {}
    if "cluster" in action:
        return {subset_of_cluster(str(action["cluster"])) or "": 100}
    out: dict[str, int] = {}
    for c in (action.get("weighted_clusters") or {}).get("clusters") or []:
        key = subset_of_cluster(str(c.get("name", ""))) or ""
        out[key] = out.get(key, 0) + int(c.get("weight") or 0)
    return out


def served_weights(
    configs: Iterable[Mapping[str, Any]],
    namespace: str,
    vs_name: str,
    route: str = WEIGHTED_ROUTE,
) -> dict[str, int] | None:
    """Subset → weight of the named http route of one VirtualService in these route
    configurations; None when no such route is served (not pushed, or not bound to this gateway).
    When several virtual hosts carry the route (several hosts), the first is returned."""
    suffix = config_path(namespace, vs_name)
    for rc in configs:
        for vh in rc.get("virtual_hosts") or []:
            for r in vh.get("routes") or []:
                config = ((r.get("metadata") or {}).get("filter_metadata") or {}).get("istio") or {}
                if not str(config.get("config", "")).endswith(suffix):
                    continue
                name = str(r.get("name", ""))
                if name == route or name.startswith(route + "."):
                    return route_weights(r)
    return None


def as_percent(weights: Mapping[str, int]) -> dict[str, int]:
    """Weights normalised to percent (Envoy splits by weight/sum), zeros dropped."""
    total = sum(int(w) for w in weights.values())
    if total <= 0:
        return {}
    return {k: round(100 * int(w) / total) for k, w in weights.items() if int(w)}
