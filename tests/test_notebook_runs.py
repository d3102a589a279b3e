"""What a notebook needs around it, without a kernel: run folders per rollout, one-line errors,
recorded values, the release history, tidy outputs, the run command's bad-input exit."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_target import FakeTarget

from workbook import cli, notebooks, operations, record, steps
from workbook.errors import ConfigError, MeshError, NotRunningError, StageFailed


def _folders(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.glob("*/*"))


def test_a_rollout_begins_at_deploy_and_the_stages_join_it(tmp_path: Path) -> None:
    def run(stem: str) -> Path:
        folder = notebooks.run_folder(stem, tmp_path)
        folder.mkdir()
        return folder

    first = [run(s) for s in ("01_workspace_setup", "02_package_image", "03_deploy_helm")]
    ten, twenty_five = run("04_shift_traffic"), run("04_shift_traffic")
    assert len({f.parent for f in [*first, ten, twenty_five]}) == 1
    assert ten != twenty_five  # a stage run again does not overwrite the earlier one
    run("06_promote_or_rollback")
    again = run("03_deploy_helm")  # the next rollout: a new folder, now the current one
    assert again.parent != ten.parent
    assert run("04_shift_traffic").parent == again.parent
    assert (tmp_path / notebooks.CURRENT_ROLLOUT).read_text().strip() == again.parent.name
    # package notebooks join a rollout that has no deploy yet, and open a new one after it
    assert run("01_workspace_setup").parent != again.parent


def test_stages_so_far_see_this_rollout_only(tmp_path: Path) -> None:
    def stage(folder: Path, weight: int, started: float) -> None:
        folder.mkdir()
        (folder / record.RECORDS).write_text(
            f'{{"stage": {{"canary_weight": {weight}, "started": {started}}}}}'
        )

    notebooks.run_folder("03_deploy_helm", tmp_path).mkdir()
    stage(notebooks.run_folder("04_shift_traffic", tmp_path), 50, 1.0)
    notebooks.run_folder("03_deploy_helm", tmp_path).mkdir()  # a new rollout
    stage(notebooks.run_folder("04_shift_traffic", tmp_path), 10, 2.0)
    here = notebooks.run_folder("04_shift_traffic", tmp_path)
    stage(here, 25, 3.0)
    assert [s["canary_weight"] for s in steps.stages_so_far(here)] == [10, 25]


@pytest.mark.parametrize(
    ("error", "notebook", "expected"),
    [
        (
            ConfigError("shift", "release", "nothing is deployed yet: run `workbook up` first"),
            "04_shift_traffic",
            "ConfigError: shift: release nothing is deployed yet. "
            "Run notebook 03_deploy_helm first.",
        ),
        (
            MeshError("nothing is deployed for canary-demo/scoring; run `workbook up`"),
            "06_promote_or_rollback",
            "MeshError: nothing is deployed for canary-demo/scoring. "
            "Run notebook 03_deploy_helm first.",
        ),
        (
            NotRunningError("no local mesh runs for /x"),
            "05_header_routing",
            "NotRunningError: no local mesh runs for /x. Run notebook 03_deploy_helm first.",
        ),
        (
            StageFailed("stage canary 30% failed: errors: 9 of 300 requests failed"),
            "04_shift_traffic",
            "StageFailed: stage canary 30% failed: errors: 9 of 300 requests failed",
        ),
        (
            ConfigError("canary", "enabled", "is false: there is no canary to promote"),
            "06_promote_or_rollback",
            "ConfigError: canary: enabled is false: there is no canary to promote",
        ),
    ],
)
def test_one_line_says_which_notebook_to_run_first(
    error: Exception, notebook: str, expected: str
) -> None:
    assert notebooks.one_line(error, notebook) == expected
    assert "\n" not in expected


def test_recorded_value_is_one_short_line_and_reads_back(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBOOK_RUN_DIR", str(tmp_path))
    value = {"ref": "acr.io/scoring:v2", "digest": "sha256:" + "ab" * 32, "model": "m:v2"}
    assert record.record("image", value) is None  # nothing for a cell to print a second time
    assert record.load("image", tmp_path) == value
    line = record.summary("image", value)
    assert line.startswith("recorded image: ref=acr.io/scoring:v2, digest=sha256:abab")
    assert len(line) <= record.SHOWN_CHARS and "\n" not in line
    assert record.summary("stage", {"line": "canary 10% | ... → passed", "x": 1}).endswith(
        "canary 10% | ... → passed"
    )
    output = {
        "output_type": "display_data",
        "data": {"text/plain": line},
        "metadata": {record.METADATA_KEY: "image", record.VALUE_KEY: value},
    }
    nb = {"cells": [{"cell_type": "code", "outputs": [output]}]}
    assert record.from_notebook(nb) == {"image": value}


def test_history_table_and_found_state_after_a_promote() -> None:
    target = FakeTarget()
    spec = steps.canary_spec(target.settings)
    operations.deploy(target, spec, 0)
    operations.shift(target, 10)
    operations.promote(target)
    table = notebooks.history_table(target)
    assert list(table.index) == [1, 2, 3, 4, 5]  # promote: three revisions
    assert list(table["canary weight"]) == [0, 10, 10, 0, 0]
    assert table.loc[5, "canary"] == "-" and table.loc[5, "status"] == "deployed"
    line = notebooks.found_state(operations.status(target))
    assert line == f"revision 5: stable {spec.version} 100%, no canary"


def test_streams_coalesce_and_a_cleared_progress_bar_leaves_nothing() -> None:
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": "shift canary to 10% ...\n"},
        {"output_type": "stream", "name": "stdout", "text": "revision 2: shift\n"},
        {"output_type": "stream", "name": "stderr", "text": "\rprobe:   0%| 0/10"},
        {"output_type": "stream", "name": "stderr", "text": "\rprobe: 100%| 10/10"},
        {"output_type": "stream", "name": "stderr", "text": "\r                  \r"},
        {"output_type": "display_data", "data": {"text/plain": "x"}, "metadata": {}},
        {"output_type": "stream", "name": "stderr", "text": "\rprobe:  50%| 5/10\rprobe: 100%|\n"},
    ]
    nb = {"cells": [{"cell_type": "code", "outputs": outputs}]}
    notebooks.coalesce_streams(nb)
    out = nb["cells"][0]["outputs"]
    assert [o["output_type"] for o in out] == ["stream", "display_data", "stream"]
    assert out[0]["text"] == "shift canary to 10% ...\nrevision 2: shift\n"
    assert out[2]["text"] == "probe: 100%|\n"


def test_run_refuses_an_unknown_parameter_with_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv(notebooks.RUNS_ENV, str(tmp_path / "runs"))
    code = cli.main(["run", "04_shift_traffic", "-p", "canry_weight=25"])
    assert code == 2
    err = capsys.readouterr().err
    assert "notebook 04_shift_traffic: canry_weight is not one of its parameters" in err
    assert not (tmp_path / "runs").exists()  # nothing made for a refused run
    assert cli.main(["run", "07_nope"]) == 2
