"""The stage gate, pure: is the canary fit to take more traffic? ``judge(evidence, limits)``.

One ``Verdict`` per stage from the checks that apply to its ``StageEvidence``: the split (the
sequential decision when the probe ran with ``sequential.SplitMonitor``, else the fixed-size
chi-square), each header pin (100% or fail), errors and latency canary against stable from the
probe's own tallies and from the gateway's telemetry (``health``), and the model's predictions on
a replayed input set (``predictions``).

``check_split`` runs Pearson's chi-square goodness-of-fit test of the per-version counts against
the weights; ``wilson_interval`` gives the confidence interval shown next to each observed share;
``min_requests_for`` picks a probe size for which the chi-square approximation is sound.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

from scipy import stats

from workbook.errors import ConfigError
from workbook.health import Check, Limits, compare_errors, compare_latency
from workbook.predictions import PredictionComparison, judge_predictions
from workbook.sequential import SplitDecision
from workbook.settings import SPLIT_ALPHA, validate_weight
from workbook.telemetry import VersionTelemetry
from workbook.traffic import ProbeResult

__all__ = [
    "Check",
    "Limits",
    "SplitCheck",
    "StageEvidence",
    "Verdict",
    "check_pin",
    "check_split",
    "judge",
    "min_requests_for",
    "wilson_interval",
]

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


def check_pin(result: ProbeResult, version: str) -> Check:
    """Requests pinned to ``version`` by header: every one must be answered by it, none fail."""
    name = f"pin {version}"
    figures: dict[str, Any] = {
        "total": result.total,
        "counts": dict(result.counts),
        "errors": result.errors,
        "headers": dict(result.headers),
    }
    answered = result.counts.get(version, 0)
    if result.total and answered == result.total:
        return Check(name, True, f"header pin: all {result.total} requests answered by {version}")
    others = ", ".join(f"{n} by {v}" for v, n in sorted(result.counts.items()) if v != version)
    failed = f"{result.errors} failed" if result.errors else ""
    rest = "; ".join(x for x in (others, failed) if x)
    return Check(
        name,
        False,
        f"header pin to {version}: {answered} of {result.total} requests answered by it"
        + (f" ({rest})" if rest else ""),
        figures,
    )


@dataclass
class StageEvidence:
    """Everything a stage observed. Versions are model versions (the keys of ``weights``).

    ``probe`` is the stage's probe through the weighted routes; ``telemetry`` the gateway's own
    per-version counts over the stage (a delta of two snapshots, or a Prometheus window), keyed
    by version; ``pins`` the probes sent with the header pin, by the version pinned;
    ``predictions`` the replayed comparison; ``split`` the sequential decision, if the probe ran
    with one.
    """

    weights: dict[str, int]
    stable: str
    canary: str
    probe: ProbeResult
    telemetry: dict[str, VersionTelemetry] | None = None
    predictions: PredictionComparison | None = None
    pins: dict[str, ProbeResult] = field(default_factory=dict)
    split: SplitDecision | None = None
    #: Per version: (requests the gateway retried, requests it sent) over the stage. A retry is
    #: an upstream failure (a reset, a refused connection) that the mesh's retry policy hid.
    retries: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class Verdict:
    """The gate's answer: ``passed``, one human line per reason, and every check as data.

    ``reasons`` are the failed checks' lines when it failed, else every check's line.
    """

    passed: bool
    reasons: list[str]
    checks: dict[str, dict[str, Any]]

    @property
    def text(self) -> str:
        """One line: PASS or FAIL and the reasons."""
        return ("PASS: " if self.passed else "FAIL: ") + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": list(self.reasons), "checks": self.checks}


def judge(evidence: StageEvidence, limits: Limits | None = None) -> Verdict:
    """The stage gate: every check that the evidence allows, one verdict (pure).

    Checks: ``split``; ``pin <version>`` for each pin; ``errors (probe)``, ``latency (probe)``
    and ``unattributed errors`` from the probe's tallies; ``errors (gateway)`` and
    ``latency (gateway)`` from the telemetry; ``predictions``. The stage passes when all pass.
    """
    limits = limits if limits is not None else Limits()
    ev = evidence
    if ev.stable not in ev.weights or ev.canary not in ev.weights:
        raise ConfigError(
            "stage evidence",
            "weights",
            f"must name stable {ev.stable!r} and canary {ev.canary!r}, got {sorted(ev.weights)}",
        )
    checks = [_split_check(ev)]
    checks += [check_pin(result, version) for version, result in sorted(ev.pins.items())]
    checks += _probe_checks(ev, limits)
    if ev.telemetry is not None:
        checks += _gateway_checks(ev.telemetry, ev.stable, ev.canary, limits)
    if ev.canary in ev.retries and ev.stable in ev.retries:
        (rc, nc), (rs, ns) = ev.retries[ev.canary], ev.retries[ev.stable]
        checks.append(
            compare_errors(min(rc, nc), nc, min(rs, ns), ns, limits, "retried at the gateway")
        )
    if ev.predictions is not None:
        checks.append(judge_predictions(ev.predictions, limits))
    passed = all(c.passed for c in checks)
    reasons = [c.reason for c in checks if passed or not c.passed]
    return Verdict(passed, reasons, {c.name: c.to_dict() for c in checks})


def _split_check(ev: StageEvidence) -> Check:
    if ev.split is not None and ev.split.done:
        return Check("split", ev.split.state == "fits", ev.split.reason, ev.split.to_dict())
    if not sum(ev.probe.counts.values()):
        return Check("split", False, "split: no successful request to test", {})
    check = check_split(ev.probe.counts, ev.weights, alpha=SPLIT_ALPHA)
    reason = check.reason if check.passed else f"split mismatch: {check.reason}"
    return Check("split", check.passed, reason, check.to_dict())


def _probe_checks(ev: StageEvidence, limits: Limits) -> list[Check]:
    probe, c, s = ev.probe, ev.canary, ev.stable
    checks = [
        compare_errors(
            probe.errors_by_version.get(c, 0),
            probe.requests_of(c),
            probe.errors_by_version.get(s, 0),
            probe.requests_of(s),
            limits,
            "probe",
        ),
        _latency(ev, limits),
    ]
    lost, total = probe.unattributed_errors, probe.total
    figures = {"unattributed_errors": lost, "total": total}
    if total and lost / total > limits.max_error_rate:
        kinds = ", ".join(f"{k} {n}" for k, n in probe.error_kinds.items())
        checks.append(
            Check(
                "unattributed errors",
                False,
                f"{lost} of {total} requests failed with no version named "
                f"({100 * lost / total:.2f}% > limit {100 * limits.max_error_rate:g}%; {kinds})",
                figures,
            )
        )
    else:
        checks.append(
            Check("unattributed errors", True, f"{lost} requests failed unattributed", figures)
        )
    return checks


def _latency(ev: StageEvidence, limits: Limits) -> Check:
    """Canary latency against stable's under the same load: the requests pinned to each version
    (the same number, the same concurrency, one version at a time). Under unequal weights each
    version's latency also reflects its share of the load (a pod queues what it cannot serve at
    once), which would blame the version for the weight; Kayenta compares against a baseline
    that gets the same traffic for the same reason. Without pins: the weighted probe."""
    c, s = ev.canary, ev.stable
    if c in ev.pins and s in ev.pins:
        return compare_latency(
            ev.pins[c].latencies.get(c, []),
            ev.pins[s].latencies.get(s, []),
            limits,
            "pinned, same load",
        )
    probe = ev.probe
    return compare_latency(probe.latencies.get(c, []), probe.latencies.get(s, []), limits, "probe")


def _gateway_checks(
    telemetry: Mapping[str, VersionTelemetry], stable: str, canary: str, limits: Limits
) -> list[Check]:
    none = VersionTelemetry()
    c, s = telemetry.get(canary, none), telemetry.get(stable, none)
    errors = compare_errors(
        round(c.errors), round(c.requests), round(s.errors), round(s.requests), limits, "gateway"
    )
    figures: dict[str, Any] = {"canary": c.to_dict(), "stable": s.to_dict()}
    c_p50, c_p99 = c.quantile(0.5), c.quantile(0.99)
    if c.requests < limits.min_requests or not math.isfinite(c_p99):
        latency = Check("latency (gateway)", True, "gateway: too few canary requests", figures)
    elif c_p99 > limits.max_p99_ms:
        latency = Check(
            "latency (gateway)",
            False,
            f"canary p99 {c_p99:.0f} ms > limit {limits.max_p99_ms:g} ms (gateway)",
            figures,
        )
    else:  # the comparison with stable is made under equal load (``_latency``)
        latency = Check(
            "latency (gateway)",
            True,
            f"latency ok: canary p50 {c_p50:.1f} ms, p99 {c_p99:.0f} ms (gateway)",
            figures,
        )
    return [errors, latency]


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
