"""The local target: a real Envoy gateway and azmlinfsrv pods run by one supervisor process.

``SupervisorAPI`` speaks to the supervisor over HTTP on 127.0.0.1; the release backend, traffic view
and object store of the seam (``workbook.seam``) are thin shells over it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from workbook import chart, errors
from workbook.envoy import STATS_FLUSH_INTERVAL
from workbook.errors import AlreadyRunningError, MeshError, NotRunningError, WorkbookError
from workbook.files import read_json
from workbook.local.ports import check_port_free
from workbook.local.supervisor import info_path, mesh_dir
from workbook.seam import Release, VersionStatus
from workbook.settings import Settings


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; an exited child not yet reaped (a zombie) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class SupervisorAPI:
    """The HTTP API of the supervisor of one state directory (started on demand)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def info(self) -> dict[str, Any] | None:
        """The running supervisor's address, or None when no mesh runs for this state dir."""
        data = read_json(info_path(self.settings))
        if not data or not _pid_alive(int(data.get("pid", 0))):
            return None
        try:
            with urllib.request.urlopen(data["api"] + "/healthz", timeout=2):
                return dict(data)
        except (urllib.error.URLError, OSError):
            return None

    def running(self) -> bool:
        return self.info() is not None

    def call(self, method: str, path: str, body: Any = None, timeout: float | None = 30) -> Any:
        info = self.info()
        if info is None:
            raise NotRunningError(
                f"no local mesh runs for {self.settings.state_dir}; start one with `workbook up`"
            )
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            info["api"] + path,
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                payload = {"error": f"HTTP {e.code} from the supervisor: {body[:200]!r}"}
            raise _error(payload) from None
        except (urllib.error.URLError, OSError) as e:
            raise MeshError(f"the local mesh supervisor did not answer {path}: {e}") from None

    def spawn(self, gateway_port: int, timeout_s: float = 30.0) -> None:
        """Start the supervisor (it starts Envoy) and wait until it answers."""
        root = mesh_dir(self.settings)
        root.mkdir(parents=True, exist_ok=True)
        raw = dataclasses.asdict(self.settings)
        raw = {k: (str(v) if isinstance(v, Path) else v) for k, v in raw.items()}
        argv = [
            sys.executable,
            "-m",
            "workbook.local.supervisor",
            "--settings-json",
            json.dumps(raw),
            "--gateway-port",
            str(gateway_port),
        ]
        log_path = root / "supervisor.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while self.info() is None:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace").splitlines()[-5:]
                raise MeshError(
                    f"the mesh supervisor exited with code {proc.returncode}: " + " | ".join(tail)
                )
            if time.monotonic() > deadline:
                proc.kill()
                raise MeshError(f"the mesh supervisor did not start within {timeout_s:.0f} s")
            time.sleep(0.05)

    def stop(self, keep_history: bool = False) -> None:
        """Stop every process; forget the release history unless asked (helm uninstall)."""
        info = self.info()
        if info is not None:
            self.call("POST", "/down", {})
            deadline = time.monotonic() + 60
            while _pid_alive(int(info["pid"])):
                if time.monotonic() > deadline:
                    raise MeshError(
                        f"the mesh supervisor (pid {info['pid']}) did not stop within 60 s; "
                        f"see {mesh_dir(self.settings) / 'supervisor.log'}"
                    )
                time.sleep(0.1)
        if not keep_history:
            for p in (mesh_dir(self.settings) / "releases").glob("*.json"):
                p.unlink()
            (mesh_dir(self.settings) / "applied.json").unlink(missing_ok=True)


def _release(data: dict[str, Any]) -> Release:
    return Release(**{"manifest": "", **data})


class LocalReleases:
    """Release backend: revisions kept by the supervisor, the way Helm keeps them."""

    def __init__(self, api: SupervisorAPI) -> None:
        self.api = api

    def deployed(self) -> Release | None:
        if not self.api.running():
            return None
        for rel in reversed(self.history()):
            if rel.status == "deployed":
                return rel
        return None

    def upgrade(
        self, values: dict[str, Any], description: str, *, expect_revision: int | None = None
    ) -> Release:
        # no client deadline: the supervisor bounds a release by the pods' startup budget, and
        # giving up early would report a failure for a release that then deploys
        body = {"values": values, "description": description, "expect_revision": expect_revision}
        return _release(self.api.call("POST", "/release", body, timeout=None))

    def rollback(self, revision: int) -> Release:
        return _release(self.api.call("POST", "/rollback", {"revision": revision}, timeout=None))

    def history(self) -> list[Release]:
        return [_release(r) for r in self.api.call("GET", "/history")]

    def uninstall(self) -> None:
        self.api.stop(keep_history=False)

    def readiness(self) -> list[VersionStatus]:
        return [VersionStatus(**v) for v in self.api.call("GET", "/readiness")]


