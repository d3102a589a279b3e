"""A synthetic Porto Seguro Safe Driver data set, generated deterministically from a seed.

The real competition data cannot be downloaded here, so this builds rows with its schema (57
anonymised columns, ``_cat``/``_bin`` suffixes, -1 for missing), value ranges and missing shares
close to the competition's, and a claim target from a latent risk of some ``ind``, ``reg`` and
``car`` columns (with a non-linear car-category effect and an interaction). The ``calc`` columns
carry no signal, as in the real data. About 3.6 % of the drivers file a claim, as in the real data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbook.errors import ConfigError
from workbook.safedriver.schema import MISSING, column_names

#: Logit offset giving about 3.6 % positives (the competition's share) for the latent risk below.
_INTERCEPT = -4.6

#: Strength of the latent risk.
_SIGNAL = 1.3


@dataclass(frozen=True)
class Dataset:
    """Rows ``X`` (float64, columns as ``columns``) and the 0/1 claim target ``y``."""

    X: np.ndarray
    y: np.ndarray
    columns: tuple[str, ...]

    def column(self, name: str) -> np.ndarray:
        """One column of ``X`` by name."""
        return self.X[:, self.columns.index(name)]

    def rows(self, start: int = 0, stop: int | None = None) -> list[dict[str, int | float]]:
        """Rows as request records ``{column: value}``: whole-number columns as JSON integers."""
        from workbook.safedriver.schema import columns

        whole = [c.whole for c in columns()]
        out = []
        for values in self.X[start:stop]:
            out.append(
                {
                    name: int(v) if is_whole else float(v)
                    for name, v, is_whole in zip(self.columns, values, whole, strict=True)
                }
            )
        return out


def _with_missing(rng: np.random.Generator, values: np.ndarray, share: float) -> np.ndarray:
    out = values.astype(np.float64)
    out[rng.random(len(out)) < share] = MISSING
    return out


def _grid(rng: np.random.Generator, n: int, top: float, step: float = 0.1) -> np.ndarray:
    """Values 0, step, ..., top (the competition's rounded ``reg`` and ``calc`` floats)."""
    return np.round(rng.integers(0, round(top / step) + 1, n) * step, 1)


def make_dataset(n_rows: int = 20_000, seed: int = 0) -> Dataset:
    """``n_rows`` synthetic drivers; the same ``seed`` gives the same bytes."""
    if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows < 100:
        raise ConfigError(
            "safe-driver data", "n_rows", f"must be an integer >= 100, got {n_rows!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("safe-driver data", "seed", f"must be an integer >= 0, got {seed!r}")
    rng = np.random.default_rng(seed)
    n = n_rows
    c: dict[str, np.ndarray] = {}

    # ind: the driver
    c["ps_ind_01"] = rng.integers(0, 8, n)
    c["ps_ind_02_cat"] = _with_missing(
        rng, rng.choice([1, 2, 3, 4], n, p=[0.73, 0.21, 0.04, 0.02]), 0.0004
    )
    c["ps_ind_03"] = rng.integers(0, 12, n)
    c["ps_ind_04_cat"] = _with_missing(rng, rng.integers(0, 2, n), 0.0001)
    c["ps_ind_05_cat"] = _with_missing(
        rng, rng.choice(7, n, p=[0.89, 0.014, 0.007, 0.014, 0.03, 0.003, 0.042]), 0.01
    )
    onehot = rng.choice(4, n, p=[0.39, 0.41, 0.18, 0.02])
    for k, i in enumerate(range(6, 10)):
        c[f"ps_ind_{i:02d}_bin"] = (onehot == k).astype(int)
    rare = {10: 0.0004, 11: 0.0017, 12: 0.0094, 13: 0.001}
    for i, p in rare.items():
        c[f"ps_ind_{i:02d}_bin"] = (rng.random(n) < p).astype(int)
    c["ps_ind_14"] = np.sum([c[f"ps_ind_{i:02d}_bin"] for i in rare], axis=0)
    c["ps_ind_15"] = rng.integers(0, 14, n)
    c["ps_ind_16_bin"] = (rng.random(n) < 0.66).astype(int)
    c["ps_ind_17_bin"] = (rng.random(n) < 0.12).astype(int)
    c["ps_ind_18_bin"] = (rng.random(n) < 0.15).astype(int)

    # reg: the region
    c["ps_reg_01"] = _grid(rng, n, 0.9)
    c["ps_reg_02"] = _grid(rng, n, 1.8)
    reg_03 = np.clip(rng.lognormal(-0.2, 0.35, n), 0.06, 4.0)
    c["ps_reg_03"] = _with_missing(rng, np.round(reg_03, 6), 0.18)

    # car: the car
    c["ps_car_01_cat"] = _with_missing(rng, rng.integers(0, 12, n), 0.0002)
    c["ps_car_02_cat"] = _with_missing(rng, (rng.random(n) < 0.83).astype(int), 0.00001)
    c["ps_car_03_cat"] = np.where(rng.random(n) < 0.69, MISSING, rng.integers(0, 2, n))
    c["ps_car_04_cat"] = rng.choice(
        10, n, p=[0.83, 0.04, 0.05, 0.001, 0.001, 0.002, 0.001, 0.002, 0.04, 0.033]
    )
    c["ps_car_05_cat"] = np.where(rng.random(n) < 0.45, MISSING, rng.integers(0, 2, n))
    c["ps_car_06_cat"] = rng.integers(0, 18, n)
    c["ps_car_07_cat"] = _with_missing(rng, (rng.random(n) < 0.95).astype(int), 0.02)
    c["ps_car_08_cat"] = (rng.random(n) < 0.83).astype(int)
    c["ps_car_09_cat"] = _with_missing(
        rng, rng.choice(5, n, p=[0.33, 0.01, 0.59, 0.04, 0.03]), 0.001
    )
    c["ps_car_10_cat"] = rng.choice(3, n, p=[0.008, 0.99, 0.002])
    c["ps_car_11_cat"] = rng.integers(1, 105, n)
    c["ps_car_11"] = _with_missing(rng, rng.choice(4, n, p=[0.01, 0.2, 0.34, 0.45]), 0.0001)
    c["ps_car_12"] = np.round(np.sqrt(rng.integers(6, 160, n) / 100.0), 6)
    car_13 = np.clip(rng.lognormal(-0.2, 0.22, n), 0.25, 3.72)
    c["ps_car_13"] = np.round(car_13, 6)
    c["ps_car_14"] = _with_missing(rng, np.round(np.sqrt(rng.integers(10, 42, n) / 100.0), 6), 0.07)
    c["ps_car_15"] = np.round(np.sqrt(rng.integers(0, 15, n)), 6)

    # calc: engineered by the competition's hosts, and pure noise (as it turned out there)
    for i in (1, 2, 3):
        c[f"ps_calc_{i:02d}"] = _grid(rng, n, 0.9)
    calc_top = {4: 5, 5: 6, 6: 10, 7: 9, 8: 12, 9: 7, 10: 25, 11: 19, 12: 10, 13: 13, 14: 23}
    for i, top in calc_top.items():
        c[f"ps_calc_{i:02d}"] = rng.binomial(top, 0.3 if i != 6 else 0.75, n)
    for i, p in zip(range(15, 21), (0.12, 0.63, 0.55, 0.29, 0.35, 0.15), strict=True):
        c[f"ps_calc_{i}_bin"] = (rng.random(n) < p).astype(int)

    names = column_names()
    missing_cols = set(names) ^ set(c)
    if missing_cols:  # pragma: no cover - the generator and schema.json must agree
        raise AssertionError(f"generator and schema disagree on {sorted(missing_cols)}")
    X = np.column_stack([np.asarray(c[name], dtype=np.float64) for name in names])
    y = (rng.random(n) < _claim_probability(c, rng)).astype(np.int8)
    return Dataset(X=X, y=y, columns=tuple(names))


def _claim_probability(c: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """The latent risk: a logistic model of some columns, with the noise a real portfolio has."""
    reg_03 = np.where(c["ps_reg_03"] == MISSING, 0.85, c["ps_reg_03"])
    car_11_effect = 0.35 * np.sin(c["ps_car_11_cat"] * 0.7)  # many levels, uneven risk
    risk = (
        0.06 * c["ps_ind_03"]
        - 0.05 * c["ps_ind_15"]
        + 0.45 * (c["ps_ind_05_cat"] != 0)
        + 0.35 * c["ps_ind_17_bin"]
        + 0.25 * c["ps_ind_07_bin"]
        - 0.20 * c["ps_ind_06_bin"]
        + 0.55 * (reg_03 - 0.85)
        + 0.35 * c["ps_reg_02"]
        + 0.20 * c["ps_reg_01"]
        + 1.40 * (c["ps_car_13"] - 0.82)
        + 0.30 * (c["ps_ind_15"] <= 3) * (c["ps_car_13"] > 1.0)  # young licence, big car
        + 0.50 * (c["ps_car_07_cat"] == MISSING)
        - 0.15 * (c["ps_car_03_cat"] == MISSING)
        + 0.30 * (c["ps_car_04_cat"] > 0)
        + 0.25 * (c["ps_car_01_cat"] >= 9)
        + 0.20 * (c["ps_ind_04_cat"] == 1)
        + car_11_effect
    )
    noise = rng.normal(0.0, 0.3, len(reg_03))  # what the columns cannot explain
    z = _INTERCEPT + _SIGNAL * risk + noise
    return 1.0 / (1.0 + np.exp(-z))
