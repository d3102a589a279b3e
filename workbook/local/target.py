"""The local target: a real Envoy gateway and azmlinfsrv pods run by one supervisor process.

``SupervisorAPI`` speaks to the supervisor over HTTP on 127.0.0.1 with the owner's token (from
``mesh/api.token``, mode 0600); the release backend, traffic view and object store of the seam
(``workbook.seam``) are thin shells over it. Whether a supervisor runs is decided by its lock
(``flock`` on ``mesh/supervisor.lock``), not by whether it answers quickly: a slow supervisor is
still running, and ``down`` says so instead of deleting history under it.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from workbook import chart, errors
from workbook.envoy import STATS_FLUSH_INTERVAL
from workbook.errors import (
    AlreadyRunningError,
    ConfigError,
    MeshError,
    NotRunningError,
    WorkbookError,
)
from workbook.files import read_json
from workbook.local.environ import PYTHON_CHILD, child_env
from workbook.local.housekeeping import rotate
from workbook.local.limits import check_release
from workbook.local.ports import check_port_free
from workbook.local.supervisor import TOKEN_HEADER, info_path, lock_path, mesh_dir, token_path
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


def _is_supervisor(pid: int) -> bool:
    """``pid`` runs our supervisor (not a process that reused the number)."""
    try:
        return b"workbook.local.supervisor" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def check_state_dir(path: Path) -> None:
    """The state dir is a folder we can write (created if missing): else a ConfigError naming it.

    Tried for real (a temp file is written and removed), because permission bits say nothing
    about a read-only file system, or to root.
    """
    if path.exists() and not path.is_dir():
        raise ConfigError("--state-dir", str(path), "is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError("--state-dir", str(path), f"cannot be created: {e.strerror}") from None
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ConfigError("--state-dir", str(path), f"is not writable: {e.strerror}") from None


class SupervisorAPI:
    """The HTTP API of the supervisor of one state directory (started on demand)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def supervisor_alive(self) -> bool:
        """A supervisor holds the lock of this state dir (it may be slow to answer)."""
        try:
            fd = os.open(lock_path(self.settings), os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def wait_exited(self, timeout_s: float = 10.0) -> None:
        """A supervisor that died is still releasing its lock while its threads exit (its main
        thread already a zombie): wait for that, so ``up`` right after a crash starts anew."""
        record = self._record() or {}
        pid = int(record.get("pid", 0))
        deadline = time.monotonic() + timeout_s
        while self.supervisor_alive() and not (pid and _pid_alive(pid)):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)

    def _record(self) -> dict[str, Any] | None:
        try:
            data = read_json(info_path(self.settings))
        except (OSError, ValueError):
            return None
        return dict(data) if isinstance(data, dict) else None

    def info(self) -> dict[str, Any] | None:
        """The running supervisor's address, or None when no mesh runs for this state dir."""
        data = self._record()
        if not data or not _pid_alive(int(data.get("pid", 0))):
            return None
        try:
            with urllib.request.urlopen(data["api"] + "/healthz", timeout=2):
                return data
        except (urllib.error.URLError, OSError):
            return None

    def running(self) -> bool:
        return self.info() is not None

    def _token(self) -> str:
        try:
            return token_path(self.settings).read_text().strip()
        except OSError as e:
            raise MeshError(
                f"the mesh API token {token_path(self.settings)} cannot be read ({e.strerror}): "
                "only the user who started the mesh may drive it"
            ) from None

    def call(self, method: str, path: str, body: Any = None, timeout: float | None = 30) -> Any:
        info = self.info()
        if info is None:
            if self.supervisor_alive():
                raise MeshError(
                    f"the local mesh supervisor for {self.settings.state_dir} runs but does not "
                    f"answer; see {mesh_dir(self.settings) / 'supervisor.log'}"
                )
            raise NotRunningError(
                f"no local mesh runs for {self.settings.state_dir}; start one with `workbook up`"
            )
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            info["api"] + path,
            data=data,
            method=method,
            headers={"content-type": "application/json", TOKEN_HEADER: self._token()},
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
        check_state_dir(root)
        os.chmod(root, 0o700)
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
        rotate(log_path)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=child_env(PYTHON_CHILD),
                start_new_session=True,
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

    def stop(self, keep_history: bool = False, timeout_s: float = 60.0) -> str:
        """Stop every process; forget the release history unless asked (helm uninstall).

        Returns what was done. If a supervisor runs but does not stop within ``timeout_s`` (asked
        over its API, else by SIGTERM), MeshError, and the history is kept.
        """
        done = []
        if self.supervisor_alive():
            record = self._record() or {}
            pid = int(record.get("pid", 0))
            try:
                self.call("POST", "/down", {}, timeout=5)
            except WorkbookError:
                if pid and _is_supervisor(pid):
                    os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self.supervisor_alive():
                if time.monotonic() > deadline:
                    raise MeshError(
                        f"the mesh supervisor{f' (pid {pid})' if pid else ''} did not stop "
                        f"within {timeout_s:.0f} s; it may still serve; the release history is "
                        f"kept; see {mesh_dir(self.settings) / 'supervisor.log'}"
                    )
                time.sleep(0.1)
            done.append("mesh stopped")
        else:
            done.append(f"no local mesh was running for {self.settings.state_dir}")
        if not keep_history:
            removed = self._forget_history()
            if removed:
                done.append(f"release history removed ({removed} revisions)")
        return "; ".join(done)

    def _forget_history(self) -> int:
        root = mesh_dir(self.settings)
        try:
            records = list((root / "releases").glob("*.json"))
            for p in records:
                p.unlink()
            (root / "applied.json").unlink(missing_ok=True)
        except OSError as e:
            raise MeshError(
                f"the mesh is stopped but its release history could not be removed from "
                f"{root / 'releases'} ({e.strerror or e})"
            ) from None
        return len(records)


def _release(data: dict[str, Any]) -> Release:
    return Release(**{"manifest": "", **data})


class LocalReleases:
    """Release backend: revisions kept by the supervisor, the way Helm keeps them."""

    def __init__(self, api: SupervisorAPI) -> None:
        self.api = api

    def deployed(self) -> Release | None:
        if not self.api.running() and not self.api.supervisor_alive():
            return None  # (a supervisor that runs but does not answer: history() says so)
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
        if not self.api.running():
            self.api.wait_exited()
        if self.api.running() or self.api.supervisor_alive():
            raise AlreadyRunningError(
                f"a local mesh already runs for {self.settings.state_dir} "
                f"(gateway {self.traffic.gateway_url()}); use `workbook upgrade`, `shift`, "
                "or `workbook down` first"
            )
        docs = chart.render(
            values,
            release=self.settings.release,
            namespace=self.settings.namespace,
            chart_dir=self.settings.chart_dir,
        )
        check_release(docs, values)
        check_state_dir(self.settings.state_dir)
        if self.gateway_port:
            check_port_free(self.gateway_port, "gateway")
        from workbook.local.packaging import ensure_demo_images

        ensure_demo_images(self.settings)
        self.api.spawn(self.gateway_port or 0)
        return values

    def abandon(self) -> None:
        """After a failed first release: stop the mesh, keep the history that says why."""
        self.api.stop(keep_history=True)

    def down(self, keep_history: bool = False) -> str:
        """Stop the mesh (and forget its history unless asked); what was done, in words."""
        return self.api.stop(keep_history=keep_history)

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
