"""Requests a stage needs to settle its split: the fixed-size test against the sequential one.

Pure simulation (no processes): multinomial batches of 50 at the true shares, the sequential
check (``workbook.sequential.SplitMonitor``) looking after each batch, against the fixed size
a chi-square test needs for the same error rates (``plan_sample_size(w, precision,
1 - alpha, power=1 - beta)``). Seeded, so the figures repeat run to run.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from workbook.sequential import (
    DEFAULT_BETA,
    DEFAULT_PRECISION,
    SplitMonitor,
    plan_sample_size,
)
from workbook.settings import SPLIT_ALPHA

BATCH = 50
MAX_N = 50_000


def stop_sizes(
    weight: int, true_share: float, runs: int, seed: int
) -> tuple[list[int], dict[str, int]]:
    """Requests at which the monitor decided, per run, and how often it said what."""
    rng = np.random.default_rng(seed)
    weights = {"stable": 100 - weight, "canary": weight}
    sizes, states = [], {"fits": 0, "mismatch": 0, "continue": 0}
    for _ in range(runs):
        monitor = SplitMonitor(weights, alpha=SPLIT_ALPHA, beta=DEFAULT_BETA)
        counts = {"stable": 0, "canary": 0}
        n, state = 0, "continue"
        while n < MAX_N and state == "continue":
            canary = int(rng.binomial(BATCH, true_share))
            counts["canary"] += canary
            counts["stable"] += BATCH - canary
            n += BATCH
            state = monitor.update(counts).state
        sizes.append(n)
        states[state] += 1
    return sizes, states


def measure(runs: int = 200, seed: int = 2026) -> dict[str, Any]:
    out: dict[str, Any] = {
        "runs": runs,
        "alpha": SPLIT_ALPHA,
        "beta": DEFAULT_BETA,
        "precision": DEFAULT_PRECISION,
    }
    for weight in (10, 50):
        fixed = plan_sample_size(weight, DEFAULT_PRECISION, 1 - SPLIT_ALPHA, 1 - DEFAULT_BETA)
        right, right_states = stop_sizes(weight, weight / 100, runs, seed + weight)
        off, off_states = stop_sizes(weight, weight / 100 + 0.05, runs, seed + weight + 1)
        out[f"w{weight}"] = {
            "fixed": fixed,
            "fits_mean": float(np.mean(right)),
            "fits_p90": float(np.percentile(right, 90)),
            "fits_states": right_states,
            "off_mean": float(np.mean(off)),
            "off_p90": float(np.percentile(off, 90)),
            "off_states": off_states,
            "mean_ratio": float(np.mean(right + off) / fixed),
        }
    return out


def render(res: dict[str, Any]) -> list[str]:
    lines = [
        "## Split check: fixed size against sequential",
        "",
        f"{res['runs']} simulated stages per row (no processes), batches of {BATCH}; both tests "
        f"at alpha {res['alpha']:g} (false alarm) and beta {res['beta']:g} (a split "
        f"±{100 * res['precision']:g} points off called fitting). Fixed: the chi-square size with "
        "that power. Sequential: where the mixture SPRT / confidence sequences decided.",
        "",
        "| canary weight | fixed size | sequential, split right: mean (p90) | decided fits | "
        "sequential, 5 points off: mean (p90) | decided mismatch | mean / fixed |",
        "|---|---|---|---|---|---|---|",
    ]
    for weight in (10, 50):
        x = res[f"w{weight}"]
        lines.append(
            f"| {weight}% | {x['fixed']} | {x['fits_mean']:.0f} ({x['fits_p90']:.0f}) | "
            f"{x['fits_states']['fits']}/{res['runs']} | "
            f"{x['off_mean']:.0f} ({x['off_p90']:.0f}) | "
            f"{x['off_states']['mismatch']}/{res['runs']} | {x['mean_ratio']:.0%} |"
        )
    lines.append("")
    return lines


if __name__ == "__main__":
    print("\n".join(render(measure())))
    sys.exit(0)
