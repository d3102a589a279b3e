"""One error tree: every failure the workbook reports on purpose is a ``WorkbookError``."""

from __future__ import annotations


class WorkbookError(Exception):
    """Root of every error the workbook raises on purpose; the CLI prints it and exits non-zero."""

    exit_code = 1


class ConfigError(WorkbookError):
    """Bad input, named by object and field: ``VirtualService ns/vs: http[1].route[0].weight``."""

    exit_code = 2

    def __init__(self, obj: str, field: str, message: str) -> None:
        self.obj, self.field, self.detail = obj, field, message
        where = f"{obj}: {field}" if field else obj
        super().__init__(f"{where} {message}")


class UnsupportedFieldError(ConfigError):
    """An Istio field the local gateway does not implement: an error, never silently ignored."""

    def __init__(self, obj: str, field: str) -> None:
        super().__init__(
            obj, field, "is not supported by the local gateway; remove it or run with --target k8s"
        )


class ChartError(WorkbookError):
    """The Helm chart could not be loaded, linted or rendered."""


class MeshError(WorkbookError):
    """The local mesh could not do what was asked; its previous configuration keeps serving."""


class NotRunningError(MeshError):
    """No local mesh runs for this state directory."""


class AlreadyRunningError(MeshError):
    """A local mesh already runs for this state directory (a usage error: exit code 2)."""

    exit_code = 2


class ReadinessError(MeshError):
    """Pods or the gateway did not become ready in time."""


class RegistryError(WorkbookError):
    """A model or image is missing from the registry, or cannot be stored."""


class AzureError(WorkbookError):
    """Azure ML refused or could not be reached."""


class KubernetesError(WorkbookError):
    """The Kubernetes cluster, Helm or Istio refused, timed out or could not be reached."""


class ConflictError(WorkbookError):
    """Another command deployed a revision meanwhile; nothing was changed (exit code 3)."""

    exit_code = 3


class StageFailed(WorkbookError):
    """A rollout step did not pass its gate: the flow rolls back."""


class MissingDependencyError(WorkbookError):
    """An optional dependency is not installed; the message says what to install."""
