"""The markdown a pipeline stage uploads with ``##vso[task.uploadsummary]``.

``python -m workbook.pipeline.summary RUN_DIR [-o FILE] [--title TEXT]`` reads the records that
the notebooks left in ``RUN_DIR`` (``records.json`` in it or in its stage folders) and writes: a
table of the configured vs observed split of every canary stage, the other recorded values,
links to the executed notebooks and figures, and Kiali links. Links are relative to ``RUN_DIR``.
Each stage publishes its folder as the artifact ``<stage>.<attempt>``, and a later stage finds the
earlier ones downloaded as folders of that name: rows are labelled by stage, with the attempt
when it is not the first.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workbook.record import RECORDS

FIGURES = (".png", ".svg", ".jpg", ".jpeg", ".gif", ".html")
MAX_VALUE_CHARS = 160


def stage_dirs(run_dir: Path) -> list[Path]:
    """``run_dir`` itself and its sub-folders that hold records or notebooks, oldest first."""
    candidates = (
        [run_dir, *(p for p in run_dir.iterdir() if p.is_dir())] if run_dir.is_dir() else []
    )
    found = [d for d in candidates if (d / RECORDS).is_file() or any(d.glob("*.ipynb"))]

    def when(d: Path) -> float:
        marker = d / RECORDS
        return marker.stat().st_mtime if marker.exists() else d.stat().st_mtime

    return sorted(found, key=lambda d: (when(d), d.name))


def stage_label(folder: str) -> str:
    """``Shift_10.1`` → ``Shift_10``; ``Shift_10.2`` → ``Shift_10 (attempt 2)``."""
    m = re.fullmatch(r"(.+)\.(\d+)", folder)
    if not m:
        return folder
    return m.group(1) if m.group(2) == "1" else f"{m.group(1)} (attempt {m.group(2)})"


def _records(directory: Path) -> dict[str, Any]:
    try:
        data = json.loads((directory / RECORDS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_stage(value: Any) -> bool:
    return isinstance(value, dict) and "canary_weight" in value and "split" in value


def stage_results(records: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Recorded canary stages: values with ``canary_weight`` and ``split`` (alone or in lists)."""
    for key, value in records.items():
        if _is_stage(value):
            yield key, value
        elif isinstance(value, list):
            for item in value:
                if _is_stage(item):
                    yield key, item


def _pct(mapping: dict[str, Any], scale: float) -> str:
    return " · ".join(f"{v} {scale * float(x):.1f}%" for v, x in sorted(mapping.items()))


def split_row(stage: str, result: dict[str, Any]) -> str:
    """One table row: configured and observed shares, requests, errors, p-value, verdict."""
    split = result.get("split") or {}
    probe = result.get("probe") or {}
    weights = split.get("weights") or result.get("weights") or {}
    shares = split.get("shares") or {}
    total = split.get("total", probe.get("total", ""))
    p_value = split.get("p_value")
    p_text = f"{float(p_value):.3g}" if isinstance(p_value, int | float) else "-"
    verdict = "✅ fits" if result.get("passed") else "❌ does not fit"
    return (
        f"| {stage} | {result.get('canary_weight')}% | {_pct(weights, 1) or '-'} | "
        f"{_pct(shares, 100) or '-'} | {total} | {probe.get('errors', '-')} | {p_text} | "
        f"{verdict} |"
    )


def _kiali_urls(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(label, url) for Kiali links found in a record: a KialiLinks dict, a URL, or nested."""
    if isinstance(value, str):
        if value.startswith("http") and ("kiali" in key.lower() or "/kiali/" in value):
            yield key or "Kiali", value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _kiali_urls(v, f"{key} {k}".strip() if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _kiali_urls(v, f"{key} {i}".strip())


def notebook_status(path: Path) -> str:
    """``ok``, or the error papermill recorded in an executed notebook (``failed: Name: value``)."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unreadable"
    if not (nb.get("metadata", {}).get("papermill", {}) or {}).get("exception"):
        return "ok"
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"failed: {out.get('ename', '')}: {_short(out.get('evalue', ''))}"
    return "failed"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def render(run_dir: Path, title: str | None = None) -> str:
    """The whole summary for the stages found under ``run_dir``."""
    dirs = stage_dirs(run_dir)
    lines = [f"## {title or 'Canary workbook'}", ""]
    if not dirs:
        return "\n".join([*lines, f"No notebook records under `{run_dir.name}` yet.", ""])
    rows = [split_row(stage_label(d.name), r) for d in dirs for _, r in stage_results(_records(d))]
    if rows:
        lines += [
            "### Traffic split per stage",
            "",
            "| stage | canary weight | configured | observed | requests | errors | p-value | "
            "verdict |",
            "|---|---:|---|---|---:|---:|---:|---|",
            *rows,
            "",
        ]
    kiali: dict[str, str] = {}
    details: list[str] = []
    for d in dirs:
        records = _records(d)
        stage_keys = {k for k, _ in stage_results(records)}
        for key, value in records.items():
            for label, url in _kiali_urls(value, key):
                kiali.setdefault(url, f"{stage_label(d.name)} · {label}")
            if key not in stage_keys and "kiali" not in key.lower():
                details.append(f"- {stage_label(d.name)} · `{key}`: {_short(value)}")
    if details:
        lines += ["### Recorded values", "", *details, ""]
    files = []
    for d in dirs:
        prefix = "" if d == run_dir else f"{d.name}/"
        for f in sorted(d.rglob("*")):
            if f.suffix.lower() in (*FIGURES, ".ipynb") and f.is_file():
                rel = f"{prefix}{f.relative_to(d).as_posix()}"
                if f.suffix == ".ipynb":
                    state = notebook_status(f)
                    mark = "✅" if state == "ok" else f"❌ {state}"
                    files.append(f"- notebook: [{rel}]({rel}) {mark}")
                else:
                    files.append(f"- figure: [{rel}]({rel})")
    if files:
        lines += ["### Notebooks and figures", "", *files, ""]
    if kiali:
        lines += ["### Kiali", "", *(f"- [{label}]({url})" for url, label in kiali.items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workbook.pipeline.summary", description=__doc__)
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("-o", "--output", default=None, help="write here (default: stdout)")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    text = render(Path(args.run_dir), args.title)
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
