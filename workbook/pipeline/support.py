"""What the local runner can run faithfully; everything else is refused before the run starts.

A construct the runner would run differently from Azure Pipelines (another shell, a container, a
matrix, a deployment strategy other than ``runOnce``, an agentless job, a task it does not know)
stops the run before it starts: ``first_unsupported`` names the construct, the unit that uses it
and the file:line it comes from. Pure: reads the compiled pipeline only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from workbook.pipeline import tasks
from workbook.pipeline.template import CompiledPipeline

RUNONCE_HOOKS = ("preDeploy", "deploy", "routeTraffic", "postRouteTraffic")
STAGE_KEYS = {
    "stage",
    "displayName",
    "dependsOn",
    "condition",
    "variables",
    "jobs",
    "lockBehavior",
    "pool",
    "templateContext",
}
JOB_KEYS = {
    "job",
    "deployment",
    "displayName",
    "dependsOn",
    "condition",
    "continueOnError",
    "timeoutInMinutes",
    "cancelTimeoutInMinutes",
    "variables",
    "steps",
    "pool",
    "workspace",
    "environment",
    "strategy",
    "templateContext",
}
STEP_KINDS = ("script", "bash", "task", "checkout", "download", "publish")
STEP_KEYS = {
    *STEP_KINDS,
    "name",
    "displayName",
    "condition",
    "continueOnError",
    "enabled",
    "env",
    "timeoutInMinutes",
    "retryCountOnTaskFailure",
    "workingDirectory",
    "inputs",
    "failOnStderr",
    "fetchDepth",
    "clean",
    "persistCredentials",
    "lfs",
    "submodules",
    "path",
    "artifact",
    "patterns",
}
#: What a refused key means, by key.
WHY = {
    "container": "steps in a container image",
    "services": "service containers",
    "target": "a step target container",
    "pwsh": "PowerShell; only bash and script steps run here",
    "powershell": "Windows PowerShell; only bash and script steps run here",
    "getPackage": "a package feed download",
    "downloadBuild": "artifacts of another build",
    "reviewApp": "a review app resource",
    "upload": "an upload step",
    "uses": "repository and pool resources",
    "trigger": "a manual stage trigger",
    "isSkippable": "a stage that may be skipped by hand",
}


def _unit_problems(
    node: Mapping[str, Any], allowed: set[str], what: str
) -> Iterator[tuple[str, str]]:
    for key in node:
        if key not in allowed:
            why = f" ({WHY[key]})" if key in WHY else ""
            yield key, f"{what}: {key}{why} is not supported by the local runner"


def problems(compiled: CompiledPipeline) -> Iterator[tuple[str, str]]:
    """``(construct, message)`` for every construct the local runner refuses."""
    for key in ("resources", "extends", "containers"):
        if compiled.document.get(key):
            yield key, f"pipeline: {key} is not supported locally"
    for stage in compiled.stages:
        sname = _named("stage", stage.get("stage"))
        yield from _unit_problems(stage, STAGE_KEYS, sname)
        for job in stage.get("jobs") or []:
            if not isinstance(job, Mapping):
                yield str(job), f"{sname or 'pipeline'}: jobs entry {job!r} is not a job"
                continue
            kind = "deployment" if "deployment" in job else "job"
            jname = ", ".join(n for n in (sname, _named(kind, job.get(kind))) if n) or "pipeline"
            yield from _unit_problems(job, JOB_KEYS, jname)
            pool = job.get("pool") or compiled.document.get("pool")
            if pool == "server" or (isinstance(pool, Mapping) and pool.get("name") == "server"):
                yield "pool: server", f"{jname}: agentless (server) jobs are not supported locally"
            image = str(pool.get("vmImage", "")) if isinstance(pool, Mapping) else ""
            if re.match(r"(windows|macos|vs20|win)", image, re.I):
                yield (
                    f"vmImage: {image}",
                    f"{jname}: vmImage {image}: its steps would run on another OS than this one",
                )
            yield from _numbers(job, jname, ("timeoutInMinutes", "cancelTimeoutInMinutes"))
            strategy = job.get("strategy") or {}
            if kind == "job" and strategy:
                why = "(matrix, parallel) is not supported by the local runner"
                yield "strategy", f"{jname}: strategy {list(strategy)} {why}"
            env = job.get("environment")
            if kind == "deployment":
                if set(strategy) != {"runOnce"}:
                    yield "strategy", f"{jname}: strategy {list(strategy)}: only runOnce runs here"
                if isinstance(env, Mapping) and set(env) - {"name"}:
                    extra = sorted(set(env) - {"name"})
                    why = f"environment resources ({', '.join(extra)}) are not emulated"
                    yield extra[0], f"{jname}: {why}"
                elif isinstance(env, str) and "." in env:
                    yield (
                        f"environment: {env}",
                        (
                            f"{jname}: environment resource {env!r} (environment.resource) is not "
                            "emulated"
                        ),
                    )
            shape = _shape_problem(job, kind)
            if shape is not None:
                yield "strategy" if kind == "deployment" else "steps", f"{jname}: {shape}"
                continue
            for step in _steps(job):
                yield from _step_problems(step, jname)


def _named(kind: str, name: Any) -> str:
    """``stage Deploy``; empty for the implicit stage or job of a steps-only pipeline."""
    return "" if name in (None, "__default") else f"{kind} {name}"


def _shape_problem(job: Mapping[str, Any], kind: str) -> str | None:
    """Why the job's step lists are not lists of steps where the schema wants them, or None."""
    if kind == "job":
        ok = isinstance(job.get("steps") or [], list)
        return None if ok else "steps must be a list of steps"
    strategy = job.get("strategy") or {}
    run_once = strategy.get("runOnce") if isinstance(strategy, Mapping) else None
    if run_once is None:
        return None  # reported as an unsupported strategy
    if not isinstance(run_once, Mapping):
        return "strategy.runOnce must be a mapping of lifecycle hooks"
    hooks = {h: run_once.get(h) for h in RUNONCE_HOOKS}
    on = run_once.get("on") or {}
    if not isinstance(on, Mapping):
        return "strategy.runOnce.on must be a mapping (failure, success)"
    hooks |= {f"on.{h}": on.get(h) for h in ("failure", "success")}
    for name, hook in hooks.items():
        if hook is None:
            continue
        if not isinstance(hook, Mapping) or not isinstance(hook.get("steps") or [], list):
            return f"strategy.runOnce.{name} must be a mapping with a list of steps"
    return None


