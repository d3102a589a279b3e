"""Sequential split check: stop a stage's probe once the split clearly fits or clearly does not.

Two anytime-valid pieces, both sound however often the counts are looked at (Ville's inequality):

* **mismatch**: the Dirichlet-multinomial mixture sequential probability ratio test of
  M. Lindon and A. Malek, "Anytime-Valid Inference for Multinomial Count Data", NeurIPS 2022
  (arXiv:2011.03567), the test online experiments use for sample-ratio mismatch. With the prior
  ``Dirichlet(k·θ0)`` centred on the configured weights ``θ0``, the Bayes factor after counts
  ``x`` (``n = Σx``, ``a = k·θ0``) is ``Γ(Σa)/Γ(Σa+n) · Π Γ(a_i+x_i)/Γ(a_i) / Π θ0_i^x_i``; the
  split is a mismatch the first time it reaches ``1/alpha``, and a correct split reaches it with
  probability at most ``alpha`` over the whole stage.
* **fits**: for each version's share a beta-binomial mixture confidence sequence (Robbins 1970;
  S. Howard, A. Ramdas, J. McAuliffe, J. Sekhon, "Time-uniform, nonparametric, nonasymptotic
  confidence sequences", Annals of Statistics 49(2), 2021, section 3.3 and Proposition 4): the
  shares ``p`` whose mixture likelihood ratio stays below ``1/beta``. The split fits once every
  version's interval lies within ``precision`` of its weight.

``plan_sample_size`` gives the fixed probe size for the same precision, the reference the
sequential check is measured against (``benchmarks/split_sequential.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from scipy import optimize, special, stats

from workbook.errors import ConfigError
from workbook.settings import validate_weight

State = Literal["continue", "fits", "mismatch"]

#: Prior concentration ``k`` of the mixtures (prior ``Dirichlet(k·θ0)``); 100 is the default of
#: Lindon & Malek's reference implementation. Larger k: faster on small mismatches, slower on gross.
DEFAULT_CONCENTRATION = 100.0
#: Half-width, as a share, within which an observed split counts as fitting (±3 points).
DEFAULT_PRECISION = 0.03
#: Error rate of the "fits" confidence sequences: the chance a stage calls a split fitting while
#: a share is really off by more than ``precision``.
DEFAULT_BETA = 0.05


def plan_sample_size(
    weight: int, precision: float, confidence: float = 0.95, power: float | None = None
) -> int:
    """Requests a fixed-size probe needs for a version's share at ``±precision``.

    ``weight`` is the version's integer percent; ``precision`` a share (0.03 is ±3 points).
    Without ``power``: the size whose ``confidence`` interval has half-width ``precision``,
    ``n = z² w(1-w) / precision²``. With ``power``: the size at which a two-sided test at level
    ``1 - confidence`` detects a share off by ``precision`` with that probability,
    ``n = (z_(1-a/2) + z_power)² w(1-w) / precision²`` (the textbook sample sizes for one
    proportion, e.g. S. Chow, J. Shao, H. Wang, "Sample Size Calculations in Clinical Research",
    2nd ed., §4.1). The sequential check is measured against the powered size at its own
    ``alpha`` and ``beta``. For 0 or 100 nothing can vary, so it is the size at which seeing no
    stray request bounds the stray share below ``precision``: ``ln(1/(1-confidence)) /
    precision`` (the one-sided exact binomial bound; the "rule of three" at 95%).
    """
    w = validate_weight(weight, "plan", "weight") / 100.0
    precision = _fraction(precision, "plan", "precision", upper=0.5)
    confidence = _fraction(confidence, "plan", "confidence")
    if w in (0.0, 1.0):
        return math.ceil(-math.log1p(-confidence) / precision)
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    if power is not None:
        z += float(stats.norm.ppf(_fraction(power, "plan", "power")))
    return math.ceil(z * z * w * (1.0 - w) / (precision * precision))


def mixture_log_bayes_factor(
    counts: list[int], theta0: list[float], concentration: float = DEFAULT_CONCENTRATION
) -> float:
    """Natural log of Lindon & Malek's Dirichlet-multinomial Bayes factor against ``theta0``."""
    alpha = [concentration * t for t in theta0]
    n = sum(counts)
    out = special.gammaln(sum(alpha)) - special.gammaln(sum(alpha) + n)
    for a, x, t in zip(alpha, counts, theta0, strict=True):
        out += special.gammaln(a + x) - special.gammaln(a) - x * math.log(t)
    return float(out)


