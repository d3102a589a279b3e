"""The local control plane: one process per state directory that owns the pods and the gateway.

It renders releases with the chart, reconciles Deployments into pod processes and Istio objects
into Envoy configuration, keeps the release history, and serves the CLI over HTTP on 127.0.0.1.
Every change is validated in full before anything is touched, so bad input leaves the mesh
serving its previous configuration. A change is one transaction with the history: the revision is
written ``pending`` first, served, then committed ``deployed`` (or undone and marked ``failed``);
on start the supervisor serves exactly what the history says is deployed.

Only the owner can drive it: every request carries the token from ``mesh/api.token`` (mode 0600,
in a 0700 folder, new at each start), a JSON Content-Type and a loopback Host.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import fcntl
import hmac
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from workbook import canary, chart, envoy, istio, kinds, served
from workbook.errors import ConfigError, ConflictError, MeshError, WorkbookError
from workbook.files import read_json, write_atomic, write_json
from workbook.local.gateway import Gateway
from workbook.local.housekeeping import prune_pod_dirs, rotate
from workbook.local.limits import MAX_REQUEST_BYTES, check_release
from workbook.local.pods import PodManager, pod_spec
from workbook.local.ports import free_port
from workbook.local.registry import LocalImageStore
from workbook.local.releases import ReleaseStore
from workbook.seam import Release
from workbook.settings import Settings

log = logging.getLogger("workbook.supervisor")

ISTIO_KINDS = kinds.GATEWAY_KINDS


def mesh_dir(settings: Settings) -> Path:
    return settings.state_dir / "mesh"


def info_path(settings: Settings) -> Path:
    return mesh_dir(settings) / "supervisor.json"


def token_path(settings: Settings) -> Path:
    """The API credential: readable by the owner only (mode 0600)."""
    return mesh_dir(settings) / "api.token"


def lock_path(settings: Settings) -> Path:
    """Held (flock) by the running supervisor for its whole life: the truth about "running"."""
    return mesh_dir(settings) / "supervisor.lock"


TOKEN_HEADER = "X-Workbook-Token"


def key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj.get("kind", ""), obj.get("metadata", {}).get("name", "")


def overlay(base: list[dict[str, Any]], applied: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Objects applied by hand replace the release's objects of the same kind and name (pure)."""
    by_key = {key(o): o for o in applied}
    out = [by_key.pop(key(o), o) for o in base]
    return out + list(by_key.values())


def subset_of(labels: dict[str, str], objects: list[dict[str, Any]]) -> str:
    """The DestinationRule subset whose labels select a pod with these labels."""
    for dr in (o for o in objects if o.get("kind") == "DestinationRule"):
        for s in dr.get("spec", {}).get("subsets", []):
            if all(labels.get(k) == v for k, v in (s.get("labels") or {}).items()):
                return str(s["name"])
    return ""