def _steps(job: Mapping[str, Any]) -> Iterator[Any]:
    yield from job.get("steps") or []
    run_once = (job.get("strategy") or {}).get("runOnce") or {}
    for hook in RUNONCE_HOOKS:
        yield from (run_once.get(hook) or {}).get("steps") or []
    for hook in ("failure", "success"):
        yield from ((run_once.get("on") or {}).get(hook) or {}).get("steps") or []


def _step_problems(step: Any, where: str) -> Iterator[tuple[str, str]]:
    if not isinstance(step, Mapping):
        yield str(step), f"{where}: steps entry {step!r} is not a step"
        return
    kind = next((k for k in STEP_KINDS if k in step), None)
    if kind is None:
        if not step:
            yield "- {}", f"{where}: an empty step"
            return
        key = str(next((k for k in step if k in WHY), next(iter(step))))
        why = f" ({WHY[key]})" if key in WHY else ""
        yield key, f"{where}: a {key} step{why} is not supported by the local runner"
        return
    label = f"{where}, step {step.get('displayName') or step.get('name') or step[kind]}"
    label = label.removeprefix("pipeline, ")[:200]
    yield from _unit_problems(step, STEP_KEYS, label)
    yield from _numbers(step, label, ("timeoutInMinutes", "retryCountOnTaskFailure"))
    for key in ("env", "inputs"):
        if key in step and not isinstance(step[key], Mapping):
            yield f"{key}:", f"{label}: {key} must be a mapping of names to values"
    if kind == "task" and tasks.get_task(str(step["task"])) is None:
        yield (
            f"task: {step['task']}",
            (
                f"{label}: task {step['task']} is not supported by the local runner "
                f"(supported: {', '.join(tasks.task_names())})"
            ),
        )
    if kind == "checkout" and str(step["checkout"]) not in ("self", "none"):
        yield f"checkout: {step['checkout']}", f"{label}: checkout of another repository"
    if kind == "download" and str(step["download"]) not in ("current", "none"):
        yield f"download: {step['download']}", f"{label}: artifacts of another pipeline"


def _numbers(
    node: Mapping[str, Any], where: str, keys: tuple[str, ...]
) -> Iterator[tuple[str, str]]:
    for key in keys:
        if key in node and not re.fullmatch(r"\s*\d+(\.\d+)?\s*", str(node[key])):
            yield f"{key}:", f"{where}: {key} must be a number of 0 or more, got {node[key]!r}"


def first_unsupported(compiled: CompiledPipeline) -> str | None:
    """``file:line: unit: construct ...`` for the first construct the runner refuses, or None."""
    for construct, message in problems(compiled):
        return f"{compiled.locate(construct)}: {message}"
    return None
