"""Helm releases through helm-python-sdk (Helm's own Go SDK), behind a small interface.

``HelmOps`` is what ``KubernetesTarget`` needs from Helm. ``HelmRelease`` implements it with
``helm_python.Config``; tests pass a fake, because Helm cannot run against a fake API server (it
needs the API server's OpenAPI document and server-side apply, which kmock does not serve).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from workbook.deadline import DeadlineExceeded, call_with_deadline
from workbook.errors import ChartError, ConfigError, KubernetesError

T = TypeVar("T")

#: Server-side apply, taking back fields another manager changed: an Istio object replaced by
#: ``workbook apply`` overrides the chart's only until the next release, which would otherwise
#: fail with an apply conflict (Helm 4 applies server-side and does not force by default).
TAKE_BACK: dict[str, Any] = {"server_side_apply": "true", "force_conflicts": True}

#: Revisions Helm keeps per release (``helm upgrade --history-max``; the CLI's default is 10, the
#: SDK's is unlimited, and every weight change of a rollout is a revision).
HISTORY_MAX = 10


class HelmOps(Protocol):
    """One Helm release in one namespace: the verbs the k8s target uses."""

    def status(self) -> dict[str, Any] | None:
        """The deployed revision's summary with its manifest, or None if there is no release."""

    def get_values(self, revision: int | None = None) -> dict[str, Any]:
        """User-supplied values of a revision (the deployed one by default)."""

    def install(self, values: dict[str, Any], *, description: str) -> dict[str, Any]:
        """Install revision 1; wait for the resources; roll back on failure."""

    def upgrade(self, values: dict[str, Any], *, description: str) -> dict[str, Any]:
        """A new revision with exactly these values; wait; roll back on failure."""

    def rollback(self, revision: int | None = None) -> None:
        """A new revision with an earlier one's manifest and values (the previous by default)."""

    def history(self) -> list[dict[str, Any]]:
        """Revision summaries, oldest first."""

    def uninstall(self, *, keep_history: bool = False) -> None:
        """Remove the release's objects (a missing release is not an error)."""


def kubeconfig_path(env: Mapping[str, str] = os.environ) -> str | None:
    """The one kubeconfig file to use: ``KUBECONFIG`` (a single file) or ``~/.kube/config``.

    None when ``KUBECONFIG`` lists several files (Helm merges them itself, as kubectl does) or
    when there is no file at all (Helm then tries the in-cluster service account).
    """
    raw = env.get("KUBECONFIG", "")
    paths = [p for p in raw.split(os.pathsep) if p.strip()]
    if len(paths) > 1:
        return None
    if paths:
        return str(Path(paths[0]).expanduser())
    default = Path(env.get("HOME", str(Path.home()))) / ".kube" / "config"
    return str(default) if default.is_file() else None


def _with_deadline(fn: Callable[[], T], timeout_s: float, what: str) -> T:
    """Run a Helm read with a deadline; the SDK has no timeout of its own for reads."""
    try:
        return call_with_deadline(fn, timeout_s, f"helm: {what}")
    except DeadlineExceeded:
        raise KubernetesError(f"{what}: no answer from the cluster within {timeout_s:g}s") from None


