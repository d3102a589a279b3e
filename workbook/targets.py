"""Pick the target by name (``local`` or ``k8s``), as papermill picks an engine from a registry.

Kept apart from the seam's types so that neither target imports this module: no import circle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workbook.errors import ConfigError
from workbook.seam import Target
from workbook.settings import TARGETS, Settings


def _local(settings: Settings, **options: Any) -> Target:
    from workbook.local.target import LocalTarget

    return LocalTarget(settings, **options)


def _k8s(settings: Settings, **options: Any) -> Target:
    from workbook.kube.target import KubernetesTarget

    if options.get("gateway_port"):
        raise ConfigError("up", "--port", "sets the local gateway's port; not for target k8s")
    return KubernetesTarget(settings)


#: Target name → factory; each imports its module only when used (the kubernetes client is slow).
FACTORIES: dict[str, Callable[..., Target]] = {"local": _local, "k8s": _k8s}
assert set(FACTORIES) == set(TARGETS)


def connect(settings: Settings | None = None, **options: Any) -> Target:
    """The target for ``settings.target`` (default: settings from the environment)."""
    settings = settings or Settings.from_env()
    try:
        factory = FACTORIES[settings.target]
    except KeyError:
        raise ConfigError(
            "settings", "target", f"must be one of {sorted(FACTORIES)}, got {settings.target!r}"
        ) from None
    return factory(settings, **{k: v for k, v in options.items() if v is not None})
