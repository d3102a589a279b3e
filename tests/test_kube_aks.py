"""The k8s target's first contact with AKS: Istio flavour, namespace ownership, served weights.

Against a fake Kubernetes API (kmock, tests/kmock_support.py), seeded with what the AKS Istio
add-on and upstream Istio create (Microsoft Learn: "Deploy ingress gateways for the Istio service
mesh add-on for AKS", "Istio service mesh add-on general troubleshooting": istiod Deployments
``istiod-asm-1-NN`` labelled ``app=istiod`` in ``aks-istio-system``; Services
``aks-istio-ingressgateway-external``/``-internal`` in ``aks-istio-ingress``; upstream:
``istiod`` and ``istio-ingressgateway`` in ``istio-system``).

The gateway's Envoy is faked at the edge the code reaches it through (a port-forward to the admin
port): its config dump holds routes produced from the chart's own render by ``workbook.envoy``,
which follows istiod's route translation (cluster names ``outbound|port|subset|host``, the
VirtualService in the route metadata, zero weights left out).
"""

from __future__ import annotations

from typing import Any

import pytest
from kmock_support import KubeFake, kube_fake  # noqa: F401  (the ``kube`` fixture)

from workbook import chart, envoy
from workbook import served as served_mod
from workbook.errors import AzureError, ConfigError
from workbook.kube import client, proxy
from workbook.kube.istio_flavour import (
    FlavourOverrides,
    IstioFlavour,
    choose_revision,
    detect_flavour,
    istiod_revisions,
    resolve_flavour,
)

NS = "canary-demo"


def deployment(namespace: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}}},
    }


def service(namespace: str, name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": "LoadBalancer",
            "selector": selector,
            "ports": [{"name": "http2", "port": 80}],
        },
    }


def addon_cluster(kube: KubeFake, revisions: tuple[str, ...] = ("asm-1-26",)) -> None:
    for rev in revisions:
        kube.put(
            deployment("aks-istio-system", f"istiod-{rev}", {"app": "istiod", "istio.io/rev": rev})
        )
    labels = {
        "app": "aks-istio-ingressgateway-external",
        "istio": "aks-istio-ingressgateway-external",
    }
    kube.put(service("aks-istio-ingress", "aks-istio-ingressgateway-external", labels))


def upstream_cluster(kube: KubeFake) -> None:
    kube.put(deployment("istio-system", "istiod", {"app": "istiod", "istio.io/rev": "default"}))
    labels = {"app": "istio-ingressgateway", "istio": "ingressgateway"}
    kube.put(service("istio-system", "istio-ingressgateway", labels))


# ---- flavour ------------------------------------------------------------------------------------


def test_detects_the_addon_its_revision_and_ingress(kube: KubeFake) -> None:
    addon_cluster(kube)
    flavour = detect_flavour(kube.api)
    assert flavour == IstioFlavour(
        "addon",
        "asm-1-26",
        "aks-istio-ingress",
        "aks-istio-ingressgateway-external",
        {"istio": "aks-istio-ingressgateway-external"},
        ("asm-1-26",),
    )
    assert flavour.namespace_labels() == {"istio.io/rev": "asm-1-26"}
    docs = chart.render(chart.merge_values({"namespace": {"create": True}}, flavour.chart_values()))
    gateway = next(d for d in docs if d["kind"] == "Gateway")
    assert gateway["spec"]["selector"] == {"istio": "aks-istio-ingressgateway-external"}
    ns = next(d for d in docs if d["kind"] == "Namespace")
    assert ns["metadata"]["labels"]["istio.io/rev"] == "asm-1-26"
    assert "istio-injection" not in ns["metadata"]["labels"]


def test_detects_upstream_istio(kube: KubeFake) -> None:
    upstream_cluster(kube)
    flavour = detect_flavour(kube.api)
    assert (flavour.name, flavour.revision) == ("upstream", "")
    assert (flavour.gateway_namespace, flavour.gateway_service) == (
        "istio-system",
        "istio-ingressgateway",
    )
    assert flavour.gateway_selector == {"istio": "ingressgateway"}
    assert flavour.namespace_labels() == {"istio-injection": "enabled"}