class HelmRelease:
    """``HelmOps`` over ``helm_python.Config``; release records in Secrets, as the CLI does."""

    def __init__(
        self,
        *,
        release: str,
        namespace: str,
        chart_dir: str | os.PathLike[str],
        kubeconfig: str | None = None,
        kube_context: str | None = None,
        storage_driver: str = "secret",
        timeout_s: int = 600,
        read_timeout_s: float = 60,
    ) -> None:
        self.release, self.namespace = release, namespace
        self.chart_dir = str(chart_dir)
        self.kubeconfig, self.kube_context = kubeconfig, kube_context
        self.storage_driver = storage_driver
        self.timeout_s, self.read_timeout_s = int(timeout_s), read_timeout_s
        self._config: Any = None

    @property
    def name(self) -> str:
        return f"Helm release {self.namespace}/{self.release}"

    def _helm(self) -> Any:
        try:
            import helm_python
        except ImportError as exc:  # pragma: no cover - a pinned dependency
            from workbook.errors import MissingDependencyError

            raise MissingDependencyError(
                "helm-python-sdk is not installed: pip install 'helm-python-sdk==0.2.2'"
            ) from exc
        return helm_python

    def config(self) -> Any:
        """The ``helm_python.Config`` (created on first use; it contacts nothing by itself)."""
        if self._config is None:
            helm = self._helm()
            self._config = helm.Config(
                kubeconfig_path=self.kubeconfig,
                kube_context=self.kube_context,
                namespace=self.namespace,
                storage_driver=self.storage_driver,
            )
        return self._config

    def _error(self, exc: Exception, verb: str) -> Exception:
        helm = self._helm()
        detail = " ".join(str(getattr(exc, "detail", "") or exc).split())[:800]
        if isinstance(exc, (helm.HelmValuesError, helm.HelmRenderError)):
            return ChartError(f"{self.name}: {verb}: {detail}")
        if isinstance(exc, (helm.HelmChartLoadError, helm.HelmChartInvalidError)):
            return ChartError(f"{self.name}: {verb}: chart {self.chart_dir}: {detail}")
        if isinstance(exc, helm.HelmKubeError):
            return KubernetesError(
                f"{self.name}: {verb}: {detail}; check KUBECONFIG, the context "
                "(WORKBOOK_KUBE_CONTEXT) and `kubectl cluster-info`"
            )
        if isinstance(exc, helm.HelmCancelledError):
            return KubernetesError(f"{self.name}: {verb} did not finish within {self.timeout_s}s")
        if isinstance(exc, helm.HelmReleaseError) and verb in ("install", "upgrade"):
            return KubernetesError(
                f"{self.name}: {verb} failed (Helm undoes what it changed): {detail} "
                f"(kubectl -n {self.namespace} get events --sort-by=.lastTimestamp)"
            )
        return KubernetesError(f"{self.name}: {verb} failed: {detail}")

    def _act(self, verb: str, fn: Callable[[Any], T]) -> T:
        """A write action, cancelled through a HelmContext past its timeout plus a grace minute."""
        helm = self._helm()
        ctx = helm.HelmContext()
        timer = threading.Timer(self.timeout_s + 60, ctx.cancel)
        timer.daemon = True
        timer.start()
        try:
            return fn(ctx)
        except helm.HelmError as exc:
            raise self._error(exc, verb) from None
        finally:
            timer.cancel()

    def _read(self, verb: str, fn: Callable[[], T]) -> T:
        helm = self._helm()
        try:
            return _with_deadline(fn, self.read_timeout_s, f"{self.name}: {verb}")
        except helm.HelmError as exc:
            raise self._error(exc, verb) from None

    def status(self) -> dict[str, Any] | None:
        helm = self._helm()
        try:
            return _with_deadline(
                lambda: dict(self.config().status(self.release)),
                self.read_timeout_s,
                f"{self.name}: status",
            )
        except helm.HelmNotFoundError:
            return None
        except helm.HelmError as exc:
            raise self._error(exc, "status") from None

    def get_values(self, revision: int | None = None) -> dict[str, Any]:
        return dict(
            self._read(
                "get values", lambda: self.config().get_values(self.release, revision=revision)
            )
            or {}
        )

    def install(self, values: dict[str, Any], *, description: str) -> dict[str, Any]:
        return dict(
            self._act(
                "install",
                lambda ctx: self.config().install(
                    self.chart_dir,
                    self.release,
                    values,
                    context=ctx,
                    namespace=self.namespace,
                    timeout=self.timeout_s,
                    wait="watcher",
                    rollback_on_failure=True,
                    description=description,
                ),
            )
        )

    def upgrade(self, values: dict[str, Any], *, description: str) -> dict[str, Any]:
        options = {
            "namespace": self.namespace,
            "timeout_seconds": self.timeout_s,
            "wait": "watcher",
            "rollback_on_failure": True,
            "cleanup_on_fail": True,
            "reset_values": True,
            "description": description,
            "max_history": HISTORY_MAX,
            **TAKE_BACK,
        }

        def run(ctx: Any) -> Any:
            payload = self._native(
                "call_string",
                "helm_upgrade",
                lambda cfg: (
                    cfg._raw(),
                    cfg._context_arg(ctx),
                    *cfg._chart_args(self.chart_dir),
                    self.release,
                    json.dumps(values),
                    json.dumps(options),
                ),
            )
            return json.loads(payload)

        return dict(self._act("upgrade", run))

    def _native(self, call: str, function: str, args: Callable[[Any], tuple[Any, ...]]) -> Any:
        """A helm-c-sdk call with options helm-python-sdk 0.2.2 does not pass on (``TAKE_BACK``).

        Uses the SDK's own internals, exactly as its public methods do; pinned to 0.2.2.
        """
        from helm_python import _native

        cfg = self.config()
        return getattr(_native, call)(function, *args(cfg))

    def rollback(self, revision: int | None = None) -> None:
        helm = self._helm()
        options = {"timeout_seconds": self.timeout_s, "wait": "watcher", **TAKE_BACK}
        if revision is not None:
            options["version"] = revision
        try:
            self._native(
                "call_status",
                "helm_rollback",
                lambda cfg: (cfg._raw(), self.release, json.dumps(options)),
            )
        except helm.HelmNotFoundError:
            known = [int(r.get("revision", 0)) for r in self.history()]
            raise ConfigError(
                "rollback", "revision", f"{revision} does not exist; known: {known}"
            ) from None
        except helm.HelmError as exc:
            raise self._error(exc, "rollback") from None

    def history(self) -> list[dict[str, Any]]:
        helm = self._helm()
        try:
            rows = _with_deadline(
                lambda: self.config().history(self.release),
                self.read_timeout_s,
                f"{self.name}: history",
            )
        except helm.HelmNotFoundError:
            return []
        except helm.HelmError as exc:
            raise self._error(exc, "history") from None
        return sorted((dict(r) for r in rows), key=lambda r: int(r.get("revision", 0)))

    def uninstall(self, *, keep_history: bool = False) -> None:
        helm = self._helm()
        try:
            self.config().uninstall(
                self.release,
                keep_history=keep_history,
                timeout=self.timeout_s,
                ignore_not_found=True,
                wait="watcher",
            )
        except helm.HelmError as exc:
            raise self._error(exc, "uninstall") from None
