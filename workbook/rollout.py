"""The flow without notebooks (``workbook rollout``, ``workbook demo``): steps run in-process."""

from __future__ import annotations

from typing import Any

from workbook import analysis, flow, operations, steps, workspace
from workbook.seam import Target
from workbook.settings import DEFAULT_REQUESTS


class DirectExecutor:
    """Runs the flow's steps against a target by calling ``workbook.steps`` directly."""

    def __init__(
        self,
        target: Target,
        *,
        requests: int = DEFAULT_REQUESTS,
        canary_env: dict[str, str] | None = None,
        gate: steps.Gate = analysis.judge,
        echo: operations.Echo = operations._quiet,
    ) -> None:
        self.target, self.requests, self.gate, self.echo = target, requests, gate, echo
        self.canary_env = dict(canary_env or {})
        self.image_ref = ""

    def __call__(self, step: str) -> flow.StepOutcome:
        weight = flow.shift_weight(step)
        if weight is not None:
            stage = steps.run_stage(
                self.target,
                weight,
                self.requests,
                gate=self.gate,
                show_progress=False,
                echo=self.echo,
            )
            self.echo(stage.line())
            return flow.StepOutcome(step, stage.passed, stage.reasons, stage.to_dict())
        return getattr(self, f"_{step}")(step)

    def _package(self, step: str) -> flow.StepOutcome:
        settings = self.target.settings
        registry = workspace.open_registry(settings)
        workspace.register_versions(
            settings, registry, [settings.stable_version, settings.canary_version]
        )
        image = workspace.package_image(settings, registry, settings.canary_version)
        self.image_ref = str(image["ref"])
        self.echo(f"packaged {image['model']} as {self.image_ref}")
        return flow.StepOutcome(step, True, data={"image": self.image_ref})

    def _deploy(self, step: str) -> flow.StepOutcome:
        rel = steps.deploy_canary(
            self.target, canary_image=self.image_ref, canary_env=self.canary_env, echo=self.echo
        )
        return flow.StepOutcome(step, True, data={"revision": rel.revision})

    def _smoke(self, step: str) -> flow.StepOutcome:
        result = steps.header_routing(self.target, min(self.requests, 200))
        reasons = [] if result["passed"] else ["a header-pinned request landed elsewhere"]
        for track in ("stable", "canary"):
            if track in result:
                r = result[track]
                self.echo(f"{r['header']} → {r['counts']}")
        return flow.StepOutcome(step, bool(result["passed"]), reasons, {"pins": result})

    def _promote(self, step: str) -> flow.StepOutcome:
        rel = operations.promote(self.target, echo=self.echo)
        return flow.StepOutcome(step, True, data={"revision": rel.revision})

    def _rollback(self, step: str) -> flow.StepOutcome:
        rel = operations.rollback(self.target, echo=self.echo)
        return flow.StepOutcome(step, True, data={"revision": rel.revision})


def run(
    target: Target,
    *,
    requests: int = DEFAULT_REQUESTS,
    canary_env: dict[str, str] | None = None,
    gate: steps.Gate = analysis.judge,
    echo: operations.Echo = operations._quiet,
) -> flow.FlowResult:
    """The whole rollout on ``target`` for the settings' stage plan."""
    execute = DirectExecutor(target, requests=requests, canary_env=canary_env, gate=gate, echo=echo)
    return flow.run(flow.plan(target.settings.stages), execute, on_step=_announce(echo))


def _announce(echo: operations.Echo) -> Any:
    def on_step(outcome: flow.StepOutcome) -> None:
        if not outcome.passed:
            echo(f"{outcome.step} failed: " + "; ".join(outcome.reasons))

    return on_step
