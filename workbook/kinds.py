"""The object kinds the workbook handles, and the kubectl-style names that mean them (pure).

One list and one alias map for both targets: ``workbook get``, ``workbook apply`` and the
validators read them here, so ``get pods`` means the same locally and on Kubernetes.
"""

from __future__ import annotations

from workbook.errors import ConfigError

ISTIO_GROUP = "networking.istio.io"
#: Istio networking kinds ``apply`` and ``get`` handle, with their plural resource names.
ISTIO_KINDS: dict[str, str] = {
    "VirtualService": "virtualservices",
    "DestinationRule": "destinationrules",
    "Gateway": "gateways",
    "ServiceEntry": "serviceentries",
    "Sidecar": "sidecars",
}
#: The Istio kinds the local gateway translates; the others are refused there, naming the kind.
GATEWAY_KINDS: tuple[str, ...] = ("Gateway", "VirtualService", "DestinationRule")
#: Core kinds ``get`` reads, with their plural resource names (never Secrets: ``get`` output
#: lands in notebooks and logs). ``Namespace`` is the release namespace itself.
CORE_KINDS: dict[str, str] = {
    "Deployment": "deployments",
    "Service": "services",
    "Pod": "pods",
    "Namespace": "namespaces",
}
#: kubectl's short names.
SHORT_NAMES: dict[str, str] = {
    "vs": "VirtualService",
    "dr": "DestinationRule",
    "gw": "Gateway",
    "se": "ServiceEntry",
    "deploy": "Deployment",
    "svc": "Service",
    "po": "Pod",
    "ns": "Namespace",
}


def _aliases() -> dict[str, str]:
    out = {}
    for kind, plural in (*ISTIO_KINDS.items(), *CORE_KINDS.items()):
        out[kind.lower()] = kind
        out[plural] = kind
    return {**out, **SHORT_NAMES}


#: Every accepted spelling (lower case) → the kind: kind, plural, short name.
ALIASES: dict[str, str] = _aliases()


def canonical_kind(kind: str) -> str:
    """``vs``, ``virtualservices``, ``VirtualService`` → ``VirtualService``; else ConfigError."""
    found = ALIASES.get(kind.strip().lower()) if isinstance(kind, str) else None
    if found is None:
        known = ", ".join((*ISTIO_KINDS, *CORE_KINDS))
        raise ConfigError("get", "KIND", f"must be one of {known} (or a short name), got {kind!r}")
    return found


def is_istio_kind(kind: object) -> bool:
    """Whether ``kind`` is one of the Istio networking kinds ``apply`` takes."""
    return isinstance(kind, str) and kind in ISTIO_KINDS
