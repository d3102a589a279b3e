"""The local pipeline runner on small synthetic pipelines (bash steps only, no notebooks)."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from workbook.errors import ConfigError
from workbook.pipeline import (
    PipelineError,
    PipelineFailedError,
    PipelineResult,
    record_get,
    register_cli,
    run_pipeline,
    summary,
)
from workbook.pipeline.expressions import Evaluator
from workbook.pipeline.variables import env_name, parse_command


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


def run(
    tmp_path: Path, pipeline: str, *, parameters: dict[str, Any] | None = None, **files: str
) -> PipelineResult:
    write(tmp_path, {"azure-pipelines.yml": pipeline, **files})
    lines: list[str] = []
    result = run_pipeline(
        "azure-pipelines.yml",
        target="local",
        run_id="test",
        parameters=parameters,
        workdir=tmp_path,
        log=lines.append,
    )
    (tmp_path / "log.txt").write_text("\n".join(lines), encoding="utf-8")
    return result


def pipeline_json(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "runs" / "test" / "pipeline.json").read_text())


def trace(tmp_path: Path) -> list[str]:
    return (tmp_path / "trace.txt").read_text().split()


def test_stages_run_in_dependency_order(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        stages:
          - stage: Last
            dependsOn: [Middle, First]
            jobs:
              - job: J
                steps: [{script: echo Last >> trace.txt}]
          - stage: First
            dependsOn: []
            jobs:
              - job: J
                steps: [{script: echo First >> trace.txt}]
          - stage: Middle
            dependsOn: First
            jobs:
              - job: B
                dependsOn: A
                steps: [{script: echo Middle.B >> trace.txt}]
              - job: A
                steps: [{script: echo Middle.A >> trace.txt}]
          - stage: After
            jobs:
              - job: J
                steps: [{script: echo After >> trace.txt}]
        """,
    )
    assert trace(tmp_path) == ["First", "Middle.A", "Middle.B", "Last", "After"]
    assert list(result.results()) == ["First", "Middle", "Last", "After"]
    assert result.stage("After").depends_on == ["Middle"]  # implicit: the stage before it
    assert [s["name"] for s in pipeline_json(tmp_path)["stages"]] == list(result.results())


ROLLOUT = """
parameters:
  - name: failShift
    type: boolean
    default: false
stages:
  - stage: Deploy
    jobs:
      - job: J
        steps: [{script: echo Deploy >> trace.txt}]
  - stage: Shift
    jobs:
      - job: J
        steps:
          - script: |
              echo Shift >> trace.txt
              if [ "${{ parameters.failShift }}" = True ]; then exit 3; fi
  - stage: Promote
    jobs:
      - job: J
        steps: [{script: echo Promote >> trace.txt}]
  - stage: Rollback
    dependsOn: [Deploy, Shift, Promote]
    condition: failed()
    jobs:
      - job: J
        steps: [{script: echo Rollback >> trace.txt}]
"""


def test_rollback_runs_only_after_a_failure(tmp_path: Path) -> None:
    result = run(tmp_path, ROLLOUT)
    assert result.ok
    assert result.results() == {
        "Deploy": "succeeded",
        "Shift": "succeeded",
        "Promote": "succeeded",
        "Rollback": "skipped",
    }
    assert trace(tmp_path) == ["Deploy", "Shift", "Promote"]
    assert "condition failed() is false" in result.stage("Rollback").reason


def test_failed_stage_skips_succeeded_stages_and_runs_rollback(tmp_path: Path) -> None:
    result = run(tmp_path, ROLLOUT, parameters={"failShift": "true"})
    assert not result.ok and result.result == "failed"
    assert result.results() == {
        "Deploy": "succeeded",
        "Shift": "failed",
        "Promote": "skipped",
        "Rollback": "succeeded",
    }
    assert trace(tmp_path) == ["Deploy", "Shift", "Rollback"]
    assert "Shift failed" in result.stage("Promote").reason
    data = pipeline_json(tmp_path)
    assert data["result"] == "failed"
    assert data["stages"][1]["jobs"][0]["steps"][0]["exit_code"] == 3


