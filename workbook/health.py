"""Health, canary against stable: error rates and latencies compared by test and by limit (pure).

Errors: Fisher's exact test, one-sided (is the canary's error proportion greater than stable's?),
the exact two-proportion test for small counts (R. A. Fisher, "Statistical Methods for Research
Workers", 1925; ``scipy.stats.fisher_exact``): a 0.5% error rate shows as a handful of errors,
where the normal approximation is poor. Latency: the Mann-Whitney U test, one-sided, with the
Hodges-Lehmann estimate of the shift as the effect size, the way Kayenta's judge does
(spinnaker/kayenta ``kayenta-judge/.../classifiers/metric/MannWhitneyClassifier.scala``: a metric
is "High" only when the test rejects and the effect is larger than a tolerance), plus absolute
limits that hold whatever stable does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from workbook.errors import ConfigError

#: A sample of numbers: a list or a 1-d numpy array.
Sample = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class Limits:
    """What a canary must meet at every stage: test levels and hard limits.

    ``max_error_rate``: a canary error rate above it beyond chance fails. ``max_p99_ms``: the
    canary's p99 latency, whatever stable does. ``max_latency_ratio``: how much slower than
    stable (Hodges-Lehmann shift over stable's median, plus one) a significant difference may be.
    ``alpha``: level of each comparative test. ``min_requests``: fewer canary requests than this
    are not compared. Predictions on the replayed inputs: decisions at ``decision_threshold``
    agree on at least ``min_agreement`` of rows, mean absolute score difference at most
    ``max_mean_abs_diff``, PSI at most ``max_psi`` (0.25, the customary "large shift"); with these
    the dummy's own update (v1 to v2) passes and ``drift=0.3`` fails.

    False alarms: a stage runs at most six tests at ``alpha`` (split; errors against stable and
    against the limit, from the probe and from the gateway; latency), so a healthy canary is
    rolled back with probability at most ``6·alpha`` per stage, 1.8% over three stages at the
    default (union bound). With no errors at all the error tests cannot fire (p = 1), leaving
    ``2·alpha`` per stage, 0.6% per rollout.
    """

    max_error_rate: float = 0.01
    max_p99_ms: float = 1000.0
    max_latency_ratio: float = 1.5
    #: A slower canary is tolerated up to this many milliseconds whatever the ratio says: a few
    #: milliseconds on a scoring call are no regression, and on a busy machine they are noise.
    min_latency_shift_ms: float = 10.0
    alpha: float = 0.001
    min_requests: int = 20
    decision_threshold: float = 0.5
    min_agreement: float = 0.9
    max_mean_abs_diff: float = 0.1
    max_psi: float = 0.25

    def __post_init__(self) -> None:
        for name in ("max_error_rate", "alpha", "decision_threshold", "min_agreement"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                raise ConfigError("limits", name, f"must be between 0 and 1, got {value!r}")
        for name in ("max_p99_ms", "max_mean_abs_diff", "max_psi"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError("limits", name, f"must be positive, got {value!r}")
        if not self.max_latency_ratio >= 1.0:
            raise ConfigError(
                "limits", "max_latency_ratio", f"must be at least 1, got {self.max_latency_ratio!r}"
            )
        if isinstance(self.min_requests, bool) or not isinstance(self.min_requests, int):
            raise ConfigError(
                "limits", "min_requests", f"must be an integer, got {self.min_requests!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Check:
    """One comparison: passed or not, one human line, and the figures behind it."""

    name: str
    passed: bool
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reason": self.reason, **_finite(self.figures)}


def compare_errors(
    canary_errors: int,
    canary_total: int,
    stable_errors: int,
    stable_total: int,
    limits: Limits,
    source: str = "probe",
) -> Check:
    """Canary error rate against stable's (one-sided Fisher exact) and against the limit.

    The limit fails a stage when the canary's rate is above it beyond chance (one-sided exact
    binomial test at ``alpha``), so two errors in the first hundred requests are no alarm.
    """
    name = f"errors ({source})"
    for label, e, n in (
        ("canary", canary_errors, canary_total),
        ("stable", stable_errors, stable_total),
    ):
        if e < 0 or n < e:
            raise ConfigError("health", f"{label} errors", f"must be 0..{n}, got {e}")
    rate_c = canary_errors / canary_total if canary_total else math.nan
    rate_s = stable_errors / stable_total if stable_total else math.nan
    figures: dict[str, Any] = {
        "canary_errors": canary_errors,
        "canary_total": canary_total,
        "stable_errors": stable_errors,
        "stable_total": stable_total,
        "canary_rate": rate_c,
        "stable_rate": rate_s,
    }
    if canary_total == 0:
        return Check(name, True, f"{source}: no canary requests, nothing to compare", figures)
    p = 1.0
    if stable_total:
        table = [
            [canary_errors, canary_total - canary_errors],
            [stable_errors, stable_total - stable_errors],
        ]
        p = float(stats.fisher_exact(table, alternative="greater").pvalue)
    figures["p_value"] = p
    text = f"canary {canary_errors}/{canary_total} ({100 * rate_c:.2f}%)"
    if stable_total:
        text += f" vs stable {stable_errors}/{stable_total} ({100 * rate_s:.2f}%)"
    above = float(
        stats.binomtest(
            canary_errors, canary_total, limits.max_error_rate, alternative="greater"
        ).pvalue
    )
    figures["p_value_limit"] = above
    if rate_c > limits.max_error_rate and above < limits.alpha:
        return Check(
            name,
            False,
            f"canary error rate {100 * rate_c:.2f}% > limit {100 * limits.max_error_rate:g}% "
            f"({text}, p={above:.2g}, {source})",
            figures,
        )
    if p < limits.alpha:
        return Check(
            name,
            False,
            f"canary fails more than stable: {text}, p={p:.2g} < \N{GREEK SMALL LETTER ALPHA}="
            f"{limits.alpha:g} ({source})",
            figures,
        )
    return Check(name, True, f"errors ok: {text} ({source})", figures)


def hodges_lehmann_shift(canary: Sample, stable: Sample) -> float:
    """Median of all pairwise differences ``canary_i - stable_j`` (the Hodges-Lehmann estimator).

    Found by bisection on the count of pairs below a candidate, ``O((n + m) log m)`` per step, so
    large samples never build the ``n·m`` matrix.
    """
    c = np.sort(np.asarray(canary, dtype=float))
    s = np.sort(np.asarray(stable, dtype=float))
    if c.size == 0 or s.size == 0:
        return math.nan
    total = c.size * s.size

    lo, hi = float(c[0] - s[-1]), float(c[-1] - s[0])
    for _ in range(100):
        if hi - lo <= 1e-9 * max(1.0, abs(lo), abs(hi)):
            break
        mid = (lo + hi) / 2.0
        if _pairs_at_most(c, s, mid) >= (total + 1) / 2.0:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2.0


def _pairs_at_most(c: np.ndarray, s: np.ndarray, d: float) -> int:
    # c_i - s_j <= d  <=>  s_j >= c_i - d
    return int((s.size - np.searchsorted(s, c - d, side="left")).sum())


def compare_latency(
    canary_ms: Sample,
    stable_ms: Sample,
    limits: Limits,
    source: str = "probe",
) -> Check:
    """Canary latency against stable's (one-sided Mann-Whitney U + effect size) and the p99 limit.

    The canary is slower when the test rejects at ``alpha`` and the Hodges-Lehmann shift exceeds
    ``(max_latency_ratio - 1)`` times stable's median and ``min_latency_shift_ms``; its p99 may
    never exceed ``max_p99_ms``.
    """
    name = f"latency ({source})"
    c = np.asarray(canary_ms, dtype=float)
    s = np.asarray(stable_ms, dtype=float)
    figures: dict[str, Any] = {"canary_n": int(c.size), "stable_n": int(s.size)}
    if c.size == 0:
        return Check(name, True, f"{source}: no canary latencies, nothing to compare", figures)
    c_p50, c_p99 = (float(x) for x in np.percentile(c, [50, 99]))
    figures.update(canary_p50_ms=c_p50, canary_p99_ms=c_p99)
    if c.size >= limits.min_requests and c_p99 > limits.max_p99_ms:
        return Check(
            name,
            False,
            f"canary p99 {c_p99:.0f} ms > limit {limits.max_p99_ms:g} ms ({source})",
            figures,
        )
    if s.size == 0 or c.size < limits.min_requests or s.size < limits.min_requests:
        return Check(
            name,
            True,
            f"canary p99 {c_p99:.0f} ms; too few requests to compare ({source})",
            figures,
        )
    s_p50, s_p99 = (float(x) for x in np.percentile(s, [50, 99]))
    shift = hodges_lehmann_shift(c, s)
    p = float(stats.mannwhitneyu(c, s, alternative="greater").pvalue)
    tolerance = max((limits.max_latency_ratio - 1.0) * s_p50, limits.min_latency_shift_ms)
    figures.update(
        stable_p50_ms=s_p50, stable_p99_ms=s_p99, shift_ms=shift, tolerance_ms=tolerance, p_value=p
    )
    text = f"canary p50 {c_p50:.1f} ms vs stable {s_p50:.1f} ms (shift {shift:+.1f} ms)"
    if p < limits.alpha and shift > tolerance:
        return Check(
            name,
            False,
            f"canary slower than stable: {text} > tolerance {tolerance:.1f} ms, "
            f"p={p:.2g} < \N{GREEK SMALL LETTER ALPHA}={limits.alpha:g} ({source})",
            figures,
        )
    return Check(name, True, f"latency ok: {text}, canary p99 {c_p99:.0f} ms ({source})", figures)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value