def share_confidence_sequence(
    successes: int,
    n: int,
    prior_share: float,
    beta: float = DEFAULT_BETA,
    concentration: float = DEFAULT_CONCENTRATION,
) -> tuple[float, float]:
    """Anytime-valid interval for a binomial share: ``{p : mixture LR(p) < 1/beta}``.

    The mixture is ``Beta(k·prior_share, k·(1-prior_share))``; any fixed prior gives a valid
    sequence, one centred on the configured weight is narrowest when the weight is right.
    """
    if n == 0:
        return 0.0, 1.0
    a, b = concentration * prior_share, concentration * (1.0 - prior_share)
    log_marginal = float(special.betaln(a + successes, b + n - successes) - special.betaln(a, b))
    bound = math.log(1.0 / beta)

    def excess(p: float) -> float:  # log LR(p) - log(1/beta); < 0 inside the sequence
        return log_marginal - successes * math.log(p) - (n - successes) * math.log1p(-p) - bound

    tiny = 1e-12
    hat = min(max(successes / n, tiny), 1.0 - tiny)  # inside (0, 1), where excess(hat) < 0
    lo = 0.0 if successes == 0 else optimize.brentq(excess, tiny, hat)
    hi = 1.0 if successes == n else optimize.brentq(excess, hat, 1.0 - tiny)
    return float(lo), float(hi)


@dataclass
class SplitDecision:
    """One look at the counts: ``continue``, ``fits`` or ``mismatch``, and the numbers behind it."""

    state: State
    total: int
    counts: dict[str, int]
    weights: dict[str, int]
    log_bayes_factor: float
    log_threshold: float
    intervals: dict[str, tuple[float, float]]
    precision: float
    reason: str

    @property
    def done(self) -> bool:
        return self.state != "continue"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["intervals"] = {v: [lo, hi] for v, (lo, hi) in self.intervals.items()}
        if not math.isfinite(self.log_bayes_factor):
            out["log_bayes_factor"] = None
        return out


