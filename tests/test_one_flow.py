"""One flow everywhere: ``workbook demo``, ``workbook walkthrough`` (notebooks) and the local
pipeline run the same steps for the same stage plan and end in the same state.

Each path runs as a user runs it (the command line, in a subprocess) with its own state dir.
The stage plan comes from ``WORKBOOK_STAGES`` and the rehearsal fault from
``WORKBOOK_CANARY_FAULT``, so the three paths read them the way a user's shell gives them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from workbook import notebooks

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 200  # the smoke test pins this many requests to the canary

pytestmark = [
    pytest.mark.integration,
    pytest.mark.notebooks,
    pytest.mark.skipif(
        not all((ROOT / "notebooks" / f"{n}.ipynb").exists() for n in notebooks.NOTEBOOKS),
        reason="the notebooks are not in this checkout",
    ),
]

PATHS = {
    "demo": ["demo", "-n", str(REQUESTS), "--keep", "--json"],
    "walkthrough": ["walkthrough", "-n", str(REQUESTS), "--keep"],
    "pipeline": [
        *("pipeline", "run", "--target", "local", "--run-id", "pytest-one-flow"),
        *("-p", f"requests={REQUESTS}"),
    ],
}


def workbook(
    state: Path, *args: str, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workbook.cli", "--state-dir", str(state), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def end_state(state: Path, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    st = workbook(state, "status", "--json", env=env, cwd=cwd)
    assert st.returncode == 0, st.stderr
    hist = workbook(state, "history", "--json", env=env, cwd=cwd)
    assert hist.returncode == 0, hist.stderr
    versions = json.loads(st.stdout)["versions"]
    return {
        "served": {v["track"]: (v["version"], v["weight"]) for v in versions},
        "history": [re.sub(r"\d+$", "N", h["description"]) for h in json.loads(hist.stdout)],
    }


def pipeline_stages(run: Path) -> dict[str, str]:
    """Stage → result of a local pipeline run; every stage that ran published its notebooks
    and wrote its summary."""
    saved = json.loads((run / "pipeline.json").read_text())
    last = [s["name"] for s in saved["stages"] if s["result"] != "skipped"][-1]
    summary = (run / last / "summary.md").read_text()
    for stage in (s for s in saved["stages"] if s["name"].startswith("Shift_")):
        if stage["result"] != "skipped":
            weight = stage["name"].removeprefix("Shift_")
            assert f"| {stage['name']} | {weight}% |" in summary, summary
    results = {s["name"]: s["result"] for s in saved["stages"]}
    for name, result in results.items():
        if result == "skipped":
            continue
        assert list((run / name / "artifacts").glob("*/*.ipynb")), f"{name}: no notebook"
        assert (run / name / "summary.md").is_file(), f"{name}: no summary"
    return results


def run_all(
    tmp_path: Path, fault: str, *, stages: str = "20,60", app: str = "dummy", paths: Any = None
) -> dict[str, dict[str, Any]]:
    env = {
        **os.environ,
        "WORKBOOK_STAGES": stages,
        "WORKBOOK_CANARY_FAULT": fault,
        "WORKBOOK_SCORING_APP": app,
    }
    env.pop("WORKBOOK_STATE_DIR", None)
    out: dict[str, dict[str, Any]] = {}
    for name, argv in (paths or PATHS).items():
        state = tmp_path / name / "state"
        cwd = ROOT if name == "pipeline" else tmp_path / name
        cwd.mkdir(parents=True, exist_ok=True)
        env_path = {**env, "WORKBOOK_STATE_DIR": str(state)}
        try:
            proc = workbook(state, *argv, env=env_path, cwd=cwd)
            out[name] = {
                "code": proc.returncode,
                "json": proc.stdout,
                "stdout": proc.stdout[-3000:] + proc.stderr[-2000:],
                **end_state(state, env_path, cwd),
            }
            if name == "pipeline":
                out[name]["stages"] = pipeline_stages(ROOT / "runs" / "pytest-one-flow")
        finally:
            workbook(state, "down", env=env_path, cwd=cwd)
            shutil.rmtree(ROOT / "runs" / "pytest-one-flow", ignore_errors=True)
    return out


def test_a_healthy_canary_is_promoted_the_same_way_by_every_path(tmp_path: Path) -> None:
    runs = run_all(tmp_path, fault="")
    for name, r in runs.items():
        assert r["code"] == 0, f"{name}: {r['stdout']}"
        assert r["served"] == {"stable": ("v2", 100)}, name
    outcome = json.loads(runs["demo"]["json"])  # the rollout's JSON contract
    assert outcome["outcome"] == "promoted"
    assert [(s["weight"], s["verdict"]) for s in outcome["stages"]] == [(20, "pass"), (60, "pass")]
    shapes = {name: r["history"] for name, r in runs.items()}
    assert shapes["demo"] == [
        "deploy canary v2 at 0%",
        "shift canary to 20%",
        "shift canary to 60%",
        "promote v2: stable runs the canary's image",
        "promote v2: stable takes all traffic",
        "promote v2: canary retired",
    ]
    assert shapes["walkthrough"] == shapes["demo"] == shapes["pipeline"]
    assert runs["pipeline"]["stages"] == {
        **dict.fromkeys(
            ["Package", "DeployCanary", "Shift_20", "Shift_60", "Promote"], "succeeded"
        ),
        "Rollback": "skipped",
    }


def test_a_failing_canary_is_rolled_back_the_same_way_by_every_path(tmp_path: Path) -> None:
    # the smoke test's pinned requests pass; then half of the canary's answers fail
    runs = run_all(tmp_path, fault=f"errors=0.5,errors-after={REQUESTS}")
    for name, r in runs.items():
        assert r["code"] == 1, f"{name}: {r['stdout']}"
        assert r["served"] == {"stable": ("v1", 100), "canary": ("v2", 0)}, name
    shapes = {name: r["history"] for name, r in runs.items()}
    assert shapes["demo"] == [
        "deploy canary v2 at 0%",
        "shift canary to 20%",
        "rollback to N",
    ]
    outcome = json.loads(runs["demo"]["json"])
    assert outcome["outcome"] == "rolled_back"
    (stage,) = outcome["stages"]
    assert stage["weight"] == 20 and stage["verdict"] == "fail"
    errors = ("canary fails more than stable", "canary error rate")
    assert any(r.startswith(errors) for r in stage["reasons"]), stage["reasons"]
    assert runs["pipeline"]["stages"] == {
        "Package": "succeeded",
        "DeployCanary": "succeeded",
        "Shift_20": "failed",
        "Shift_60": "skipped",
        "Promote": "skipped",
        "Rollback": "succeeded",
    }
    assert shapes["walkthrough"] == shapes["demo"] == shapes["pipeline"]


def test_the_real_model_is_promoted_by_the_rollout_and_by_the_pipeline(tmp_path: Path) -> None:
    """The safe-driver app (two LightGBM versions) through the whole flow: v2 becomes stable."""
    paths = {name: PATHS[name] for name in ("demo", "pipeline")}
    runs = run_all(tmp_path, fault="", stages="50", app="safe-driver", paths=paths)
    for name, r in runs.items():
        assert r["code"] == 0, f"{name}: {r['stdout']}"
        assert r["served"] == {"stable": ("v2", 100)}, name
    outcome = json.loads(runs["demo"]["json"])
    (stage,) = outcome["stages"]
    assert stage["verdict"] == "pass" and stage["checks"]["predictions"]["passed"]
    assert set(stage["predictions"]) == {"stable", "canary"}  # both versions scored the inputs
    assert runs["pipeline"]["history"] == runs["demo"]["history"]


def test_make_demo_and_demo_cli_run_these_paths() -> None:
    """The README's first commands: ``make demo`` is the walkthrough, ``make demo-cli`` the demo."""
    targets: dict[str, list[str]] = {}
    current = ""
    for line in (ROOT / "Makefile").read_text().splitlines():
        if re.match(r"^[\w-]+:", line):
            current = line.split(":")[0]
        elif line.startswith("\t") and current:
            targets.setdefault(current, []).append(line.strip())
    assert targets["demo"] == ["$(BIN)/workbook walkthrough --app $(APP)"]
    assert targets["demo-cli"] == ["$(BIN)/workbook demo --app $(APP)"]
