"""Health checks canary against stable: tables, and seeded simulations that count outcomes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from workbook.errors import ConfigError
from workbook.health import Limits, compare_errors, compare_latency, hodges_lehmann_shift

LIMITS = Limits()


def latencies(rng: np.random.Generator, n: int, median_ms: float) -> np.ndarray:
    """Log-normal request latencies (a right tail, as real ones have) around ``median_ms``."""
    return median_ms * rng.lognormal(0.0, 0.35, n)


@pytest.mark.parametrize(
    ("canary", "stable"),
    [([1, 2, 3], [0, 1, 2]), ([5.0, 7.0], [1.0, 2.0, 3.0]), ([2, 2, 2], [2, 2, 2])],
)
def test_hodges_lehmann_is_the_median_of_pairwise_differences(
    canary: list[float], stable: list[float]
) -> None:
    by_hand = float(np.median([c - s for c, s in itertools.product(canary, stable)]))
    assert hodges_lehmann_shift(canary, stable) == pytest.approx(by_hand, abs=1e-6)


@pytest.mark.parametrize(
    ("canary", "stable", "passed", "words"),
    [
        ((0, 1000), (0, 9000), True, "errors ok"),
        ((40, 1000), (40, 4000), False, "canary error rate 4.00% > limit 1%"),
        # both versions at 3%: over the limit beyond chance, though no worse than stable
        ((30, 1000), (270, 9000), False, "canary error rate 3.00% > limit 1%"),
        # under the absolute limit, yet clearly worse than stable: Fisher's test catches it
        ((9, 1000), (0, 9000), False, "canary fails more than stable"),
        # the same rate on both sides is no evidence against the canary
        ((5, 1000), (45, 9000), True, "errors ok"),
        # a first error or two in a few requests is not a rate above the limit yet
        ((1, 10), (0, 90), True, "errors ok"),
        ((2, 100), (1, 900), True, "errors ok"),
        ((0, 0), (0, 100), True, "no canary requests"),
    ],
)
def test_compare_errors(
    canary: tuple[int, int], stable: tuple[int, int], passed: bool, words: str
) -> None:
    check = compare_errors(*canary, *stable, LIMITS)
    assert check.passed is passed, check.reason
    assert words in check.reason


def test_compare_errors_rejects_impossible_counts() -> None:
    with pytest.raises(ConfigError):
        compare_errors(5, 3, 0, 10, LIMITS)


def test_a_half_percent_error_canary_is_caught_at_enough_requests() -> None:
    """0.5% of the canary's requests fail, stable none. At 50/50 and 8000 requests the canary
    shows about 20 errors: below the 1% limit, but far beyond chance (Fisher p ~ 2^-20)."""
    rng = np.random.default_rng(5)
    caught = 0
    for _ in range(50):
        errors = int(rng.binomial(4000, 0.005))
        caught += not compare_errors(errors, 4000, 0, 4000, LIMITS).passed
    assert caught >= 47


def test_healthy_error_counts_raise_few_alarms() -> None:
    """Both at 0.2% errors: over 500 seeded stages at 10/90, alarms stay near alpha."""
    rng = np.random.default_rng(6)
    alarms = sum(
        not compare_errors(
            int(rng.binomial(100, 0.002)), 100, int(rng.binomial(900, 0.002)), 900, LIMITS
        ).passed
        for _ in range(500)
    )
    assert alarms <= 2


def test_identical_latency_passes_and_reports_the_figures() -> None:
    rng = np.random.default_rng(1)
    check = compare_latency(latencies(rng, 300, 8), latencies(rng, 2700, 8), LIMITS)
    assert check.passed, check.reason
    assert check.reason.startswith("latency ok: canary p50")
    assert check.figures["stable_n"] == 2700


def test_a_canary_50_ms_slower_is_caught() -> None:
    rng = np.random.default_rng(2)
    check = compare_latency(latencies(rng, 100, 8) + 50, latencies(rng, 900, 8), LIMITS)
    assert not check.passed
    assert check.reason.startswith("canary slower than stable: canary p50 5")
    assert check.figures["shift_ms"] == pytest.approx(50, abs=3)


def test_a_small_real_shift_within_tolerance_passes() -> None:
    """1 ms slower on 8 ms: significant with 5000 requests, but within the 50% tolerance."""
    rng = np.random.default_rng(3)
    check = compare_latency(latencies(rng, 5000, 9), latencies(rng, 5000, 8), LIMITS)
    assert check.figures["p_value"] < LIMITS.alpha
    assert check.passed, check.reason


def test_p99_over_the_absolute_limit_fails_whatever_stable_does() -> None:
    slow = [300.0] * 98 + [1200.0, 1500.0]
    check = compare_latency(slow, slow, Limits(max_p99_ms=1000))
    assert not check.passed
    assert check.reason.startswith("canary p99 1")
    assert "> limit 1000 ms" in check.reason


def test_too_few_requests_are_not_compared() -> None:
    check = compare_latency([100.0] * 5, [1.0] * 500, LIMITS)
    assert check.passed
    assert "too few requests" in check.reason


def test_latency_false_alarms_over_many_identical_stages() -> None:
    rng = np.random.default_rng(4)
    alarms = sum(
        not compare_latency(latencies(rng, 100, 8), latencies(rng, 900, 8), LIMITS).passed
        for _ in range(300)
    )
    assert alarms == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_error_rate", 0),
        ("max_error_rate", 1.5),
        ("alpha", 0),
        ("max_p99_ms", -1),
        ("max_latency_ratio", 0.5),
        ("min_agreement", 2),
        ("min_requests", 2.5),
    ],
)
def test_limits_reject_bad_values(field: str, value: float) -> None:
    with pytest.raises(ConfigError) as err:
        Limits(**{field: value})  # type: ignore[arg-type]
    assert (err.value.obj, err.value.field) == ("limits", field)
