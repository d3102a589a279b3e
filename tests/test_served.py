"""Reading the weights a gateway serves from its Envoy route configuration (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from workbook import served

NS, VS = "canary-demo", "scoring"
META = {
    "filter_metadata": {
        "istio": {"config": f"/apis/networking.istio.io/v1/namespaces/{NS}/virtual-service/{VS}"}
    }
}


def cluster(subset: str) -> str:
    return f"outbound|80|{subset}|scoring.{NS}.svc.cluster.local"


def route(name: str, action: dict[str, Any], meta: dict[str, Any] = META) -> dict[str, Any]:
    return {"name": name, "route": action, "metadata": meta}


def weighted(**weights: int) -> dict[str, Any]:
    return {
        "weighted_clusters": {
            "clusters": [{"name": cluster(k), "weight": v} for k, v in weights.items()]
        }
    }


def config(*routes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"virtual_hosts": [{"name": "h", "routes": list(routes)}]}]


@pytest.mark.parametrize(
    ("routes", "want"),
    [
        (
            [
                route("pin-canary", {"cluster": cluster("canary")}),
                route("weighted", weighted(stable=90, canary=10)),
            ],
            {"stable": 90, "canary": 10},
        ),
        ([route("weighted", {"cluster": cluster("stable")})], {"stable": 100}),
        ([route("weighted.0", weighted(stable=1, canary=3))], {"stable": 1, "canary": 3}),
        ([route("weighted", weighted(stable=50), {})], None),  # another VirtualService's route
        ([route("other", weighted(stable=50))], None),
    ],
)
def test_served_weights(routes: list[dict[str, Any]], want: dict[str, int] | None) -> None:
    assert served.served_weights(config(*routes), NS, VS) == want


def test_percent_follows_envoy_weight_over_sum() -> None:
    assert served.as_percent({"stable": 1, "canary": 3}) == {"stable": 25, "canary": 75}
    assert served.as_percent({"stable": 0, "canary": 7}) == {"canary": 100}
    assert served.as_percent({}) == {}


def test_route_configs_of_both_dump_shapes() -> None:
    rc = {"name": "r"}
    whole = {"configs": [{"dynamic_route_configs": [{"route_config": rc}]}]}
    filtered = {"configs": [{"route_config": rc}]}
    assert list(served.route_configs(whole)) == list(served.route_configs(filtered)) == [rc]


@pytest.mark.parametrize(
    ("name", "subset"),
    [(cluster("canary"), "canary"), ("outbound|80||h", ""), ("inbound|80||h", None), ("x", None)],
)
def test_subset_of_cluster(name: str, subset: str | None) -> None:
    assert served.subset_of_cluster(name) == subset
