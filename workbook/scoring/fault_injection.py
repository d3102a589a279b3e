"""Rehearsal faults of a scoring app, shared by every app the project ships.

Packaging copies this file next to each app's ``score.py`` (in the local image bundle and in the
Azure ML source directory), so it imports only the standard library. ``workbook/faults.py`` writes
the variables; ``Faults.from_env()`` reads them in ``init()``:

- ``FAULT_ERROR_RATE`` (0..1): that share of answers is a 500, spread evenly (deterministic);
  ``FAULT_ERRORS_AFTER=N`` lets the first N answers through first (a canary that degrades under
  traffic). The older ``DUMMY_ERROR_RATE`` / ``DUMMY_ERROR_AFTER`` still work.
- ``FAULT_LATENCY_MS``: every answer waits that long.
- ``FAULT_CRASH_AFTER=N``: the serving worker exits instead of answering request N+1 (gunicorn
  starts a fresh worker, which runs ``init()`` and crashes again after N more).
- ``FAULT_DRIFT`` (-1..1): added to every predicted probability, kept in 0..1.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

#: Exit status of a worker that crashes on purpose (``FAULT_CRASH_AFTER``): EX_SOFTWARE.
CRASH_EXIT_CODE = 70

logger = logging.getLogger("azmlinfsrv.score")


def _float(env: Mapping[str, str], name: str, default: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    value = float(raw)  # a bad value fails init(): the pod does not start, its log says why
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {raw!r}")
    return value


def _int(env: Mapping[str, str], *names: str) -> int:
    for name in names:
        raw = env.get(name, "").strip()
        if raw:
            return max(int(raw), 0)
    return 0


@dataclass
class Faults:
    """The faults one worker injects, and how many answers it has given."""

    rate: float = 0.0
    after: int = 0
    latency_ms: float = 0.0
    crash_after: int = 0
    drift: float = 0.0
    served: int = 0
    debt: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Faults:
        env = os.environ if env is None else env
        rate = _float(env, "FAULT_ERROR_RATE", _float(env, "DUMMY_ERROR_RATE"))
        faults = cls(
            rate=min(max(rate, 0.0), 1.0),
            after=_int(env, "FAULT_ERRORS_AFTER", "DUMMY_ERROR_AFTER"),
            latency_ms=max(_float(env, "FAULT_LATENCY_MS"), 0.0),
            crash_after=_int(env, "FAULT_CRASH_AFTER"),
            drift=_float(env, "FAULT_DRIFT"),
        )
        active = faults.active()
        if active:
            logger.warning("fault rehearsal active: %s", active)
        return faults

    def active(self) -> dict[str, float]:
        names = ("rate", "after", "latency_ms", "crash_after", "drift")
        return {k: getattr(self, k) for k in names if getattr(self, k)}

    def before_answer(self) -> bool:
        """Crash, wait, count this answer; True when it must be an injected 500."""
        if self.crash_after and self.served >= self.crash_after:
            logger.error("FAULT_CRASH_AFTER=%d: the worker exits now", self.crash_after)
            logging.shutdown()
            os._exit(CRASH_EXIT_CODE)
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000.0)
        self.served += 1
        if not self.rate or self.served <= self.after:
            return False
        self.debt += self.rate
        if self.debt >= 1.0:
            self.debt -= 1.0
            return True
        return False

    def drifted(self, p: float) -> float:
        """``p`` shifted by the drift and kept in 0..1 (no drift: ``p`` unchanged)."""
        return round(min(max(p + self.drift, 0.0), 1.0), 6) if self.drift else p
