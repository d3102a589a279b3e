"""Bounds the local mesh keeps on a laptop, checked before anything starts (pure).

Each replica is a real process (an azmlinfsrv with its own Python), so ``replicas: 1000`` would
exhaust the machine; a cluster has its own quotas, a laptop has these.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from workbook.errors import ConfigError

#: Most pods one track (Deployment) may run locally.
MAX_REPLICAS_PER_TRACK = 8

#: Largest request body the supervisor reads (JSON of chart values or applied objects; the
#: command line reads at most 1 MiB of YAML for ``apply -f``).
MAX_REQUEST_BYTES = 8 * 1024 * 1024

# Kubernetes' rule for env var names (k8s.io/apimachinery pkg/util/validation/validation.go,
# IsEnvVarName / envVarNameFmt); the RelaxedEnvironmentVariableValidation gate would also allow
# other printable characters, but never a control character such as a newline.
ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


def _track(deployment: dict[str, Any]) -> str:
    labels = (deployment.get("spec", {}).get("template", {}).get("metadata", {}) or {}).get(
        "labels"
    ) or {}
    return str(labels.get("track") or deployment.get("metadata", {}).get("name", "deployment"))


def _check_env_name(name: Any, obj: str, field: str) -> None:
    if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
        raise ConfigError(
            obj,
            field,
            "must be letters, digits, '_', '-' or '.' (not starting with a digit), "
            f"got {name!r:.60}",
        )


def check_release(
    docs: list[dict[str, Any]],
    values: Mapping[str, Any] | None = None,
    max_replicas: int = MAX_REPLICAS_PER_TRACK,
) -> None:
    """Every Deployment asks for at most ``max_replicas`` pods and names its env vars validly.

    Errors name the chart value (``canary.replicas``, ``stable.env[0].name``) where the values
    hold it, else the field of the rendered Deployment.
    """
    for track in ("stable", "canary"):
        section = (values or {}).get(track)
        env = section.get("env") if isinstance(section, Mapping) else None
        for i, e in enumerate(env if isinstance(env, list) else []):
            if isinstance(e, Mapping):
                _check_env_name(e.get("name"), "values", f"{track}.env[{i}].name")
    for d in (o for o in docs if isinstance(o, dict) and o.get("kind") == "Deployment"):
        track = _track(d)
        replicas = d.get("spec", {}).get("replicas", 1)
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise ConfigError("values", f"{track}.replicas", f"must be 0..{max_replicas}")
        if replicas > max_replicas:
            raise ConfigError(
                "values",
                f"{track}.replicas",
                f"must be at most {max_replicas} on the local target (each replica is a "
                f"process), got {replicas}",
            )
        obj = f"Deployment {d.get('metadata', {}).get('name', '')}"
        containers = d.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
        for j, c in enumerate(containers if isinstance(containers, list) else []):
            for i, e in enumerate(c.get("env") or []):
                name = e.get("name") if isinstance(e, dict) else None
                _check_env_name(name, obj, f"spec.template.spec.containers[{j}].env[{i}].name")
