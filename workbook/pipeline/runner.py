"""Run an Azure Pipelines YAML pipeline on this machine, stage by stage, the way the service would.

Compile time is ``template.compile_pipeline``; this module is the runtime: stages in dependency
order (a stage without ``dependsOn`` depends on the one before it), ``condition`` with the
status functions over direct and indirect dependencies, jobs and ``deployment`` jobs (runOnce
hooks), ``script`` and ``bash`` steps through ``bash --noprofile --norc`` with the variables in
the environment, ``##vso`` logging commands, output variables between jobs and stages, and the
tasks registered in ``workbook.pipeline.tasks``. A run leaves everything under ``runs/<id>/``::

    pipeline.json                         result and timings of every stage, job and step
    <stage>/summary.md                    what ##vso[task.uploadsummary] uploaded
    <stage>/artifacts/<name>/             what PublishPipelineArtifact@1 published
    <stage>/logs/<job>/<nn>-<step>.log    each step's output
    _work/                                Pipeline.Workspace (Agent.TempDirectory is _work/_temp)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbook.errors import ConfigError, WorkbookError
from workbook.files import write_atomic
from workbook.pipeline import tasks
from workbook.pipeline.expressions import Evaluator, to_text, truthy
from workbook.pipeline.support import first_unsupported
from workbook.pipeline.template import CompiledPipeline, compile_pipeline
from workbook.pipeline.variables import Command, Variables, env_name, mask, parse_command

SUCCEEDED, WITH_ISSUES, FAILED = "succeeded", "succeededWithIssues", "failed"
SKIPPED, CANCELED = "skipped", "canceled"
OK_RESULTS = (SUCCEEDED, WITH_ISSUES)
#: How results read inside expressions (``dependencies.A.result``).
AZURE_RESULT = {
    SUCCEEDED: "Succeeded",
    WITH_ISSUES: "SucceededWithIssues",
    FAILED: "Failed",
    SKIPPED: "Skipped",
    CANCELED: "Canceled",
}
MARK = {SUCCEEDED: "✓", WITH_ISSUES: "!", FAILED: "✗", SKIPPED: "-", CANCELED: "⊘"}
RUNONCE_HOOKS = ("preDeploy", "deploy", "routeTraffic", "postRouteTraffic")
TAIL_LINES = 15
AGENT_NAME = "workbook-local"

Log = Callable[[str], None]

#: A step env value that is still a macro after expansion: the variable is not defined.
_UNDEFINED_MACRO = re.compile(r"\$\(([A-Za-z0-9_.]+)\)")


class PipelineError(WorkbookError):
    """The pipeline could not be run locally (bad YAML, unknown dependency, ...)."""


class PipelineFailedError(WorkbookError):
    """The pipeline ran and a stage failed; ``result`` holds the run."""

    def __init__(self, result: PipelineResult) -> None:
        self.result = result
        bad = [f"{s.name} {s.result}" for s in result.stages if s.result in (FAILED, CANCELED)]
        super().__init__(
            f"pipeline run {result.run_id} {result.result}: stage {', '.join(bad)} "
            f"(see {result.run_dir / 'pipeline.json'})"
        )


@dataclass
class StepRun:
    """One step: what it was called, how it ended, and where its output is."""

    name: str
    display_name: str
    result: str
    reason: str = ""
    duration_s: float = 0.0
    exit_code: int | None = None
    log: str | None = None


@dataclass
class JobRun:
    """One job or deployment job of a stage."""

    name: str
    display_name: str
    kind: str
    result: str
    reason: str = ""
    environment: str | None = None
    started: str = ""
    duration_s: float = 0.0
    steps: list[StepRun] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class StageRun:
    """One stage: its dependencies, condition, result and timings."""

    name: str
    display_name: str
    depends_on: list[str]
    condition: str
    result: str
    reason: str = ""
    started: str = ""
    duration_s: float = 0.0
    jobs: list[JobRun] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    summary: str | None = None


@dataclass
class PipelineResult:
    """A finished local run; ``pipeline.json`` in ``run_dir`` holds the same data."""

    run_id: str
    run_dir: Path
    pipeline: str
    target: str | None
    parameters: dict[str, Any]
    result: str
    started: str
    duration_s: float
    stages: list[StageRun]
    not_rehearsed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result in OK_RESULTS

    def stage(self, name: str) -> StageRun:
        for s in self.stages:
            if s.name.casefold() == name.casefold():
                return s
        raise KeyError(f"no stage {name!r} in run {self.run_id}")

    def results(self) -> dict[str, str]:
        """Stage name → result, in execution order."""
        return {s.name: s.result for s in self.stages}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["run_dir"] = str(self.run_dir)
        return out


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "step"


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v) for v in value if str(v)]
    return [str(value)]


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "yes", "y", "on")


def _runtime_expression(value: Any) -> str | None:
    m = re.fullmatch(r"\s*\$\[(.*)\]\s*", str(value), re.S)
    return m.group(1) if m else None


def stage_order(stages: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[str]]]:
    """Stages in the order they run, each with its dependencies (implicit: the one before)."""
    for i, s in enumerate(stages):
        if not isinstance(s, Mapping):
            raise PipelineError(f"stages[{i}]: must be a stage (a mapping), got {s!r}")
    names = [str(s.get("stage", "")) for s in stages]
    for i, n in enumerate(names):
        if not re.fullmatch(r"[A-Za-z0-9_]+", n):
            raise PipelineError(f"stages[{i}]: stage name must be letters, digits and _, got {n!r}")
    folded = {n.casefold(): n for n in names}
    if len(folded) != len(names):
        raise PipelineError(f"stage names must be unique, got {names}")
    deps: dict[str, list[str]] = {}
    for i, s in enumerate(stages):
        implicit = [names[i - 1]] if i > 0 else []
        listed = _as_list(s["dependsOn"]) if "dependsOn" in s else implicit
        for d in listed:
            if d.casefold() not in folded:
                raise PipelineError(f"stage {names[i]}: dependsOn names unknown stage {d!r}")
        deps[names[i]] = [folded[d.casefold()] for d in listed]
    return _topological(stages, names, deps, "stage")


def _topological(
    items: list[dict[str, Any]], names: list[str], deps: dict[str, list[str]], what: str
) -> list[tuple[dict[str, Any], list[str]]]:
    order: list[tuple[dict[str, Any], list[str]]] = []
    done: set[str] = set()
    pending = list(zip(names, items, strict=True))
    while pending:
        for i, (name, item) in enumerate(pending):
            if all(d in done for d in deps[name]):
                order.append((item, deps[name]))
                done.add(name)
                del pending[i]
                break
        else:
            raise PipelineError(f"{what}s {[n for n, _ in pending]} depend on each other (a cycle)")
    return order


def _job_name(job: Mapping[str, Any]) -> tuple[str, str]:
    if "deployment" in job:
        return str(job["deployment"]), "deployment"
    return str(job.get("job") or "__default"), "job"


def job_order(jobs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[str]]]:
    """Jobs in run order; a job without ``dependsOn`` depends on nothing (Azure runs it at once)."""
    names = [_job_name(j)[0] for j in jobs]
    folded = {n.casefold(): n for n in names}
    deps = {}
    for name, job in zip(names, jobs, strict=True):
        listed = _as_list(job.get("dependsOn"))
        for d in listed:
            if d.casefold() not in folded:
                raise PipelineError(f"job {name}: dependsOn names unknown job {d!r}")
        deps[name] = [folded[d.casefold()] for d in listed]
    return _topological(jobs, names, deps, "job")


def status_functions(
    dependencies: Mapping[str, str], *, canceled: bool = False
) -> dict[str, Callable[..., bool]]:
    """``succeeded()``, ``failed()``, ... in a stage or job condition.

    Over every stage (or job of the stage) the unit depends on, directly or not, or over the named
    ones; ``succeeded()`` and ``succeededOrFailed()`` are false once the run is canceled
    (learn.microsoft.com/azure/devops/pipelines/process/expressions#job-status-check-functions).
    """

    def pick(names: tuple[Any, ...]) -> list[str]:
        if not names:
            return list(dependencies.values())
        folded = {k.casefold(): v for k, v in dependencies.items()}
        return [folded.get(str(n).casefold(), SKIPPED) for n in names]

    return {
        "succeeded": lambda *n: not canceled and all(r in OK_RESULTS for r in pick(n)),
        "failed": lambda *n: any(r == FAILED for r in pick(n)),
        "succeededOrFailed": lambda *n: (
            not canceled and all(r in (*OK_RESULTS, FAILED) for r in pick(n))
        ),
        "always": lambda *n: True,
        "canceled": lambda *n: canceled,
    }


def step_status_functions(job_status: str) -> dict[str, Callable[..., bool]]:
    """The status functions in a step condition: tests of ``Agent.JobStatus``, no arguments
    (src/Agent.Worker/ExpressionManager.cs in microsoft/azure-pipelines-agent)."""
    return {
        "succeeded": lambda: job_status in OK_RESULTS,
        "failed": lambda: job_status == FAILED,
        "succeededOrFailed": lambda: job_status in (*OK_RESULTS, FAILED),
        "always": lambda: True,
        "canceled": lambda: job_status == CANCELED,
    }


def upstream(name: str, depends_on: Mapping[str, list[str]]) -> list[str]:
    """Every unit ``name`` depends on, directly or through others."""
    seen: dict[str, None] = {}
    todo = list(depends_on.get(name, []))
    while todo:
        n = todo.pop()
        if n not in seen:
            seen[n] = None
            todo.extend(depends_on.get(n, []))
    return list(seen)


class _StepContext:
    """What tasks may touch: the run's artifacts and the job's PATH."""

    def __init__(self, run: _Run, stage: StageRun, path_prefix: list[str]) -> None:
        self.run, self.stage, self.path_prefix = run, stage, path_prefix
        self.workdir = run.workdir

    def publish(self, path: Path, artifact: str) -> tasks.Outcome:
        return self.run.publish(self.stage, path, artifact)

    def prepend_path(self, directory: Path) -> None:
        if str(directory) not in self.path_prefix:
            self.path_prefix.insert(0, str(directory))


class _Run:
    """State of one run: paths, predefined variables, finished stages, published artifacts."""

    def __init__(
        self,
        compiled: CompiledPipeline,
        *,
        run_id: str,
        workdir: Path,
        target: str | None,
        verbose: bool,
        log: Log,
    ) -> None:
        self.compiled, self.run_id, self.workdir = compiled, run_id, workdir
        self.target, self.verbose, self.log = target, verbose, log
        self.run_dir = workdir / "runs" / run_id
        self.workspace = self.run_dir / "_work"
        self.temp = self.workspace / "_temp"
        self.stages: dict[str, StageRun] = {}
        self.artifact_names: set[str] = set()
        #: How many times a cancel was asked for (Ctrl-C, SIGTERM); a step started before the
        #: latest request is stopped.
        self.cancels = 0
        #: What a local run does not check (tasks and resources that need Azure) → where.
        self.not_rehearsed: dict[str, list[str]] = {}
        self.variables = self._pipeline_variables()

    def cancel(self, why: str = "cancel") -> None:
        """Cancel the run as Azure does: running steps stop; what still runs is what conditions
        allow after a cancel (``always()``, ``canceled()``, conditions without a status check)."""
        self.cancels += 1
        self.log(
            f"⊘ {why}: the run is canceled; running steps stop, stages and steps whose condition "
            "still holds run (again to stop those)"
        )

    @property
    def canceled(self) -> bool:
        return self.cancels > 0

    def note_not_rehearsed(self, what: str, where: str) -> None:
        places = self.not_rehearsed.setdefault(what, [])
        if where not in places:
            places.append(where)

    def not_rehearsed_lines(self) -> list[str]:
        """One line per thing not rehearsed, with the stages/jobs that use it."""
        return [f"{what} (in {', '.join(where)})" for what, where in self.not_rehearsed.items()]

    # -- variables -------------------------------------------------------------------------

    def _pipeline_variables(self) -> Variables:
        v = Variables()
        os_name = {"Windows": "Windows_NT"}.get(platform.system(), platform.system())
        predefined = {
            "Build.BuildId": self.run_id,
            "Build.BuildNumber": self.run_id,
            "Build.DefinitionName": self.compiled.path.stem,
            "Build.Reason": "Manual",
            "Build.SourcesDirectory": self.workdir,
            "Build.Repository.LocalPath": self.workdir,
            "Build.Repository.Name": self.workdir.name,
            "Build.ArtifactStagingDirectory": self.workspace / "a",
            "Build.StagingDirectory": self.workspace / "a",
            "Build.BinariesDirectory": self.workspace / "b",
            "Pipeline.Workspace": self.workspace,
            "Agent.BuildDirectory": self.workspace,
            "Agent.TempDirectory": self.temp,
            "Agent.Name": AGENT_NAME,
            "Agent.OS": os_name,
            "System.DefaultWorkingDirectory": self.workdir,
            "System.TeamProject": "local",
            "System.PipelineStartTime": _now(),
            **_git_variables(self.workdir),
        }
        for name, value in predefined.items():
            v.set(name, value, readonly=True)
        self._define(v, self.compiled.document.get("variables"), {}, "pipeline")
        return v

    def _define(self, scope: Variables, raw: Any, names: Mapping[str, Any], where: str) -> None:
        """Add a ``variables:`` block to ``scope``; ``$[ ]`` values are evaluated now."""
        if raw is None or raw == "":
            return
        entries: list[tuple[str, Any, bool]] = []
        if isinstance(raw, Mapping):
            entries = [(str(k), v, False) for k, v in raw.items()]
        elif not isinstance(raw, list):
            raise PipelineError(f"{where}: variables must be a list or a mapping, got {raw!r}")
        else:
            for item in raw:
                if not isinstance(item, Mapping):
                    raise PipelineError(f"{where}: variables entry {item!r} is not a mapping")
                if "group" in item:
                    self.log(
                        f"  variable group {item['group']!r} ({where}): skipped locally, its "
                        "values come from the environment here"
                    )
                    self.note_not_rehearsed(
                        f"variable group {item['group']}: values from this machine's environment "
                        "instead",
                        where,
                    )
                    continue
                if "name" not in item:
                    raise PipelineError(f"{where}: variables entry {dict(item)} has no name")
                entries.append(
                    (str(item["name"]), item.get("value", ""), _flag(item.get("readonly")))
                )
        for name, value, readonly in entries:
            expr = _runtime_expression(value)
            if expr is not None:
                ctx = {"variables": scope.as_mapping(), **names}
                value = self._evaluate(expr, ctx, None, f"{where}: variable {name}")
                value = to_text(value)  # True/False, numbers as written, JSON for objects
            scope.set(name, value, readonly=readonly)

    def _evaluate(
        self,
        expression: str,
        names: Mapping[str, Any],
        functions: Mapping[str, Callable[..., Any]] | None,
        where: str,
    ) -> Any:
        """Evaluate, or a PipelineError naming the unit, the field and the file:line."""
        try:
            return Evaluator(names, functions).evaluate(expression)
        except ConfigError as e:
            raise PipelineError(f"{self.compiled.locate(expression)}: {where}: {e}") from None

    def _dependency_contexts(self, depends_on: list[str]) -> dict[str, Any]:
        """``dependencies`` and ``stageDependencies`` for the stages this one depends on."""
        deps: dict[str, Any] = {}
        stage_deps: dict[str, Any] = {}
        for name in depends_on:
            stage = self.stages[name]
            outputs = {f"{j.name}.{k}": v for j in stage.jobs for k, v in j.outputs.items()}
            deps[name] = {"result": AZURE_RESULT[stage.result], "outputs": outputs}
            stage_deps[name] = {
                j.name: {"result": AZURE_RESULT[j.result], "outputs": dict(j.outputs)}
                for j in stage.jobs
            }
        return {"dependencies": deps, "stageDependencies": stage_deps}

    def _condition(
        self,
        condition: Any,
        functions: Mapping[str, Callable[..., Any]],
        variables: Variables,
        names: Mapping[str, Any],
        where: str,
    ) -> bool:
        if isinstance(condition, bool):
            return condition
        ctx = {"variables": variables.as_mapping(), **names}
        return truthy(self._evaluate(str(condition), ctx, functions, f"{where} condition"))

    # -- stages ----------------------------------------------------------------------------

    def run(self) -> PipelineResult:
        started, t0 = _now(), time.monotonic()
        order = stage_order(self.compiled.stages)  # errors before anything is written
        if (problem := first_unsupported(self.compiled)) is not None:
            raise PipelineError(problem)
        self.temp.mkdir(parents=True, exist_ok=True)
        params = self.compiled.parameters
        self.log(
            f"pipeline {self.compiled.path.name} · run {self.run_id} · target {self.target} · "
            f"{_rel(self.run_dir, self.workdir)}"
        )
        if params:
            self.log(
                "  parameters: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items())
            )
        for stage, deps in order:
            try:
                self.run_stage(stage, deps)
            except WorkbookError as e:  # a runtime expression or construct we cannot run
                record = self.stages[str(stage["stage"])]
                record.result, record.reason = FAILED, str(e)
                self.write(started, time.monotonic() - t0)
                raise
            self.write(started, time.monotonic() - t0)
        result = self.write(started, time.monotonic() - t0)
        marks = " · ".join(f"{s.name} {MARK[s.result]}" for s in result.stages)
        self.log(f"pipeline {result.result} in {_duration(result.duration_s)}: {marks}")
        if self.not_rehearsed:
            self.log("not rehearsed here (needs Azure):")
            for line in self.not_rehearsed_lines():
                self.log(f"  - {line}")
        return result

    def result(self, started: str, duration: float) -> PipelineResult:
        stages = list(self.stages.values())
        if any(s.result == CANCELED for s in stages) or self.canceled:
            overall = CANCELED
        elif any(s.result == FAILED for s in stages):
            overall = FAILED
        elif any(s.result == WITH_ISSUES for s in stages):
            overall = WITH_ISSUES
        else:
            overall = SUCCEEDED
        return PipelineResult(
            run_id=self.run_id,
            run_dir=self.run_dir,
            pipeline=str(_rel(self.compiled.path, self.workdir)),
            target=self.target,
            parameters=self.compiled.parameters,
            result=overall,
            started=started,
            duration_s=round(duration, 3),
            stages=stages,
            not_rehearsed=self.not_rehearsed_lines(),
        )

    def write(self, started: str, duration: float) -> PipelineResult:
        result = self.result(started, duration)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(result.to_dict(), indent=2, default=str) + "\n"
        write_atomic(self.run_dir / "pipeline.json", text)
        return result

    def run_stage(self, stage: dict[str, Any], depends_on: list[str]) -> None:
        name = str(stage["stage"])
        display = str(stage.get("displayName") or name)
        condition = stage.get("condition", "succeeded()")
        record = StageRun(name, display, depends_on, str(condition), SKIPPED, started=_now())
        self.stages[name] = record
        # as in Azure, a stage's status functions see its direct and indirect dependencies
        graph = {n: s.depends_on for n, s in self.stages.items()}
        dep_results = {d: self.stages[d].result for d in upstream(name, graph)}
        names = self._dependency_contexts(depends_on)
        # a stage condition knows `dependencies` only; `stageDependencies` is for jobs
        # (learn.microsoft.com/azure/devops/pipelines/process/expressions#dependencies)
        condition_names = {"dependencies": names["dependencies"]}
        t0 = time.monotonic()
        functions = status_functions(dep_results, canceled=self.canceled)
        where = f"stage {name}"
        if not self._condition(condition, functions, self.variables, condition_names, where):
            record.reason = _skip_reason(condition, dep_results, self.canceled)
            self.log(f"{MARK[SKIPPED]} {name} skipped: {record.reason}")
            return
        self.log(f"▶ stage {name}" + (f" ({display})" if display != name else ""))
        scope = self.variables.child()
        scope.set("System.StageName", name, readonly=True)
        scope.set("System.StageDisplayName", display, readonly=True)
        scope.set("System.StageAttempt", "1", readonly=True)
        self._define(scope, stage.get("variables"), names, f"stage {name}")
        jobs = list(stage.get("jobs") or [])
        ordered = job_order(jobs)
        graph = {_job_name(j)[0]: d for j, d in ordered}
        jobs_done: dict[str, JobRun] = {}
        for job, job_deps in ordered:
            job_run = self.run_job(record, scope, job, job_deps, graph, jobs_done, names)
            jobs_done[job_run.name] = job_run
            record.jobs.append(job_run)
        results = [j.result for j in record.jobs]
        if any(r == CANCELED for r in results):
            record.result = CANCELED
        elif any(r == FAILED for r in results):
            record.result = FAILED
        elif not results or all(r == SKIPPED for r in results):
            record.result = SKIPPED
            record.reason = "every job was skipped"
        elif any(r == WITH_ISSUES for r in results):
            record.result = WITH_ISSUES
        else:
            record.result = SUCCEEDED
        record.duration_s = round(time.monotonic() - t0, 3)
        self.log(f"{MARK[record.result]} {name} {record.result} in {_duration(record.duration_s)}")

    # -- jobs ------------------------------------------------------------------------------

    def run_job(
        self,
        stage: StageRun,
        stage_scope: Variables,
        job: dict[str, Any],
        depends_on: list[str],
        graph: Mapping[str, list[str]],
        done: Mapping[str, JobRun],
        stage_names: Mapping[str, Any],
    ) -> JobRun:
        name, kind = _job_name(job)
        display = str(job.get("displayName") or name)
        record = JobRun(name, display, kind, SKIPPED, started=_now())
        # status functions see every job this one depends on, directly or not (conditions#)
        dep_results = {d: done[d].result for d in upstream(name, graph)}
        names = {
            **stage_names,
            "dependencies": {
                d: {"result": AZURE_RESULT[done[d].result], "outputs": dict(done[d].outputs)}
                for d in depends_on
            },
        }
        condition = job.get("condition", "succeeded()")
        functions = status_functions(dep_results, canceled=self.canceled)
        where = unit_name(stage.name, kind, name)
        if not self._condition(condition, functions, stage_scope, names, where):
            record.reason = _skip_reason(condition, dep_results, self.canceled)
            self.log(f"  {MARK[SKIPPED]} {kind} {name} skipped: {record.reason}")
            return record
        scope = stage_scope.child()
        for var, value in {
            "System.JobName": name,
            "System.JobDisplayName": display,
            "System.PhaseName": name,
            "System.JobAttempt": "1",
            "Agent.JobName": display,
            "Agent.JobStatus": "Succeeded",
        }.items():
            scope.set(var, value)
        self._define(scope, job.get("variables"), names, where)
        steps = self._job_steps(job, kind, record, scope, stage.name)
        env_note = f" → environment {record.environment}" if record.environment else ""
        self.log(f"  ▶ {kind} {name}{env_note}")
        t0 = time.monotonic()
        timeout = _minutes(job.get("timeoutInMinutes"))
        deadline = t0 + timeout if timeout else None
        status = SUCCEEDED
        cancels_seen = self.cancels
        path_prefix: list[str] = []
        ctx = _StepContext(self, stage, path_prefix)
        for hook, hook_steps in steps:
            # A deployment's lifecycle hooks run as jobs of their own, each with its own pool
            # (yaml-schema/jobs-deployment-strategy-run-once): its own job status and variables;
            # after a failed hook the next ones do not start, and `on: failure` or `on: success`
            # runs on the outcome.
            if not hook_steps:
                continue
            if hook.startswith("on."):
                if (hook == "on.failure") != (status == FAILED) or status == CANCELED:
                    continue
            elif status in (FAILED, CANCELED):
                continue
            hook_scope = scope.child() if kind == "deployment" else scope
            hook_status = SUCCEEDED
            hook_scope.set("Agent.JobStatus", AZURE_RESULT[hook_status])
            for step in hook_steps:
                if self.cancels > cancels_seen:  # canceled during or between steps
                    hook_status, cancels_seen = CANCELED, self.cancels
                n = len(record.steps) + 1
                step_run = self.run_step(
                    step, n, stage, record, hook_scope, ctx, hook_status, deadline
                )
                record.steps.append(step_run)
                hook_status = _merge(hook_status, step_run.result)
                hook_scope.set("Agent.JobStatus", AZURE_RESULT[hook_status])
            if self.cancels > cancels_seen:
                hook_status = CANCELED
            status = _merge(status, hook_status)
        if status == FAILED and _flag(job.get("continueOnError")):
            status = WITH_ISSUES
        record.result = status
        record.duration_s = round(time.monotonic() - t0, 3)
        return record

    def _job_steps(
        self, job: dict[str, Any], kind: str, record: JobRun, scope: Variables, stage: str
    ) -> list[tuple[str, list[dict[str, Any]]]]:
        """The step lists of a job in run order, as (hook, steps)."""
        strategy = job.get("strategy") or {}
        if kind == "job":
            if strategy:
                raise PipelineError(
                    f"job {record.name}: strategy {list(strategy)} is not supported"
                )
            return [("steps", list(job.get("steps") or []))]
        env = job.get("environment")
        env_name = env.get("name") if isinstance(env, Mapping) else env
        record.environment = scope.expand(str(env_name or ""))
        scope.set("Environment.Name", record.environment)
        scope.set("Strategy.Name", "runOnce")
        self.note_not_rehearsed(
            f"environment {record.environment}: its approvals and checks", f"{stage}/{record.name}"
        )
        if set(strategy) != {"runOnce"}:
            raise PipelineError(
                f"deployment {record.name}: strategy must be runOnce locally, got {list(strategy)}"
            )
        run_once = strategy["runOnce"] or {}
        hooks = [(h, list((run_once.get(h) or {}).get("steps") or [])) for h in RUNONCE_HOOKS]
        on = run_once.get("on") or {}
        hooks += [
            (f"on.{h}", list((on.get(h) or {}).get("steps") or [])) for h in ("failure", "success")
        ]
        return hooks

    # -- steps -----------------------------------------------------------------------------

    def run_step(
        self,
        step: dict[str, Any],
        index: int,
        stage: StageRun,
        job: JobRun,
        scope: Variables,
        ctx: _StepContext,
        status: str,
        deadline: float | None,
    ) -> StepRun:
        kind = next((k for k in _STEP_KINDS if k in step), "")
        ref = str(step.get("name") or f"__step{index}")
        display = scope.expand(str(step.get("displayName") or _default_display(kind, step)))
        record = StepRun(ref, display, SKIPPED)
        t0 = time.monotonic()
        condition = step.get("condition", "succeeded()")
        where = f"{unit_name(stage.name, job.kind, job.name)}, step {display}".removeprefix(
            "pipeline, "
        )
        if step.get("enabled") is not None and not _flag(step.get("enabled")):
            record.reason = "disabled (enabled: false)"
        elif not self._condition(condition, step_status_functions(status), scope, {}, where):
            record.reason = f"condition {condition} is false (job {AZURE_RESULT[status]})"
        else:
            outcome = self._execute(kind, step, index, stage, job, scope, ctx, record, deadline)
            record.result, record.reason = outcome.result, outcome.reason
            if record.result == FAILED and _flag(step.get("continueOnError")):
                record.result = WITH_ISSUES
        record.duration_s = round(time.monotonic() - t0, 3)
        note = f"  ({record.reason})" if record.reason else ""
        self.log(f"    {MARK[record.result]} {display:<44} {_duration(record.duration_s):>6}{note}")
        if record.result in (FAILED, WITH_ISSUES) and record.log and not self.verbose:
            for line in _tail(self.workdir / record.log, TAIL_LINES):
                self.log(f"      | {line}")
        return record

    def _execute(
        self,
        kind: str,
        step: dict[str, Any],
        index: int,
        stage: StageRun,
        job: JobRun,
        scope: Variables,
        ctx: _StepContext,
        record: StepRun,
        deadline: float | None,
    ) -> tasks.Outcome:
        if kind in ("script", "bash"):
            retries = int(str(step.get("retryCountOnTaskFailure") or 0))
            outcome = tasks.Outcome(FAILED)
            for _ in range(retries + 1):
                outcome = self._shell(step, kind, index, stage, job, scope, ctx, record, deadline)
                if outcome.result != FAILED:
                    break
            return outcome
        if kind == "task":
            name = str(step["task"])
            handler = tasks.get_task(name)
            if handler is None:  # check_supported refuses these before the run
                raise PipelineError(f"task {name} is not supported by the local runner")
            inputs = {str(k): scope.expand(str(v)) for k, v in (step.get("inputs") or {}).items()}
            outcome = handler(inputs, ctx)
            if outcome.result == SKIPPED and outcome.reason.startswith(tasks.NEEDS_AZURE):
                shown = ", ".join(f"{k}={_short(v)}" for k, v in inputs.items())
                self.note_not_rehearsed(f"{name} with {shown}", f"{stage.name}/{job.name}")
            return outcome
        if kind == "publish":
            path = Path(scope.expand(str(step["publish"])))
            artifact = scope.expand(str(step.get("artifact") or job.name))
            return self.publish(
                stage, path if path.is_absolute() else self.workdir / path, artifact
            )
        if kind == "checkout":
            return tasks.Outcome(SKIPPED, f"the working tree {self.workdir} is used as it is")
        if kind == "download":
            return tasks.Outcome(SKIPPED, f"this run's artifacts are already under {self.run_dir}")
        raise PipelineError(f"step {sorted(step)} is not supported by the local runner")

    def _shell(
        self,
        step: dict[str, Any],
        kind: str,
        index: int,
        stage: StageRun,
        job: JobRun,
        scope: Variables,
        ctx: _StepContext,
        record: StepRun,
        deadline: float | None,
    ) -> tasks.Outcome:
        script = scope.expand(str(step[kind]))
        script_file = self.temp / f"{uuid.uuid4().hex}.sh"
        script_file.write_text(script + "\n", encoding="utf-8")
        log_path = (
            self.run_dir
            / stage.name
            / "logs"
            / job.name
            / f"{index:02d}-{_slug(record.display_name)}.log"
        )
        log_path.parent.mkdir(parents=True, exist_ok=True)
        record.log = str(_rel(log_path, self.workdir))
        env = {**os.environ, **scope.environment()}
        env.pop("TF_BUILD", None)  # Azure agents set it; this is not one
        masked = list(scope.secrets())
        for k, v in (step.get("env") or {}).items():
            value = scope.expand(str(v))
            undefined = _UNDEFINED_MACRO.fullmatch(value)
            if undefined and env_name(undefined.group(1)) in os.environ:
                # e.g. $(AZURE_CLIENT_SECRET) from a variable group that is skipped here: the
                # value this machine has stays, and is masked like a secret in the logs
                value = os.environ[env_name(undefined.group(1))]
                masked.append(value)
            env[str(k)] = value
        if ctx.path_prefix:
            env["PATH"] = os.pathsep.join([*ctx.path_prefix, env.get("PATH", "")])
        cwd = Path(scope.expand(str(step.get("workingDirectory") or self.workdir)))
        cwd = cwd if cwd.is_absolute() else self.workdir / cwd
        if not cwd.is_dir():
            return tasks.Outcome(FAILED, f"working directory {cwd} does not exist")
        timeout = _minutes(step.get("timeoutInMinutes"))
        limit = deadline if deadline is not None else float("inf")
        if timeout is not None:
            limit = min(limit, time.monotonic() + timeout)
        cancels_seen = self.cancels
        with open(log_path, "w", encoding="utf-8") as out:
            proc = subprocess.Popen(
                ["bash", "--noprofile", "--norc", str(script_file)],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            code, ended = self._wait(proc, log_path, limit, masked, cancels_seen)
        script_file.unlink(missing_ok=True)
        record.exit_code = code
        text = log_path.read_text(encoding="utf-8", errors="replace")
        outcome = tasks.Outcome(SUCCEEDED if code == 0 else FAILED)
        if ended == "canceled":
            outcome = tasks.Outcome(CANCELED, "canceled")
        elif ended == "timeout":
            outcome.reason = "timed out"
        elif code != 0:
            outcome.reason = f"exit code {code}"
        for line in text.splitlines():
            command = parse_command(line)
            if command is not None:
                self._apply(command, scope, stage, job, record, ctx, cwd, outcome)
                if command.name == "task.setvariable" and command.flag("issecret"):
                    masked.append(command.message)
        masked = [s for s in masked if s]
        if masked:
            log_path.write_text(mask(text, masked), encoding="utf-8")
        return outcome

    def _wait(
        self,
        proc: subprocess.Popen[bytes],
        log_path: Path,
        limit: float,
        secrets: list[str],
        cancels_seen: int,
    ) -> tuple[int, str]:
        """Wait for the step, streaming its log when verbose; stop its process group on timeout
        or cancel. Returns the exit code and how it ended: ``exit``, ``timeout``, ``canceled``."""
        pos = 0
        while True:
            try:
                code = proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                code = None
            if self.verbose:
                pos = self._stream(log_path, pos, secrets, final=code is not None)
            if code is not None:
                return code, "exit"
            canceled = self.cancels > cancels_seen
            if canceled or time.monotonic() > limit:
                _stop(proc)
                return proc.returncode or 124, "canceled" if canceled else "timeout"

    def _stream(self, log_path: Path, pos: int, secrets: list[str], *, final: bool) -> int:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            f.seek(pos)
            chunk = f.read()
        if not final and "\n" in chunk:
            chunk = chunk[: chunk.rindex("\n") + 1]
        elif not final:
            return pos
        for line in chunk.splitlines():
            command = parse_command(line)
            if command and command.name == "task.setvariable" and command.flag("issecret"):
                secrets.append(command.message)  # masked from here on, as the agent does
            self.log(f"      {mask(line, [s for s in secrets if s])}")
        return pos + len(chunk.encode("utf-8"))

    def _apply(
        self,
        command: Command,
        scope: Variables,
        stage: StageRun,
        job: JobRun,
        step: StepRun,
        ctx: _StepContext,
        cwd: Path,
        outcome: tasks.Outcome,
    ) -> None:
        """Do what a logging command asks."""
        if command.name == "task.setvariable":
            var = command.properties.get("variable", "")
            if not var:
                return
            secret = command.flag("issecret")
            if command.flag("isoutput"):
                # a deployment job's outputs carry its name first: dependencies.D.outputs
                # ['D.step.var'] (learn.microsoft.com/azure/devops/pipelines/process/
                # deployment-jobs#support-for-output-variables); a regular job's do not
                prefix = f"{job.name}." if job.kind == "deployment" else ""
                job.outputs[f"{prefix}{step.name}.{var}"] = command.message
                scope.set(f"{step.name}.{var}", command.message, secret=secret)
            else:
                existing = scope.lookup(var)
                if existing is not None and existing.readonly:
                    self.log(f"      ! variable {var} is read-only; not changed")
                    return
                scope.set(var, command.message, secret=secret, readonly=command.flag("isreadonly"))
        elif command.name in ("task.uploadsummary", "task.addattachment"):
            if (
                command.name == "task.addattachment"
                and "summary" not in command.properties.get("type", "").lower()
            ):
                return
            path = Path(command.message.strip())
            self.upload_summary(stage, path if path.is_absolute() else cwd / path)
        elif command.name == "task.prependpath":
            ctx.prepend_path(Path(command.message.strip()))
        elif command.name == "task.complete":
            result = command.properties.get("result", "Succeeded").lower()
            outcome.result = {"failed": FAILED, "succeededwithissues": WITH_ISSUES}.get(
                result, SUCCEEDED
            )
            outcome.reason = command.message or f"task.complete result={result}"
        elif command.name == "artifact.upload":
            name = command.properties.get("artifactname", job.name)
            path = Path(command.message.strip())
            self.publish(stage, path if path.is_absolute() else cwd / path, name)
        elif command.name == "task.logissue":
            kind = command.properties.get("type", "warning")
            self.log(f"      {kind}: {command.message}")

    # -- outputs of a run ------------------------------------------------------------------

    def publish(self, stage: StageRun, path: Path, artifact: str) -> tasks.Outcome:
        """Copy a file or directory to ``runs/<id>/<stage>/artifacts/<artifact>``."""
        if not re.fullmatch(r"[\w.\- ]+", artifact):
            return tasks.Outcome(FAILED, f"artifact name {artifact!r} is not valid")
        if artifact.casefold() in self.artifact_names:
            return tasks.Outcome(FAILED, f"artifact {artifact!r} was already published in this run")
        if not path.exists():
            return tasks.Outcome(FAILED, f"nothing to publish: {path} does not exist")
        dest = self.run_dir / stage.name / "artifacts" / artifact
        dest.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, dest, dirs_exist_ok=True)
        else:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / path.name)
        self.artifact_names.add(artifact.casefold())
        rel = str(_rel(dest, self.workdir))
        stage.artifacts.append(rel)
        return tasks.Outcome(SUCCEEDED, f"artifact {artifact} → {rel}")

    def upload_summary(self, stage: StageRun, path: Path) -> None:
        """Append a markdown file to ``runs/<id>/<stage>/summary.md``."""
        if not path.is_file():
            self.log(f"      ! summary {path} does not exist; not uploaded")
            return
        dest = self.run_dir / stage.name / "summary.md"
        dest.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text(encoding="utf-8", errors="replace")
        if dest.exists():
            text = dest.read_text(encoding="utf-8") + "\n" + text
        dest.write_text(text, encoding="utf-8")
        stage.summary = str(_rel(dest, self.workdir))


_STEP_KINDS = (
    "script",
    "bash",
    "pwsh",
    "powershell",
    "task",
    "checkout",
    "download",
    "publish",
    "getPackage",
    "upload",
    "reviewApp",
)


def _default_display(kind: str, step: Mapping[str, Any]) -> str:
    if kind == "task":
        return str(step["task"])
    if kind == "checkout":
        return f"Checkout {step['checkout']}"
    if kind in ("script", "bash"):
        first = str(step[kind]).strip().splitlines()
        return (first[0] if first else kind)[:40]
    return kind or "step"


def _skip_reason(condition: Any, deps: Mapping[str, str], canceled: bool) -> str:
    bad = {d: r for d, r in deps.items() if r not in OK_RESULTS}
    if str(condition).replace(" ", "") == "succeeded()" and (bad or canceled):
        parts = [f"{d} {r}" for d, r in bad.items()] + (["the run is canceled"] if canceled else [])
        return "a dependency did not succeed (" + ", ".join(parts) + ")"
    return f"condition {condition} is false"


def _short(text: str, limit: int = 60) -> str:
    """A task input as the run's summary shows it: one line, at most ``limit`` characters."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def unit_name(stage: str, kind: str = "", job: str = "") -> str:
    """``stage Deploy, job main`` for messages; a steps-only pipeline's implicit stage and job
    (``__default``) are not named."""
    parts = [f"stage {stage}" if stage != "__default" else ""]
    parts.append(f"{kind} {job}" if job and job != "__default" else "")
    return ", ".join(p for p in parts if p) or "pipeline"


def _merge(status: str, result: str) -> str:
    """A job's status after a step ended with ``result``: canceled > failed > with issues."""
    for worst in (CANCELED, FAILED, WITH_ISSUES):
        if worst in (status, result):
            return worst
    return status


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the step's process group, SIGKILL after 10 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def compile_time_variables(workdir: Path) -> dict[str, str]:
    """Predefined variables that ``${{ }}`` expressions can read (the repository's git state)."""
    return {"Build.Reason": "Manual", **_git_variables(workdir)}


def _git_variables(workdir: Path) -> dict[str, str]:
    """``Build.SourceBranch``, ``Build.SourceBranchName``, ``Build.SourceVersion`` from git."""

    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", *args], cwd=workdir, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    branch, commit = git("symbolic-ref", "-q", "HEAD"), git("rev-parse", "HEAD")
    out = {}
    if branch:
        out["Build.SourceBranch"] = branch
        out["Build.SourceBranchName"] = branch.rsplit("/", 1)[-1]
    if commit:
        out["Build.SourceVersion"] = commit
    return out


def _minutes(value: Any) -> float | None:
    if value in (None, "", "0", 0):
        return None
    return float(str(value)) * 60


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _rel(path: Path, base: Path) -> Path:
    try:
        return path.resolve().relative_to(base.resolve())
    except ValueError:
        return path


def _tail(path: Path, n: int) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if not line.lstrip().startswith("##vso[")][-n:]


