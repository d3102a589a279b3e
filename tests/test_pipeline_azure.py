"""Static and behavioural checks of the real azure-pipelines.yml for what only Azure DevOps runs.

What a local run cannot show: kubelogin for Entra ID (AAD) clusters, per-attempt artifact names,
Rollback after a cancel or a timed-out approval in an environment of its own, serialised runs,
a lean cached install, optional variables that are really optional. Each check cites the
Microsoft page or source it follows; ``pipelines/...`` means
https://learn.microsoft.com/azure/devops/pipelines/....
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from workbook.pipeline import compile_pipeline, register_cli
from workbook.pipeline.cli import pipeline_parameters
from workbook.pipeline.expressions import Evaluator, truthy
from workbook.pipeline.runner import status_functions
from workbook.pipeline.variables import Variables

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "azure-pipelines.yml"


@pytest.fixture(scope="module")
def k8s() -> dict[str, Any]:
    return compile_pipeline(PIPELINE, {"target": "k8s"}, repo_root=ROOT).document


def stage(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["stages"] if s["stage"] == name)


def job_steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    if "steps" in job:
        return list(job["steps"])
    return list(job["strategy"]["runOnce"]["deploy"]["steps"])


def jobs(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for s in doc["stages"]:
        for j in s["jobs"]:
            yield s["stage"], j


def task_index(steps: list[dict[str, Any]], task: str) -> int:
    return next(i for i, s in enumerate(steps) if s.get("task") == task)


# --- kubelogin --------------------------------------------------------------------------------


def test_every_job_installs_kubelogin_before_it_reaches_the_cluster(k8s: dict[str, Any]) -> None:
    """Hosted agents have no kubelogin (learn.microsoft.com/azure/aks/kubelogin-authentication);
    KubeloginInstaller@0 (microsoft/azure-pipelines-tasks Tasks/KubeloginInstallerV0) puts it on
    PATH before AzureCLI@2 writes the kubeconfig and before any notebook talks to the cluster."""
    for name, job in jobs(k8s):
        steps = job_steps(job)
        installer, credentials = (
            task_index(steps, "KubeloginInstaller@0"),
            task_index(steps, "AzureCLI@2"),
        )
        first_notebook = next(i for i, s in enumerate(steps) if "papermill" in s.get("script", ""))
        assert installer < credentials < first_notebook, name


def credentials_script(doc: dict[str, Any]) -> str:
    steps = job_steps(stage(doc, "DeployCanary")["jobs"][0])
    script = str(steps[task_index(steps, "AzureCLI@2")]["inputs"]["inlineScript"])
    variables = Variables()
    variables.set("AKS_RESOURCE_GROUP", "rg")
    variables.set("AKS_CLUSTER", "aks1")
    return variables.expand(script)


def run_with_fakes(tmp_path: Path, script: str, user_exec: str, kubelogin: bool) -> tuple[int, str]:
    """The AzureCLI@2 inline script with fake az/kubectl (and kubelogin) as the only tools."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fakes = {
        "az": 'echo az "$@" >> CALLS',
        "kubectl": f"case \"$*\" in *jsonpath*) echo '{user_exec}' ;; *) echo ctx ;; esac",
    }
    if kubelogin:
        fakes["kubelogin"] = 'echo kubelogin "$@" >> CALLS'
    for name, body in fakes.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/bash\n{body.replace('CALLS', str(calls))}\n")
        path.chmod(0o755)
    (bin_dir / "basename").symlink_to("/usr/bin/basename")
    proc = subprocess.run(
        ["/bin/bash", "-c", script],
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    return proc.returncode, proc.stdout + (calls.read_text() if calls.exists() else "")


def test_an_aad_cluster_without_kubelogin_fails_loudly(tmp_path: Path, k8s: dict[str, Any]) -> None:
    code, out = run_with_fakes(tmp_path, credentials_script(k8s), "kubelogin", kubelogin=False)
    assert code != 0
    assert "##vso[task.logissue type=error]AKS cluster aks1 uses Entra ID (AAD)" in out


def test_an_aad_cluster_is_converted_to_the_service_principal(
    tmp_path: Path, k8s: dict[str, Any]
) -> None:
    code, out = run_with_fakes(tmp_path, credentials_script(k8s), "kubelogin", kubelogin=True)
    assert code == 0, out
    assert "az aks get-credentials --resource-group rg --name aks1" in out
    assert "kubelogin convert-kubeconfig -l spn" in out


def test_a_cluster_with_local_accounts_needs_no_kubelogin(
    tmp_path: Path, k8s: dict[str, Any]
) -> None:
    code, out = run_with_fakes(tmp_path, credentials_script(k8s), "", kubelogin=False)
    assert code == 0, out
    assert "kubelogin" not in out


# --- artifacts, Rollback, serialised runs ----------------------------------------------------


def test_artifact_names_are_unique_per_stage_attempt(k8s: dict[str, Any]) -> None:
    """An artifact name is published once per run; System.StageAttempt counts a stage's retries
    (pipelines/build/variables#system-variables), so a retried stage publishes under a new name."""
    names = [
        s["inputs"]["artifact"]
        for _, job in jobs(k8s)
        for s in job_steps(job)
        if s.get("task") == "PublishPipelineArtifact@1"
    ]
    assert names and all("$(System.StageAttempt)" in n for n in names)
    assert all("$(System.StageName)" in n for n in names)


def deployment_environments(doc: dict[str, Any]) -> dict[str, str]:
    return {s: str(j["environment"]) for s, j in jobs(doc) if "deployment" in j}


def test_rollback_has_an_environment_of_its_own(k8s: dict[str, Any]) -> None:
    """Approvals and checks belong to an environment and gate every stage that uses it
    (pipelines/process/approvals); Rollback's environment is none of the others'."""
    envs = deployment_environments(k8s)
    rollback = envs.pop("Rollback")
    assert envs and rollback not in envs.values()


def rollback_runs(doc: dict[str, Any], results: dict[str, str], canceled: bool = False) -> bool:
    """Rollback's stage condition, then its job's condition, under Azure's semantics: results
    as pipelines/process/expressions#stage-to-stage-dependencies lists them."""
    rollback = stage(doc, "Rollback")
    deps = {n: {"result": r, "outputs": {}} for n, r in results.items()}
    ok = {"Succeeded": "succeeded", "SucceededWithIssues": "succeededWithIssues"}
    internal = {n: ok.get(r, r.lower()) for n, r in results.items()}
    functions = status_functions(internal, canceled=canceled)
    names = {"dependencies": deps, "variables": {}}
    if not truthy(Evaluator(names, functions).evaluate(rollback["condition"])):
        return False
    job = rollback["jobs"][0]
    job_functions = status_functions({}, canceled=canceled)
    return truthy(Evaluator(names, job_functions).evaluate(job.get("condition", "succeeded()")))


ALL_OK = {
    "Package": "Succeeded",
    "DeployCanary": "Succeeded",
    "Shift_10": "Succeeded",
    "Shift_50": "Succeeded",
    "Shift_100": "Succeeded",
    "Promote": "Succeeded",
}


@pytest.mark.parametrize(
    ("case", "changes", "canceled", "expected"),
    [
        ("promoted", {}, False, False),
        (
            "a shift failed",
            {"Shift_50": "Failed", "Shift_100": "Skipped", "Promote": "Skipped"},
            False,
            True,
        ),
        # pipelines/process/conditions#condition-outcomes-when-a-build-is-canceled
        (
            "canceled during a shift",
            {"Shift_50": "Canceled", "Shift_100": "Skipped", "Promote": "Skipped"},
            True,
            True,
        ),
        # pipelines/process/approvals: checks not passed by their timeout: the stage is not run
        (
            "an approval timed out",
            {"Shift_100": "Skipped", "Promote": "Skipped"},
            False,
            True,
        ),
        ("promote failed", {"Promote": "Failed"}, False, True),
        (
            "package failed",
            dict.fromkeys(
                ["DeployCanary", "Shift_10", "Shift_50", "Shift_100", "Promote"], "Skipped"
            )
            | {"Package": "Failed"},
            False,
            False,
        ),
        (
            "canceled during package",
            dict.fromkeys(
                ["DeployCanary", "Shift_10", "Shift_50", "Shift_100", "Promote"], "Skipped"
            )
            | {"Package": "Canceled"},
            True,
            False,
        ),
    ],
)
def test_rollback_runs_whenever_the_rollout_started_and_was_not_promoted(
    k8s: dict[str, Any], case: str, changes: dict[str, str], canceled: bool, expected: bool
) -> None:
    assert rollback_runs(k8s, {**ALL_OK, **changes}, canceled) is expected, case


def test_runs_are_serialised() -> None:
    """`batch: true` starts no CI run while one is in progress (pipelines/repos/azure-repos-git#
    batching-ci-runs); `lockBehavior: sequential` queues runs on an environment's Exclusive lock
    check instead of cancelling older ones (pipelines/process/approvals#exclusive-lock)."""
    raw = yaml.load(PIPELINE.read_text(), Loader=yaml.BaseLoader)
    assert raw["trigger"]["batch"] == "true"
    assert raw["lockBehavior"] == "sequential"


# --- a lean, cached install -------------------------------------------------------------------


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{path.name}: {line} is not pinned with =="
            out[name.lower().replace("_", "-")] = version
    return out


def test_the_pipeline_installs_its_runtime_requirements_with_a_pip_cache(
    k8s: dict[str, Any],
) -> None:
    """Cache@2 before pip, keyed on the requirements file (pipelines/release/caching#pythonpip)."""
    steps = job_steps(stage(k8s, "Package")["jobs"][0])
    cache = task_index(steps, "Cache@2")
    install = next(i for i, s in enumerate(steps) if "pip install" in s.get("script", ""))
    assert cache < install
    assert "requirements-pipeline.txt" in steps[cache]["inputs"]["key"]
    assert steps[cache]["inputs"]["path"] == "$(PIP_CACHE_DIR)"
    assert "-r requirements-pipeline.txt" in steps[install]["script"]
    variables = {v["name"]: v["value"] for v in k8s["variables"] if "name" in v}
    assert variables["PIP_CACHE_DIR"].startswith("$(Pipeline.Workspace)")


def test_runtime_requirements_are_pinned_as_in_requirements_txt() -> None:
    runtime, full = pins(ROOT / "requirements-pipeline.txt"), pins(ROOT / "requirements.txt")
    assert {k: full.get(k) for k in runtime} == runtime
    dev = {"jupyter", "jupyterlab", "nbval", "pytest", "pytest-asyncio", "ruff", "mypy", "kmock"}
    assert not dev & set(runtime)
    assert not [k for k in runtime if k.startswith("types-")]
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dependency in declared:
        name = re.split(r"[=<>!~\[; ]", dependency, maxsplit=1)[0].lower()
        assert name in runtime, f"pyproject dependency {name} is missing"
    # what the notebooks import besides the package: pandas, yaml, IPython (ipykernel's)
    assert {"pandas", "pyyaml", "ipykernel", "papermill"} <= set(runtime)


# --- optional variables -----------------------------------------------------------------------


def notebook_guard(doc: dict[str, Any]) -> str:
    steps = job_steps(stage(doc, "DeployCanary")["jobs"][0])
    script = next(s["script"] for s in steps if "papermill" in s.get("script", ""))
    return script[: script.index('out="')]


def test_a_variable_missing_from_the_group_is_unset_not_a_literal_macro(
    k8s: dict[str, Any],
) -> None:
    """Macro syntax leaves an undefined variable as it is written (pipelines/process/variables#
    macro-syntax-variables), so an env: mapping of a missing variable reads `$(NAME)`."""
    env = {
        "PATH": os.environ["PATH"],
        "ACR_PASSWORD": "$(ACR_PASSWORD)",
        "AAD_SERVICE_PRINCIPAL_CLIENT_ID": "$(AZURE_CLIENT_ID)",
        "AZURE_CLIENT_SECRET": "s3cret",
    }
    script = (
        notebook_guard(k8s)
        + '\necho "ACR=${ACR_PASSWORD-unset} ID=${AAD_SERVICE_PRINCIPAL_CLIENT_ID-unset}"'
        + '\necho "SECRET=$AZURE_CLIENT_SECRET"\n'
    )
    proc = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert "ACR=unset ID=unset\nSECRET=s3cret" in proc.stdout


# --- the stage plan ---------------------------------------------------------------------------


def test_workbook_stages_is_the_default_plan_and_reaches_the_steps(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """WORKBOOK_STAGES=20,60 (workbook.settings) gives stages Shift_20 and Shift_60, and the
    steps see the same plan in WORKBOOK_STAGES (a pipeline variable)."""
    monkeypatch.setenv("WORKBOOK_STAGES", "20,60")
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["pipeline", "expand", str(PIPELINE), "--target", "k8s"])
    args.func(args)
    doc = yaml.safe_load(capsys.readouterr().out)
    shifts = [s["stage"] for s in doc["stages"] if s["stage"].startswith("Shift_")]
    assert shifts == ["Shift_20", "Shift_60"]
    variables = {v["name"]: v["value"] for v in doc["variables"] if "name" in v}
    assert variables["WORKBOOK_STAGES"] == "20,60"
    assert stage(doc, "Promote")["dependsOn"][-2:] == shifts


def test_a_given_canary_weights_wins_over_workbook_stages() -> None:
    env = {"WORKBOOK_STAGES": "20,60"}
    assert pipeline_parameters([], env)["canaryWeights"] == [20, 60]
    assert pipeline_parameters(["canaryWeights=[5, 100]"], env)["canaryWeights"] == ["5", "100"]