def test_no_istio_or_no_ingress_says_what_to_do(kube: KubeFake) -> None:
    with pytest.raises(AzureError, match="no istiod in aks-istio-system"):
        detect_flavour(kube.api)
    kube.put(
        deployment(
            "aks-istio-system", "istiod-asm-1-26", {"app": "istiod", "istio.io/rev": "asm-1-26"}
        )
    )
    with pytest.raises(
        AzureError, match="az aks mesh enable-ingress-gateway --ingress-gateway-type external"
    ):
        detect_flavour(kube.api)


def test_an_addon_upgrade_in_progress_needs_a_choice(kube: KubeFake) -> None:
    addon_cluster(kube, ("asm-1-25", "asm-1-26"))
    with pytest.raises(AzureError, match="revisions asm-1-25, asm-1-26"):
        detect_flavour(kube.api)
    chosen = detect_flavour(kube.api, namespace_labels={"istio.io/rev": "asm-1-25"})
    assert (chosen.revision, chosen.revisions) == ("asm-1-25", ("asm-1-25", "asm-1-26"))
    assert resolve_flavour(kube.api, FlavourOverrides(revision="asm-1-26")).revision == "asm-1-26"


def test_settings_override_detection_field_by_field(kube: KubeFake) -> None:
    addon_cluster(kube)
    o = FlavourOverrides(
        gateway_service="aks-istio-ingress/my-gw", gateway_selector={"app": "my-gw"}
    )
    f = resolve_flavour(kube.api, o)
    assert (f.name, f.revision, f.gateway_service, dict(f.gateway_selector)) == (
        "addon",
        "asm-1-26",
        "my-gw",
        {"app": "my-gw"},
    )
    requests = len(kube.requests("get"))
    full = resolve_flavour(
        kube.api, FlavourOverrides("addon", "asm-1-27", addon_ingress="internal")
    )
    assert len(kube.requests("get")) == requests  # the settings said everything: no API call
    assert full.gateway_selector == {"istio": "aks-istio-ingressgateway-internal"}
    assert full.chart_values()["istio"] == {
        "flavour": "addon",
        "revision": "asm-1-27",
        "addonIngress": "internal",
    }


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (FlavourOverrides("linkerd"), "flavour"),
        (FlavourOverrides("addon", "asm-1-26", addon_ingress="public"), "addon_ingress"),
        (FlavourOverrides("upstream", gateway_service="no-slash"), "gateway_service"),
    ],
)
def test_bad_overrides_name_the_setting(
    kube: KubeFake, overrides: FlavourOverrides, field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_flavour(kube.api, overrides)
    assert info.value.field == field


def test_addon_forced_on_an_upstream_cluster_needs_a_revision(kube: KubeFake) -> None:
    upstream_cluster(kube)
    with pytest.raises(ConfigError) as info:
        resolve_flavour(kube.api, FlavourOverrides("addon"))
    assert info.value.field == "revision"


def test_revisions_from_labels_or_names() -> None:
    deps = [
        deployment("x", "istiod-asm-1-24", {"app": "istiod"}),
        deployment("x", "istiod", {"app": "istiod", "istio.io/rev": "default"}),
        deployment("x", "other", {"app": "web"}),
    ]
    assert istiod_revisions(deps) == ["", "asm-1-24"]
    assert choose_revision(["asm-1-24"], None) == "asm-1-24"


# ---- namespace ownership ------------------------------------------------------------------------

INJECT = {"istio.io/rev": "asm-1-26"}


def test_a_missing_namespace_is_created_and_owned_by_the_release(kube: KubeFake) -> None:
    plan = client.prepare_namespace(kube.api, NS, release="scoring", injection=INJECT)
    assert (plan.exists, plan.owned_by_release) == (False, True)
    assert plan.chart_values() == {"namespace": {"create": True}}
    ns = kube.stored("Namespace", None, NS)
    assert ns is not None
    assert ns["metadata"]["labels"] == {
        "istio.io/rev": "asm-1-26",
        "app.kubernetes.io/managed-by": "Helm",
    }
    assert ns["metadata"]["annotations"] == {
        "meta.helm.sh/release-name": "scoring",
        "meta.helm.sh/release-namespace": NS,
    }
    again = client.prepare_namespace(kube.api, NS, release="scoring", injection=INJECT)
    assert again.owned_by_release is True  # still rendered: dropping it would delete it


def test_an_existing_namespace_is_never_owned_and_survives_down(kube: KubeFake) -> None:
    kube.put(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": {"team": "b"}}}
    )
    plan = client.prepare_namespace(kube.api, NS, release="scoring", injection=INJECT)
    assert plan.chart_values() == {"namespace": {"create": False}}  # so Helm never deletes it
    ns = kube.stored("Namespace", None, NS)
    assert ns is not None
    assert ns["metadata"]["labels"] == {"team": "b", "istio.io/rev": "asm-1-26"}
    assert "annotations" not in ns["metadata"]
    docs = chart.render(plan.chart_values(), namespace=NS)
    assert "Namespace" not in [d["kind"] for d in docs]  # uninstall deletes only rendered objects


@pytest.mark.parametrize(
    "labels",
    [{"istio-injection": "disabled"}, {"istio-injection": "enabled"}, {"istio.io/rev": "asm-1-25"}],
)
def test_an_explicit_injection_choice_is_kept(kube: KubeFake, labels: dict[str, str]) -> None:
    kube.put(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": dict(labels)}}
    )
    plan = client.prepare_namespace(kube.api, NS, release="scoring", injection=INJECT)
    stored = kube.stored("Namespace", None, NS)
    assert stored is not None and stored["metadata"]["labels"] == labels
    assert plan.add_labels == {} and plan.owned_by_release is False
    assert plan.notes and "kept as the namespace owner's choice" in plan.notes[0]


def test_another_releases_namespace_is_not_ours(kube: KubeFake) -> None:
    notes = {"meta.helm.sh/release-name": "other", "meta.helm.sh/release-namespace": NS}
    kube.put(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "annotations": notes}}
    )
    plan = client.prepare_namespace(kube.api, NS, release="scoring", injection=INJECT)
    assert plan.owned_by_release is False


