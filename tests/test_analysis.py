"""Split checks and intervals, by table; a seeded Monte Carlo run for the false-rejection rate."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from workbook.analysis import check_split, min_requests_for, wilson_interval
from workbook.errors import ConfigError

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_by_hand(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), written out."""
    p = k / n
    center = p + z**2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return (center - spread) / (1 + z**2 / n), (center + spread) / (1 + z**2 / n)


@pytest.mark.parametrize(
    ("counts", "weights"),
    [
        ({"v1": 900, "v2": 100}, {"v1": 90, "v2": 10}),
        ({"v1": 500, "v2": 500}, {"v1": 50, "v2": 50}),
        ({"v1": 630, "v2": 370}, {"v1": 63, "v2": 37}),
        ({"a": 200, "b": 300, "c": 500}, {"a": 20, "b": 30, "c": 50}),
        ({"v1": 80}, {"v1": 100}),
        ({"v1": 800, "v2": 0}, {"v1": 100, "v2": 0}),
    ],
)
def test_exact_expected_counts_pass(counts: dict[str, int], weights: dict[str, int]) -> None:
    check = check_split(counts, weights)
    assert check.passed, check.reason
    assert check.p_value == pytest.approx(1.0)
    assert check.statistic == pytest.approx(0.0)
    assert "split fits" in check.reason


def test_near_split_passes_with_readable_reason() -> None:
    check = check_split({"v1": 904, "v2": 96}, {"v1": 90, "v2": 10})
    assert check.passed
    assert (check.total, check.dof, check.alpha) == (1000, 1, 0.01)
    assert check.expected == {"v1": 900.0, "v2": 100.0}
    assert check.shares == {"v1": 0.904, "v2": 0.096}
    assert check.p_value == pytest.approx(0.6733, abs=1e-4)  # chi2 = 16/900 + 16/100, dof 1
    assert check.reason == (
        "observed 90.4% v1 / 9.6% v2 for configured 90% / 10% "
        "(p=0.67 \N{GREATER-THAN OR EQUAL TO} \N{GREEK SMALL LETTER ALPHA}=0.01): split fits"
    )


@pytest.mark.parametrize(
    ("counts", "weights", "max_p"),
    [
        ({"v1": 700, "v2": 300}, {"v1": 90, "v2": 10}, 1e-50),
        ({"v1": 600, "v2": 400}, {"v1": 50, "v2": 50}, 1e-9),
        ({"v1": 950, "v2": 50}, {"v1": 90, "v2": 10}, 1e-6),
        ({"a": 100, "b": 100, "c": 800}, {"a": 20, "b": 30, "c": 50}, 1e-20),
    ],
)
def test_clearly_wrong_split_fails_with_tiny_p(
    counts: dict[str, int], weights: dict[str, int], max_p: float
) -> None:
    check = check_split(counts, weights)
    assert not check.passed
    assert check.p_value < max_p
    assert "does not fit" in check.reason and "<" in check.reason


@pytest.mark.parametrize(
    ("counts", "weights", "needle"),
    [
        ({"v1": 790, "v2": 10}, {"v1": 100, "v2": 0}, "v2 has weight 0 but received 10 of 800"),
        ({"v1": 1, "v2": 99}, {"v1": 0, "v2": 100}, "v1 has weight 0 but received 1 of 100"),
        ({"v1": 5, "v2": 80, "v3": 15}, {"v1": 0, "v2": 80, "v3": 20}, "v1 has weight 0"),
    ],
)
def test_weight_zero_leak_fails(
    counts: dict[str, int], weights: dict[str, int], needle: str
) -> None:
    check = check_split(counts, weights)
    assert not check.passed
    assert check.p_value == 0.0
    assert needle in check.reason and "does not fit" in check.reason


@pytest.mark.parametrize(
    ("counts", "needle"),
    [
        ({"v1": 890, "v2": 100, "v3": 10}, "v3 is not configured"),
        ({"v1": 900, "v2": 99, "unknown": 1}, "unknown is not configured"),
        ({"v1": 800, "v3": 200}, "v3 is not configured"),
    ],
)
def test_unknown_version_fails(counts: dict[str, int], needle: str) -> None:
    check = check_split(counts, {"v1": 90, "v2": 10})
    assert not check.passed
    assert check.p_value == 0.0
    assert needle in check.reason


def test_single_version_at_100() -> None:
    assert check_split({"v1": 800}, {"v1": 100, "v2": 0}).passed
    assert check_split({"v1": 800, "v2": 0}, {"v1": 100, "v2": 0}).p_value == 1.0
    assert check_split({"v2": 50}, {"v2": 100}).passed
    assert not check_split({"v1": 799, "v2": 1}, {"v1": 100, "v2": 0}).passed


def test_unobserved_configured_version_counts_as_zero() -> None:
    check = check_split({"v1": 1000}, {"v1": 90, "v2": 10})
    assert not check.passed
    assert check.shares == {"v1": 1.0, "v2": 0.0}
    assert check.intervals["v2"][0] == 0.0