def test_nonzero_step_fails_job_and_stage(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        steps:
          - script: echo one >> trace.txt; echo boom; exit 4
            displayName: Breaks
          - script: echo two >> trace.txt
          - script: echo cleanup >> trace.txt
            condition: always()
          - script: echo on-failure >> trace.txt
            condition: failed()
        """,
    )
    assert trace(tmp_path) == ["one", "cleanup", "on-failure"]
    stage = result.stages[0]
    assert stage.result == "failed"
    steps = stage.jobs[0].steps
    assert [s.result for s in steps] == ["failed", "skipped", "succeeded", "succeeded"]
    assert steps[0].exit_code == 4 and steps[0].reason == "exit code 4"
    assert steps[0].log and (tmp_path / steps[0].log).read_text() == "boom\n"
    log = (tmp_path / "log.txt").read_text()
    assert "✗ Breaks" in log and "| boom" in log  # the compact log shows the failing output


def test_continue_on_error_gives_succeeded_with_issues(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        steps:
          - script: exit 1
            continueOnError: true
          - script: echo still >> trace.txt
        """,
    )
    assert trace(tmp_path) == ["still"]
    assert result.stages[0].result == "succeededWithIssues"
    assert result.ok


def test_output_variables_flow_between_jobs_and_stages(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        stages:
          - stage: Package
            jobs:
              - job: Build
                steps:
                  - script: echo "##vso[task.setvariable variable=imageRef;isOutput=true]reg/app:v2"
                    name: image
                  - script: echo "same-job $(image.imageRef)" >> trace.txt
                  - script: echo "##vso[task.setvariable variable=note]plain"
                  - script: echo "job-var $(note) $NOTE" >> trace.txt
              - deployment: Deploy
                environment: demo
                strategy:
                  runOnce:
                    deploy:
                      steps:
                        - script: echo "##vso[task.setvariable variable=rev;isOutput=true]7"
                          name: release
              - job: After
                dependsOn: Build
                variables:
                  fromJob: $[ dependencies.Build.outputs['image.imageRef'] ]
                steps:
                  - script: echo "sibling $(fromJob)" >> trace.txt
          - stage: Use
            dependsOn: Package
            condition: eq(dependencies.Package.outputs['Build.image.imageRef'], 'reg/app:v2')
            variables:
              stageLevel: $[ stageDependencies.Package.Build.outputs['image.imageRef'] ]
            jobs:
              - job: J
                variables:
                  jobLevel: $[ stageDependencies.Package.Build.outputs['image.imageRef'] ]
                  rev: $[ stageDependencies.Package.Deploy.outputs['Deploy.release.rev'] ]
                steps:
                  - script: echo "stage $(stageLevel) job $(jobLevel) env $JOBLEVEL" >> trace.txt
                  - script: echo "deployment-output $(rev)" >> trace.txt
        """,
    )
    assert result.ok, result.results()
    lines = (tmp_path / "trace.txt").read_text().splitlines()
    assert lines == [
        "same-job reg/app:v2",
        "job-var plain plain",
        "sibling reg/app:v2",
        "stage reg/app:v2 job reg/app:v2 env reg/app:v2",
        "deployment-output 7",
    ]
    build = result.stage("Package").jobs[0]
    assert build.outputs == {"image.imageRef": "reg/app:v2"}


def test_template_parameters_and_each_are_expanded(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        parameters:
          - name: weights
            type: object
            default: [5, 25]
          - name: greeting
            type: string
            default: hello
        stages:
          - ${{ each w in parameters.weights }}:
              - template: templates/stage.yml
                parameters:
                  weight: ${{ w }}
                  greeting: ${{ parameters.greeting }}
          - stage: Final
            dependsOn:
              - ${{ each w in parameters.weights }}:
                  - Shift_${{ w }}
            jobs:
              - job: J
                steps:
                  - ${{ if eq(parameters.greeting, 'HELLO') }}:
                      - script: echo if-taken >> trace.txt
                  - ${{ else }}:
                      - script: echo else-taken >> trace.txt
        """,
        parameters={"weights": "[10, 50, 100]"},
        **{
            "templates/stage.yml": """
                parameters:
                  - name: weight
                    type: number
                  - name: greeting
                    type: string
                    default: hi
                stages:
                  - stage: Shift_${{ parameters.weight }}
                    jobs:
                      - job: J
                        steps:
                          - template: steps.yml
                            parameters:
                              message: ${{ parameters.greeting }}-${{ parameters.weight }}
                """,
            "templates/steps.yml": """
                parameters:
                  - name: message
                    type: string
                steps:
                  - script: echo ${{ parameters.message }} >> trace.txt
                """,
        },
    )
    assert list(result.results()) == ["Shift_10", "Shift_50", "Shift_100", "Final"]
    assert result.stage("Final").depends_on == ["Shift_10", "Shift_50", "Shift_100"]
    assert trace(tmp_path) == ["hello-10", "hello-50", "hello-100", "if-taken"]
    assert result.parameters["weights"] == ["10", "50", "100"]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"weight": "10", "colour": "red"}, "parameters.colour is not declared"),
        ({}, "parameters.weight has no default and was not given"),
        ({"weight": "ten"}, "parameters.weight must be a number, got 'ten'"),
    ],
)
def test_bad_template_parameters_name_the_parameter(
    tmp_path: Path, parameters: dict[str, str], message: str
) -> None:
    given = "\n".join(f"          {k}: {v}" for k, v in parameters.items()) or "          {}"
    with pytest.raises(ConfigError, match=message):
        run(
            tmp_path,
            "steps:\n  - template: t.yml\n    parameters:\n"
            + given.replace("          ", "      "),
            **{"t.yml": "parameters:\n  - name: weight\n    type: number\nsteps: []\n"},
        )


