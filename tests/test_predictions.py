"""Prediction comparison: figures by table and by hand, and the dummy model's own versions."""

from __future__ import annotations

import importlib.util
import math
from types import ModuleType

import numpy as np
import pytest

from workbook import predictions as pr
from workbook.errors import ConfigError
from workbook.health import Limits
from workbook.packaging import SCORING_DIR, dummy_bias


def dummy_score() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dummy_score_pred", SCORING_DIR / "dummy/score.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("stable", "canary", "threshold", "agree", "mad"),
    [
        ([0.1, 0.6, 0.4, 0.9], [0.1, 0.6, 0.4, 0.9], 0.5, 1.0, 0.0),
        ([0.1, 0.6, 0.4, 0.9], [0.2, 0.4, 0.6, 0.9], 0.5, 0.5, (0.1 + 0.2 + 0.2 + 0) / 4),
        ([0.49, 0.51], [0.51, 0.49], 0.5, 0.0, 0.02),
        ([0.49, 0.51], [0.51, 0.49], 0.3, 1.0, 0.02),
    ],
)
def test_agreement_and_mean_abs_diff(
    stable: list[float], canary: list[float], threshold: float, agree: float, mad: float
) -> None:
    assert pr.agreement(stable, canary, threshold) == pytest.approx(agree)
    assert pr.mean_abs_diff(stable, canary) == pytest.approx(mad)


def test_psi_by_hand() -> None:
    """Stable 0..9 gives ten deciles of one score each; a canary with all ten scores in the top
    bin has shares 0.0001 (floored) in nine bins and 1 in one:
    9·(0.0001 - 0.1)·ln(0.0001/0.1) + (1 - 0.1)·ln(1/0.1)."""
    stable = [float(x) for x in range(10)]
    canary = [9.5] * 10
    expected = 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1) + 0.9 * math.log(10)
    assert pr.population_stability_index(stable, canary) == pytest.approx(expected)
    assert pr.population_stability_index(stable, stable) == pytest.approx(0.0)


def test_psi_grows_with_the_shift() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 5000)
    psis = [pr.population_stability_index(base, base + d) for d in (0.0, 0.1, 0.5, 1.0)]
    assert psis == sorted(psis)
    assert psis[1] < 0.1 < 0.25 < psis[3]


def test_psi_of_a_constant_score_is_finite() -> None:
    assert math.isfinite(pr.population_stability_index([0.5] * 100, [0.6] * 100))


def test_compare_drops_rows_a_version_failed_to_answer() -> None:
    cmp = pr.compare_replays([0.1, math.nan, 0.7], [0.1, 0.5, math.nan])
    assert cmp.n == 1 and cmp.agreement == 1.0


@pytest.mark.parametrize(
    ("stable", "canary"),
    [([], []), ([0.1], [0.1, 0.2]), ([0.1, math.inf], [0.1, 0.2])],
)
def test_compare_rejects_unpaired_or_non_finite_scores(
    stable: list[float], canary: list[float]
) -> None:
    with pytest.raises(ConfigError, match="predictions: scores"):
        pr.compare(stable, canary)


def test_replay_inputs_are_reproducible_rows() -> None:
    rows = pr.replay_inputs(20, features=3, seed=4)
    assert rows == pr.replay_inputs(20, features=3, seed=4)
    assert rows != pr.replay_inputs(20, features=3, seed=5)
    assert len(rows) == 20 and all(len(r) == 3 for r in rows)


def scores(module: ModuleType, version: str, rows: list[list[float]], drift: float = 0.0) -> list:
    return [min(max(module.predict_row(r, dummy_bias(version)) + drift, 0.0), 1.0) for r in rows]


@pytest.mark.parametrize(
    ("canary", "drift", "passed"),
    [("v1", 0.0, True), ("v2", 0.0, True), ("v2", 0.3, False), ("v2", -0.3, False)],
)
def test_the_dummy_update_passes_and_a_drifted_one_fails(
    canary: str, drift: float, passed: bool
) -> None:
    """v1 → v2 is the dummy's legitimate update (its bias moves by 0.5); ``drift=0.3`` is the
    fault ``FAULT_DRIFT`` injects. The default limits tell them apart on the replay inputs."""
    module, rows = dummy_score(), pr.replay_inputs()
    cmp = pr.compare(scores(module, "v1", rows), scores(module, canary, rows, drift))
    check = pr.judge_predictions(cmp, Limits())
    assert check.passed is passed, check.reason
    if not passed:
        assert check.reason.startswith("canary predictions differ: ")
        assert "PSI" in check.reason and "mean |score difference|" in check.reason
