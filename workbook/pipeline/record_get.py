"""Print one recorded value from a run directory's ``records.json`` (for pipeline steps).

``python -m workbook.pipeline.record_get KEY [KEY ...] [--dir DIR]`` prints the first key that
is recorded (``a.b`` reads into objects); strings as they are, anything else as JSON. Exit 1,
naming the keys that exist, when none is there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from workbook import record

_MISSING = object()


def get(records: dict[str, Any], key: str) -> Any:
    """The value at a dotted ``key``, or ``_MISSING``."""
    value: Any = records
    for part in key.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def render(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workbook.pipeline.record_get", description=__doc__)
    p.add_argument("keys", nargs="+", metavar="KEY", help="first one recorded wins")
    p.add_argument("--dir", default=None, help="run directory (default: WORKBOOK_RUN_DIR or .)")
    args = p.parse_args(argv)
    directory = Path(args.dir) if args.dir else record.run_dir()
    records = record.load(None, directory)
    for key in args.keys:
        value = get(records, key)
        if value is not _MISSING:
            print(render(value))
            return 0
    known = ", ".join(sorted(records)) or "none"
    print(
        f"error: {directory / record.RECORDS}: none of {', '.join(args.keys)} is recorded "
        f"(recorded: {known})",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
