"""Azure Pipelines semantics, case by case, through the local runner.

Each case is a small pipeline built from Microsoft's documentation (or the agent's source) with
the result that source documents: stage results, what the steps saw (``trace.txt``), or a
refusal naming the construct and its file:line when the runner cannot run it faithfully. Doc
pages are under https://learn.microsoft.com/azure/devops/pipelines/; the agent is
github.com/microsoft/azure-pipelines-agent.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from workbook.errors import WorkbookError
from workbook.pipeline import PipelineResult, run_pipeline

DOCS = "learn.microsoft.com/azure/devops/pipelines"


@dataclass
class Case:
    """One documented behaviour: a pipeline and what Azure does with it."""

    id: str
    source: str
    pipeline: str
    results: dict[str, str] | None = None
    trace: list[str] | None = None
    refused: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    absent_from_logs: str | None = None


def one_stage(steps: str) -> str:
    return "steps:\n" + textwrap.indent(textwrap.dedent(steps).strip(), "  ") + "\n"


CASES = [
    # --- stage order and dependencies -------------------------------------------------------
    Case(
        "stages-run-in-order-and-a-failure-skips-the-rest",
        f"{DOCS}/process/stages#specify-dependencies: each stage depends on the one before",
        """
        stages:
        - stage: A
          jobs: [{job: a, steps: [{script: exit 1}]}]
        - stage: B
          jobs: [{job: b, steps: [{script: echo B >> trace.txt}]}]
        """,
        results={"A": "failed", "B": "skipped"},
    ),
    Case(
        "dependsOn-empty-removes-the-implicit-dependency",
        f"{DOCS}/process/stages#specify-dependencies: dependsOn: [] runs independently",
        """
        stages:
        - stage: A
          jobs: [{job: a, steps: [{script: exit 1}]}]
        - stage: B
          dependsOn: []
          jobs: [{job: b, steps: [{script: echo B >> trace.txt}]}]
        """,
        results={"A": "failed", "B": "succeeded"},
        trace=["B"],
    ),
    Case(
        "stage-result-values-are-readable-in-conditions",
        f"{DOCS}/process/expressions#stage-to-stage-dependencies: result is "
        "Succeeded|SucceededWithIssues|Skipped|Failed|Canceled",
        """
        stages:
        - stage: A
          condition: false
          jobs: [{job: a, steps: [{script: echo A}]}]
        - stage: B
          condition: in(dependencies.A.result, 'Succeeded', 'SucceededWithIssues', 'Skipped')
          jobs: [{job: b, steps: [{script: echo B >> trace.txt}]}]
        """,
        results={"A": "skipped", "B": "succeeded"},
        trace=["B"],
    ),
    Case(
        "continueOnError-gives-succeeded-with-issues",
        f"{DOCS}/process/conditions#faq: eq(dependencies.A.result,'SucceededWithIssues')",
        """
        jobs:
        - job: A
          continueOnError: true
          steps: [{script: exit 1}]
        - job: B
          dependsOn: A
          condition: eq(dependencies.A.result,'SucceededWithIssues')
          steps: [{script: echo B >> trace.txt}]
        """,
        results={"__default": "succeededWithIssues"},
        trace=["B"],
    ),
    # --- status functions -------------------------------------------------------------------
    Case(
        "job-default-condition-sees-indirect-dependencies",
        f"{DOCS}/process/conditions: the default applies to direct and indirect dependencies",
        """
        jobs:
        - job: A
          steps: [{script: exit 1}]
        - job: B
          dependsOn: A
          condition: always()
          steps: [{script: echo B >> trace.txt}]
        - job: C
          dependsOn: B
          steps: [{script: echo C >> trace.txt}]
        - job: D
          dependsOn: B
          condition: succeeded('B')
          steps: [{script: echo D >> trace.txt}]
        """,
        trace=["B", "D"],
    ),
    Case(
        "job-failed-sees-the-whole-dependency-graph",
        f"{DOCS}/process/expressions#failed: any previous job in the dependency graph failed",
        """
        jobs:
        - job: A
          steps: [{script: exit 1}]
        - job: B
          dependsOn: A
          steps: [{script: echo B >> trace.txt}]
        - job: C
          dependsOn: B
          condition: failed()
          steps: [{script: echo C >> trace.txt}]
        """,
        trace=["C"],
    ),
    Case(
        "job-succeededOrFailed-is-false-over-a-skipped-job",
        f"{DOCS}/process/expressions#succeededorfailed: use not(canceled()) when previous jobs "
        "were skipped",
        """
        jobs:
        - job: A
          steps: [{script: exit 1}]
        - job: B
          dependsOn: A
          condition: succeededOrFailed()
          steps: [{script: echo B >> trace.txt}]
        - job: C
          dependsOn: A
          condition: false
          steps: [{script: echo C >> trace.txt}]
        - job: D
          dependsOn: C
          condition: succeededOrFailed()
          steps: [{script: echo D >> trace.txt}]
        - job: E
          dependsOn: C
          condition: not(canceled())
          steps: [{script: echo E >> trace.txt}]
        """,
        trace=["B", "E"],
    ),
    Case(
        "step-status-functions-read-the-job-status",
        "azure-pipelines-agent src/Agent.Worker/ExpressionManager.cs; "
        f"{DOCS}/process/conditions: a step runs if nothing in its job failed yet",
        one_stage(
            """
            - script: exit 1
              continueOnError: true
            - script: echo after-issues >> trace.txt
            - script: exit 2
            - script: echo default >> trace.txt
            - script: echo succeededOrFailed >> trace.txt
              condition: succeededOrFailed()
            - script: echo failed >> trace.txt
              condition: failed()
            - script: echo always >> trace.txt
              condition: always()
            - script: echo canceled >> trace.txt
              condition: canceled()
            """
        ),
        results={"__default": "failed"},
        trace=["after-issues", "succeededOrFailed", "failed", "always"],
    ),
    Case(
        "a-canceled-run-runs-what-its-conditions-allow",
        f"{DOCS}/process/conditions#condition-outcomes-when-a-build-is-canceled; "
        f"{DOCS}/process/expressions#succeeded: False if the pipeline is canceled",
        """
        stages:
        - stage: A
          jobs:
          - job: a
            steps:
            - script: kill -INT $PPID; sleep 20; echo not-reached >> trace.txt
            - script: echo a-default >> trace.txt
            - script: echo a-always >> trace.txt
              condition: always()
        - stage: B
          jobs: [{job: b, steps: [{script: echo B >> trace.txt}]}]
        - stage: C
          dependsOn: A
          condition: canceled()
          jobs:
          - job: default_job
            steps: [{script: echo C-default-job >> trace.txt}]
          - job: always_job
            condition: always()
            steps: [{script: echo C-always-job >> trace.txt}]
        - stage: D
          dependsOn: A
          condition: succeededOrFailed()
          jobs: [{job: d, steps: [{script: echo D >> trace.txt}]}]
        """,
        results={"A": "canceled", "B": "skipped", "C": "succeeded", "D": "skipped"},
        trace=["a-always", "C-always-job"],
    ),
    Case(
        "on-failure-hook-runs-after-a-failed-deploy",
        f"{DOCS}/yaml-schema/jobs-deployment-strategy-run-once: on.failure runs on failure of "
        "any step",
        """
        jobs:
        - deployment: D
          environment: demo
          strategy:
            runOnce:
              deploy:
                steps: [{script: exit 1}]
              routeTraffic:
                steps: [{script: echo route >> trace.txt}]
              on:
                failure:
                  steps: [{script: echo on-failure $(Agent.JobStatus) >> trace.txt}]
                success:
                  steps: [{script: echo on-success >> trace.txt}]
        """,
        results={"__default": "failed"},
        trace=["on-failure Succeeded"],
    ),
    Case(
        "lifecycle-hooks-are-jobs-of-their-own",
        f"{DOCS}/yaml-schema/jobs-deployment-strategy-run-once: each hook has its own pool; "
        f"{DOCS}/process/deployment-jobs#support-for-output-variables: outputs carry the job name",
        """
        stages:
        - stage: A
          jobs:
          - deployment: D
            environment: demo
            strategy:
              runOnce:
                preDeploy:
                  steps:
                  - script: |
                      echo "##vso[task.setvariable variable=local]pre"
                      echo "##vso[task.setvariable variable=out;isOutput=true]shared"
                    name: prep
                deploy:
                  steps:
                  - script: echo 'deploy [$(local)]' "[${LOCAL:-}]" >> trace.txt
                routeTraffic:
                  steps:
                  - script: exit 1
                postRouteTraffic:
                  steps:
                  - script: echo not-started >> trace.txt
                    condition: always()
        - stage: B
          condition: always()
          jobs:
          - job: b
            variables:
              out: $[ stageDependencies.A.D.outputs['D.prep.out'] ]
            steps: [{script: echo "next-stage $(out)" >> trace.txt}]
        """,
        results={"A": "failed", "B": "succeeded"},
        trace=["deploy [$(local)] []", "next-stage shared"],
    ),
    # --- dependencies and stageDependencies, output variables --------------------------------
    Case(
        "deployment-outputs-carry-the-job-name",
        f"{DOCS}/process/deployment-jobs#support-for-output-variables; "
        f"{DOCS}/process/expressions#job-to-job-dependencies-across-stages",
        """
        stages:
        - stage: A
          jobs:
          - deployment: D
            environment: demo
            strategy:
              runOnce:
                deploy:
                  steps:
                  - script: echo "##vso[task.setvariable variable=rev;isOutput=true]7"
                    name: release
          - job: same_stage
            dependsOn: D
            variables:
              jobForm: $[ dependencies.D.outputs['release.rev'] ]
              deploymentForm: $[ dependencies.D.outputs['D.release.rev'] ]
            steps:
            - script: echo "same-stage [$(jobForm)] [$(deploymentForm)]" >> trace.txt
        - stage: B
          condition: eq(dependencies.A.outputs['D.D.release.rev'], '7')
          jobs:
          - job: b
            variables:
              jobForm: $[ stageDependencies.A.D.outputs['release.rev'] ]
              deploymentForm: $[ stageDependencies.A.D.outputs['D.release.rev'] ]
            steps:
            - script: echo "next-stage [$(jobForm)] [$(deploymentForm)]" >> trace.txt
        """,
        results={"A": "succeeded", "B": "succeeded"},
        trace=["same-stage [] [7]", "next-stage [] [7]"],
    ),
    Case(
        "regular-job-outputs-in-a-stage-condition",
        f"{DOCS}/process/expressions#stage-depending-on-job-output",
        """
        stages:
        - stage: plan
          jobs:
          - job: tf
            steps:
            - bash: echo '##vso[task.setvariable variable=exitcode;isOutput=true]2'
              name: plan
        - stage: apply
          condition: eq(dependencies.plan.outputs['tf.plan.exitcode'], '2')
          jobs: [{job: a, steps: [{script: echo apply >> trace.txt}]}]
        """,
        trace=["apply"],
    ),
    Case(
        "stageDependencies-in-a-stage-condition-is-refused",
        f"{DOCS}/process/expressions#stage-depending-on-job-output: a stage condition must use "
        "dependencies, not stageDependencies",
        """
        stages:
        - stage: A
          jobs: [{job: a, steps: [{script: echo a}]}]
        - stage: B
          condition: eq(stageDependencies.A.a.result, 'Succeeded')
          jobs: [{job: b, steps: [{script: echo b}]}]
        """,
        refused=r"azure-pipelines.yml:5: stage B condition: .*unrecognized value "
        r"'stageDependencies'",
    ),
    Case(
        "an-output-needs-isOutput",
        f"{DOCS}/process/variables#set-a-multi-job-output-variable",
        """
        jobs:
        - job: A
          steps:
          - script: echo "##vso[task.setvariable variable=plain]x"
            name: s
        - job: B
          dependsOn: A
          variables:
            v: $[ dependencies.A.outputs['s.plain'] ]
          steps:
          - script: echo "[$(v)]" >> trace.txt
        """,
        trace=["[]"],
    ),
    # --- variables ----------------------------------------------------------------------------
    Case(
        "an-undefined-macro-stays-literal-a-runtime-expression-is-empty",
        f"{DOCS}/process/variables#understand-variable-syntax",
        """
        variables:
          fromRuntime: $[ variables.nope ]
        steps:
        - script: echo '$(nope)' "[$(fromRuntime)]" >> trace.txt
        """,
        trace=["$(nope) []"],
    ),
    Case(
        "the-innermost-variable-scope-wins",
        f"{DOCS}/process/variables#variable-scopes",
        """
        variables: {who: pipeline}
        stages:
        - stage: S
          variables: {who: stage}
          jobs:
          - job: J
            variables: {who: job}
            steps: [{script: echo $(who) $WHO >> trace.txt}]
          - job: K
            steps: [{script: echo $(who) >> trace.txt}]
        """,
        trace=["job job", "stage"],
    ),
    Case(
        "a-variable-set-by-a-step-is-seen-by-the-next-steps-only",
        f"{DOCS}/process/conditions#variables-created-in-a-step-used-in-subsequent-step-conditions",
        one_stage(
            """
            - bash: |
                echo "##vso[task.setvariable variable=doThing]Yes"
                echo "same-step [${DOTHING:-}]" >> trace.txt
            - script: echo "next-step $DOTHING $(doThing)" >> trace.txt
              condition: and(succeeded(), eq(variables['doThing'], 'Yes'))
            """
        ),
        trace=["same-step []", "next-step Yes Yes"],
    ),
    Case(
        "a-logging-command-anywhere-on-a-line",
        "azure-pipelines-agent src/Microsoft.VisualStudio.Services.Agent/Command.cs: "
        "TryParse finds ##vso[ anywhere",
        one_stage(
            """
            - script: 'echo "prefix ##vso[task.setvariable variable=x]mid-line"'
            - script: echo "$(x)" >> trace.txt
            """
        ),
        trace=["mid-line"],
    ),
    Case(
        "a-secret-set-by-a-step-is-masked-and-not-in-the-environment",
        f"{DOCS}/process/set-secret-variables#set-a-secret-variable-in-a-script-with-logging-commands",
        one_stage(
            """
            - script: |
                echo "##vso[task.setvariable variable=token;issecret=true]tok-123-secret"
                echo "printed tok-123-secret"
            - script: |
                echo "env [${TOKEN:-}]" >> trace.txt
                echo "macro $(token)"
              displayName: uses the secret
            """
        ),
        trace=["env []"],
        absent_from_logs="tok-123-secret",
    ),
    # --- compile time: ${{ }}, templates --------------------------------------------------------
    Case(
        "if-elseif-else-with-compile-time-variables",
        f"{DOCS}/process/expressions#conditionally-run-a-step",
        """
        variables:
          - name: foo
            value: contoso
        steps:
        - ${{ if eq(variables.foo, 'adaptum') }}:
          - script: echo adaptum >> trace.txt
        - ${{ elseif eq(variables.foo, 'contoso') }}:
          - script: echo contoso >> trace.txt
        - ${{ else }}:
          - script: echo neither >> trace.txt
        """,
        trace=["contoso"],
    ),
    Case(
        "each-over-a-list-and-nested-lists",
        f"{DOCS}/process/expressions#each-keyword",
        """
        parameters:
        - name: listOfFruits
          type: object
          default:
          - fruitName: 'apple'
            colors: ['red','green']
          - fruitName: 'lemon'
            colors: ['yellow']
        steps:
        - ${{ each fruit in parameters.listOfFruits }} :
          - ${{ each fruitColor in fruit.colors}} :
            - script: echo ${{ fruit.fruitName}}-${{ fruitColor }} >> trace.txt
        """,
        trace=["apple-red", "apple-green", "lemon-yellow"],
    ),
    Case(
        "a-stepList-parameter-inserts-its-steps",
        f"{DOCS}/process/template-parameters#parameter-data-types",
        """
        steps:
        - template: steps.yml
          parameters:
            before:
            - script: echo one >> trace.txt
            - script: echo two >> trace.txt
        """,
        files={
            "steps.yml": """
            parameters:
            - name: before
              type: stepList
              default: []
            steps:
            - ${{ parameters.before }}
            - script: echo template >> trace.txt
            """
        },
        trace=["one", "two", "template"],
    ),
    Case(
        "a-stageList-parameter-inserts-its-stages",
        f"{DOCS}/process/template-parameters#parameter-data-types",
        """
        stages:
        - template: stages.yml
          parameters:
            extra:
            - stage: Extra
              jobs: [{job: e, steps: [{script: echo extra >> trace.txt}]}]
        """,
        files={
            "stages.yml": """
            parameters:
            - name: extra
              type: stageList
            stages:
            - stage: First
              jobs: [{job: f, steps: [{script: echo first >> trace.txt}]}]
            - ${{ parameters.extra }}
            """
        },
        results={"First": "succeeded", "Extra": "succeeded"},
        trace=["first", "extra"],
    ),
    Case(
        "insert-merges-a-mapping",
        f"{DOCS}/process/templates#insert",
        """
        parameters:
        - name: extra
          type: object
          default: {GREETING: hello}
        variables:
          ${{ insert }}: ${{ parameters.extra }}
        steps:
        - script: echo $(GREETING) >> trace.txt
        """,
        trace=["hello"],
    ),
    Case(
        "parameters-expand-before-conditions",
        f"{DOCS}/process/conditions#parameters-in-conditions",
        """
        parameters:
        - name: doThing
          default: true
          type: boolean
        steps:
        - script: echo I did a thing >> trace.txt
          condition: and(succeeded(), ${{ eq(parameters.doThing, true) }})
        """,
        trace=["I did a thing"],
    ),
    Case(
        "type-casting-in-expressions",
        f"{DOCS}/process/expressions#type-casting: lt(False, True) is True; a non-empty string "
        "is True; numbers compare as numbers",
        """
        variables:
          firstEval: $[lt(False, True)]
          secondEval: $[lt(True, False)]
          stringToBool: $[eq(true, 'false')]
          numbers: $[eq(10, '10.0')]
          coalesced: $[coalesce(variables.emptyString, '', 'literal value')]
        steps:
        - script: echo $(firstEval) $(secondEval) $(stringToBool) $(numbers) >> trace.txt
        - script: echo "$(coalesced)" >> trace.txt
        """,
        trace=["True False True True", "literal value"],
    ),
    Case(
        "an-ordering-that-cannot-convert-is-an-error",
        f"{DOCS}/process/expressions#gt: errors if conversion fails",
        """
        variables:
          bad: $[ gt(1, 'abc') ]
        steps:
        - script: echo $(bad)
        """,
        refused=r"azure-pipelines.yml:2: .*variable bad: .*gt\(\): cannot compare",
    ),
    Case(
        "jobs-without-dependsOn-do-not-depend-on-each-other",
        f"{DOCS}/process/phases#dependencies: jobs without dependsOn run in parallel",
        """
        jobs:
        - job: A
          steps: [{script: exit 1}]
        - job: B
          steps: [{script: echo B >> trace.txt}]
        """,
        trace=["B"],
    ),
    Case(
        "compile-time-does-not-see-runtime-variables",
        f"{DOCS}/process/variables#understand-variable-syntax: template expressions are processed "
        "at compile time, macros at run time",
        one_stage(
            """
            - script: echo "##vso[task.setvariable variable=later]set"
            - script: echo "[${{ variables.later }}] [$(later)]" >> trace.txt
            """
        ),
        trace=["[] [set]"],
    ),
    Case(
        "a-read-only-variable-keeps-its-value",
        f"{DOCS}/scripts/logging-commands#setvariable-initialize-or-modify-the-value-of-a-variable",
        one_stage(
            """
            - script: echo "##vso[task.setvariable variable=fixed;isreadonly=true]first"
            - script: echo "##vso[task.setvariable variable=fixed]second"
            - script: echo "$(fixed)" >> trace.txt
            """
        ),
        trace=["first"],
    ),
    Case(
        "task-complete-sets-the-step-result",
        f"{DOCS}/scripts/logging-commands#complete-finish-timeline",
        """
        stages:
        - stage: A
          jobs:
          - job: a
            steps:
            - script: echo "##vso[task.complete result=SucceededWithIssues;]partly"
            - script: echo "$(Agent.JobStatus)" >> trace.txt
        """,
        results={"A": "succeededWithIssues"},
        trace=["SucceededWithIssues"],
    ),
    Case(
        "retry-count-on-task-failure",
        f"{DOCS}/process/tasks#number-of-retries-if-task-failed",
        one_stage(
            """
            - script: |
                echo try >> trace.txt
                test "$(wc -l < trace.txt)" -ge 3
              retryCountOnTaskFailure: 3
            """
        ),
        results={"__default": "succeeded"},
        trace=["try", "try", "try"],
    ),
    Case(
        "predefined-variables-scripts-use",
        f"{DOCS}/build/variables: System.StageName, System.StageAttempt, System.JobName, "
        "Agent.OS, Build.SourcesDirectory",
        """
        stages:
        - stage: Deploy
          jobs:
          - job: main
            steps:
            - script: |
                echo "$(System.StageName) $(System.StageAttempt) $(System.JobName) $AGENT_OS"
                test "$BUILD_SOURCESDIRECTORY" = "$(System.DefaultWorkingDirectory)"
                echo "$SYSTEM_STAGEATTEMPT"
              displayName: uses $(System.StageName)
            - script: echo $(System.StageName) $(System.StageAttempt) $(System.JobName) >> trace.txt
        """,
        trace=["Deploy 1 main"],
    ),
    Case(
        "an-unsupported-function-is-refused",
        f"{DOCS}/process/expressions#counter: counter() keeps state on the service",
        """
        variables:
          build: $[ counter('prefix', 100) ]
        steps:
        - script: echo $(build)
        """,
        refused=r"azure-pipelines.yml:2: .*variable build: .*unknown function counter\(\)",
    ),
    Case(
        "runtime-contexts-are-not-known-at-compile-time",
        f"{DOCS}/process/expressions#dependencies: dependencies is a runtime context; "
        f"{DOCS}/process/variables#understand-variable-syntax",
        one_stage(
            """
            - script: echo ok >> trace.txt
            - script: echo ${{ dependencies.A.result }}
            """
        ),
        refused=r"azure-pipelines.yml:3: \$\{\{ dependencies.A.result \}\} unrecognized value "
        r"'dependencies'",
    ),
    # --- refusals: what the runner cannot run faithfully ------------------------------------
    Case(
        "pwsh-steps-are-refused",
        "the local runner runs bash only",
        one_stage("- pwsh: Write-Host hi"),
        refused=r"azure-pipelines.yml:2: pipeline: a pwsh step \(PowerShell; only bash",
    ),
    Case(
        "container-jobs-are-refused",
        f"{DOCS}/process/container-phases",
        """
        jobs:
        - job: J
          container: ubuntu:22.04
          steps: [{script: echo hi}]
        """,
        refused=r"azure-pipelines.yml:3: job J: container \(steps in a container image\)",
    ),
    Case(
        "matrix-strategies-are-refused",
        f"{DOCS}/process/phases#multi-job-configuration",
        """
        jobs:
        - job: J
          strategy:
            matrix: {a: {x: 1}, b: {x: 2}}
          steps: [{script: echo hi}]
        """,
        refused=r"azure-pipelines.yml:3: .*strategy \['matrix'\]",
    ),
    Case(
        "environment-resources-are-refused",
        f"{DOCS}/process/deployment-jobs: outputs of a resource read Deploy_<resource>",
        """
        jobs:
        - deployment: D
          environment:
            name: vmtest
            resourceName: winVM2
            resourceType: VirtualMachine
          strategy: {runOnce: {deploy: {steps: [{script: echo hi}]}}}
        """,
        refused=r"azure-pipelines.yml:5: .*environment resources \(resourceName, resourceType\)",
    ),
    Case(
        "agentless-jobs-are-refused",
        f"{DOCS}/process/phases#server-jobs",
        """
        jobs:
        - job: J
          pool: server
          steps: [{task: Delay@1, inputs: {delayForMinutes: '1'}}]
        """,
        refused=r"azure-pipelines.yml:3: .*agentless \(server\) jobs",
    ),
]


CASES += [
    Case(
        "a-windows-or-macos-image-is-refused",
        f"{DOCS}/agents/hosted: vmImage picks the agent's OS; here steps run on this machine",
        """
        pool: {vmImage: windows-latest}
        steps: [{script: echo hi}]
        """,
        refused=r"azure-pipelines.yml:1: pipeline: vmImage windows-latest",
    ),
    Case(
        "a-timeout-that-is-no-number-is-refused",
        f"{DOCS}/yaml-schema/steps-script: timeoutInMinutes is a number",
        one_stage(
            """
            - script: echo hi
              timeoutInMinutes: soon
            """
        ),
        refused=r"azure-pipelines.yml:3: step echo hi: timeoutInMinutes must be a number",
    ),
    Case(
        "a-missing-working-directory-fails-the-step",
        f"{DOCS}/yaml-schema/steps-script: workingDirectory, the directory the script runs in",
        one_stage(
            """
            - script: pwd
              workingDirectory: does-not-exist
            - script: echo after >> trace.txt
              condition: failed()
            """
        ),
        results={"__default": "failed"},
        trace=["after"],
    ),
]


def run_case(tmp_path: Path, case: Case) -> tuple[PipelineResult, list[str]]:
    files = {"azure-pipelines.yml": case.pipeline, **case.files}
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    lines: list[str] = []
    result = run_pipeline(
        "azure-pipelines.yml", target=None, run_id="case", workdir=tmp_path, log=lines.append
    )
    return result, lines


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_documented_semantics(tmp_path: Path, case: Case) -> None:
    assert case.source, "every case cites where its expected result comes from"
    if case.refused is not None:
        with pytest.raises(WorkbookError) as info:
            run_case(tmp_path, case)
        message = str(info.value)
        assert re.search(case.refused, message), message
        assert "\n" not in message and "Traceback" not in message
        assert not (tmp_path / "trace.txt").exists(), "a refused pipeline must not run steps"
        return
    result, _ = run_case(tmp_path, case)
    if case.results is not None:
        assert result.results() == case.results
    if case.trace is not None:
        trace = tmp_path / "trace.txt"
        assert (trace.read_text().splitlines() if trace.exists() else []) == case.trace
    if case.absent_from_logs is not None:
        logs = "".join(p.read_text() for p in (tmp_path / "runs").rglob("*.log"))
        assert logs and case.absent_from_logs not in logs


#: Malformed pipelines (one per line, ``\\n`` for new lines): each runs or is refused with a
#: WorkbookError (one line for the CLI), never another exception.
MALFORMED = [
    "steps: 5",
    "jobs: [5]",
    "stages: {a: 1}",
    "steps:\\n- task: UsePythonVersion@0\\n  inputs: 5",
    "steps:\\n- {}",
    "steps:\\n- script:",
    "variables: 5\\nsteps: [{script: echo}]",
    "variables: [5]\\nsteps: [{script: echo}]",
    "variables: [{group: g}, {name: a}]\\nsteps: [{script: echo $(a)}]",
    "parameters: 5\\nsteps: [{script: echo}]",
    "parameters: [{name: p, type: weird}]\\nsteps: [{script: echo}]",
    "parameters: [{name: p, type: number, default: x}]\\nsteps: [{script: echo}]",
    "steps:\\n- ${{ each x in 5 }}:\\n  - script: echo",
    "steps:\\n- ${{ if }}:\\n  - script: echo",
    "steps:\\n- ${{ else }}:\\n  - script: echo",
    "steps:\\n- template: nope.yml",
    "steps:\\n- template: x@other",
    "stages:\\n- stage: A\\n  dependsOn: [A]\\n  jobs: []",
    "stages:\\n- stage: A\\n  jobs:\\n  - job: j\\n    dependsOn: j\\n    steps: []",
    "stages:\\n- stage: a-b\\n  jobs: []",
    "steps:\\n- script: echo\\n  condition: foo()",
    "steps:\\n- script: echo\\n  condition: variables.x.y.z",
    "steps:\\n- script: echo\\n  condition: eq(variables['a'], 'b', 'c')",
    'steps:\\n- script: echo\\n  condition: "\'unterminated"',
    "steps:\\n- script: echo ${{ format('{0}', 1) }} ${{ length(5) }} ${{ split('a,b', ',')[1] }}",
    "steps:\\n- script: echo\\n  env: {A: [1, 2]}",
    "steps:\\n- checkout: other-repo",
    "steps:\\n- download: other",
    "jobs:\\n- deployment: d\\n  strategy: {runOnce: 5}",
    "jobs:\\n- deployment: d\\n  environment: {name: e, resourceName: r}\\n  strategy: {runOnce: {deploy: {steps: []}}}",  # noqa: E501
    "jobs:\\n- job: j\\n  strategy: {parallel: 2}\\n  steps: []",
    "extends:\\n  template: x.yml",
    "resources:\\n  repositories: [{repository: r, type: git, name: x}]\\nsteps: [{script: echo}]",
    'steps:\\n- script: echo "##vso[task.setvariable]nov"\\n- script: echo "##vso[]x ##vso[a.b c=d=e;;;]y ##vso[task.complete result=Failed]z"',  # noqa: E501
    'steps:\\n- script: echo "##vso[task.uploadsummary]/nonexistent/x.md"\\n- script: echo "##vso[task.prependpath]relative"\\n- script: echo "##vso[artifact.upload artifactname=a/b]/tmp"',  # noqa: E501
    "steps:\\n- publish: /nonexistent\\n  artifact: x",
    "steps:\\n- task: PublishPipelineArtifact@1\\n  inputs: {targetPath: azure-pipelines.yml, artifact: 'bad/name'}",  # noqa: E501
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_pipelines_never_raise_anything_but_a_workbook_error(
    tmp_path: Path, text: str
) -> None:
    (tmp_path / "azure-pipelines.yml").write_text(text.replace("\\n", "\n") + "\n")
    try:
        run_pipeline(
            "azure-pipelines.yml", target=None, run_id="m", workdir=tmp_path, log=lambda _: None
        )
    except WorkbookError as e:
        assert str(e) and "\n" not in str(e)
