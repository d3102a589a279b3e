"""What the ingress gateway's Envoy really serves, read from its own config dump.

After ``helm upgrade`` stores new weights, istiod still has to push them to every gateway pod.
``wait_for_served_weights`` returns only when each ready gateway pod's Envoy serves the expected
split on the VirtualService's route, the same contract as the local target (which reads its own
Envoy's config dump).

How the weights are read from a route configuration: ``workbook.served`` (the same reading as
the local gateway's).

The dump is fetched the way ``istioctl proxy-config`` does: a port-forward to the pod's Envoy
admin port 15000 (it listens on localhost inside the pod) through the Kubernetes API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from workbook import served
from workbook.errors import AzureError
from workbook.served import WEIGHTED_ROUTE, as_percent

#: Envoy's admin port in an Istio proxy (pilot-agent starts Envoy with it, on localhost).
ENVOY_ADMIN_PORT = 15000
ROUTES_PATH = "/config_dump?resource=dynamic_route_configs"

#: ``fetch(namespace, pod) -> config dump``: how a gateway pod's Envoy config is read.
Fetch = Callable[[str, str], Mapping[str, Any]]


@dataclass(frozen=True)
class GatewayPods:
    """Where the ingress gateway's pods run and how they are labelled."""

    namespace: str
    selector: Mapping[str, str]

    def describe(self) -> str:
        labels = ",".join(f"{k}={v}" for k, v in sorted(self.selector.items()))
        return f"ingress gateway pods {self.namespace}/[{labels}]"


# ---- pure: read a config dump ------------------------------------------------------------------


def served_weights(
    dump: Mapping[str, Any], namespace: str, vs_name: str, route: str = WEIGHTED_ROUTE
) -> dict[str, int] | None:
    """Subset → weight of a VirtualService's route in one gateway Envoy's config dump."""
    return served.served_weights(served.route_configs(dump), namespace, vs_name, route)


# ---- I/O: gateway pods and their Envoy ----------------------------------------------------------


def _ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def gateway_pod_names(api: Any, gateway: GatewayPods) -> list[str]:
    """Ready pods of the ingress gateway (the label selector is also checked here)."""
    from kubernetes.client import CoreV1Api

    from workbook.kube.client import REQUEST_TIMEOUT, call, ref

    selector = ",".join(f"{k}={v}" for k, v in sorted(gateway.selector.items()))
    resp = call(
        lambda: CoreV1Api(api).list_namespaced_pod(
            gateway.namespace,
            label_selector=selector,
            _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT,
        ),
        ref("Pod", gateway.namespace, "*"),
        "list",
    )
    pods = json.loads(resp.data).get("items") or []
    out = []
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if all(labels.get(k) == v for k, v in gateway.selector.items()) and _ready(pod):
            out.append(str(pod["metadata"]["name"]))
    return sorted(out)


def parse_http_response(raw: bytes) -> tuple[int, bytes]:
    """Status and body of a raw HTTP/1.x response (Content-Length, chunked or read to close)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("no HTTP header end")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2 :]
        return status, out
    if "content-length" in headers:
        return status, body[: int(headers["content-length"])]
    return status, body


def port_forward_config_dump(
    api: Any, namespace: str, pod: str, *, port: int = ENVOY_ADMIN_PORT, timeout_s: float = 10
) -> dict[str, Any]:
    """The pod's Envoy route configurations, through a Kubernetes API port-forward."""
    from kubernetes.client import CoreV1Api
    from kubernetes.stream import portforward

    where = f"Pod {namespace}/{pod}"
    try:
        pf = portforward(
            CoreV1Api(api).connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port)
        )
        try:
            sock = pf.socket(port)
            sock.settimeout(timeout_s)
            request = f"GET {ROUTES_PATH} HTTP/1.0\r\nHost: localhost\r\n\r\n"
            sock.sendall(request.encode())
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
            sock.close()
        finally:
            pf.close()
    except Exception as exc:  # the stream layer raises websocket, API and socket errors alike
        raise AzureError(
            f"{where}: could not read Envoy's config dump through a port-forward to {port} "
            f"({type(exc).__name__}: {exc}); the kubeconfig user needs pods/portforward in "
            f"{namespace}"
        ) from None
    status, body = parse_http_response(b"".join(chunks))
    if status != 200:
        raise AzureError(f"{where}: Envoy admin {ROUTES_PATH} answered {status}")
    return dict(json.loads(body))


def served_by_pods(
    api: Any,
    gateway: GatewayPods,
    namespace: str,
    vs_name: str,
    *,
    route: str = WEIGHTED_ROUTE,
    fetch: Fetch | None = None,
) -> dict[str, dict[str, int] | None]:
    """One read of every ready gateway pod: pod → served percent (None: no such route yet)."""
    get = fetch or (lambda ns, pod: port_forward_config_dump(api, ns, pod))
    seen: dict[str, dict[str, int] | None] = {}
    for pod in gateway_pod_names(api, gateway):
        weights = served_weights(get(gateway.namespace, pod), namespace, vs_name, route)
        seen[pod] = None if weights is None else as_percent(weights)
    return seen


def wait_for_served_weights(
    api: Any,
    gateway: GatewayPods,
    namespace: str,
    vs_name: str,
    expected: Mapping[str, int],
    *,
    route: str = WEIGHTED_ROUTE,
    fetch: Fetch | None = None,
    timeout_s: float = 60,
    interval_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, dict[str, int]]:
    """Wait until every ready gateway pod serves ``expected`` (percent per subset) on ``route``.

    Returns pod → served percent. AzureError when no gateway pod is ready, or when a pod still
    serves something else at the deadline (naming the pod, what it serves, and what to check).
    """
    want = {k: int(v) for k, v in expected.items() if int(v)}
    deadline = clock() + timeout_s
    seen: dict[str, dict[str, int] | None] = {}
    while True:
        seen = served_by_pods(api, gateway, namespace, vs_name, route=route, fetch=fetch)
        if seen and all(w == want for w in seen.values()):
            return {p: dict(w or {}) for p, w in seen.items()}
        if clock() >= deadline:
            break
        sleep(interval_s)
    obj = f"VirtualService {namespace}/{vs_name}"
    if not seen:
        raise AzureError(
            f"{obj}: no ready {gateway.describe()} after {timeout_s:g}s; check the gateway "
            f"(kubectl -n {gateway.namespace} get pods) and the Gateway's selector"
        )
    lagging = {p: w for p, w in seen.items() if w != want}
    detail = "; ".join(
        f"{p} serves {w if w is not None else 'no such route'}" for p, w in sorted(lagging.items())
    )
    raise AzureError(
        f"{obj}: route {route!r} expected {want} at the ingress gateway, but after "
        f"{timeout_s:g}s {detail} (istiod has not pushed it: istioctl proxy-status; "
        f"istioctl proxy-config routes -n {gateway.namespace} <pod>)"
    )
