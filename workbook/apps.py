"""The scoring apps the project ships (``workbook/scoring/<app>/score.py``): their folders, the
modules every app imports from next to its ``score.py``, and a request body each app accepts.
Both packagers (``workbook.local.packaging`` and ``workbook.azure.packaging``) and the traffic
probes read the apps from here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from workbook.errors import ConfigError

SCORING_DIR = Path(__file__).resolve().parent / "scoring"
ENTRY_SCRIPT = "score.py"
#: Modules every scoring app imports from its own folder (stdlib only), copied next to score.py.
SHARED_MODULES = ("fault_injection.py",)


def scoring_apps() -> list[str]:
    """The scoring apps shipped in ``workbook/scoring/`` (folders with a score.py)."""
    return sorted(d.name for d in SCORING_DIR.iterdir() if (d / ENTRY_SCRIPT).is_file())


def scoring_app_dir(name: str) -> Path:
    """The folder of one scoring app, or a ConfigError listing the apps there are."""
    folder = SCORING_DIR / name
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name) or not (folder / ENTRY_SCRIPT).is_file():
        raise ConfigError(
            "packaging", "scoring_app", f"must be one of {scoring_apps()}, got {name!r}"
        )
    return folder


def probe_payload(scoring_app: str, n_rows: int = 1) -> dict[str, Any]:
    """A scoring request body the app accepts: what the traffic probe sends to it.

    The dummy takes any rows of numbers (``traffic.DEFAULT_PAYLOAD``); safe-driver takes rows of
    the Porto Seguro schema (synthetic drivers, the same for the same ``n_rows``).
    """
    scoring_app_dir(scoring_app)
    if scoring_app == "safe-driver":
        from workbook.safedriver.publish import sample_payload

        return sample_payload(n_rows)
    from workbook.traffic import DEFAULT_PAYLOAD

    return {"data": [list(DEFAULT_PAYLOAD["data"][0]) for _ in range(n_rows)]}
