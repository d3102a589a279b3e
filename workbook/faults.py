"""Fault rehearsal: ``errors=0.05,latency=200ms,crash-after=300,drift=0.3`` → a scoring pod's env.

Every scoring app the project ships reads the same variables in ``init()`` (names below) and
injects the fault in ``run()``; ``parse`` is the one place a spec string is checked.
"""

from __future__ import annotations

import math
import re

from workbook.errors import ConfigError

#: Fraction 0..1 of requests answered with a 500 (spread evenly, deterministic).
ERROR_RATE_ENV = "FAULT_ERROR_RATE"
#: The first N answers are let through before ``FAULT_ERROR_RATE`` applies.
ERRORS_AFTER_ENV = "FAULT_ERRORS_AFTER"
#: Milliseconds added to every answer.
LATENCY_MS_ENV = "FAULT_LATENCY_MS"
#: The serving worker process exits instead of answering request N+1 (N answered first).
CRASH_AFTER_ENV = "FAULT_CRASH_AFTER"
#: Added to every predicted probability (kept in 0..1): the predictions drift by this much.
DRIFT_ENV = "FAULT_DRIFT"

KEYS = ("errors", "errors-after", "latency", "crash-after", "drift")
_LATENCY = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s)?")
_OBJ = "--canary-fault"


def parse(spec: str) -> dict[str, str]:
    """The environment variables a fault ``spec`` sets; ``""`` is no fault (an empty dict).

    ``errors=RATE`` (0..1), ``errors-after=N`` (errors start after the first N answers),
    ``latency=MS`` (``200``, ``200ms`` or ``0.2s``), ``crash-after=N``
    (integer >= 1), ``drift=D`` (-1..1, added to each probability), comma-separated, each key
    at most once.
    """
    if not isinstance(spec, str):
        raise ConfigError(_OBJ, "", f"must be a string like 'errors=0.05', got {spec!r}")
    env: dict[str, str] = {}
    seen: set[str] = set()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        key, sep, value = (s.strip() for s in part.partition("="))
        if key not in KEYS:
            raise ConfigError(_OBJ, key or part, f"is not a fault; use one of {', '.join(KEYS)}")
        if not sep or not value:
            raise ConfigError(_OBJ, key, "needs a value: key=value")
        if key in seen:
            raise ConfigError(_OBJ, key, "is given twice")
        seen.add(key)
        if key == "errors":
            rate = _number(key, value)
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(_OBJ, key, f"must be a fraction 0..1, got {value!r}")
            env[ERROR_RATE_ENV] = repr(rate)
        elif key == "latency":
            env[LATENCY_MS_ENV] = repr(_latency_ms(value))
        elif key == "errors-after":
            if not value.isdigit():
                raise ConfigError(_OBJ, key, f"must be an integer of at least 0, got {value!r}")
            env[ERRORS_AFTER_ENV] = str(int(value))
        elif key == "crash-after":
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(_OBJ, key, f"must be an integer of at least 1, got {value!r}")
            env[CRASH_AFTER_ENV] = str(int(value))
        else:
            drift = _number(key, value)
            if not -1.0 <= drift <= 1.0:
                raise ConfigError(
                    _OBJ, key, f"must be -1..1 (added to a probability), got {value!r}"
                )
            env[DRIFT_ENV] = repr(drift)
    return env


def chart_env(env: dict[str, str]) -> list[dict[str, str]]:
    """``env`` as Kubernetes EnvVar objects, for the chart's ``canary.env`` (or ``stable.env``)."""
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def describe(env: dict[str, str]) -> str:
    """The spec string that ``parse`` maps to ``env`` (for reports): the inverse of ``parse``."""
    parts = []
    if ERROR_RATE_ENV in env:
        parts.append(f"errors={float(env[ERROR_RATE_ENV]):g}")
    if ERRORS_AFTER_ENV in env:
        parts.append(f"errors-after={int(env[ERRORS_AFTER_ENV])}")
    if LATENCY_MS_ENV in env:
        parts.append(f"latency={float(env[LATENCY_MS_ENV]):g}ms")
    if CRASH_AFTER_ENV in env:
        parts.append(f"crash-after={int(env[CRASH_AFTER_ENV])}")
    if DRIFT_ENV in env:
        parts.append(f"drift={float(env[DRIFT_ENV]):g}")
    return ",".join(parts)


def _number(key: str, value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise ConfigError(_OBJ, key, f"must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ConfigError(_OBJ, key, f"must be finite, got {value!r}")
    return x


def _latency_ms(value: str) -> float:
    m = _LATENCY.fullmatch(value)
    if not m:
        raise ConfigError(
            "--canary-fault", "latency", f"must be milliseconds like 200ms or 0.2s, got {value!r}"
        )
    ms = float(m["n"]) * (1000.0 if m["unit"] == "s" else 1.0)
    if ms > 60_000:
        raise ConfigError(_OBJ, "latency", f"must be at most 60s, got {value!r}")
    return ms
