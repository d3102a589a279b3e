"""A fake Kubernetes API for tests: kmock's ``KubernetesEmulator`` served from a background thread.

The official ``kubernetes`` client is synchronous and kmock is an aiohttp server, so the server
runs in its own thread and event loop. kmock 0.8 needs fidelity fixes (notes/helm.md):

1. POST answers 201 Created (kmock: 200; ``CustomObjectsApi.create_*`` then returns None).
2. ``GET /version/`` is served (the client's VersionApi adds the slash; kmock: 404); so are
   ``/api/`` and ``/apis/`` (``CoreApi``/``ApisApi`` add the slash too).
3. Core discovery says ``"groupVersion": "v1"`` (kmock: ``"/v1"``, which breaks RESTMappers).

and, for what the k8s target uses beyond those notes:

4. Namespaces (cluster-scoped ``/api/v1/namespaces[/name]``; kmock's path parser fails on them
   with a 500) are served from a small in-memory stub: get, list, create, merge-patch, delete.
5. ``PUT`` on a named object replaces it (kmock: 404), as ``replace_*`` calls expect.

Known gaps that remain: label selectors are ignored, patches are plain dict merges (no
strategic merge by list keys), no resourceVersion, no defaulting or schema validation.

Usage::

    from kmock_support import kube_fake    # registers the ``kube`` fixture

    def test_x(kube):
        apps = kubernetes.client.AppsV1Api(kube.api)
        kube.put(deployment_dict)          # seed an object directly
        kube.stored("Deployment", "ns", "name")
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp.web
import kmock
import pytest
from kubernetes import client

#: Resources the fake serves, by ``group/version/plural``.
RESOURCES: dict[str, dict[str, Any]] = {
    "apps/v1/deployments": {"kind": "Deployment", "namespaced": True},
    "v1/services": {"kind": "Service", "namespaced": True},
    "v1/secrets": {"kind": "Secret", "namespaced": True},
    "v1/pods": {"kind": "Pod", "namespaced": True},
    "policy/v1/poddisruptionbudgets": {"kind": "PodDisruptionBudget", "namespaced": True},
    "networking.istio.io/v1/virtualservices": {"kind": "VirtualService", "namespaced": True},
    "networking.istio.io/v1/destinationrules": {"kind": "DestinationRule", "namespaced": True},
    "networking.istio.io/v1/gateways": {"kind": "Gateway", "namespaced": True},
}
_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]

#: Kind → resource, for ``put``/``stored``.
KIND_RESOURCE = {info["kind"]: kmock.resource(key) for key, info in RESOURCES.items()}

_NAMESPACES = re.compile(r"^/api/v1/namespaces/?(?P<name>[^/]+)?/?$")


def plain(value: Any) -> Any:
    """kmock's stored views as plain dicts and lists (for equality and JSON)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    body = {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "code": code, "reason": reason, "message": message}  # fmt: skip
    return aiohttp.web.json_response(body, status=code)