class Supervisor:
    """Owns the pods and the gateway of one state directory; every method is one CLI verb."""

    def __init__(self, settings: Settings, gateway_port: int) -> None:
        self.settings = settings
        root = mesh_dir(settings)
        self.releases = ReleaseStore(root / "releases")
        self.applied_path = root / "applied.json"
        self.pods = PodManager(root / "pods", LocalImageStore(settings.state_dir), self._changed)
        self.gateway = Gateway(root / "envoy", gateway_port)
        self.objects: list[dict[str, Any]] = []
        self.lock = asyncio.Lock()
        self.stopping = asyncio.Event()
        self._resync_task: asyncio.Task[None] | None = None
        self._dirty = False

    # ---- reconcile ---------------------------------------------------------------------------

    def _translate(self, objects: list[dict[str, Any]], endpoints: list[envoy.Endpoint]) -> Any:
        return envoy.translate(objects, endpoints, namespace=self.settings.namespace)

    def _prospective_endpoints(self, objects: list[dict[str, Any]]) -> list[envoy.Endpoint]:
        """Endpoints the Deployments would create, for validating a translation up front."""
        out = []
        for d in (o for o in objects if o.get("kind") == "Deployment"):
            spec, _ = pod_spec(d)
            out.append(
                envoy.Endpoint(
                    name=spec.deployment,
                    labels=spec.labels,
                    address="127.0.0.1",
                    ports={spec.container_port: 1},
                )
            )
        return out

    async def _changed(self) -> None:
        """A pod became ready or went away: resync the gateway once the current change is done."""
        self._dirty = True
        if self._resync_task is None or self._resync_task.done():
            self._resync_task = asyncio.create_task(self._resync())

    async def _resync(self) -> None:
        while self._dirty:  # a change during a push gets its own push
            self._dirty = False
            async with self.lock:
                if not self.objects:
                    continue
                try:
                    await self.gateway.push(self._translate(self.objects, self.pods.endpoints()))
                except Exception as e:
                    log.error("resync failed: %s", e)

    async def release(
        self, make: Callable[[Release | None], tuple[dict[str, Any], str]]
    ) -> Release:
        """Render, validate, start pods, switch the gateway, stop old pods: one new revision.

        ``make`` turns the deployed revision into (values, description) under the lock, so
        concurrent verbs never build on values that another release is replacing.
        """
        async with self.lock:
            values, description = make(self.releases.deployed())
            canary.check_tracks(canary.merge(chart.default_values(self.settings.chart_dir), values))
            docs = chart.render(
                values,
                release=self.settings.release,
                namespace=self.settings.namespace,
                chart_dir=self.settings.chart_dir,
            )
            check_release(docs, values)
            manifest = yaml.safe_dump_all(docs, sort_keys=False)
            deployments = [d for d in docs if d.get("kind") == "Deployment"]
            istio.validate([d for d in docs if d.get("kind") in ISTIO_KINDS])
            await self.gateway.validate(
                self._translate(docs, self._prospective_endpoints(docs)),
                f"the Istio objects of release {self.settings.release}",
            )
            self.pods.check_images(deployments)
            rel = self.releases.begin(values, manifest, description)  # write ahead
            started = []
            try:
                started = await self.pods.scale_up(deployments)
                surplus = self.pods.surplus(deployments)
                keep = [
                    p.endpoint() for p in self.pods.pods.values() if p.ready and p not in surplus
                ]
                await self.gateway.push(self._translate(docs, keep))
                self.releases.commit(rel)
            except BaseException as e:
                await self._undo(started)
                self.releases.fail(rel, str(e))
                raise
            self.objects = docs
            await self.pods.stop(surplus)
            self._prune()
            return rel

    async def _undo(self, started: list[Any]) -> None:
        """After a failed release: stop its new pods and serve the previous objects again."""
        await self.pods.stop(started)
        try:
            if self.objects:
                await self.gateway.push(self._translate(self.objects, self.pods.endpoints()))
            else:  # the first release failed: nothing is deployed, so nothing is served
                await self.gateway.push(envoy.EnvoyConfig(clusters=[], routes=envoy.empty_routes()))
        except Exception as e:  # try again with the next resync; say so in the log
            log.error("could not restore the previous configuration: %s", e)
            await self._changed()
        self._prune()

    def _prune(self) -> None:
        removed = prune_pod_dirs(self.pods.root, self.pods.pods)
        if removed:
            log.info("removed the folders of stopped pods %s", removed)

    def _applied(self, revision: int) -> list[dict[str, Any]]:
        """Objects applied by hand over ``revision`` (applied over an older one no longer count)."""
        try:
            data = read_json(self.applied_path, {})
        except (OSError, ValueError):
            return []
        if isinstance(data, dict) and data.get("revision") == revision:
            return list(data.get("objects") or [])
        return []

    async def restore(self) -> None:
        """At start: settle the history a crash left, then serve its deployed revision."""
        async with self.lock:
            try:
                for line in self.releases.reconcile():
                    log.warning("release history after a crash: %s", line)
            except MeshError as e:
                log.error("%s", e)
            rel = self.releases.deployed()
            if rel is None:
                return
            docs = [d for d in yaml.safe_load_all(rel.manifest) if isinstance(d, dict)]
            objects = overlay(docs, self._applied(rel.revision))
            log.info("serving revision %s again (%s)", rel.revision, rel.description)
            try:
                await self.pods.scale_up([d for d in docs if d.get("kind") == "Deployment"])
            except WorkbookError as e:
                log.error("revision %s: its pods did not come back: %s", rel.revision, e)
            self.objects = objects
            try:
                await self.gateway.push(self._translate(objects, self.pods.endpoints()))
            except WorkbookError as e:
                log.error("revision %s: the gateway did not take it: %s", rel.revision, e)

    async def deploy(
        self, values: Any, description: str, expect_revision: int | None = None
    ) -> Release:
        """Deploy full chart values as a new revision (``helm upgrade --install``)."""
        if not isinstance(values, dict):
            raise ConfigError(
                "release", "values", f"must be a mapping, got {type(values).__name__}"
            )

        def make(current: Release | None) -> tuple[dict[str, Any], str]:
            deployed = current.revision if current else 0
            if expect_revision is not None and deployed != expect_revision:
                raise ConflictError(
                    f"release {self.settings.release}: revision {deployed} is deployed, not "
                    f"{expect_revision}; another command changed it meanwhile: look at "
                    "`workbook history` and try again"
                )
            return copy.deepcopy(values), str(description)

        return await self.release(make)

    async def rollback(self, revision: Any) -> Release:
        """Deploy an earlier revision's values again, as a new revision (``helm rollback``)."""
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
            raise ConfigError(
                "rollback", "revision", f"must be a positive integer, got {revision!r}"
            )

        def make(current: Release | None) -> tuple[dict[str, Any], str]:
            target = self.releases.get(revision)
            return copy.deepcopy(target.values), f"rollback to {target.revision}"

        return await self.release(make)

    async def apply(self, objects: Any) -> list[str]:
        """Apply Istio objects over the release's own until the next release (kubectl apply)."""
        if not isinstance(objects, list):
            raise ConfigError("apply", "objects", "must be a list of Istio objects")
        async with self.lock:
            current = self.releases.deployed()
            if not self.objects or current is None:
                raise MeshError("nothing is deployed yet; run `workbook up` first")
            for i, o in enumerate(objects):
                istio.check_object_shape(o, i)
                if o.get("kind") not in ISTIO_KINDS:
                    raise ConfigError(
                        f"document {i}", "kind", f"must be one of {list(ISTIO_KINDS)} locally"
                    )
                o["metadata"].setdefault("namespace", self.settings.namespace)
            applied = overlay(self._applied(current.revision), objects)
            candidate = overlay(self.objects, applied)
            warnings = istio.validate(
                [o for o in candidate if o.get("kind") in ISTIO_KINDS],
                namespace=self.settings.namespace,
            )
            config = self._translate(candidate, self.pods.endpoints())
            await self.gateway.validate(config, ", ".join(istio.ref(o) for o in objects))
            try:
                before = self.applied_path.read_text() if self.applied_path.exists() else None
                write_json(self.applied_path, {"revision": current.revision, "objects": applied})
            except OSError as e:  # write ahead failed: nothing served, nothing changed
                raise MeshError(
                    f"applied objects could not be recorded in {self.applied_path} "
                    f"({e.strerror or e}); nothing was changed"
                ) from None
            try:
                await self.gateway.push(config)
            except BaseException:
                try:
                    if before is None:
                        self.applied_path.unlink(missing_ok=True)
                    else:
                        write_atomic(self.applied_path, before)
                except OSError as e:
                    log.error("could not restore %s: %s", self.applied_path, e)
                await self._undo([])
                raise
            self.objects = candidate
            return [f"{istio.ref(o)} configured" for o in objects] + [
                f"Warning: {w}" for w in warnings
            ]

    # ---- read ----------------------------------------------------------------------------------

    def readiness(self) -> list[dict[str, Any]]:
        """Per Deployment of the live objects: track, version, image, desired and ready pods."""
        out = []
        for d in (o for o in self.objects if o.get("kind") == "Deployment"):
            spec, replicas = pod_spec(d)
            pods = [p for p in self.pods.pods.values() if p.spec.deployment == spec.deployment]
            out.append(
                {
                    "track": spec.labels.get("track", spec.deployment),
                    "version": spec.labels.get("version", ""),
                    "image": spec.image,
                    "replicas": replicas,
                    "ready": sum(1 for p in pods if p.ready and not p.stopping),
                }
            )
        return out

    async def served_weights(self) -> dict[str, int]:
        """Subset → weight of the weighted route, from Envoy's own config dump."""
        configs = [await self.gateway.served_routes()]
        weights = served.served_weights(configs, self.settings.namespace, self.settings.app)
        return served.as_percent(weights or {})

    def extra(self) -> dict[str, Any]:
        """What only the local target has: admin URL, process ids, restarts, pods."""
        return {
            "admin_url": self.gateway.admin_url,
            "gateway_pid": self.gateway.proc.pid if self.gateway.proc else None,
            "gateway_restarts": self.gateway.restarts,
            "pods": [p.summary() for p in self.pods.pods.values()],
            "supervisor_pid": os.getpid(),
        }

    def get(self, kind: str, name: str | None) -> list[dict[str, Any]]:
        """Live objects of a kind (kubectl names: plural, lower case or short, as on a cluster);
        pods are the running pod processes, as Pod objects."""
        if not self.objects:
            raise MeshError("nothing is deployed yet; run `workbook up` first")
        wanted = kinds.canonical_kind(kind)
        live = self.pod_objects() if wanted == "Pod" else self.objects
        out = [o for o in live if o.get("kind") == wanted and (name is None or key(o)[1] == name)]
        if name is not None and not out:
            raise ConfigError(f"{wanted} {name}", "", "not found in the live objects")
        return out

    def pod_objects(self) -> list[dict[str, Any]]:
        """The pod processes as Kubernetes Pod objects (name, labels, phase, readiness)."""
        return [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": p.name,
                    "namespace": self.settings.namespace,
                    "labels": dict(p.spec.labels),
                },
                "spec": {"containers": [{"name": "scoring", "image": p.spec.image}]},
                "status": {
                    "phase": "Running" if p.pid else "Pending",
                    "podIP": "127.0.0.1",
                    "conditions": [{"type": "Ready", "status": str(bool(p.ready))}],
                    "containerStatuses": [{"name": "scoring", "restartCount": p.restarts}],
                },
            }
            for p in self.pods.pods.values()
        ]

    async def gateway_stats(self) -> dict[str, Any]:
        """Per Envoy cluster (= per version subset) request counters from the gateway."""
        return envoy.admin_stats_by_cluster(await self.gateway.stats())

    # ---- lifecycle -----------------------------------------------------------------------------

    async def watch_gateway(self) -> None:
        """Restart Envoy as soon as it dies (it reloads the xDS files on start); back off only
        when it dies within 1 s of a restart (a crash loop). Rotates the logs every 10 s."""
        delay, last_restart = 0.0, 0.0
        while not self.stopping.is_set():
            proc = self.gateway.proc
            if proc is not None and proc.returncode is None:
                try:
                    await asyncio.wait_for(asyncio.shield(proc.wait()), timeout=10)
                except TimeoutError:
                    self.rotate_logs()
                    continue
            if self.stopping.is_set():
                return
            log.warning("gateway exited with %s; restarting", proc.returncode if proc else None)
            if time.monotonic() - last_restart < 1:  # dying again right away: back off
                delay = min(max(delay * 2, 0.5), 10.0)
                await asyncio.sleep(delay)
            else:
                delay = 0.0
            last_restart = time.monotonic()
            try:
                await self.gateway.start()
                self.gateway.restarts += 1
                log.info("gateway live again in %.0f ms", 1000 * (time.monotonic() - last_restart))
            except WorkbookError as e:
                log.error("gateway restart failed: %s", e)

    def rotate_logs(self) -> None:
        root = mesh_dir(self.settings)
        for path in (root / "supervisor.log", self.gateway.root / "envoy.log"):
            rotate(path)
        for pod in list(self.pods.pods.values()):
            rotate(self.pods.root / pod.name / "pod.log")

    async def shutdown(self) -> None:
        await self.pods.stop_all()
        await self.gateway.stop()