def _new_run_id(workdir: Path) -> str:
    from workbook.notebooks import new_run_id

    base = new_run_id()
    run_id, n = base, 1
    while (workdir / "runs" / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def _print(line: str) -> None:
    print(line, flush=True)


def run_pipeline(
    path: Path | str,
    *,
    target: str | None,
    run_id: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    workdir: Path | str,
    verbose: bool = False,
    log: Log | None = None,
) -> PipelineResult:
    """Compile and run a pipeline; ``target`` overrides its ``target`` parameter when declared.

    ``workdir`` is the repository root (``System.DefaultWorkingDirectory``); the run writes
    under ``workdir/runs/<run-id>/``. Returns the result whether or not a stage failed.
    """
    workdir = Path(workdir).resolve()
    path = Path(path)
    path = (path if path.is_absolute() else workdir / path).resolve()
    params = dict(parameters or {})
    if target is not None:
        params["target"] = target
    compiled = compile_pipeline(
        path,
        params,
        repo_root=workdir,
        ignore_unknown=("target", "canaryWeights"),
        predefined=compile_time_variables(workdir),
    )
    if run_id is None:
        run_id = _new_run_id(workdir)
    elif not re.fullmatch(r"[\w.\-]+", run_id):
        raise ConfigError(
            "pipeline run", "--run-id", f"must be letters, digits, _.-, got {run_id!r}"
        )
    elif (workdir / "runs" / run_id).exists():
        raise ConfigError("pipeline run", "--run-id", f"{run_id} exists already under runs/")
    effective = compiled.parameters.get("target", target)
    run = _Run(
        compiled,
        run_id=run_id,
        workdir=workdir,
        target=None if effective is None else str(effective),
        verbose=verbose,
        log=log or _print,
    )
    with _cancel_on_signals(run):
        return run.run()


@contextlib.contextmanager
def _cancel_on_signals(run: _Run) -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM cancel the run the way Cancel does on Azure, instead of
    killing the runner: Rollback and ``always()`` steps still run. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda number, _frame: run.cancel(signal.Signals(number).name))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


__all__ = [
    "PipelineError",
    "PipelineFailedError",
    "PipelineResult",
    "StageRun",
    "run_pipeline",
    "stage_order",
]
