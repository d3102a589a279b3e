"""``LocalCluster``: the Cluster verbs for the embedded mesh, spoken to its supervisor over HTTP."""

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
from workbook.cluster import Release, Status, VersionStatus
from workbook.errors import AlreadyRunningError, MeshError, NotRunningError, WorkbookError
from workbook.files import read_json
from workbook.local.ports import check_port_free
from workbook.local.supervisor import info_path, mesh_dir
from workbook.settings import Settings, validate_weight


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


class LocalCluster:
    """The local target: a real Envoy gateway and azmlinfsrv pods run by one supervisor process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # ---- plumbing ------------------------------------------------------------------------------

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

    def _call(self, method: str, path: str, body: Any = None, timeout: float | None = 30) -> Any:
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

    # ---- Cluster verbs -------------------------------------------------------------------------

    def up(
        self, overrides: dict[str, Any] | None = None, gateway_port: int | None = None
    ) -> Release:
        """Start the mesh and deploy stable + canary (revision n+1 of any earlier history)."""
        if self.running():
            raise AlreadyRunningError(
                f"a local mesh already runs for {self.settings.state_dir} "
                f"(gateway {self.status().gateway_url}); use `workbook upgrade`, `shift`, "
                "or `workbook down` first"
            )
        values = chart.merge_values(self.settings.chart_values(), overrides or {})
        chart.render(
            values,
            release=self.settings.release,
            namespace=self.settings.namespace,
            chart_dir=self.settings.chart_dir,
        )
        if gateway_port:
            check_port_free(gateway_port, "gateway")
        from workbook.packaging import ensure_demo_images

        ensure_demo_images(self.settings)
        self._spawn(gateway_port or 0)
        try:
            return self._release("/release", {"values": values, "description": "up"})
        except WorkbookError:
            self.down(keep_history=True)
            raise

    def upgrade(self, overrides: dict[str, Any], description: str = "upgrade") -> Release:
        """A new revision from the deployed values plus these overrides (helm upgrade)."""
        return self._release("/release", {"values": overrides, "description": description})

    def shift(self, canary_weight: int) -> Release:
        w = validate_weight(canary_weight)
        return self._release("/shift", {"weight": w})

    def status(self) -> Status:
        data = self._call("GET", "/status")
        data["versions"] = [VersionStatus(**v) for v in data["versions"]]
        return Status(**data)

    def apply(self, objects: list[dict[str, Any]]) -> list[str]:
        return list(self._call("POST", "/apply", {"objects": objects})["applied"])

    def get(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"kind": kind, **({"name": name} if name else {})})
        return list(self._call("GET", f"/objects?{q}"))

    def rollback(self, revision: int | None = None) -> Release:
        return self._release("/rollback", {"revision": revision})

    def promote(self) -> Release:
        return self._release("/promote", {})

    def history(self) -> list[Release]:
        return [Release(manifest="", **r) for r in self._call("GET", "/history")]

    def gateway_stats(self) -> dict[str, Any]:
        """Per-cluster request counters from Envoy's admin (what Istio metrics are in a cluster)."""
        return dict(self._call("GET", "/stats"))

    def served_routes(self) -> dict[str, Any]:
        """The route configuration the gateway serves right now (Envoy's config dump)."""
        return dict(self._call("GET", "/routes"))

    def served_clusters(self) -> list[dict[str, Any]]:
        """The clusters (one per version subset, with endpoints) the gateway serves right now."""
        return list(self._call("GET", "/clusters"))

    def down(self, keep_history: bool = False) -> None:
        """Stop every process; forget the release history unless asked (helm uninstall)."""
        info = self.info()
        if info is not None:
            self._call("POST", "/down", {})
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

    # ---- helpers -------------------------------------------------------------------------------

    def _release(self, path: str, body: dict[str, Any]) -> Release:
        # no client deadline: the supervisor bounds a release by the pods' startup budget, and
        # giving up early would report a failure for a release that then deploys
        return Release(manifest="", **self._call("POST", path, body, timeout=None))

    def _spawn(self, gateway_port: int, timeout_s: float = 30.0) -> None:
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
