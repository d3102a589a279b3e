"""Time from fault onset to rollback: a canary with a rehearsed fault, the whole flow on a fresh
local mesh (``workbook.rollout``), timed per step. The fault is live from the moment the canary
is deployed (the end of the deploy step); the rollback is done when its step returns, that is
when the gateway serves stable 100% again.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from workbook import flow, rollout
from workbook.local.target import LocalTarget
from workbook.settings import Settings

FAULTS = ("errors=0.05", "latency=50ms", "drift=0.3")
REQUESTS = 1000


def one(spec: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="workbook-bench-fault-") as tmp:
        settings = Settings(state_dir=Path(tmp), stages=(10, 50, 100), canary_fault=spec)
        target = LocalTarget(settings)
        ends: dict[str, float] = {}
        execute = rollout.DirectExecutor(target, requests=REQUESTS)
        try:
            result = flow.run(
                flow.plan(settings.stages),
                execute,
                on_step=lambda o: ends.__setitem__(o.step, time.monotonic()),
            )
        finally:
            target.down()
        failed = next((s.step for s in result.steps if not s.passed), "")
        return {
            "fault": spec,
            "outcome": result.outcome,
            "caught_at": failed,
            "seconds": ends.get(flow.ROLLBACK, float("nan")) - ends[flow.DEPLOY],
        }


def measure() -> list[dict[str, Any]]:
    return [one(spec) for spec in FAULTS]


def render(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Time from fault onset to rollback",
        "",
        f"The whole flow on a fresh local mesh, stages 10/50/100, {REQUESTS} requests per stage at "
        "most; the fault is live from the end of the deploy step, the rollback done when the "
        "gateway serves stable 100% again.",
        "",
        "| fault | outcome | caught at | onset to rollback |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['fault']}` | {r['outcome']} | {r['caught_at']} | {r['seconds']:.1f} s |"
        )
    return [*lines, ""]


if __name__ == "__main__":
    print("\n".join(render(measure())))
    sys.exit(0)
