"""``python -m workbook.pipeline.check_plan 10,50,100``: refuse a plan that is no rollout.

The pipeline's ``canaryWeights`` can be changed at queue time; the plan must follow the canary
core's rule (``workbook.canary.stage_plan``): weights 1..100, strictly increasing. Exit code 2
with the reason otherwise.
"""

from __future__ import annotations

import sys

from workbook.canary import parse_stages
from workbook.errors import ConfigError


def check(text: str) -> tuple[int, ...]:
    """The plan from ``"10,50,100"``: the canary core's rule, ConfigError naming the bad entry."""
    return parse_stages(text, "canaryWeights")


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
