"""One stage plan and one flow: azure-pipelines.yml runs the steps of ``workbook.flow`` for the
stage plan of the settings (``workbook.canary.DEFAULT_STAGES`` unless ``WORKBOOK_STAGES`` says)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from workbook import flow
from workbook.canary import DEFAULT_STAGES as STAGE_PLAN
from workbook.pipeline import check_plan, compile_pipeline, stage_order
from workbook.pipeline.template import load_yaml

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "azure-pipelines.yml"


def test_canary_weights_default_is_the_stage_plan() -> None:
    params = {p["name"]: p for p in load_yaml(PIPELINE)["parameters"]}
    weights = params["canaryWeights"]
    assert weights["type"] == "object"
    assert [int(w) for w in weights["default"]] == list(STAGE_PLAN)


@pytest.mark.parametrize("target", ["local", "k8s"])
def test_expanded_plan_has_one_shift_stage_per_weight_in_order(target: str) -> None:
    compiled = compile_pipeline(PIPELINE, {"target": target}, repo_root=ROOT)
    names = [stage["stage"] for stage, _ in stage_order(compiled.stages)]
    shifts = [f"Shift_{w}" for w in STAGE_PLAN]
    assert names == ["Package", "DeployCanary", *shifts, "Promote", "Rollback"]
    for weight, name in zip(STAGE_PLAN, shifts, strict=True):
        (stage,) = [s for s in compiled.stages if s["stage"] == name]
        (job,) = stage["jobs"]
        assert "deployment" in job and job["environment"] == "canary-demo"
        steps = job["strategy"]["runOnce"]["deploy"]["steps"]
        scripts = " ".join(str(s.get("script", "")) for s in steps)
        assert "notebooks/04_shift_traffic.ipynb" in scripts
        assert re.search(rf"-p canary_weight {weight}\b", scripts)
        assert f"-p target {target}" in scripts


def test_each_shift_stage_follows_the_one_before() -> None:
    compiled = compile_pipeline(PIPELINE, {"target": "local"}, repo_root=ROOT)
    deps = {stage["stage"]: d for stage, d in stage_order(compiled.stages)}
    previous = "DeployCanary"
    for w in STAGE_PLAN:
        assert deps[f"Shift_{w}"] == [previous]
        previous = f"Shift_{w}"
    assert set(deps["Promote"]) >= {f"Shift_{w}" for w in STAGE_PLAN}
    rollback_deps = {"Package", "DeployCanary", "Promote", *(f"Shift_{w}" for w in STAGE_PLAN)}
    assert set(deps["Rollback"]) == rollback_deps


def test_a_shorter_plan_can_be_given_at_queue_time() -> None:
    compiled = compile_pipeline(PIPELINE, {"canaryWeights": "[25, 100]"}, repo_root=ROOT)
    names = [s["stage"] for s in compiled.stages]
    assert [n for n in names if n.startswith("Shift_")] == ["Shift_25", "Shift_100"]


@pytest.mark.parametrize(
    ("plan", "needle"),
    [
        ("50,10", "must be greater than 50"),
        ("0,50", "must be 1..100"),
        ("10,101", "must be 0..100"),
        ("10,x", "'x'"),
        ("", "empty"),
    ],
)
def test_check_plan_refuses_a_plan_that_is_no_rollout(plan: str, needle: str, capsys) -> None:
    assert check_plan.main([plan] if plan else []) == 2
    assert needle in capsys.readouterr().err


def test_check_plan_accepts_the_stage_plan(capsys) -> None:
    assert check_plan.main([",".join(map(str, STAGE_PLAN))]) == 0
    assert "10% → 50% → 100%" in capsys.readouterr().out


def test_a_plan_need_not_end_at_100(capsys) -> None:
    # promote follows the last stage, as Flagger promotes once the canary reaches maxWeight
    assert check_plan.main(["20,60"]) == 0
    assert "20% → 60%" in capsys.readouterr().out


def _stage_notebooks(stage: dict) -> list[str]:
    (job,) = stage["jobs"]
    steps = job["strategy"]["runOnce"]["deploy"]["steps"] if "strategy" in job else job["steps"]
    scripts = " ".join(str(s.get("script", "")) for s in steps)
    return re.findall(r"notebooks/(\w+)\.ipynb", scripts)


def test_pipeline_stages_run_the_steps_of_the_one_flow() -> None:
    """Each stage runs the notebooks of its flow step(s), in the flow's order."""
    compiled = compile_pipeline(PIPELINE, {"target": "local"}, repo_root=ROOT)
    by_name = {s["stage"]: s for s in compiled.stages}
    expected = {
        "Package": [flow.PACKAGE],
        "DeployCanary": [flow.DEPLOY, flow.SMOKE],
        **{f"Shift_{w}": [flow.shift_step(w)] for w in STAGE_PLAN},
        "Promote": [flow.PROMOTE],
        "Rollback": [flow.ROLLBACK],
    }
    plan = [step for name in expected if name != "Rollback" for step in expected[name]]
    assert plan == flow.plan(STAGE_PLAN)
    for name, flow_steps in expected.items():
        notebooks = [n for step in flow_steps for n in flow.notebooks_of(step)]
        assert _stage_notebooks(by_name[name]) == notebooks, name


def test_every_notebook_parameter_the_pipeline_passes_exists() -> None:
    """A ``-p name`` the notebook does not declare would be injected and silently ignored."""
    import papermill as pm

    compiled = compile_pipeline(PIPELINE, {"target": "k8s"}, repo_root=ROOT)
    scripts = []
    for stage in compiled.stages:
        for job in stage["jobs"]:
            steps = (
                job["strategy"]["runOnce"]["deploy"]["steps"] if "strategy" in job else job["steps"]
            )
            scripts += [str(s["script"]) for s in steps if "papermill" in str(s.get("script", ""))]
    assert scripts
    for script in scripts:
        (notebook,) = re.findall(r"notebooks/(\w+)\.ipynb", script)[:1]
        declared = pm.inspect_notebook(str(ROOT / "notebooks" / f"{notebook}.ipynb"))
        for name in re.findall(r"-p (\w+) ", script):
            assert name in declared, f"{notebook} has no parameter {name}"