def routes(sup: Supervisor) -> web.RouteTableDef:
    r = web.RouteTableDef()

    async def body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            data = json.loads(await request.read())
        except RecursionError:
            raise ConfigError("request body", "", "is nested too deeply") from None
        except ValueError as e:  # bad JSON, bad UTF-8, an integer of thousands of digits
            raise ConfigError("request body", "", f"is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError("request body", "", "must be a JSON object")
        return data

    def ok(data: Any) -> web.Response:
        return web.json_response(data)

    @r.get("/healthz")
    async def healthz(_: web.Request) -> web.Response:
        return ok({"ok": True, "pid": os.getpid()})

    @r.get("/info")
    async def info(_: web.Request) -> web.Response:
        return ok({"gateway_url": sup.gateway.url, "extra": sup.extra()})

    @r.get("/readiness")
    async def readiness(_: web.Request) -> web.Response:
        return ok(sup.readiness())

    @r.get("/served")
    async def served_weights(_: web.Request) -> web.Response:
        return ok(await sup.served_weights())

    @r.post("/release")
    async def release(request: web.Request) -> web.Response:
        b = await body(request)
        expect = b.get("expect_revision")
        if expect is not None and (isinstance(expect, bool) or not isinstance(expect, int)):
            raise ConfigError("release", "expect_revision", f"must be an integer, got {expect!r}")
        rel = await sup.deploy(b.get("values"), str(b.get("description", "upgrade")), expect)
        return ok(rel.summary())

    @r.post("/rollback")
    async def rollback(request: web.Request) -> web.Response:
        return ok((await sup.rollback((await body(request)).get("revision"))).summary())

    @r.post("/apply")
    async def apply(request: web.Request) -> web.Response:
        return ok({"applied": await sup.apply((await body(request)).get("objects", []))})

    @r.get("/objects")
    async def objects(request: web.Request) -> web.Response:
        return ok(sup.get(request.query.get("kind", ""), request.query.get("name")))

    @r.get("/history")
    async def history(_: web.Request) -> web.Response:
        return ok([h.summary() for h in sup.releases.history()])

    @r.get("/metrics")
    async def metrics(_: web.Request) -> web.Response:
        return ok({"text": await sup.gateway.prometheus_text()})

    @r.get("/stats")
    async def stats(_: web.Request) -> web.Response:
        return ok(await sup.gateway_stats())

    @r.get("/routes")
    async def served(_: web.Request) -> web.Response:
        return ok(await sup.gateway.served_routes())

    @r.get("/clusters")
    async def clusters(_: web.Request) -> web.Response:
        return ok(await sup.gateway.served_clusters())

    @r.post("/down")
    async def down(_: web.Request) -> web.Response:
        sup.stopping.set()
        return ok({"stopping": True})

    return r


def guard(token: str, port_of: Callable[[], int]) -> Any:
    """Middleware: only the owner (who can read the token) on loopback, JSON bodies only.

    The Host check refuses requests a web page could send through a name that resolves to
    127.0.0.1 (DNS rebinding); the Content-Type check refuses cross-origin "simple" form posts.
    """

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/healthz":
            given = request.headers.get(TOKEN_HEADER, "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return _refuse(401, f"missing or wrong {TOKEN_HEADER}: only the owner may")
            host = request.headers.get("Host", "")
            if host not in (f"127.0.0.1:{port_of()}", f"localhost:{port_of()}"):
                return _refuse(421, f"Host {host[:60]!r} is not this supervisor's address")
            if request.method == "POST" and request.content_type != "application/json":
                return _refuse(415, "Content-Type must be application/json")
        return await handler(request)

    return check


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "type": "MeshError"}, status=status)


