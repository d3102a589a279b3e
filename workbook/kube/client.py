"""Kubernetes API calls of the k8s target: pure functions over a ``kubernetes`` ``ApiClient``.

Objects go in and come out as plain dicts (the API's own JSON), so tests run these functions
against a fake API server (kmock) and assert on what it stores. Every call carries a request
timeout; every wait has a deadline and fails with an ``AzureError`` naming the object.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from workbook import istio, kinds
from workbook.errors import AzureError

T = TypeVar("T")

#: Seconds any single API request may take.
REQUEST_TIMEOUT = 15

ISTIO_GROUP = kinds.ISTIO_GROUP
ISTIO_VERSION = "v1"
#: Istio networking kinds ``apply``/``get`` handle, by kind: their plural resource name.
ISTIO_KINDS = kinds.ISTIO_KINDS
#: Core kinds ``get`` reads (never Secrets: ``get`` output lands in notebooks and logs).
CORE_KINDS = tuple(kinds.CORE_KINDS)

#: Metadata the API server owns; dropped from an object before it is applied.
_SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields")

#: The label the Istio sidecar injector looks for.
INJECTION_LABEL = "istio-injection"


#: ``vs``, ``virtualservices``, ``VirtualService`` → ``VirtualService``; else ConfigError.
canonical_kind = kinds.canonical_kind


def ref(kind: str, namespace: str | None, name: str) -> str:
    """``VirtualService canary-demo/scoring``: how messages name an object."""
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def _api_message(exc: ApiException) -> str:
    """The Status message of an API error (never the request body, which may hold secrets)."""
    try:
        body = json.loads(exc.body or "{}")
        message = body.get("message") if isinstance(body, dict) else None
    except (TypeError, ValueError):
        message = None
    text = str(message or exc.reason or "").strip()
    return " ".join(text.split())[:300]


def _as_error(exc: BaseException, obj: str, verb: str) -> AzureError:
    if isinstance(exc, ApiException):
        hint = {
            401: "; the kubeconfig credentials were refused (run `az aks get-credentials` again)",
            403: "; the kubeconfig user lacks RBAC permission for this",
            404: "; the resource type may be missing (is Istio installed?)",
        }.get(exc.status or 0, "")
        return AzureError(f"{obj}: {verb} failed: {exc.status} {_api_message(exc)}{hint}")
    return AzureError(
        f"{obj}: {verb} failed: the Kubernetes API could not be reached ({type(exc).__name__}); "
        "check KUBECONFIG, the context (WORKBOOK_KUBE_CONTEXT) and network access to the "
        "API server"
    )


def call(fn: Callable[[], T], obj: str, verb: str) -> T:
    """One API call; failures become ``AzureError`` naming the object and what to check."""
    try:
        return fn()
    except (ApiException, Urllib3Error, OSError) as exc:
        raise _as_error(exc, obj, verb) from None


def _json(response: Any) -> dict[str, Any]:
    data = response.data if hasattr(response, "data") else response
    return dict(json.loads(data)) if isinstance(data, (bytes, str)) else dict(data)


def _read(fn: Callable[[], Any], obj: str) -> dict[str, Any] | None:
    """A read that returns None for 404 and raises ``AzureError`` for anything else."""
    try:
        return _json(fn())
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _as_error(exc, obj, "read") from None
    except (Urllib3Error, OSError) as exc:
        raise _as_error(exc, obj, "read") from None


# ---- reading objects --------------------------------------------------------------------------


def read_custom(
    api: client.ApiClient, namespace: str, kind: str, name: str, version: str = ISTIO_VERSION
) -> dict[str, Any] | None:
    """An Istio object as stored, or None."""
    co = client.CustomObjectsApi(api)
    return _read(
        lambda: co.get_namespaced_custom_object(
            ISTIO_GROUP,
            version,
            namespace,
            ISTIO_KINDS[kind],
            name,
            _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT,
        ),
        ref(kind, namespace, name),
    )


def read_deployment(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """A Deployment as stored, or None."""
    apps = client.AppsV1Api(api)
    return _read(
        lambda: apps.read_namespaced_deployment(
            name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        ),
        ref("Deployment", namespace, name),
    )


def get_objects(
    api: client.ApiClient, namespace: str, kind: str, name: str | None = None
) -> list[dict[str, Any]]:
    """Live objects of one kind in a namespace (one, when ``name`` is given)."""
    kind = canonical_kind(kind)
    if kind == "Namespace":
        if name is not None and name != namespace:
            return []
        core = client.CoreV1Api(api)
        one = _read(
            lambda: core.read_namespace(
                namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            ),
            f"Namespace {namespace}",
        )
        return [{"apiVersion": "v1", "kind": "Namespace", **one}] if one else []
    if name is not None:
        if kind in ISTIO_KINDS:
            one = read_custom(api, namespace, kind, name)
        elif kind == "Deployment":
            one = read_deployment(api, namespace, name)
        else:
            core = client.CoreV1Api(api)
            reader = core.read_namespaced_service if kind == "Service" else core.read_namespaced_pod
            one = _read(
                lambda: reader(
                    name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
                ),
                ref(kind, namespace, name),
            )
        return [one] if one else []
    obj = ref(kind, namespace, "*")
    if kind in ISTIO_KINDS:
        co = client.CustomObjectsApi(api)
        listing = call(
            lambda: co.list_namespaced_custom_object(
                ISTIO_GROUP,
                ISTIO_VERSION,
                namespace,
                ISTIO_KINDS[kind],
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            ),
            obj,
            "list",
        )
        api_version = f"{ISTIO_GROUP}/{ISTIO_VERSION}"
    elif kind == "Deployment":
        apps = client.AppsV1Api(api)
        listing = call(
            lambda: apps.list_namespaced_deployment(
                namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            ),
            obj,
            "list",
        )
        api_version = "apps/v1"
    else:
        core = client.CoreV1Api(api)
        lister = core.list_namespaced_service if kind == "Service" else core.list_namespaced_pod
        listing = call(
            lambda: lister(namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT),
            obj,
            "list",
        )
        api_version = "v1"
    items = _json(listing).get("items") or []
    # List items carry no kind/apiVersion on the wire; put them back for the reader.
    return [
        {"apiVersion": api_version, "kind": kind, **item}
        for item in sorted(items, key=lambda o: str(o.get("metadata", {}).get("name", "")))
    ]


# ---- VerifyWeight -----------------------------------------------------------------------------


def _nonzero(weights: Mapping[str, int]) -> dict[str, int]:
    return {k: int(v) for k, v in weights.items() if int(v)}


def wait_for_weights(
    api: client.ApiClient,
    namespace: str,
    name: str,
    expected: Mapping[str, int],
    *,
    route: str = "weighted",
    timeout_s: float = 60,
    interval_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, int]:
    """Poll the VirtualService until ``route`` has ``expected`` weights per subset.

    Zero weights compare equal to a missing destination. Returns the weights it saw.
    """
    from workbook.istio import route_weights

    obj = ref("VirtualService", namespace, name)
    want = _nonzero(expected)
    deadline = clock() + timeout_s
    seen: dict[str, int] | None = None
    while True:
        vs = read_custom(api, namespace, "VirtualService", name)
        if vs is not None:
            seen = dict(route_weights(vs).get(route, {}))
            if _nonzero(seen) == want:
                return seen
        if clock() >= deadline:
            break
        sleep(interval_s)
    if vs is None:
        got = "the VirtualService does not exist"
    elif not seen:
        got = f"it has no http route named {route!r}"
    else:
        got = f"route {route!r} has weights {seen}"
    raise AzureError(
        f"{obj}: expected weights {dict(expected)} but after {timeout_s:g}s {got}; "
        "the release did not take effect (an applied object or another controller may "
        f"override it: kubectl -n {namespace} get virtualservice {name} -o yaml)"
    )


# ---- rollouts ---------------------------------------------------------------------------------


def rollout_state(dep: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether a Deployment finished rolling out (``kubectl rollout status`` rules) and why not."""
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    generation = int((dep.get("metadata") or {}).get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    want = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    updated = int(status.get("updatedReplicas") or 0)
    current = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return False, f"progress deadline exceeded: {cond.get('message', '')}".strip()
    if observed < generation:
        return False, f"generation {generation} not yet observed (at {observed})"
    if updated < want:
        return False, f"{updated}/{want} replicas updated"
    if current > updated:
        return False, f"{current - updated} old replicas pending termination"
    if available < updated:
        return False, f"{available}/{updated} updated replicas available"
    return True, f"{available}/{want} available"


def wait_for_rollout(
    api: client.ApiClient,
    namespace: str,
    names: list[str],
    *,
    timeout_s: float = 600,
    interval_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Wait until every named Deployment has rolled out; else ``AzureError`` naming the laggards."""
    deadline = clock() + timeout_s
    pending: dict[str, str] = {}
    while True:
        pending = {}
        for name in names:
            dep = read_deployment(api, namespace, name)
            if dep is None:
                pending[name] = "does not exist"
                continue
            done, why = rollout_state(dep)
            if not done:
                if why.startswith("progress deadline"):
                    raise AzureError(
                        f"{ref('Deployment', namespace, name)}: rollout failed: {why} "
                        f"(kubectl -n {namespace} describe deployment {name})"
                    )
                pending[name] = why
        if not pending or clock() >= deadline:
            break
        sleep(interval_s)
    if pending:
        detail = "; ".join(f"{ref('Deployment', namespace, n)}: {w}" for n, w in pending.items())
        raise AzureError(
            f"not rolled out after {timeout_s:g}s: {detail} "
            f"(kubectl -n {namespace} get pods; describe the pods for pull or probe errors)"
        )


def deployment_summary(dep: Mapping[str, Any]) -> dict[str, Any]:
    """Track, version, image, desired and ready replicas of a Deployment."""
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    containers = (template.get("spec") or {}).get("containers") or [{}]
    replicas = spec.get("replicas")
    return {
        "name": (dep.get("metadata") or {}).get("name", ""),
        "track": str(labels.get("track", "")),
        "version": str(labels.get("version", "")),
        "image": str(containers[0].get("image", "")),
        "replicas": int(1 if replicas is None else replicas),
        "ready": int(status.get("readyReplicas") or 0),
    }


# ---- gateway address --------------------------------------------------------------------------


def gateway_address(
    api: client.ApiClient, *, name: str = "istio-ingressgateway", namespace: str = "istio-system"
) -> str:
    """``http://<ip or hostname>[:port]`` of the ingress gateway's LoadBalancer, or "" if none."""
    core = client.CoreV1Api(api)
    svc = _read(
        lambda: core.read_namespaced_service(
            name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        ),
        ref("Service", namespace, name),
    )
    if not svc:
        return ""
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    host = next(
        (i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")), ""
    )
    if not host:
        return ""
    ports = (svc.get("spec") or {}).get("ports") or []
    port = next((p["port"] for p in ports if p.get("name") in ("http2", "http")), None)
    if port is None:
        port = next((p["port"] for p in ports if p.get("port") == 80), None)
    if port is None and ports:
        port = ports[0].get("port")
    return f"http://{host}" if port in (None, 80) else f"http://{host}:{port}"


# ---- namespace and pull secret ----------------------------------------------------------------


def dockerconfigjson(registry: str, username: str, password: str) -> dict[str, Any]:
    """The ``.dockerconfigjson`` document for one registry."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"auths": {registry: {"username": username, "password": password, "auth": auth}}}


def pull_secret(
    namespace: str, name: str, registry: str, username: str, password: str
) -> dict[str, Any]:
    """A ``kubernetes.io/dockerconfigjson`` Secret for one registry."""
    doc = json.dumps(dockerconfigjson(registry, username, password), sort_keys=True)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "canary-workbook"},
        },
        "data": {".dockerconfigjson": base64.b64encode(doc.encode()).decode()},
    }


def _decoded_config(secret: Mapping[str, Any]) -> Any:
    raw = (secret.get("data") or {}).get(".dockerconfigjson", "")
    try:
        return json.loads(base64.b64decode(raw))
    except (ValueError, TypeError):
        return None


def ensure_pull_secret(
    api: client.ApiClient,
    namespace: str,
    name: str,
    registry: str,
    username: str,
    password: str,
) -> str:
    """Create the image pull secret, reuse it when it already says the same, else update it.

    Returns ``created``, ``reused`` or ``updated``. Neither the password nor the secret's data
    appears in any message.
    """
    core = client.CoreV1Api(api)
    obj = ref("Secret", namespace, name)
    body = pull_secret(namespace, name, registry, username, password)
    current = _read(
        lambda: core.read_namespaced_secret(
            name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        ),
        obj,
    )
    if current is None:
        call(
            lambda: core.create_namespaced_secret(
                namespace, body, _request_timeout=REQUEST_TIMEOUT
            ),
            obj,
            "create",
        )
        return "created"
    if current.get("type") != "kubernetes.io/dockerconfigjson":
        raise AzureError(
            f"{obj}: exists with type {current.get('type')!r}, not kubernetes.io/dockerconfigjson; "
            "delete it or set imagePullSecrets to another name"
        )
    if _decoded_config(current) == dockerconfigjson(registry, username, password):
        return "reused"
    call(
        lambda: core.patch_namespaced_secret(
            name, namespace, {"data": body["data"]}, _request_timeout=REQUEST_TIMEOUT
        ),
        obj,
        "update",
    )
    return "updated"


# ---- applying Istio objects -------------------------------------------------------------------


def _comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {
        "spec": obj.get("spec"),
        "labels": meta.get("labels") or {},
        "annotations": meta.get("annotations") or {},
    }


def apply_object(api: client.ApiClient, namespace: str, obj: Mapping[str, Any]) -> str:
    """Create an Istio object, or replace the live one of the same kind and name.

    Returns ``Kind/name created|configured|unchanged``, as ``kubectl apply`` prints it.
    """
    istio.check_object_shape(obj, 0)
    kind, name = str(obj["kind"]), str(obj["metadata"]["name"])
    group, _, version = str(obj["apiVersion"]).partition("/")
    namespace = str((obj.get("metadata") or {}).get("namespace") or namespace)
    body = json.loads(json.dumps(obj))
    body["metadata"] = {**body.get("metadata", {}), "namespace": namespace}
    for server_field in _SERVER_FIELDS:
        body["metadata"].pop(server_field, None)
    body.pop("status", None)
    plural, what = ISTIO_KINDS[kind], ref(kind, namespace, name)
    co = client.CustomObjectsApi(api)
    current = read_custom(api, namespace, kind, name, version)
    if current is None:
        call(
            lambda: co.create_namespaced_custom_object(
                group, version, namespace, plural, body, _request_timeout=REQUEST_TIMEOUT
            ),
            what,
            "create",
        )
        return f"{kind}/{name} created"
    if _comparable(current) == _comparable(body):
        return f"{kind}/{name} unchanged"
    rv = (current.get("metadata") or {}).get("resourceVersion")
    if rv:
        body["metadata"]["resourceVersion"] = rv
    call(
        lambda: co.replace_namespaced_custom_object(
            group, version, namespace, plural, name, body, _request_timeout=REQUEST_TIMEOUT
        ),
        what,
        "replace",
    )
    return f"{kind}/{name} configured"


# ---- namespaces the release may own, and those it must not --------------------------------------

#: Labels that state a namespace's injection choice; one present means "decided, keep it".
INJECTION_CHOICE_LABELS = (INJECTION_LABEL, "istio.io/rev")
HELM_RELEASE_NAME = "meta.helm.sh/release-name"
HELM_RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"


@dataclass(frozen=True)
class NamespacePlan:
    """What the release does with its namespace.

    ``owned_by_release``: the chart renders the Namespace (``namespace.create``), so Helm deletes
    it on uninstall; true only for a namespace this release created. ``add_labels``: injection
    labels to add to a namespace that states no injection choice of its own.
    """

    name: str
    exists: bool
    owned_by_release: bool
    add_labels: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def chart_values(self) -> dict[str, Any]:
        """The chart values that follow from the plan: ``{"namespace": {"create": ...}}``."""
        return {"namespace": {"create": self.owned_by_release}}


def plan_namespace(
    current: Mapping[str, Any] | None,
    name: str,
    *,
    release: str,
    injection: Mapping[str, str],
    create: bool = True,
) -> NamespacePlan:
    """Decide, without a call, how to treat the release namespace (pure).

    * missing, ``create``: the release creates and owns it (Helm deletes it on ``down``);
    * missing, not ``create``: created plainly with the injection labels, never owned;
    * owned by this release already: stays owned (dropping it from the chart would delete it);
    * any other existing namespace: never owned; injection labels added only when it has
      neither ``istio-injection`` nor ``istio.io/rev`` (an explicit choice, ``disabled``
      included, is kept).
    """
    if current is None:
        return NamespacePlan(name, False, create, dict(injection))
    meta = current.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    notes = dict(meta.get("annotations") or {})
    ours = notes.get(HELM_RELEASE_NAME) == release and notes.get(HELM_RELEASE_NAMESPACE) == name
    if ours:
        return NamespacePlan(name, True, True)
    choice = {k: labels[k] for k in INJECTION_CHOICE_LABELS if k in labels}
    if not choice:
        return NamespacePlan(name, True, False, dict(injection))
    remarks = []
    if choice != dict(injection):
        said = ", ".join(f"{k}={v}" for k, v in choice.items())
        want = ", ".join(f"{k}={v}" for k, v in injection.items())
        remarks.append(
            f"Namespace {name} says {said}; kept as the namespace owner's choice (this Istio "
            f"injects with {want}; sidecars may be missing)"
        )
    return NamespacePlan(name, True, False, {}, tuple(remarks))


def prepare_namespace(
    api: client.ApiClient,
    name: str,
    *,
    release: str,
    injection: Mapping[str, str],
    create: bool = True,
) -> NamespacePlan:
    """Read the namespace, act on ``plan_namespace`` and return the plan.

    A namespace the release will own is created with Helm's ownership metadata, so the release
    record can be stored in it and Helm adopts it; no existing namespace ever gets that metadata.
    """
    core = client.CoreV1Api(api)
    obj = ref("Namespace", None, name)
    current = _read(
        lambda: core.read_namespace(name, _preload_content=False, _request_timeout=REQUEST_TIMEOUT),
        obj,
    )
    plan = plan_namespace(current, name, release=release, injection=injection, create=create)
    if current is None:
        meta: dict[str, Any] = {"name": name, "labels": dict(plan.add_labels)}
        if plan.owned_by_release:
            meta["labels"]["app.kubernetes.io/managed-by"] = "Helm"
            meta["annotations"] = {HELM_RELEASE_NAME: release, HELM_RELEASE_NAMESPACE: name}
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}
        call(lambda: core.create_namespace(body, _request_timeout=REQUEST_TIMEOUT), obj, "create")
    elif plan.add_labels:
        patch = {"metadata": {"labels": dict(plan.add_labels)}}
        call(
            lambda: core.patch_namespace(name, patch, _request_timeout=REQUEST_TIMEOUT),
            obj,
            "label",
        )
    return plan
