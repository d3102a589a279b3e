"""Kiali console links for the canary: graph, app, workloads, services and Istio config.

Pure but for :func:`reachable`: a base URL and names in, URLs out. The paths and query parameters
are the ones the Kiali console itself routes and writes (kiali/kiali ``frontend/src/routes.tsx``,
``app/History.tsx`` ``URLParam``, ``types/Graph.ts`` ``EdgeLabelMode``,
``components/Link/IstioObjectLink.tsx``):

- graph: ``/console/graph/namespaces/?namespaces=NS&graphType=versionedApp&edges=...&duration=S``
- app, workload, service: ``/console/namespaces/NS/{applications|workloads|services}/NAME``
- Istio object (Kiali 2.x): ``/console/namespaces/NS/istio/GROUP/VERSION/KIND/NAME``, e.g.
  ``.../istio/networking.istio.io/v1/VirtualService/scoring``; Kiali 1.x used
  ``.../istio/virtualservices/scoring`` (``legacy_istio_paths=True``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode
from urllib.request import urlopen

from workbook.errors import ConfigError

#: Kiali's own group/version per kind (``dicTypeToGVK`` in ``types/IstioConfigList.ts``).
ISTIO_GVK: dict[str, tuple[str, str]] = {
    "VirtualService": ("networking.istio.io", "v1"),
    "DestinationRule": ("networking.istio.io", "v1"),
    "Gateway": ("networking.istio.io", "v1"),
    "ServiceEntry": ("networking.istio.io", "v1"),
    "Sidecar": ("networking.istio.io", "v1"),
    "WorkloadEntry": ("networking.istio.io", "v1"),
    "WorkloadGroup": ("networking.istio.io", "v1"),
    "EnvoyFilter": ("networking.istio.io", "v1alpha3"),
    "AuthorizationPolicy": ("security.istio.io", "v1"),
    "PeerAuthentication": ("security.istio.io", "v1"),
    "RequestAuthentication": ("security.istio.io", "v1"),
    "Telemetry": ("telemetry.istio.io", "v1"),
}

#: Graph edge labels: share of requests per edge (what a canary is about), then request rate.
GRAPH_EDGES = ("trafficDistribution", "trafficRate")


@dataclass
class KialiLinks:
    """Console URLs for one app in one namespace; ``istio`` is keyed ``"Kind/name"``."""

    graph: str
    app: str
    workloads: dict[str, str] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)
    istio: dict[str, str] = field(default_factory=dict)


def _seg(value: str) -> str:
    """One path segment, percent-encoded (``/`` included)."""
    return quote(str(value), safe="")


def _console(base_url: str) -> str:
    base = base_url.strip()
    if not base:
        raise ConfigError("Kiali", "base_url", "must be a URL such as http://localhost:20001/kiali")
    return base.rstrip("/") + "/console"


def graph_url(
    base_url: str,
    namespaces: str | Iterable[str],
    *,
    graph_type: str = "versionedApp",
    duration_s: int = 600,
    edges: Iterable[str] = GRAPH_EDGES,
) -> str:
    """The namespace graph, versioned-app view, edges labelled with traffic distribution."""
    ns = [namespaces] if isinstance(namespaces, str) else list(namespaces)
    query = {
        "namespaces": ",".join(ns),
        "graphType": graph_type,
        "edges": ",".join(edges),
        "duration": str(int(duration_s)),
        "injectServiceNodes": "true",
    }
    return f"{_console(base_url)}/graph/namespaces/?{urlencode(query, quote_via=quote, safe='')}"


def detail_url(base_url: str, namespace: str, section: str, name: str) -> str:
    """A details page: ``section`` is ``applications``, ``workloads`` or ``services``."""
    return f"{_console(base_url)}/namespaces/{_seg(namespace)}/{section}/{_seg(name)}"


def _istio_ref(obj: str | tuple[str, str] | Mapping[str, Any]) -> tuple[str, str, str | None]:
    """(kind, name, apiVersion or None) from ``"Kind/name"``, ``(kind, name)`` or a manifest."""
    if isinstance(obj, Mapping):
        kind = obj.get("kind")
        name = (obj.get("metadata") or {}).get("name")
        if not kind or not name:
            raise ConfigError("Istio object", "kind/metadata.name", f"missing in {obj!r:.80}")
        return str(kind), str(name), obj.get("apiVersion")
    if isinstance(obj, tuple):
        kind, name = obj
        return kind, name, None
    kind, sep, name = str(obj).partition("/")
    if not sep or not kind or not name:
        raise ConfigError("Istio object", "", f"must read Kind/name, got {obj!r}")
    return kind, name, None


def istio_url(
    base_url: str,
    namespace: str,
    kind: str,
    name: str,
    *,
    api_version: str | None = None,
    legacy: bool = False,
) -> str:
    """An Istio config details page (Kiali 2.x GVK path, or the 1.x plural-type path)."""
    prefix = f"{_console(base_url)}/namespaces/{_seg(namespace)}/istio"
    if legacy:
        return f"{prefix}/{_seg(kind.lower() + 's')}/{_seg(name)}"
    if api_version and "/" in api_version:
        group, version = api_version.split("/", 1)
    elif kind in ISTIO_GVK:
        group, version = ISTIO_GVK[kind]
    else:
        raise ConfigError(
            f"{kind} {namespace}/{name}", "apiVersion", "is needed for a kind Kiali links by GVK"
        )
    return f"{prefix}/{_seg(group)}/{_seg(version)}/{_seg(kind)}/{_seg(name)}"


def links(
    base_url: str,
    namespace: str,
    app: str,
    workloads: Iterable[str],
    istio_objects: Iterable[str | tuple[str, str] | Mapping[str, Any]] = (),
    duration_s: int = 600,
    *,
    services: Iterable[str] | None = None,
    legacy_istio_paths: bool = False,
) -> KialiLinks:
    """Every console link for ``app`` in ``namespace`` (services default to ``[app]``)."""
    istio: dict[str, str] = {}
    for obj in istio_objects:
        kind, name, api_version = _istio_ref(obj)
        istio[f"{kind}/{name}"] = istio_url(
            base_url, namespace, kind, name, api_version=api_version, legacy=legacy_istio_paths
        )
    return KialiLinks(
        graph=graph_url(base_url, namespace, duration_s=duration_s),
        app=detail_url(base_url, namespace, "applications", app),
        workloads={w: detail_url(base_url, namespace, "workloads", w) for w in workloads},
        services={
            s: detail_url(base_url, namespace, "services", s)
            for s in (services if services is not None else [app])
        },
        istio=istio,
    )


def reachable(base_url: str, timeout_s: float = 1.0) -> bool:
    """Does a Kiali answer at ``base_url``? Asks its status endpoint (``GET <base>/api/status``,
    kiali/kiali ``kiali_api.md``); any HTTP answer counts, a refused or silent port does not."""
    try:
        with urlopen(base_url.rstrip("/") + "/api/status", timeout=timeout_s):
            return True
    except HTTPError:
        return True  # it answered (e.g. 401 behind a login)
    except (URLError, OSError, ValueError):
        return False


def markdown(kiali: KialiLinks, *, reachable: bool = True, instead: str = "") -> str:
    """A bullet list of the links, for notebooks and the pipeline summary.

    ``reachable=False`` (no Kiali answers, as on the local target) puts a note first that says so
    and names ``instead``, what shows the same view here (e.g. the local mesh graph); the links
    stay, for a cluster that runs Kiali."""
    lines = []
    if not reachable:
        console = kiali.graph.split("/console/", 1)[0]
        lines += [
            f"> **No Kiali answers at {console}**, so the links below lead nowhere here; they are"
            " what a cluster's Kiali shows." + (f" Here, {instead}." if instead else ""),
            "",
        ]
    lines += [
        f"- [Graph (versioned app, traffic distribution)]({kiali.graph})",
        f"- [Application {_md(kiali.app.rsplit('/', 1)[-1])}]({kiali.app})",
    ]
    lines += [f"- [Workload {_md(name)}]({url})" for name, url in kiali.workloads.items()]
    lines += [f"- [Service {_md(name)}]({url})" for name, url in kiali.services.items()]
    lines += [f"- [{_md(ref.replace('/', ' '))}]({url})" for ref, url in kiali.istio.items()]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    """Link text with Markdown's special characters escaped (no code spans: a link that looks
    like code is not seen as a link)."""
    return "".join("\\" + c if c in "\\`*_[]<>" else c for c in text)