#: Seconds between Envoy's stats flushes, plus a margin.
STATS_FLUSH_S = float(STATS_FLUSH_INTERVAL.removesuffix("s")) + 0.2


class LocalTraffic:
    """Traffic view: the Envoy gateway's own config dump and per-cluster counters."""

    def __init__(self, api: SupervisorAPI) -> None:
        self.api = api

    def gateway_url(self) -> str:
        info = self.api.info()
        return str(info["gateway_url"]) if info else ""

    def host(self) -> str:
        return ""  # the local gateway serves the chart's hosts, "*" by default

    def served_weights(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.api.call("GET", "/served").items()}

    def counters(self) -> dict[str, dict[str, int]]:
        return dict(self.api.call("GET", "/stats"))

    def _metrics(self) -> str:
        # Envoy publishes its latency histograms at each stats flush: wait one, so the snapshot
        # holds every request answered before it
        time.sleep(STATS_FLUSH_S)
        return str(self.api.call("GET", "/metrics")["text"])

    def telemetry_mark(self) -> str:
        return self._metrics()

    def telemetry_since(self, mark: Any, versions: dict[str, str]) -> dict[str, Any]:
        from workbook import telemetry

        return telemetry.envoy_stage(str(mark), self._metrics(), versions)

    def served_routes(self) -> dict[str, Any]:
        """The route configuration the gateway serves right now (Envoy's config dump)."""
        return dict(self.api.call("GET", "/routes"))

    def served_clusters(self) -> list[dict[str, Any]]:
        """The clusters (one per version subset, with endpoints) the gateway serves right now."""
        return list(self.api.call("GET", "/clusters"))


class LocalObjects:
    """Object store: the release's rendered objects, with Istio objects applied by hand on top."""

    def __init__(self, api: SupervisorAPI) -> None:
        self.api = api

    def get(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"kind": kind, **({"name": name} if name else {})})
        return list(self.api.call("GET", f"/objects?{q}"))

    def apply(self, objects: list[dict[str, Any]]) -> list[str]:
        return list(self.api.call("POST", "/apply", {"objects": objects})["applied"])


class LocalTarget:
    """The ``local`` target: one supervisor per state directory, on 127.0.0.1."""

    name = "local"

    def __init__(self, settings: Settings, *, gateway_port: int | None = None) -> None:
        self.settings = settings
        self.gateway_port = gateway_port
        self.api = SupervisorAPI(settings)
        self.releases = LocalReleases(self.api)
        self.traffic = LocalTraffic(self.api)
        self.objects = LocalObjects(self.api)

    def __repr__(self) -> str:
        return f"LocalTarget({self.settings.state_dir})"

    def running(self) -> bool:
        return self.api.running()

    def prepare(self, values: dict[str, Any]) -> dict[str, Any]:
        """Start the mesh for a first release: the values render, the images exist, port free."""
        if self.api.running():
            raise AlreadyRunningError(
                f"a local mesh already runs for {self.settings.state_dir} "
                f"(gateway {self.traffic.gateway_url()}); use `workbook upgrade`, `shift`, "
                "or `workbook down` first"
            )
        chart.render(
            values,
            release=self.settings.release,
            namespace=self.settings.namespace,
            chart_dir=self.settings.chart_dir,
        )
        if self.gateway_port:
            check_port_free(self.gateway_port, "gateway")
        from workbook.local.packaging import ensure_demo_images

        ensure_demo_images(self.settings)
        self.api.spawn(self.gateway_port or 0)
        return values

    def abandon(self) -> None:
        """After a failed first release: stop the mesh, keep the history that says why."""
        self.api.stop(keep_history=True)

    def down(self, keep_history: bool = False) -> None:
        self.api.stop(keep_history=keep_history)

    def info(self) -> dict[str, Any]:
        """Local extras for ``status``: admin URL, process ids, restarts, pods."""
        return dict(self.api.call("GET", "/info")["extra"])


def _error(payload: dict[str, Any]) -> WorkbookError:
    """Rebuild the supervisor's error as the same WorkbookError class, same message."""
    cls = getattr(errors, str(payload.get("type", "")), None)
    message = str(payload.get("error", "unknown error from the mesh supervisor"))
    err: WorkbookError
    if isinstance(cls, type) and issubclass(cls, errors.ConfigError):
        err = errors.ConfigError("", "", "")
        err.args = (message,)
    elif isinstance(cls, type) and issubclass(cls, WorkbookError):
        err = cls(message)
    else:
        err = MeshError(message)
    return err