def test_without_create_a_missing_namespace_is_made_but_not_owned(kube: KubeFake) -> None:
    plan = client.prepare_namespace(kube.api, NS, release="scoring", injection=INJECT, create=False)
    assert plan.owned_by_release is False
    stored = kube.stored("Namespace", None, NS)
    assert stored is not None and "annotations" not in stored["metadata"]


# ---- served weights: the gateway's own Envoy -----------------------------------------------------

GATEWAY = proxy.GatewayPods("aks-istio-ingress", {"istio": "aks-istio-ingressgateway-external"})
ADDON_VALUES = {"istio": {"flavour": "addon", "revision": "asm-1-26"}}


def gateway_pod(name: str, ready: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": GATEWAY.namespace,
            "labels": {"istio": "aks-istio-ingressgateway-external", "app": "x"},
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def envoy_dump(weight: int, **values: Any) -> dict[str, Any]:
    """The config dump of a gateway that applied the chart with ``canary.weight`` = weight."""
    docs = chart.render(
        chart.merge_values(ADDON_VALUES, {"canary": {"weight": weight}, **values}), namespace=NS
    )
    routes = envoy.translate(docs, [], namespace=NS).routes
    return {
        "configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"},
            {
                "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
                "dynamic_route_configs": [{"version_info": "1", "route_config": routes}],
            },
        ]
    }


