"""Pure parts of a rollout: revision choice for rollback, stats deltas, the stage log."""

from __future__ import annotations

import json
from pathlib import Path

from workbook import rollout
from workbook.cluster import Release
from workbook.settings import Settings


def rel(revision: int, weight: int, status: str = "superseded") -> Release:
    return Release(revision, status, "", {"canary": {"weight": weight}})


def test_rollback_target_is_the_last_revision_without_canary_traffic() -> None:
    history = [rel(1, 0), rel(2, 10), rel(3, 50, "failed"), rel(4, 0), rel(5, 50, "deployed")]
    assert rollout.last_zero_weight_revision(history, 5) == 4
    assert rollout.last_zero_weight_revision(history[:3], 3) == 1
    assert rollout.last_zero_weight_revision([rel(1, 10, "deployed")], 1) is None


def test_stats_delta_subtracts_cumulative_counters() -> None:
    before = {"c": {"upstream_rq_total": 10, "upstream_rq_5xx": 1}}
    after = {"c": {"upstream_rq_total": 25, "upstream_rq_5xx": 1}, "d": {"upstream_rq_total": 3}}
    assert rollout.stats_delta(before, after) == {
        "c": {"upstream_rq_total": 15, "upstream_rq_5xx": 0},
        "d": {"upstream_rq_total": 3},
    }


def test_stages_so_far_merges_the_log_with_stages_recorded_by_sibling_runs(tmp_path: Path) -> None:
    """On pipeline agents the state dir is new each stage; earlier stages come as artifacts."""
    settings = Settings(state_dir=tmp_path / "state")
    for name, weight, started in (("Shift_10", 10, 100.0), ("Shift_50", 50, 200.0)):
        (tmp_path / "run" / name).mkdir(parents=True)
        stage = {"canary_weight": weight, "started": started}
        (tmp_path / "run" / name / "records.json").write_text(json.dumps({"stage": stage}))
    (tmp_path / "run" / "Shift_100").mkdir()
    rollout.reset_stages(settings)
    current = rollout.StageResult(100, 5, {}, {}, {}, True, "", started=300.0)
    stages = rollout.append_stage(settings, current, tmp_path / "run" / "Shift_100")
    assert [s["canary_weight"] for s in stages] == [10, 50, 100]
    # the same stage found twice (log and records) counts once
    (tmp_path / "run" / "Shift_100" / "records.json").write_text(
        json.dumps({"stage": current.to_dict()})
    )
    assert len(rollout.stages_so_far(settings, tmp_path / "run" / "Shift_100")) == 3