@web.middleware
async def errors_as_json(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except WorkbookError as e:
        return web.json_response(
            {"error": str(e), "type": type(e).__name__, "exit_code": e.exit_code}, status=400
        )
    except json.JSONDecodeError as e:
        return web.json_response({"error": f"request body: {e}", "type": "ConfigError"}, status=400)
    except web.HTTPRequestEntityTooLarge:
        return web.json_response(
            {
                "error": f"request body: larger than {MAX_REQUEST_BYTES} bytes",
                "type": "ConfigError",
                "exit_code": 2,
            },
            status=413,
        )
    except web.HTTPException:
        raise
    except Exception as e:  # a bug: say what happened instead of an HTML 500
        log.exception("unexpected error in %s", request.path)
        return web.json_response(
            {
                "error": f"unexpected {type(e).__name__}: {e}; see mesh/supervisor.log",
                "type": "MeshError",
            },
            status=500,
        )


def new_token(settings: Settings) -> str:
    """A fresh API token in ``mesh/api.token`` (0600: files.write_atomic creates it so)."""
    token = secrets.token_urlsafe(32)
    write_atomic(token_path(settings), token + "\n")
    os.chmod(token_path(settings), 0o600)
    return token


async def serve(settings: Settings, gateway_port: int) -> None:
    root = mesh_dir(settings)
    sup = Supervisor(settings, gateway_port)
    prune_pod_dirs(sup.pods.root, ())  # no pod runs before this supervisor starts them
    await sup.gateway.start(fresh=True)
    token = new_token(settings)
    port = 0
    app = web.Application(
        middlewares=[guard(token, lambda: port), errors_as_json],
        client_max_size=MAX_REQUEST_BYTES,
    )
    app.add_routes(routes(sup))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sup.stopping.set)
    watcher = asyncio.create_task(sup.watch_gateway())
    restoring = asyncio.create_task(sup.restore())
    write_json(
        info_path(settings),
        {
            "pid": os.getpid(),
            "api": f"http://127.0.0.1:{port}",
            "gateway_url": sup.gateway.url,
            "admin_url": sup.gateway.admin_url,
            "started": time.time(),
        },
    )
    log.info("serving api on 127.0.0.1:%s, gateway %s", port, sup.gateway.url)
    try:
        await sup.stopping.wait()
    finally:
        watcher.cancel()
        restoring.cancel()
        info_path(settings).unlink(missing_ok=True)
        await runner.cleanup()
        await sup.shutdown()
        log.info("stopped; state kept in %s", root)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="workbook-supervisor")
    p.add_argument("--settings-json", required=True)
    p.add_argument("--gateway-port", type=int, default=0)
    args = p.parse_args(argv)
    raw = json.loads(args.settings_json)
    raw["stages"] = tuple(raw.get("stages", ()))
    raw["state_dir"], raw["chart_dir"] = Path(raw["state_dir"]), Path(raw["chart_dir"])
    settings = Settings(**raw)
    root = mesh_dir(settings)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)  # history, token, sockets and logs: the owner's only
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    lock = open(lock_path(settings), "w")  # noqa: SIM115 - held for the process lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"a supervisor already runs for {settings.state_dir}", file=sys.stderr)
        return 3
    asyncio.run(serve(settings, args.gateway_port or free_port()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