class SplitMonitor:
    """Sequential split check for one stage: feed it cumulative counts, it says when to stop.

    ``update`` may be called after every batch (or every request); the first ``fits`` or
    ``mismatch`` is final and returned again by later calls. ``alpha`` bounds the chance that a
    correct split is ever called a mismatch; ``beta`` the chance a split off by more than
    ``precision`` is called fitting.
    """

    def __init__(
        self,
        weights: Mapping[str, int],
        *,
        alpha: float = 0.001,
        beta: float = DEFAULT_BETA,
        precision: float = DEFAULT_PRECISION,
        concentration: float = DEFAULT_CONCENTRATION,
    ) -> None:
        w = {str(v): validate_weight(n, "split", f"weights[{v!r}]") for v, n in weights.items()}
        if sum(w.values()) != 100:
            raise ConfigError("split", "weights", f"must sum to 100, got {sum(w.values())}")
        self.weights = dict(sorted(w.items()))
        self.alpha = _fraction(alpha, "split", "alpha")
        self.beta = _fraction(beta, "split", "beta")
        self.precision = _fraction(precision, "split", "precision", upper=0.5)
        if isinstance(concentration, bool) or not concentration > 0:
            raise ConfigError("split", "concentration", f"must be positive, got {concentration!r}")
        self.concentration = float(concentration)
        self.live = [v for v, n in self.weights.items() if n > 0]
        self._final: SplitDecision | None = None
        self._last_total = 0

    def update(self, counts: Mapping[str, int]) -> SplitDecision:
        """Judge the cumulative per-version ``counts`` of successful requests so far."""
        if self._final is not None:
            return self._final
        c = {str(v): _count(n, f"counts[{v!r}]") for v, n in counts.items()}
        total = sum(c.values())
        if total < self._last_total:
            raise ConfigError(
                "split",
                "counts",
                f"must be cumulative; total fell from {self._last_total} to {total}",
            )
        self._last_total = total
        decision = self._judge(c, total)
        if decision.done:
            self._final = decision
        return decision

    def _judge(self, c: dict[str, int], total: int) -> SplitDecision:
        w, live = self.weights, self.live
        threshold = math.log(1.0 / self.alpha)

        def decide(
            state: State, lbf: float, intervals: dict[str, Any], reason: str
        ) -> SplitDecision:
            counts = {v: c.get(v, 0) for v in sorted({*w, *c})}
            return SplitDecision(
                state, total, counts, dict(w), lbf, threshold, intervals, self.precision, reason
            )

        stray = {v: n for v, n in sorted(c.items()) if n > 0 and w.get(v, 0) == 0}
        if stray:
            what = ", ".join(
                f"{v} ({'weight 0' if v in w else 'not configured'}) answered {n}"
                for v, n in stray.items()
            )
            return decide("mismatch", math.inf, {}, f"split mismatch: {what} of {total} requests")

        # live versions only: the stray ones are 0 here
        x = [c.get(v, 0) for v in live]
        theta0 = [w[v] / 100.0 for v in live]
        lbf = mixture_log_bayes_factor(x, theta0, self.concentration) if len(live) > 1 else 0.0
        beta = self.beta if len(live) <= 2 else self.beta / len(live)
        intervals: dict[str, tuple[float, float]] = {}
        for v, xi, t in zip(live, x, theta0, strict=True):
            if len(live) == 1:
                intervals[v] = (1.0, 1.0) if total else (0.0, 1.0)
            else:
                intervals[v] = share_confidence_sequence(xi, total, t, beta, self.concentration)
        shares = " / ".join(f"{100 * c.get(v, 0) / total:.1f}% {v}" for v in live) if total else ""
        configured = " / ".join(f"{w[v]}%" for v in live)
        if lbf >= threshold:
            return decide(
                "mismatch",
                lbf,
                intervals,
                f"split mismatch: observed {shares} for configured {configured} after {total} "
                f"requests (Bayes factor {math.exp(min(lbf, 700)):.3g} "
                f"\N{GREATER-THAN OR EQUAL TO} 1/\N{GREEK SMALL LETTER ALPHA}={1 / self.alpha:g})",
            )
        if len(live) == 1:
            need = plan_sample_size(100, self.precision, 1.0 - self.beta)
            if total >= need:
                return decide(
                    "fits", lbf, intervals, f"split fits: all {total} requests went to {live[0]}"
                )
            return decide("continue", lbf, intervals, f"{total} of {need} requests, none stray")
        fits = all(
            lo >= t - self.precision and hi <= t + self.precision
            for (lo, hi), t in zip(intervals.values(), theta0, strict=True)
        )
        if fits:
            return decide(
                "fits",
                lbf,
                intervals,
                f"split fits: observed {shares} for configured {configured} "
                f"(\N{PLUS-MINUS SIGN}{100 * self.precision:g} points) after {total} requests",
            )
        return decide(
            "continue",
            lbf,
            intervals,
            f"undecided after {total} requests: observed {shares} for configured {configured}",
        )


def _fraction(value: Any, obj: str, field: str, upper: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise ConfigError(obj, field, f"must be between 0 and 1, got {value!r}")
    if value > upper:
        raise ConfigError(obj, field, f"must be at most {upper:g}, got {value!r}")
    return float(value)


def _count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError("split", field, f"must be a non-negative integer, got {value!r}")
    return value
