"""The model's own predictions, canary against stable, on one replayed set of inputs (pure).

Both versions score the same rows (``traffic.replay`` sends them through the header pins), so the
comparison is paired: decision agreement at a threshold and the mean absolute score difference
say how far each answer moved; the two-sample Kolmogorov-Smirnov distance (``scipy.stats.ks_2samp``)
and the population stability index say how far the distribution moved.

PSI: ``Σ (a_i - e_i) · ln(a_i / e_i)`` over bins of the stable scores (deciles), ``e_i`` stable's
and ``a_i`` the canary's share per bin (B. Yurdakul, "Statistical Properties of Population Stability
Index", PhD dissertation, Western Michigan University, 2018; the customary reading is < 0.1 no
shift, 0.1-0.25 moderate, > 0.25 large, after N. Siddiqi, "Credit Risk Scorecards", Wiley 2006).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from workbook.errors import ConfigError
from workbook.health import Check, Limits, Sample

#: Bins of the PSI: deciles of the stable scores.
PSI_BINS = 10
#: Floor of a bin share in the PSI, so an empty bin gives a large but finite term.
PSI_FLOOR = 1e-4


def replay_inputs(
    n: int = 500, features: int = 8, scale: float = 3.0, seed: int = 0
) -> list[list[float]]:
    """A fixed, reproducible input set to replay to both versions: ``n`` rows of ``features``
    normal values (mean 0, sd ``scale``), rounded to 4 decimals so they travel as JSON unchanged."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError("replay", "n", f"must be an integer of at least 1, got {n!r}")
    if isinstance(features, bool) or not isinstance(features, int) or features < 1:
        raise ConfigError(
            "replay", "features", f"must be an integer of at least 1, got {features!r}"
        )
    rows = np.random.default_rng(seed).normal(0.0, scale, (n, features)).round(4)
    return [[float(x) for x in row] for row in rows]


def agreement(stable: Sample, canary: Sample, threshold: float = 0.5) -> float:
    """Share of rows where both versions take the same decision (score ``>= threshold``)."""
    s, c = _pair(stable, canary)
    return float(np.mean((s >= threshold) == (c >= threshold)))


def mean_abs_diff(stable: Sample, canary: Sample) -> float:
    """Mean over rows of ``|canary - stable|``."""
    s, c = _pair(stable, canary)
    return float(np.mean(np.abs(c - s)))


def population_stability_index(expected: Sample, actual: Sample, bins: int = PSI_BINS) -> float:
    """PSI of ``actual`` against ``expected``, over quantile bins of ``expected``.

    Edges are the inner quantiles of ``expected`` with ties merged, so a constant score is one
    bin; both ends are open, so no score falls outside.
    """
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.size == 0 or a.size == 0:
        raise ConfigError("predictions", "scores", "need at least one score on each side")
    inner = np.unique(np.quantile(e, np.linspace(0, 1, bins + 1)[1:-1]))
    e_share = (
        np.bincount(np.searchsorted(inner, e, side="right"), minlength=inner.size + 1) / e.size
    )
    a_share = (
        np.bincount(np.searchsorted(inner, a, side="right"), minlength=inner.size + 1) / a.size
    )
    e_share = np.maximum(e_share, PSI_FLOOR)
    a_share = np.maximum(a_share, PSI_FLOOR)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


@dataclass
class PredictionComparison:
    """Paired scores of both versions on the same inputs, and what they say."""

    n: int
    threshold: float
    agreement: float
    mean_abs_diff: float
    ks_statistic: float
    ks_p_value: float
    psi: float
    stable_mean: float
    canary_mean: float
    stable: list[float] = field(default_factory=list, repr=False)
    canary: list[float] = field(default_factory=list, repr=False)

    def to_dict(self, with_scores: bool = False) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k not in ("stable", "canary")}
        if with_scores:
            out.update(stable=list(self.stable), canary=list(self.canary))
        return out


def compare_replays(stable: Sample, canary: Sample, threshold: float = 0.5) -> PredictionComparison:
    """``compare`` over the rows both versions answered (a failed request leaves NaN scores)."""
    s, c = np.asarray(stable, dtype=float), np.asarray(canary, dtype=float)
    if s.shape != c.shape:
        raise ConfigError("predictions", "scores", f"need equal lengths, got {s.size} and {c.size}")
    both = np.isfinite(s) & np.isfinite(c)
    return compare(s[both].tolist(), c[both].tolist(), threshold)


def compare(stable: Sample, canary: Sample, threshold: float = 0.5) -> PredictionComparison:
    """All the figures for one paired set of scores (row ``i`` of both is the same input)."""
    s, c = _pair(stable, canary)
    ks = stats.ks_2samp(s, c)
    return PredictionComparison(
        n=int(s.size),
        threshold=threshold,
        agreement=agreement(s, c, threshold),
        mean_abs_diff=mean_abs_diff(s, c),
        ks_statistic=float(ks.statistic),
        ks_p_value=float(ks.pvalue),
        psi=population_stability_index(s, c),
        stable_mean=float(s.mean()),
        canary_mean=float(c.mean()),
        stable=[float(x) for x in s],
        canary=[float(x) for x in c],
    )


def judge_predictions(comparison: PredictionComparison, limits: Limits) -> Check:
    """Fail when decisions disagree too often, scores moved too far, or the distribution shifted.

    A legitimate update moves scores a little (the limits bound how much); the KS test is
    reported for reading, and fails the stage only together with a PSI over the limit, because
    with enough rows it rejects any update at all.
    """
    cmp = comparison
    figures = cmp.to_dict()
    problems = []
    if cmp.agreement < limits.min_agreement:
        problems.append(
            f"decisions agree on {100 * cmp.agreement:.1f}% of {cmp.n} inputs "
            f"< limit {100 * limits.min_agreement:g}% (threshold {cmp.threshold:g})"
        )
    if cmp.mean_abs_diff > limits.max_mean_abs_diff:
        problems.append(
            f"mean |score difference| {cmp.mean_abs_diff:.3f} > limit {limits.max_mean_abs_diff:g}"
        )
    if cmp.psi > limits.max_psi:
        problems.append(
            f"score distribution shifted: PSI {cmp.psi:.2f} > limit {limits.max_psi:g} "
            f"(KS D={cmp.ks_statistic:.2f}, p={cmp.ks_p_value:.2g})"
        )
    if problems:
        return Check(
            "predictions", False, "canary predictions differ: " + "; ".join(problems), figures
        )
    return Check(
        "predictions",
        True,
        f"predictions ok: {100 * cmp.agreement:.1f}% agree, mean |diff| {cmp.mean_abs_diff:.3f}, "
        f"PSI {cmp.psi:.3f}, KS D={cmp.ks_statistic:.2f} over {cmp.n} inputs",
        figures,
    )


def _pair(stable: Sample, canary: Sample) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(stable, dtype=float)
    c = np.asarray(canary, dtype=float)
    if s.ndim != 1 or c.ndim != 1 or s.size != c.size or s.size == 0:
        raise ConfigError(
            "predictions",
            "scores",
            f"need two equally long, non-empty lists, got {s.size} and {c.size} scores",
        )
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(c))):
        raise ConfigError("predictions", "scores", "must be finite numbers")
    return s, c