@pytest.mark.parametrize(
    ("counts", "weights", "field"),
    [
        ({"v1": 90, "v2": 10}, {"v1": 90, "v2": 20}, "weights"),
        ({"v1": 90, "v2": 10}, {"v1": 90}, "weights"),
        ({"v1": 90}, {}, "weights"),
        ({"v1": 90, "v2": 10}, {"v1": 110, "v2": -10}, "weights['v1']"),
        ({"v1": 90, "v2": 10}, {"v1": 89.5, "v2": 10.5}, "weights['v1']"),
        ({"v1": 0, "v2": 0}, {"v1": 90, "v2": 10}, "counts"),
        ({}, {"v1": 100}, "counts"),
        ({"v1": -1, "v2": 10}, {"v1": 90, "v2": 10}, "counts['v1']"),
        ({"v1": 1.5}, {"v1": 100}, "counts['v1']"),
    ],
)
def test_bad_input_is_a_config_error(
    counts: dict[str, int], weights: dict[str, int], field: str
) -> None:
    with pytest.raises(ConfigError) as err:
        check_split(counts, weights)
    assert err.value.field == field


def test_weights_must_sum_to_100_message() -> None:
    with pytest.raises(ConfigError, match=r"must sum to 100, got 110 \(v1=90, v2=20\)"):
        check_split({"v1": 1}, {"v1": 90, "v2": 20})


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, True])
def test_alpha_must_be_a_probability(alpha: float) -> None:
    with pytest.raises(ConfigError) as err:
        check_split({"v1": 1}, {"v1": 100}, alpha=alpha)
    assert err.value.field == "alpha"


def test_to_dict_is_json() -> None:
    for check in (
        check_split({"v1": 904, "v2": 96}, {"v1": 90, "v2": 10}),
        check_split({"v1": 790, "v2": 10}, {"v1": 100, "v2": 0}),
    ):
        data = json.loads(json.dumps(check.to_dict(), allow_nan=False))
        assert {"weights", "counts", "p_value", "passed", "shares", "intervals", "reason"} <= set(
            data
        )
        assert isinstance(data["p_value"], float)
        lo, hi = data["intervals"]["v2"]
        assert 0.0 <= lo <= data["shares"]["v2"] <= hi <= 1.0


@pytest.mark.parametrize(("k", "n"), [(10, 100), (96, 1000), (1, 10), (50, 100), (999, 1000)])
def test_wilson_interval_matches_hand_computation(k: int, n: int) -> None:
    assert wilson_interval(k, n) == pytest.approx(wilson_by_hand(k, n), abs=1e-12)


def test_wilson_interval_known_values() -> None:
    # 10/100 at 95%: the textbook (Newcombe 1998) value 0.0552-0.1744
    lo, hi = wilson_interval(10, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.0552, 0.1744)
    # 99% uses z = 2.5758...
    assert wilson_interval(10, 100, 0.99) == pytest.approx(wilson_by_hand(10, 100, 2.5758293035489))


def test_wilson_interval_edges() -> None:
    lo, hi = wilson_interval(0, 50)
    assert lo == 0.0 and hi == pytest.approx(wilson_by_hand(0, 50)[1])
    lo, hi = wilson_interval(50, 50)
    assert hi == 1.0 and lo == pytest.approx(wilson_by_hand(50, 50)[0])
    assert wilson_interval(0, 0) == (0.0, 1.0)
    for bad in [(5, 4), (-1, 4), (1, -1)]:
        with pytest.raises(ConfigError):
            wilson_interval(*bad)
    with pytest.raises(ConfigError):
        wilson_interval(1, 4, confidence=1.0)


@pytest.mark.parametrize(
    ("weights", "min_expected", "n"),
    [
        ({"v1": 90, "v2": 10}, 5, 50),
        ({"v1": 50, "v2": 50}, 5, 10),
        ({"v1": 99, "v2": 1}, 5, 500),
        ({"v1": 63, "v2": 37}, 5, 14),  # 13 * 0.37 = 4.81 < 5; 14 * 0.37 = 5.18
        ({"v1": 100, "v2": 0}, 5, 5),
        ({"v1": 97, "v2": 3}, 10, 334),
        ({"v1": 90, "v2": 10}, 0.1, 1),
    ],
)
def test_min_requests_for(weights: dict[str, int], min_expected: float, n: int) -> None:
    assert min_requests_for(weights, min_expected) == n
    smallest = min(w for w in weights.values() if w > 0)
    assert n * smallest / 100 >= min_expected > (n - 1) * smallest / 100


def test_min_requests_for_rejects_bad_input() -> None:
    with pytest.raises(ConfigError):
        min_requests_for({"v1": 90})
    with pytest.raises(ConfigError):
        min_requests_for({"v1": 100}, 0)


@pytest.mark.parametrize(
    "weights", [{"v1": 90, "v2": 10}, {"v1": 50, "v2": 50}, {"a": 20, "b": 80}]
)
def test_false_rejection_rate_at_alpha_001_is_small(weights: dict[str, int]) -> None:
    """Draws from the true weights are rejected about alpha of the time: below 3% over 500."""
    rng = np.random.default_rng(20240601)
    versions = sorted(weights)
    probs = [weights[v] / 100 for v in versions]
    trials, rejected = 500, 0
    for draw in rng.multinomial(1000, probs, size=trials):
        check = check_split(dict(zip(versions, draw.tolist(), strict=True)), weights, alpha=0.01)
        rejected += not check.passed
    assert rejected / trials < 0.03
