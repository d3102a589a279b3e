"""Kiali console links: exact URLs, encoding, trailing slashes, Istio object paths."""

from __future__ import annotations

import pytest

from workbook import kiali
from workbook.errors import ConfigError

BASE = "http://localhost:20001/kiali"
CONSOLE = BASE + "/console"
GRAPH = (
    CONSOLE + "/graph/namespaces/?namespaces=canary-demo&graphType=versionedApp"
    "&edges=trafficDistribution%2CtrafficRate&duration=600&injectServiceNodes=true"
)


@pytest.mark.parametrize("base", [BASE, BASE + "/", BASE + "//", f"  {BASE}/ "])
def test_graph_url_strips_trailing_slash(base: str) -> None:
    assert kiali.graph_url(base, "canary-demo") == GRAPH


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, GRAPH),
        (
            {"duration_s": 3600, "graph_type": "workload"},
            GRAPH.replace("versionedApp", "workload").replace("600", "3600"),
        ),
        ({"edges": ["trafficDistribution"]}, GRAPH.replace("%2CtrafficRate", "")),
    ],
)
def test_graph_url_options(kwargs: dict, expected: str) -> None:
    assert kiali.graph_url(BASE, "canary-demo", **kwargs) == expected


def test_graph_url_several_namespaces_are_comma_joined_and_encoded() -> None:
    url = kiali.graph_url(BASE, ["canary-demo", "istio-system"])
    assert "namespaces=canary-demo%2Cistio-system&" in url


@pytest.mark.parametrize(
    ("section", "name", "expected"),
    [
        ("applications", "scoring", "/namespaces/canary-demo/applications/scoring"),
        ("workloads", "scoring-canary", "/namespaces/canary-demo/workloads/scoring-canary"),
        ("services", "scoring", "/namespaces/canary-demo/services/scoring"),
        ("services", "a b/c", "/namespaces/canary-demo/services/a%20b%2Fc"),
    ],
)
def test_detail_urls(section: str, name: str, expected: str) -> None:
    assert kiali.detail_url(BASE + "/", "canary-demo", section, name) == CONSOLE + expected


@pytest.mark.parametrize(
    ("obj", "key", "path"),
    [
        (
            "VirtualService/scoring",
            "VirtualService/scoring",
            "networking.istio.io/v1/VirtualService/scoring",
        ),
        (
            ("DestinationRule", "scoring"),
            "DestinationRule/scoring",
            "networking.istio.io/v1/DestinationRule/scoring",
        ),
        (
            {
                "apiVersion": "networking.istio.io/v1beta1",
                "kind": "Gateway",
                "metadata": {"name": "scoring-gateway"},
            },
            "Gateway/scoring-gateway",
            "networking.istio.io/v1beta1/Gateway/scoring-gateway",
        ),
        (
            "AuthorizationPolicy/deny-all",
            "AuthorizationPolicy/deny-all",
            "security.istio.io/v1/AuthorizationPolicy/deny-all",
        ),
    ],
)
def test_istio_object_urls(obj: object, key: str, path: str) -> None:
    out = kiali.links(BASE, "canary-demo", "scoring", [], [obj])  # type: ignore[list-item]
    assert out.istio == {key: f"{CONSOLE}/namespaces/canary-demo/istio/{path}"}


def test_legacy_istio_paths() -> None:
    out = kiali.links(
        BASE, "ns", "scoring", [], ["VirtualService/scoring"], legacy_istio_paths=True
    )
    assert (
        out.istio["VirtualService/scoring"]
        == f"{CONSOLE}/namespaces/ns/istio/virtualservices/scoring"
    )


def test_links_full_table() -> None:
    out = kiali.links(
        BASE + "/",
        "canary-demo",
        "scoring",
        ["scoring-stable", "scoring-canary"],
        ["VirtualService/scoring", "DestinationRule/scoring", "Gateway/scoring-gateway"],
        duration_s=600,
    )
    ns = f"{CONSOLE}/namespaces/canary-demo"
    assert out == kiali.KialiLinks(
        graph=GRAPH,
        app=f"{ns}/applications/scoring",
        workloads={
            "scoring-stable": f"{ns}/workloads/scoring-stable",
            "scoring-canary": f"{ns}/workloads/scoring-canary",
        },
        services={"scoring": f"{ns}/services/scoring"},
        istio={
            "VirtualService/scoring": f"{ns}/istio/networking.istio.io/v1/VirtualService/scoring",
            "DestinationRule/scoring": f"{ns}/istio/networking.istio.io/v1/DestinationRule/scoring",
            "Gateway/scoring-gateway": f"{ns}/istio/networking.istio.io/v1/Gateway/scoring-gateway",
        },
    )


def test_namespace_is_encoded_in_path_and_query() -> None:
    out = kiali.links("https://kiali.example.com", "a&b", "scoring", [])
    assert out.app == "https://kiali.example.com/console/namespaces/a%26b/applications/scoring"
    assert "?namespaces=a%26b&" in out.graph


def test_markdown_lists_every_link() -> None:
    out = kiali.links(
        BASE, "canary-demo", "scoring", ["scoring-canary"], ["VirtualService/scoring"]
    )
    text = kiali.markdown(out)
    lines = text.strip().splitlines()
    assert len(lines) == 5
    assert all(line.startswith("- [") for line in lines)
    assert f"]({GRAPH})" in lines[0]
    assert "[Workload scoring-canary](" in text
    # Istio objects are plain link text: a code span inside a link does not read as a link
    assert "[VirtualService scoring](" + out.istio["VirtualService/scoring"] + ")" in text
    assert "`" not in text


def test_markdown_says_when_no_kiali_answers() -> None:
    out = kiali.links(BASE, "canary-demo", "scoring", [], ["Gateway/scoring-gateway"])
    text = kiali.markdown(out, reachable=False, instead="the mesh graph above draws the same view")
    first, *rest = text.strip().splitlines()
    assert first.startswith("> **No Kiali answers at " + BASE)
    assert "the mesh graph above draws the same view" in first
    assert sum(line.startswith("- [") for line in rest) == 4
    assert "No Kiali" not in kiali.markdown(out)


def test_reachable_asks_the_status_endpoint() -> None:
    import http.server
    import socket
    import threading

    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(401)  # behind a login still counts as a Kiali that answers
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/kiali"
        assert kiali.reachable(base)
        assert seen == ["/kiali/api/status"]
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert not kiali.reachable(f"http://127.0.0.1:{closed}/kiali", timeout_s=0.5)


@pytest.mark.parametrize("bad", ["VirtualService", "/scoring", "VirtualService/"])
def test_bad_istio_reference_names_the_input(bad: str) -> None:
    with pytest.raises(ConfigError, match="Kind/name"):
        kiali.links(BASE, "ns", "scoring", [], [bad])


def test_unknown_kind_without_api_version_is_an_error() -> None:
    with pytest.raises(ConfigError, match="Widget ns/w: apiVersion"):
        kiali.links(BASE, "ns", "scoring", [], ["Widget/w"])


def test_empty_base_url_is_an_error() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        kiali.graph_url(" ", "ns")