class Emulator(kmock.KubernetesEmulator):
    """``KubernetesEmulator`` with the fidelity fixes listed in the module docstring."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.fallback["get /version/"] << self._serve_server_version  # fix 2
        self.fallback["get /apis/"] << self._serve_apis  # fix 2, same for discovery
        self.fallback["get /api/"] << self._serve_api
        self.fallback[kmock.method.PUT] << self._serve_replace  # fix 5
        self.namespaces: dict[str, dict[str, Any]] = {}

    async def _serve_create(self, request: Any) -> Any:  # fix 1
        return kmock.Response(status=201, payload=await super()._serve_create(request))

    async def _serve_version(self, request: Any) -> Any:  # fix 3
        payload = await super()._serve_version(request)
        if isinstance(payload, dict) and payload.get("groupVersion") == "/v1":
            payload["groupVersion"] = "v1"
        return payload

    async def _serve_replace(self, request: Any) -> Any:  # fix 5
        if request.resource is None or not request.name or request.subresource:
            raise kmock.KubernetesEndpointNotFoundError()
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            if key not in self.objects or self.objects[key].deleted:
                raise kmock.KubernetesObjectNotFoundError()
            self.objects[key].create(request.data)  # a new version with exactly this body
            raw = self.objects[key].raw
        await self._buses[request.resource].put({"type": "MODIFIED", "object": raw})
        return raw

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        match = _NAMESPACES.match(raw_request.path)
        if match is None:
            return await super().__call__(raw_request)
        return await self._serve_namespace(raw_request, match["name"])  # fix 4

    async def _serve_namespace(
        self, raw: aiohttp.web.BaseRequest, name: str | None
    ) -> aiohttp.web.StreamResponse:
        body = await raw.json() if raw.can_read_body else None
        if name is None and raw.method == "GET":
            items = list(self.namespaces.values())
            listing = {"apiVersion": "v1", "kind": "NamespaceList", "metadata": {}, "items": items}
            return aiohttp.web.json_response(listing)
        if name is None and raw.method == "POST":
            new = str((body or {}).get("metadata", {}).get("name", ""))
            if new in self.namespaces:
                return _status(409, "AlreadyExists", f'namespaces "{new}" already exists')
            self.namespaces[new] = {"apiVersion": "v1", "kind": "Namespace", **(body or {})}
            return aiohttp.web.json_response(self.namespaces[new], status=201)
        if name is None or name not in self.namespaces:
            return _status(404, "NotFound", f'namespaces "{name}" not found')
        if raw.method == "GET":
            return aiohttp.web.json_response(self.namespaces[name])
        if raw.method == "PATCH":
            _merge(self.namespaces[name], body or {})
            return aiohttp.web.json_response(self.namespaces[name])
        if raw.method == "DELETE":
            return aiohttp.web.json_response(self.namespaces.pop(name))
        return _status(405, "MethodNotAllowed", raw.method)


def _merge(base: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """JSON merge patch (RFC 7386)."""
    for key, value in patch.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = json.loads(json.dumps(value))


class KubeFake:
    """The emulator running in a thread, with a connected ``ApiClient``."""

    def __init__(self, resources: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._resources = dict(RESOURCES if resources is None else resources)
        self._ready = threading.Event()
        self.emu: Emulator
        self.url = ""
        self.loop: asyncio.AbstractEventLoop
        self._stop: asyncio.Event
        self.api: client.ApiClient

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with Emulator() as emu, kmock.Server(emu) as server:
            for key, info in self._resources.items():
                emu.resources[key] = {"verbs": _VERBS, **info}
            self.emu, self.url = emu, str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> KubeFake:
        self.thread = threading.Thread(target=self._run, name="kmock", daemon=True)
        self.thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("kmock did not start within 10 s")
        config = client.Configuration()
        config.host = self.url
        self.api = client.ApiClient(config)
        return self

    def __exit__(self, *exc: object) -> None:
        self.api.close()
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(5)

    def _in_loop(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(5)

    def put(self, obj: Mapping[str, Any]) -> None:
        """Store an object as the API server would have it (status included), bypassing HTTP."""
        kind, meta = obj["kind"], obj.get("metadata") or {}
        if kind == "Namespace":
            self.emu.namespaces[meta["name"]] = json.loads(json.dumps(obj))
            return
        key = (KIND_RESOURCE[kind], meta.get("namespace"), meta["name"])
        body = json.loads(json.dumps(obj))

        async def store() -> None:
            async with self.emu._lock:
                if key in self.emu.objects and not self.emu.objects[key].deleted:
                    self.emu.objects[key].create(body)
                else:
                    self.emu.objects[key] = body

        self._in_loop(store())

    def stored(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object as the fake stores it now, or None."""
        if kind == "Namespace":
            found = self.emu.namespaces.get(name)
            return plain(found) if found else None
        key = (KIND_RESOURCE[kind], namespace, name)

        async def read() -> dict[str, Any] | None:
            async with self.emu._lock:
                if key not in self.emu.objects or self.emu.objects[key].deleted:
                    return None
                return plain(self.emu.objects[key].raw)

        result: dict[str, Any] | None = self._in_loop(read())
        return result

    def versions(self, kind: str, namespace: str, name: str) -> int:
        """How many versions of an object the fake has stored (create, then each write)."""
        key = (KIND_RESOURCE[kind], namespace, name)
        return len([v for v in self.emu.objects[key].history if v is not None])

    def requests(self, method: str) -> list[Any]:
        """Requests served so far with this HTTP method (namespaces excluded)."""
        return list(self.emu[method.lower()])


@pytest.fixture(name="kube")
def kube_fake() -> Iterator[KubeFake]:
    """A fresh fake API server per test, with every resource the k8s target uses declared."""
    with KubeFake() as fake:
        yield fake