def test_artifacts_and_summary_are_copied(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        variables:
          out: $(Agent.TempDirectory)/out
        stages:
          - stage: Report
            jobs:
              - job: J
                steps:
                  - script: |
                      mkdir -p "$(out)/figs"
                      echo '{"x": 1}' > "$(out)/records.json"
                      echo png > "$(out)/figs/split.png"
                      printf '## Stage report\\n' > "$(out)/summary.md"
                      echo "##vso[task.uploadsummary]$(out)/summary.md"
                  - task: PublishPipelineArtifact@1
                    inputs:
                      targetPath: $(out)
                      artifact: $(System.StageName)
                  - publish: $(out)/records.json
                    artifact: records
          - stage: Again
            jobs:
              - job: J
                steps:
                  - task: PublishPipelineArtifact@1
                    inputs:
                      targetPath: $(Agent.TempDirectory)/out
                      artifact: Report
        """,
    )
    base = tmp_path / "runs" / "test" / "Report"
    assert (base / "artifacts" / "Report" / "figs" / "split.png").read_text() == "png\n"
    assert (base / "artifacts" / "records" / "records.json").is_file()
    assert (base / "summary.md").read_text() == "## Stage report\n"
    report = result.stage("Report")
    assert report.summary == "runs/test/Report/summary.md"
    assert report.artifacts == [
        "runs/test/Report/artifacts/Report",
        "runs/test/Report/artifacts/records",
    ]
    again = result.stage("Again")
    assert again.result == "failed"
    assert "already published" in again.jobs[0].steps[0].reason


def test_local_skips_and_python_on_path(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        steps:
          - checkout: self
          - task: AzureCLI@2
            inputs:
              azureSubscription: my-arm-connection
              scriptType: bash
              scriptLocation: inlineScript
              inlineScript: az account show
          - task: UsePythonVersion@0
            inputs:
              versionSpec: '3.11'
          - script: command -v python > trace.txt
        """,
    )
    steps = result.stages[0].jobs[0].steps
    assert [s.result for s in steps] == ["skipped", "skipped", "succeeded", "succeeded"]
    assert "my-arm-connection" in steps[1].reason
    assert trace(tmp_path)[0] == str(Path(sys.executable).parent / "python")
    # what it would have received is listed as not rehearsed
    assert any("AzureCLI@2" in n and "my-arm-connection" in n for n in result.not_rehearsed)


def test_variables_and_predefined_values_reach_the_environment(tmp_path: Path) -> None:
    run(
        tmp_path,
        """
        parameters:
          - name: target
            type: string
            default: k8s
        variables:
          - name: my.setting
            value: $(Build.BuildId)-x
          - name: target
            value: ${{ parameters.target }}
        steps:
          - script: |
              echo "$MY_SETTING $TARGET $BUILD_BUILDID" >> trace.txt
              echo "$SYSTEM_DEFAULTWORKINGDIRECTORY" >> trace.txt
              test -d "$AGENT_TEMPDIRECTORY" && echo temp-ok >> trace.txt
              echo "$(Pipeline.Workspace) $(echo shell)" '$(undefined.var)' >> trace.txt
            env:
              EXTRA: $(target)
          - script: echo "$EXTRA" >> trace.txt
            env:
              EXTRA: $(target)
        """,
    )
    lines = (tmp_path / "trace.txt").read_text().splitlines()
    assert lines[0] == "test-x local test"
    assert lines[1] == str(tmp_path)
    assert lines[2] == "temp-ok"
    assert lines[3] == f"{tmp_path / 'runs' / 'test' / '_work'} shell $(undefined.var)"
    assert lines[4] == "local"


