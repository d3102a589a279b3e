"""Sequential split check: sample sizes by table, the Bayes factor by hand, error rates by seeded
simulation (counts of runs, never time)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workbook.errors import ConfigError
from workbook.sequential import (
    SplitMonitor,
    mixture_log_bayes_factor,
    plan_sample_size,
    share_confidence_sequence,
)


@pytest.mark.parametrize(
    ("weight", "precision", "confidence", "power", "expected"),
    [
        # z=1.959964: n = z² w(1-w) / d²
        (10, 0.03, 0.95, None, math.ceil(1.959964**2 * 0.09 / 0.0009)),
        (50, 0.05, 0.95, None, math.ceil(1.959964**2 * 0.25 / 0.0025)),
        (90, 0.03, 0.95, None, math.ceil(1.959964**2 * 0.09 / 0.0009)),
        # z_(1-0.001/2)=3.290527, z_0.95=1.644854
        (10, 0.03, 0.999, 0.95, math.ceil((3.290527 + 1.644854) ** 2 * 0.09 / 0.0009)),
        # 0 and 100: ln(1/(1-c)) / d, the rule of three at 95% (ln 20 = 2.996)
        (100, 0.03, 0.95, None, math.ceil(math.log(20) / 0.03)),
        (0, 0.01, 0.99, None, math.ceil(math.log(100) / 0.01)),
    ],
)
def test_plan_sample_size(
    weight: int, precision: float, confidence: float, power: float | None, expected: int
) -> None:
    assert plan_sample_size(weight, precision, confidence, power) == expected


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"weight": 101, "precision": 0.03}, "weight"),
        ({"weight": 10, "precision": 0.0}, "precision"),
        ({"weight": 10, "precision": 0.6}, "precision"),
        ({"weight": 10, "precision": 0.03, "confidence": 1.0}, "confidence"),
        ({"weight": 10, "precision": 0.03, "power": 0}, "power"),
    ],
)
def test_plan_sample_size_rejects_bad_input(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        plan_sample_size(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_bayes_factor_by_hand() -> None:
    """Two cells, counts (3, 1), theta0 (1/2, 1/2), k=2 so the prior is Dirichlet(1, 1):
    marginal = B(4, 2)/B(1, 1) = 3!·1!/5! = 1/20; null likelihood (1/2)^4 = 1/16; BF = 16/20."""
    assert mixture_log_bayes_factor([3, 1], [0.5, 0.5], 2.0) == pytest.approx(math.log(0.8))


def test_bayes_factor_is_order_free_and_grows_with_mismatch() -> None:
    theta0 = [0.9, 0.1]
    fits = mixture_log_bayes_factor([900, 100], theta0)
    off = mixture_log_bayes_factor([850, 150], theta0)
    assert fits < 0 < off
    assert mixture_log_bayes_factor([100, 900], theta0[::-1]) == pytest.approx(fits)


def test_confidence_sequence_holds_the_truth_and_narrows() -> None:
    wide = share_confidence_sequence(10, 100, 0.1)
    narrow = share_confidence_sequence(1000, 10_000, 0.1)
    assert wide[0] < 0.1 < wide[1] and narrow[0] < 0.1 < narrow[1]
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 5
    assert share_confidence_sequence(0, 0, 0.1) == (0.0, 1.0)
    lo, hi = share_confidence_sequence(0, 500, 0.1)
    assert lo == 0.0 and 0 < hi < 0.05
    lo, hi = share_confidence_sequence(500, 500, 0.9)
    assert hi == 1.0 and 0.95 < lo < 1.0
    # the prior only shapes the width: far from the data it widens the interval, never breaks it
    assert share_confidence_sequence(500, 500, 0.1)[0] < lo


def test_monitor_calls_a_gross_mismatch_early_and_latches() -> None:
    monitor = SplitMonitor({"v1": 90, "v2": 10}, alpha=0.001)
    assert monitor.update({"v1": 45, "v2": 5}).state == "continue"
    decision = monitor.update({"v1": 50, "v2": 50})
    assert decision.state == "mismatch"
    assert decision.reason.startswith("split mismatch: observed 50.0% v1 / 50.0% v2")
    assert monitor.update({"v1": 900, "v2": 100}) is decision


@pytest.mark.parametrize(
    ("weights", "counts", "why"),
    [
        ({"v1": 100, "v2": 0}, {"v1": 99, "v2": 1}, "v2 (weight 0) answered 1"),
        ({"v1": 90, "v2": 10}, {"v1": 90, "v2": 9, "v3": 1}, "v3 (not configured) answered 1"),
    ],
)
def test_any_request_to_a_version_without_weight_is_a_mismatch(
    weights: dict[str, int], counts: dict[str, int], why: str
) -> None:
    decision = SplitMonitor(weights).update(counts)
    assert decision.state == "mismatch"
    assert why in decision.reason


def test_single_version_fits_after_the_planned_size() -> None:
    monitor = SplitMonitor({"v1": 0, "v2": 100}, precision=0.03, beta=0.05)
    need = plan_sample_size(100, 0.03, 0.95)
    assert monitor.update({"v2": need - 1}).state == "continue"
    assert monitor.update({"v2": need}).state == "fits"


def test_counts_must_be_cumulative() -> None:
    monitor = SplitMonitor({"v1": 50, "v2": 50})
    monitor.update({"v1": 10, "v2": 10})
    with pytest.raises(ConfigError, match="cumulative"):
        monitor.update({"v1": 5, "v2": 5})


def simulate(
    weights: dict[str, int],
    true_shares: list[float],
    runs: int,
    seed: int,
    *,
    alpha: float = 0.001,
    batch: int = 50,
    max_n: int = 20_000,
) -> tuple[dict[str, int], list[int]]:
    """Run the monitor ``runs`` times on multinomial batches; outcome counts and stop sizes."""
    rng = np.random.default_rng(seed)
    outcomes = {"fits": 0, "mismatch": 0, "continue": 0}
    sizes = []
    names = list(weights)
    for _ in range(runs):
        monitor = SplitMonitor(weights, alpha=alpha)
        counts = dict.fromkeys(names, 0)
        state, n = "continue", 0
        while n < max_n:
            for name, k in zip(names, rng.multinomial(batch, true_shares), strict=True):
                counts[name] += int(k)
            n += batch
            state = monitor.update(counts).state
            if state != "continue":
                break
        outcomes[state] += 1
        sizes.append(n)
    return outcomes, sizes


def test_correct_splits_are_never_called_mismatched_over_many_runs() -> None:
    """The false-alarm rate is at most alpha whenever one stops: with alpha 0.01 (a loose one,
    so alarms would show) 300 runs at 90/10 expect at most 3 alarms; a binomial(300, 0.01)
    exceeds 9 with probability < 1e-3."""
    outcomes, _ = simulate({"v1": 90, "v2": 10}, [0.9, 0.1], runs=300, seed=7, alpha=0.01)
    assert outcomes["mismatch"] <= 9
    assert outcomes["fits"] >= 290


def test_a_five_point_mismatch_is_caught_every_time() -> None:
    outcomes, sizes = simulate({"v1": 90, "v2": 10}, [0.85, 0.15], runs=100, seed=11)
    assert outcomes["mismatch"] == 100
    assert max(sizes) < plan_sample_size(10, 0.05, 0.999, 0.95) * 3


def test_sequential_needs_fewer_requests_than_the_powered_fixed_size() -> None:
    """Same error rates on both sides (alpha 0.001, beta 0.05, ±3 points): on average over
    correct and 5-point-off splits the sequential check stops well before the fixed size."""
    fixed = plan_sample_size(10, 0.03, 0.999, 0.95)
    _, fits = simulate({"v1": 90, "v2": 10}, [0.9, 0.1], runs=60, seed=3)
    _, off = simulate({"v1": 90, "v2": 10}, [0.85, 0.15], runs=60, seed=4)
    assert np.mean(fits + off) <= 0.6 * fixed
