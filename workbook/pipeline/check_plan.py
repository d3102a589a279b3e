"""``python -m workbook.pipeline.check_plan 10,50,100``: refuse a plan that is no rollout.

The pipeline's ``canaryWeights`` can be changed at queue time; a plan must increase and end at 100
before Promote makes the canary the stable version. Exit code 2 with the reason otherwise.
"""

from __future__ import annotations

import sys

from workbook.errors import ConfigError
from workbook.settings import validate_stage_plan, validate_weight


def check(text: str) -> tuple[int, ...]:
    """The plan from ``"10,50,100"``; ConfigError naming the entry that is wrong."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise ConfigError("canaryWeights", "", "is empty: give at least one weight, ending at 100")
    plan = validate_stage_plan(
        [validate_weight(x, "canaryWeights", f"[{i}]") for i, x in enumerate(items)]
    )
    if plan[-1] != 100:
        raise ConfigError(
            "canaryWeights", f"[{len(plan) - 1}]", f"must end at 100 before Promote, got {plan[-1]}"
        )
    return plan


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        plan = check(",".join(args))
    except ConfigError as e:
        print(f"##vso[task.logissue type=error]{e}")
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("stage plan:", " → ".join(f"{w}%" for w in plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