def test_unknown_dependency_and_cycles_are_errors(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="unknown stage 'Nope'"):
        run(tmp_path, "stages:\n  - stage: A\n    dependsOn: Nope\n    jobs: []\n")
    with pytest.raises(PipelineError, match="cycle"):
        run(
            tmp_path,
            "stages:\n  - stage: A\n    dependsOn: B\n    jobs: []\n"
            "  - stage: B\n    dependsOn: A\n    jobs: []\n",
        )


def test_cli_run_fails_when_a_stage_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, {"azure-pipelines.yml": ROLLOUT})
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    ok = parser.parse_args(
        ["pipeline", "run", str(tmp_path / "azure-pipelines.yml"), "--run-id", "a"]
    )
    ok.func(ok)
    args = parser.parse_args(
        [
            *("pipeline", "run", str(tmp_path / "azure-pipelines.yml")),
            *("--target", "local", "--run-id", "b", "-p", "failShift=true"),
        ]
    )
    with pytest.raises(PipelineFailedError, match="stage Shift failed"):
        args.func(args)
    out = capsys.readouterr().out
    assert "Rollback ✓" in out and "Promote -" in out
    expand = parser.parse_args(["pipeline", "expand", str(tmp_path / "azure-pipelines.yml")])
    expand.func(expand)
    assert "stage: Rollback" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("eq(variables['Build.Reason'], 'manual')", True),
        ("ne(variables.target, 'k8s')", True),
        ("and(eq(1, '1'), or(false, true), not(''))", True),
        ("in(variables.target, 'k8s', 'LOCAL')", True),
        ("format('{0}-{1}', parameters.w[1], 'x')", "50-x"),
        ("contains(join(',', parameters.w), '100')", True),
        ("iif(gt(length(parameters.w), 2), 'many', 'few')", "many"),
        ("coalesce(variables.missing, 'fallback')", "fallback"),
        ("startsWith(upper(variables.target), 'LO')", True),
    ],
)
def test_expressions(expression: str, expected: Any) -> None:
    names = {
        "variables": {"Build.Reason": "Manual", "target": "local"},
        "parameters": {"w": ["10", "50", "100"]},
    }
    assert Evaluator(names).evaluate(expression) == expected


def test_logging_commands_and_env_names() -> None:
    cmd = parse_command("##vso[task.setvariable variable=x;isOutput=true;issecret=false]a%3Bb")
    assert cmd is not None and cmd.name == "task.setvariable"
    assert cmd.properties["variable"] == "x" and cmd.flag("isOutput") and cmd.message == "a;b"
    # the agent finds ##vso[ anywhere on a line (Command.TryParse in
    # src/Microsoft.VisualStudio.Services.Agent/Command.cs), so bash's xtrace echo counts too
    traced = parse_command("+ echo '##vso[task.setvariable variable=x]y'")
    assert traced is not None and traced.properties == {"variable": "x"} and traced.message == "y'"
    assert env_name("Agent.TempDirectory") == "AGENT_TEMPDIRECTORY"


def test_record_get_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stage = {
        "canary_weight": 10,
        "passed": True,
        "probe": {"total": 1000, "errors": 0},
        "split": {
            "weights": {"v1": 90, "v2": 10},
            "shares": {"v1": 0.904, "v2": 0.096},
            "total": 1000,
            "p_value": 0.68,
        },
    }
    write(
        tmp_path,
        {
            "Package/records.json": json.dumps(
                {"image_ref": "acr.io/scoring:v2", "meta": {"n": 1}}
            ),
            "Shift_10/records.json": json.dumps(
                {"stage": stage, "kiali": {"graph": "http://kiali/kiali/console/graph"}}
            ),
            "Shift_10/split.png": "png",
            "Shift_10/04_shift_traffic.ipynb": json.dumps(
                {
                    "metadata": {"papermill": {"exception": True}},
                    "cells": [
                        {
                            "outputs": [
                                {"output_type": "error", "ename": "StageFailed", "evalue": "no fit"}
                            ]
                        }
                    ],
                }
            ),
        },
    )
    assert record_get.main(["image_ref", "--dir", str(tmp_path / "Package")]) == 0
    assert record_get.main(["image.ref", "meta.n", "--dir", str(tmp_path / "Package")]) == 0
    assert capsys.readouterr().out.splitlines() == ["acr.io/scoring:v2", "1"]
    assert record_get.main(["nope", "--dir", str(tmp_path / "Package")]) == 1
    assert "recorded: image_ref, meta" in capsys.readouterr().err
    text = summary.render(tmp_path, "Canary 10%")
    assert "| Shift_10 | 10% | v1 90.0% · v2 10.0% | v1 90.4% · v2 9.6% | 1000 | 0 | 0.68 |" in text
    assert "[Shift_10/split.png](Shift_10/split.png)" in text
    assert "(http://kiali/kiali/console/graph)" in text
    assert "`image_ref`: acr.io/scoring:v2" in text
    assert "04_shift_traffic.ipynb) ❌ failed: StageFailed: no fit" in text


