"""Which Istio a cluster runs: the AKS Istio add-on or upstream Istio, read through the API.

The two differ in what the chart must say (Microsoft Learn, "Deploy ingress gateways for the Istio
service mesh add-on for AKS" and "Istio service mesh add-on general troubleshooting"):

============ ==================================== ===========================================
             AKS Istio add-on                     upstream Istio (istio.io install)
============ ==================================== ===========================================
istiod       Deployments ``istiod-asm-1-NN`` in   Deployment ``istiod`` (or ``istiod-<rev>``)
             ``aks-istio-system``, ``app=istiod``, in ``istio-system``
             one per revision (two mid-upgrade)
ingress      Services ``aks-istio-ingressgateway- Service ``istio-ingressgateway`` in
             external``/``-internal`` in          ``istio-system``, pods labelled
             ``aks-istio-ingress``, pods labelled ``istio: ingressgateway``
             ``istio: aks-istio-ingressgateway-…``
injection    ``istio.io/rev=asm-1-NN`` only        ``istio-injection=enabled`` (or
                                                  ``istio.io/rev`` with a revision)
============ ==================================== ===========================================

``detect_flavour`` reads that from the cluster; ``resolve_flavour`` lets settings override any part
of it (and skips the API when the settings say everything). ``IstioFlavour.chart_values`` is what
the chart needs; ``namespace_labels`` is how a namespace asks for injection.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbook.errors import AzureError, ConfigError

FLAVOURS = ("addon", "upstream")

ADDON_SYSTEM_NAMESPACE = "aks-istio-system"
ADDON_INGRESS_NAMESPACE = "aks-istio-ingress"
ADDON_INGRESS = {
    "external": "aks-istio-ingressgateway-external",
    "internal": "aks-istio-ingressgateway-internal",
}
UPSTREAM_NAMESPACE = "istio-system"
UPSTREAM_INGRESS = "istio-ingressgateway"

REVISION_LABEL = "istio.io/rev"
INJECTION_LABEL = "istio-injection"
#: The revision name istiod carries when it was installed without one.
DEFAULT_REVISION = "default"


@dataclass(frozen=True)
class IstioFlavour:
    """The Istio of one cluster as the chart and the traffic view need it."""

    name: str  # addon | upstream
    revision: str = ""  # "" on upstream without revisions
    gateway_namespace: str = UPSTREAM_NAMESPACE
    gateway_service: str = UPSTREAM_INGRESS
    gateway_selector: Mapping[str, str] = field(default_factory=dict)
    #: Every istiod revision found (two while an add-on upgrade is in progress).
    revisions: tuple[str, ...] = ()

    def chart_values(self) -> dict[str, Any]:
        """Chart values that select this ingress and ask this control plane for sidecars."""
        values: dict[str, Any] = {"istio": {"flavour": self.name, "revision": self.revision}}
        if self.name == "addon":
            ingress = next((k for k, v in ADDON_INGRESS.items() if v == self.gateway_service), "")
            if ingress:
                values["istio"]["addonIngress"] = ingress
        if self.gateway_selector:
            values["gateway"] = {"selector": dict(self.gateway_selector)}
        return values

    def namespace_labels(self) -> dict[str, str]:
        """The namespace label that turns on injection by this control plane."""
        if self.revision:
            return {REVISION_LABEL: self.revision}
        return {INJECTION_LABEL: "enabled"}


@dataclass(frozen=True)
class FlavourOverrides:
    """Settings that override detection, field by field; empty means "detect"."""

    flavour: str = ""
    revision: str = ""
    #: ``namespace/name`` of the ingress gateway Service.
    gateway_service: str = ""
    gateway_selector: Mapping[str, str] = field(default_factory=dict)
    #: add-on only: ``external`` or ``internal``.
    addon_ingress: str = ""

    def check(self) -> None:
        """ConfigError naming the setting that cannot be right."""
        if self.flavour and self.flavour not in FLAVOURS:
            raise ConfigError(
                "istio", "flavour", f"must be addon or upstream, got {self.flavour!r}"
            )
        if self.addon_ingress and self.addon_ingress not in ADDON_INGRESS:
            raise ConfigError(
                "istio",
                "addon_ingress",
                f"must be external or internal, got {self.addon_ingress!r}",
            )
        if self.gateway_service and self.gateway_service.count("/") != 1:
            raise ConfigError(
                "istio",
                "gateway_service",
                f"must be namespace/name, got {self.gateway_service!r}",
            )

    @property
    def complete(self) -> bool:
        """Whether the settings alone say everything (no cluster read needed)."""
        return self.flavour == "upstream" or (self.flavour == "addon" and bool(self.revision))


# ---- pure: from listed objects to a flavour -----------------------------------------------------


def istiod_revisions(deployments: Sequence[Mapping[str, Any]]) -> list[str]:
    """Revisions of the istiod Deployments among ``deployments`` (label, else name suffix)."""
    out: set[str] = set()
    for dep in deployments:
        meta = dep.get("metadata") or {}
        name, labels = str(meta.get("name") or ""), meta.get("labels") or {}
        if labels.get("app") != "istiod" and not (name == "istiod" or name.startswith("istiod-")):
            continue
        rev = str(labels.get(REVISION_LABEL) or name.removeprefix("istiod").lstrip("-"))
        out.add("" if rev in ("", DEFAULT_REVISION) else rev)
    return sorted(out)


def choose_revision(
    revisions: list[str], namespace_labels: Mapping[str, str] | None, prefer: str = ""
) -> str:
    """The one revision to inject with: the only one, or the one the namespace already names.

    Two revisions run side by side during an add-on upgrade (Microsoft Learn, "Upgrade Istio-based
    service mesh add-on for AKS"); then the namespace's own ``istio.io/rev`` decides, or the
    settings must (``prefer``, which wins whenever it is given).
    """
    if prefer:
        return prefer
    if len(revisions) == 1:
        return revisions[0]
    current = (namespace_labels or {}).get(REVISION_LABEL, "")
    if current in revisions:
        return current
    raise AzureError(
        f"istiod runs revisions {', '.join(revisions)} (an upgrade in progress?): set the "
        "revision to inject with (WORKBOOK_ISTIO_REVISION / --istio-revision), or label the "
        "namespace istio.io/rev=<revision>"
    )


def ingress_selector(service: Mapping[str, Any]) -> dict[str, str]:
    """The Gateway selector for the pods behind an ingress Service: its ``istio`` label, as
    Istio's own samples select them, else the Service's whole selector."""
    selector = dict((service.get("spec") or {}).get("selector") or {})
    return {"istio": str(selector["istio"])} if "istio" in selector else selector


# ---- I/O: read the cluster ----------------------------------------------------------------------


def _list(api: Any, namespace: str, kind: str) -> list[dict[str, Any]]:
    from kubernetes.client import AppsV1Api, CoreV1Api
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    from workbook.kube.client import REQUEST_TIMEOUT, _as_error, ref

    try:
        if kind == "Deployment":
            resp = AppsV1Api(api).list_namespaced_deployment(
                namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )
        else:
            resp = CoreV1Api(api).list_namespaced_service(
                namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )
    except ApiException as exc:
        if exc.status in (403, 404):
            return []  # a namespace we may not read or that does not exist: not this flavour
        raise _as_error(exc, ref(kind, namespace, "*"), "list") from None
    except (OSError, Urllib3Error) as exc:
        raise _as_error(exc, ref(kind, namespace, "*"), "list") from None
    return list(json.loads(resp.data).get("items") or [])


def _named(items: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((i for i in items if (i.get("metadata") or {}).get("name") == name), None)


def detect_flavour(
    api: Any,
    *,
    namespace_labels: Mapping[str, str] | None = None,
    addon_ingress: str = "",
    revision: str = "",
) -> IstioFlavour:
    """The cluster's Istio: the add-on when istiod runs in ``aks-istio-system``, else upstream
    when it runs in ``istio-system``; AzureError saying what to install or set otherwise."""
    addon = istiod_revisions(_list(api, ADDON_SYSTEM_NAMESPACE, "Deployment"))
    if addon:
        revision = choose_revision(addon, namespace_labels, revision)
        services = _list(api, ADDON_INGRESS_NAMESPACE, "Service")
        order = [addon_ingress] if addon_ingress else ["external", "internal"]
        for kind in order:
            svc = _named(services, ADDON_INGRESS[kind])
            if svc is not None:
                return IstioFlavour(
                    "addon",
                    revision,
                    ADDON_INGRESS_NAMESPACE,
                    ADDON_INGRESS[kind],
                    ingress_selector(svc) or {"istio": ADDON_INGRESS[kind]},
                    tuple(addon),
                )
        wanted = addon_ingress or "external"
        raise AzureError(
            f"AKS Istio add-on (revision {revision}) has no {wanted} ingress gateway: no Service "
            f"{ADDON_INGRESS_NAMESPACE}/{ADDON_INGRESS[wanted]}; run `az aks mesh "
            f"enable-ingress-gateway --ingress-gateway-type {wanted} -g <rg> -n <cluster>`"
        )
    upstream = istiod_revisions(_list(api, UPSTREAM_NAMESPACE, "Deployment"))
    if upstream:
        revision = choose_revision(upstream, namespace_labels, revision)
        svc = _named(_list(api, UPSTREAM_NAMESPACE, "Service"), UPSTREAM_INGRESS)
        if svc is None:
            raise AzureError(
                f"Istio (istiod in {UPSTREAM_NAMESPACE}) has no Service "
                f"{UPSTREAM_NAMESPACE}/{UPSTREAM_INGRESS}; install the ingress gateway "
                "(istioctl install --set profile=default) or set WORKBOOK_GATEWAY_SERVICE and "
                "the gateway selector"
            )
        return IstioFlavour(
            "upstream",
            revision,
            UPSTREAM_NAMESPACE,
            UPSTREAM_INGRESS,
            ingress_selector(svc) or {"istio": "ingressgateway"},
            tuple(upstream),
        )
    raise AzureError(
        f"no istiod in {ADDON_SYSTEM_NAMESPACE} (AKS Istio add-on) or {UPSTREAM_NAMESPACE} "
        "(upstream Istio): enable the add-on (`az aks mesh enable -g <rg> -n <cluster>`), install "
        "Istio, or set the flavour (WORKBOOK_ISTIO=addon|upstream)"
    )


def defaults_for(overrides: FlavourOverrides) -> IstioFlavour:
    """The flavour the settings describe on their own, with each flavour's usual ingress."""
    if overrides.flavour == "addon":
        ingress = ADDON_INGRESS[overrides.addon_ingress or "external"]
        return IstioFlavour(
            "addon", overrides.revision, ADDON_INGRESS_NAMESPACE, ingress, {"istio": ingress}
        )
    return IstioFlavour(
        "upstream",
        overrides.revision,
        UPSTREAM_NAMESPACE,
        UPSTREAM_INGRESS,
        {"istio": "ingressgateway"},
    )


def resolve_flavour(
    api: Any,
    overrides: FlavourOverrides | None = None,
    *,
    namespace_labels: Mapping[str, str] | None = None,
) -> IstioFlavour:
    """Detected flavour with the settings' overrides applied; no API call when they say all."""
    o = overrides or FlavourOverrides()
    o.check()
    if o.complete:
        base = defaults_for(o)
    else:
        base = detect_flavour(
            api,
            namespace_labels=namespace_labels,
            addon_ingress=o.addon_ingress,
            revision=o.revision,
        )
        if o.flavour and o.flavour != base.name:
            base = defaults_for(
                FlavourOverrides(o.flavour, o.revision, addon_ingress=o.addon_ingress)
            )
    if base.name == "addon" and not (o.revision or base.revision):
        raise ConfigError(
            "istio",
            "revision",
            "is required for the AKS Istio add-on, which injects sidecars only by revision "
            "(e.g. asm-1-26: `az aks mesh get-revisions -l <region>`)",
        )
    gw_ns, gw_name = base.gateway_namespace, base.gateway_service
    if o.gateway_service:
        gw_ns, _, gw_name = o.gateway_service.partition("/")
    return IstioFlavour(
        base.name,
        o.revision or base.revision,
        gw_ns,
        gw_name,
        dict(o.gateway_selector) or dict(base.gateway_selector),
        base.revisions,
    )
