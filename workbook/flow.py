"""The canary flow, declared once:

    Package → DeployCanary (0%) → Smoke (header pins) → Shift(w) for w in the stage plan → Promote

with Rollback (stable 100%, canary 0%) after any failure past Package. ``workbook rollout`` and
``workbook demo`` run the steps directly, ``workbook walkthrough`` runs each step's notebook, and
each stage of ``azure-pipelines.yml`` runs one step's notebook (``STEP_NOTEBOOKS``). A step fails
when its gate says so or when it raises a ``WorkbookError``; either way the flow rolls back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from workbook import canary
from workbook.errors import WorkbookError

PACKAGE, DEPLOY, SMOKE, PROMOTE, ROLLBACK = "package", "deploy", "smoke", "promote", "rollback"
SHIFT_PREFIX = "shift-"

#: Each step's notebook(s) and the parameters the step sets; the pipeline's stages run the same.
STEP_NOTEBOOKS: dict[str, tuple[str, ...]] = {
    PACKAGE: ("01_workspace_setup", "02_package_image"),
    DEPLOY: ("03_deploy_helm",),
    SMOKE: ("05_header_routing",),
    SHIFT_PREFIX: ("04_shift_traffic",),
    PROMOTE: ("06_promote_or_rollback",),
    ROLLBACK: ("06_promote_or_rollback",),
}


def shift_step(weight: int) -> str:
    return f"{SHIFT_PREFIX}{weight}"


def shift_weight(step: str) -> int | None:
    """``shift-10`` → 10; None for other steps."""
    if not step.startswith(SHIFT_PREFIX):
        return None
    return canary.validate_weight(step[len(SHIFT_PREFIX) :], "step", step)


def plan(stages: Sequence[int]) -> list[str]:
    """The steps of a rollout for a stage plan, in order (Rollback is not part of the plan)."""
    return [PACKAGE, DEPLOY, SMOKE, *(shift_step(w) for w in canary.stage_plan(stages)), PROMOTE]


def notebooks_of(step: str) -> tuple[str, ...]:
    """The notebooks that run ``step`` (``shift-10`` → 04)."""
    key = SHIFT_PREFIX if step.startswith(SHIFT_PREFIX) else step
    return STEP_NOTEBOOKS[key]


@dataclass
class StepOutcome:
    """What one step did: passed or not, why not, and what it recorded."""

    step: str
    passed: bool
    reasons: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class FlowResult:
    """The outcome of a rollout: ``promoted``, ``rolled_back`` or ``failed`` (nothing deployed)."""

    outcome: str
    steps: list[StepOutcome]

    @property
    def stages(self) -> list[dict[str, Any]]:
        """The shift stages, as ``workbook rollout --json`` prints them."""
        out = []
        for s in self.steps:
            w = shift_weight(s.step)
            if w is not None:
                out.append(
                    {
                        "weight": w,
                        "verdict": "pass" if s.passed else "fail",
                        "reasons": s.reasons,
                        **s.data,
                    }
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "stages": self.stages,
            "steps": [asdict(s) for s in self.steps],
        }


#: Runs one step and says how it went; raising a WorkbookError counts as a failed step.
Executor = Callable[[str], StepOutcome]


def _attempt(execute: Executor, step: str) -> StepOutcome:
    try:
        return execute(step)
    except WorkbookError as e:
        return StepOutcome(step, False, [str(e)])


def run(
    steps: Sequence[str],
    execute: Executor,
    *,
    on_step: Callable[[StepOutcome], None] | None = None,
) -> FlowResult:
    """Run ``steps`` in order; after the first failure past Package, roll back and stop.

    A bug (an exception that is not a ``WorkbookError``) still triggers the rollback, then
    propagates: a rollout never stops half-way with the canary serving traffic.
    """
    done: list[StepOutcome] = []

    def note(outcome: StepOutcome) -> StepOutcome:
        done.append(outcome)
        if on_step is not None:
            on_step(outcome)
        return outcome

    for step in steps:
        try:
            outcome = note(_attempt(execute, step))
        except BaseException:
            if step != PACKAGE:
                note(_attempt(execute, ROLLBACK))
            raise
        if outcome.passed:
            continue
        if step == PACKAGE:
            return FlowResult("failed", done)
        rollback = note(_attempt(execute, ROLLBACK))
        if not rollback.passed:
            return FlowResult("failed", done)
        return FlowResult("rolled_back", done)
    return FlowResult("promoted", done)