def test_an_unsupported_construct_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"azure-pipelines.yml:4: .*only runOnce runs here"):
        run(
            tmp_path,
            """
            jobs:
              - deployment: D
                environment: demo
                strategy:
                  rolling:
                    maxParallel: 2
            """,
        )
    assert not (tmp_path / "runs" / "test").exists()
    with pytest.raises(PipelineError, match=r":3: .*task HelmDeploy@0 is not supported"):
        run(tmp_path, "steps:\n  - script: echo hi > trace.txt\n  - task: HelmDeploy@0\n")
    assert not (tmp_path / "trace.txt").exists()


def test_failed_sees_indirect_dependencies_as_azure_does(tmp_path: Path) -> None:
    """A fails; C depends on B only (B skipped): failed() in C still sees A's failure, and D's
    guard on A's result keeps it from running (the pipeline's Rollback after a failed Package)."""
    result = run(
        tmp_path,
        """
        stages:
        - stage: A
          jobs: [{job: a, steps: [{script: exit 3}]}]
        - stage: B
          dependsOn: A
          jobs: [{job: b, steps: [{script: echo b}]}]
        - stage: C
          dependsOn: B
          condition: failed()
          jobs: [{job: c, steps: [{script: echo c}]}]
        - stage: D
          dependsOn: [A, B]
          condition: and(in(dependencies.A.result, 'Succeeded', 'SucceededWithIssues'), failed())
          jobs: [{job: d, steps: [{script: echo d}]}]
        """,
    )
    assert result.results() == {"A": "failed", "B": "skipped", "C": "succeeded", "D": "skipped"}


def test_a_skipped_variable_group_keeps_the_machines_secret_and_masks_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$(AZURE_CLIENT_SECRET) from a group skipped locally: the step sees the value this machine
    has (not the literal macro), and the log never shows it."""
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "s3cret-value-xyz")
    result = run(
        tmp_path,
        """
        variables:
        - group: canary-workbook
        stages:
        - stage: A
          jobs:
          - job: a
            steps:
            - script: |
                test "$AZURE_CLIENT_SECRET" = "s3cret-value-xyz"
                echo "secret is $AZURE_CLIENT_SECRET"
              env:
                AZURE_CLIENT_SECRET: $(AZURE_CLIENT_SECRET)
        """,
    )
    assert result.results() == {"A": "succeeded"}
    logs = "".join(p.read_text() for p in (tmp_path / "runs").rglob("*.log"))
    assert "secret is" in logs and "s3cret-value-xyz" not in logs


def test_a_secret_set_by_a_step_never_reaches_the_console(tmp_path: Path) -> None:
    """Verbose runs stream step output; a value set with issecret=true is masked there too
    (learn.microsoft.com/azure/devops/pipelines/process/set-secret-variables)."""
    write(
        tmp_path,
        {
            "azure-pipelines.yml": """
            steps:
              - script: |
                  echo "##vso[task.setvariable variable=token;issecret=true]tok-987-secret"
                  echo "oops tok-987-secret"
                  exit 1
            """
        },
    )
    for verbose in (True, False):
        lines: list[str] = []
        run_pipeline(
            "azure-pipelines.yml",
            target="local",
            run_id=f"secret-{verbose}",
            workdir=tmp_path,
            verbose=verbose,
            log=lines.append,
        )
        console = "\n".join(lines)
        assert "oops ***" in console and "tok-987-secret" not in console


@pytest.mark.parametrize(
    ("folder", "label"),
    [("Shift_10.1", "Shift_10"), ("Shift_10.2", "Shift_10 (attempt 2)"), ("Shift_10", "Shift_10")],
)
def test_summary_labels_downloaded_artifacts_by_stage(folder: str, label: str) -> None:
    """Artifacts are named <stage>.<attempt> (pipelines/steps-publish.yml)."""
    assert summary.stage_label(folder) == label
