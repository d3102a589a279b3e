"""The environment a child of the local mesh gets: only what it needs, never a secret.

The CLI runs with Azure and registry credentials in its environment (``AZURE_CLIENT_SECRET``,
``ACR_PASSWORD`` ...); the supervisor, Envoy and the pods need none of them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

#: Variables a Python child (the supervisor) needs: its interpreter, locale, temp and cache dirs.
PYTHON_CHILD = (
    "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH",
    "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "HELM_CACHE_HOME", "HELM_CONFIG_HOME",
    "HELM_DATA_HOME",
)  # fmt: skip

#: What Envoy needs: nothing but a PATH and a locale.
ENVOY = ("PATH", "LANG", "LC_ALL", "TZ")

_SECRET = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|API_?KEY|PRIVATE", re.IGNORECASE)


def looks_secret(name: str) -> bool:
    """A variable name that may carry a credential (never passed on, even if allowed)."""
    return bool(_SECRET.search(name))


def child_env(allowed: Iterable[str], source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``allowed`` variables of ``source`` (default: this process) minus anything secret."""
    src = os.environ if source is None else source
    return {k: src[k] for k in allowed if k in src and not looks_secret(k)}
