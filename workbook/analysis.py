"""Pure statistics: does the traffic a probe observed fit the configured route weights?

``check_split`` runs Pearson's chi-square goodness-of-fit test of the per-version counts against
the weights; ``wilson_interval`` gives the confidence interval shown next to each observed share;
``min_requests_for`` picks a probe size for which the chi-square approximation is sound.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from scipy import stats

from workbook.errors import ConfigError
from workbook.settings import validate_weight

#: Confidence of the per-version Wilson intervals in a ``SplitCheck``. Fixed at 95% whatever the
#: test's alpha: the intervals are for people reading a report, the verdict comes from the test.
INTERVAL_CONFIDENCE = 0.95


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; ``(0.0, 1.0)`` when ``n`` is 0.

    Unlike the normal (Wald) interval it stays inside [0, 1] and is sound near 0% and 100%,
    which is where canary shares live.
    """
    successes, n = _count(successes, "wilson", "successes"), _count(n, "wilson", "n")
    if successes > n:
        raise ConfigError("wilson", "successes", f"must be at most n={n}, got {successes}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError("wilson", "confidence", f"must be between 0 and 1, got {confidence!r}")
    if n == 0:
        return 0.0, 1.0
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    p = successes / n
    z2n = z * z / n
    center = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    lo = 0.0 if successes == 0 else max(0.0, center - half)
    hi = 1.0 if successes == n else min(1.0, center + half)
    return lo, hi


@dataclass
class SplitCheck:
    """The verdict of ``check_split``: configured weights, what was observed, and why it passed."""

    weights: dict[str, int]
    counts: dict[str, int]
    total: int
    expected: dict[str, float]
    statistic: float
    p_value: float
    dof: int
    alpha: float
    passed: bool
    shares: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    reason: str
    confidence: float = INTERVAL_CONFIDENCE

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: intervals as lists, a non-finite statistic as ``None``."""
        out = asdict(self)
        out["intervals"] = {v: [lo, hi] for v, (lo, hi) in self.intervals.items()}
        if not math.isfinite(self.statistic):
            out["statistic"] = None
        return out


def check_split(
    counts: Mapping[str, int], weights: Mapping[str, int], alpha: float = 0.01
) -> SplitCheck:
    """Test observed per-version ``counts`` against configured ``weights`` (integer percents).

    Pearson chi-square goodness-of-fit over the versions with weight > 0 (``scipy.stats.chisquare``,
    ``k - 1`` degrees of freedom); the split fits when ``p_value >= alpha``. Some outcomes need no
    test: a weight-0 version that got any request, or a version that is not configured at all,
    fails outright (``p_value`` 0.0); a single version at 100 passes iff it got everything.
    """
    w = _weights(weights, "split")
    if isinstance(alpha, bool) or not 0.0 < float(alpha) < 1.0:
        raise ConfigError("split", "alpha", f"must be between 0 and 1, got {alpha!r}")
    alpha = float(alpha)
    c = {str(v): _count(n, "split", f"counts[{v!r}]") for v, n in counts.items()}
    c = {v: n for v, n in sorted(c.items()) if n > 0 or v in w}
    total = sum(c.values())
    if total == 0:
        raise ConfigError("split", "counts", "has no successful requests to test (total 0)")

    live = [v for v in sorted(w) if w[v] > 0]
    expected = {v: total * w[v] / 100.0 for v in sorted(w)}
    shares = {v: c.get(v, 0) / total for v in sorted({*w, *c})}
    intervals = {v: wilson_interval(c.get(v, 0), total, INTERVAL_CONFIDENCE) for v in shares}
    dof = len(live) - 1

    def verdict(statistic: float, p_value: float, passed: bool, reason: str) -> SplitCheck:
        return SplitCheck(
            weights=dict(sorted(w.items())),
            counts=c,
            total=total,
            expected=expected,
            statistic=statistic,
            p_value=p_value,
            dof=dof,
            alpha=alpha,
            passed=passed,
            shares=shares,
            intervals=intervals,
            reason=reason,
        )

    unknown = [v for v in c if v not in w and c[v] > 0]
    if unknown:
        why = "; ".join(
            f"{v} is not configured (weights {_weights_text(w)}) "
            f"but received {c[v]} of {total} requests"
            for v in unknown
        )
        return verdict(math.inf, 0.0, False, f"{why}: split does not fit")
    leaked = [v for v in sorted(w) if w[v] == 0 and c.get(v, 0) > 0]
    if leaked:
        why = "; ".join(
            f"{v} has weight 0 but received {c[v]} of {total} requests ({100 * c[v] / total:.1f}%)"
            for v in leaked
        )
        return verdict(math.inf, 0.0, False, f"{why}: split does not fit")
    if len(live) == 1:
        # everything went to the only version with weight (the cases above ruled out the rest)
        return verdict(
            0.0, 1.0, True, f"all {total} requests went to {live[0]}, configured 100%: split fits"
        )

    result = stats.chisquare([c.get(v, 0) for v in live], [expected[v] for v in live])
    statistic, p_value = float(result.statistic), float(result.pvalue)
    passed = p_value >= alpha
    observed = " / ".join(f"{100 * shares[v]:.1f}% {v}" for v in live)
    configured = " / ".join(f"{w[v]}%" for v in live)
    relation = "\N{GREATER-THAN OR EQUAL TO}" if passed else "<"
    test = f"p={p_value:.2g} {relation} \N{GREEK SMALL LETTER ALPHA}={alpha:g}"
    reason = f"observed {observed} for configured {configured} ({test}): split "
    reason += "fits" if passed else "does not fit"
    small = [v for v in live if expected[v] < 5]
    if small:
        reason += (
            f"; expected fewer than 5 requests for {', '.join(small)}, so the test is rough "
            f"(probe at least {min_requests_for(w)} requests)"
        )
    return verdict(statistic, p_value, passed, reason)


def min_requests_for(weights: Mapping[str, int], min_expected: float = 5) -> int:
    """Smallest probe size at which every version with weight > 0 expects ``min_expected``.

    The usual rule of thumb for the chi-square approximation: 5 expected per cell. For 90/10 that
    is 50; for 99/1, 500.
    """
    w = _weights(weights, "split")
    if isinstance(min_expected, bool) or not min_expected > 0:
        raise ConfigError("split", "min_expected", f"must be positive, got {min_expected!r}")
    need = (
        Fraction(str(min_expected)) if isinstance(min_expected, float) else Fraction(min_expected)
    )
    smallest = min(v for v in w.values() if v > 0)
    return math.ceil(need * 100 / smallest)


def _weights(weights: Mapping[str, int], obj: str) -> dict[str, int]:
    out = {str(v): validate_weight(n, obj, f"weights[{v!r}]") for v, n in weights.items()}
    if sum(out.values()) != 100:
        raise ConfigError(
            obj, "weights", f"must sum to 100, got {sum(out.values())} ({_weights_text(out)})"
        )
    return out


def _weights_text(weights: Mapping[str, int]) -> str:
    return ", ".join(f"{v}={n}" for v, n in sorted(weights.items())) or "none"


def _count(value: Any, obj: str, field: str) -> int:
    try:
        n = operator.index(value)
    except TypeError:
        raise ConfigError(obj, field, f"must be a non-negative integer, got {value!r}") from None
    if isinstance(value, bool) or n < 0:
        raise ConfigError(obj, field, f"must be a non-negative integer, got {value!r}")
    return n