class FakeProxies:
    """Gateway pods' Envoys: each serves an older release until it has been asked ``lag`` times."""

    def __init__(self, old: dict[str, Any], new: dict[str, Any], lag: int) -> None:
        self.old, self.new, self.lag = old, new, lag
        self.asked: dict[str, int] = {}

    def __call__(self, namespace: str, pod: str) -> dict[str, Any]:
        assert namespace == GATEWAY.namespace
        self.asked[pod] = self.asked.get(pod, 0) + 1
        return self.new if self.asked[pod] > self.lag else self.old


@pytest.mark.parametrize(
    ("weight", "want"),
    [(0, {"stable": 100}), (37, {"stable": 63, "canary": 37}), (100, {"canary": 100})],
)
def test_served_weights_read_istio_routes(weight: int, want: dict[str, int]) -> None:
    served = proxy.served_weights(envoy_dump(weight), NS, "scoring")
    assert served is not None and served_mod.as_percent(served) == want
    assert proxy.served_weights(envoy_dump(weight), NS, "other") is None
    assert proxy.served_weights(envoy_dump(weight), "elsewhere", "scoring") is None
    unrouted = proxy.served_weights(
        envoy_dump(weight, canary={"weight": weight, "routed": False}), NS, "scoring"
    )
    assert unrouted == {"stable": 100}


def test_a_shift_waits_until_every_gateway_pod_serves_it(kube: KubeFake) -> None:
    for name in ("gw-a", "gw-b"):
        kube.put(gateway_pod(name))
    kube.put(gateway_pod("gw-starting", ready=False))
    fake = FakeProxies(envoy_dump(0), envoy_dump(30), lag=3)
    naps: list[float] = []
    served = proxy.wait_for_served_weights(
        kube.api, GATEWAY, NS, "scoring", {"stable": 70, "canary": 30},
        fetch=fake, timeout_s=60, interval_s=0.5, sleep=naps.append,
    )  # fmt: skip
    assert served == {"gw-a": {"stable": 70, "canary": 30}, "gw-b": {"stable": 70, "canary": 30}}
    assert fake.asked == {
        "gw-a": 4,
        "gw-b": 4,
    }  # not before the pods served it; never the unready pod
    assert naps == [0.5, 0.5, 0.5]


def test_a_gateway_that_never_serves_the_weights_times_out_naming_it(kube: KubeFake) -> None:
    kube.put(gateway_pod("gw-a"))
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    with pytest.raises(AzureError) as info:
        proxy.wait_for_served_weights(
            kube.api, GATEWAY, NS, "scoring", {"stable": 70, "canary": 30},
            fetch=FakeProxies(envoy_dump(0), envoy_dump(0), lag=0),
            timeout_s=5, interval_s=1, sleep=sleep, clock=lambda: now[0],
        )  # fmt: skip
    text = str(info.value)
    assert text.startswith("VirtualService canary-demo/scoring: route 'weighted' expected")
    assert "gw-a serves {'stable': 100}" in text and "istioctl proxy-status" in text
    assert now[0] == 5


def test_no_ready_gateway_pod_is_an_error(kube: KubeFake) -> None:
    kube.put(gateway_pod("gw-a", ready=False))
    with pytest.raises(
        AzureError,
        match=r"no ready ingress gateway pods aks-istio-ingress/\[istio=aks-istio-ingressgate",
    ):
        proxy.wait_for_served_weights(
            kube.api, GATEWAY, NS, "scoring", {"stable": 100},
            fetch=FakeProxies({}, {}, 0), timeout_s=0, sleep=lambda s: None,
        )  # fmt: skip


def test_http_responses_from_the_admin_port_parse() -> None:
    body = b'{"configs": []}'
    plain = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body + b"junk"
    assert proxy.parse_http_response(plain) == (200, body)
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked = head + b'5\r\n{"con\r\na\r\nfigs": []}\r\n0\r\n\r\n'
    assert proxy.parse_http_response(chunked) == (200, body)
    assert proxy.parse_http_response(b"HTTP/1.0 404 Not Found\r\n\r\nno") == (404, b"no")
