"""The canary verbs on any target: the rules of ``workbook.canary`` applied through the seam.

Each verb reads the deployed revision, lets the pure core compute the next values, deploys them
as a new revision (refused if another revision landed meanwhile), and returns only once the
gateway serves the weights the core expects (the same contract on every target).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from workbook import canary, chart
from workbook.errors import ConfigError, MeshError
from workbook.seam import Release, Status, Target

Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def defaults(target: Target) -> dict[str, Any]:
    """The chart's default values (what user values are merged over)."""
    return chart.default_values(target.settings.chart_dir)


def full_values(target: Target, values: dict[str, Any]) -> dict[str, Any]:
    return canary.merge(defaults(target), values)


def wait_served(
    target: Target,
    expected: dict[str, int],
    *,
    timeout_s: float | None = None,
    poll_s: float = 0.25,
) -> dict[str, int]:
    """Return once the gateway serves ``expected`` (track → weight); MeshError at the deadline."""
    want = {k: v for k, v in expected.items() if v}
    timeout_s = target.settings.serve_timeout_s if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    while True:
        seen = target.traffic.served_weights()
        if {k: v for k, v in seen.items() if v} == want:
            return seen
        if time.monotonic() > deadline:
            raise MeshError(
                f"the gateway of {target.settings.namespace}/{target.settings.release} still "
                f"serves {seen or 'no weighted route'} {timeout_s:.0f} s after the release; "
                f"expected {expected}"
            )
        time.sleep(poll_s)


def _deploy(target: Target, step: canary.Step, current: Release | None, echo: Echo) -> Release:
    canary.check_tracks(full_values(target, step.values))
    echo(f"{step.description} ...")
    rel = target.releases.upgrade(
        step.values, step.description, expect_revision=current.revision if current else None
    )
    wait_served(target, canary.expected_weights(full_values(target, step.values)))
    echo(f"revision {rel.revision}: {rel.description}")
    return rel


def install(target: Target, values: dict[str, Any], description: str, echo: Echo) -> Release:
    """Get the target ready (local: the mesh starts; k8s: namespace and pull secret), then deploy
    ``values``: the first revision, or a new one on top of what a cluster already runs."""
    canary.check_tracks(full_values(target, values))  # before anything is started
    values = target.prepare(values)
    current = target.releases.deployed()
    echo(f"{description} ...")
    try:
        rel = target.releases.upgrade(
            values, description, expect_revision=current.revision if current else None
        )
    except BaseException:
        if current is None:
            target.abandon()
        raise
    wait_served(target, canary.expected_weights(full_values(target, values)))
    echo(f"revision {rel.revision}: {rel.description}")
    return rel


def up(target: Target, overrides: dict[str, Any] | None = None, *, echo: Echo = _quiet) -> Release:
    """Deploy stable and canary from the settings plus ``overrides`` (``workbook up``); on the
    local target only when no mesh runs yet."""
    values = chart.merge_values(target.settings.chart_values(), overrides or {})
    return install(target, values, "up", echo)


def upgrade(
    target: Target, overrides: dict[str, Any], description: str = "upgrade", *, echo: Echo = _quiet
) -> Release:
    """A new revision from the deployed values plus ``overrides`` (``helm upgrade``)."""
    current = _require_deployed(target, "upgrade")
    values = chart.merge_values(current.values, overrides)
    return _deploy(target, canary.Step(values, description), current, echo)


def deploy(
    target: Target, spec: canary.CanarySpec, weight: int = 0, *, echo: Echo = _quiet
) -> Release:
    """The canary next to what production runs (install with the settings' stable if none)."""
    current = target.releases.deployed()
    step = canary.deploy(
        current.values if current else None,
        target.settings.chart_values(),
        defaults(target),
        spec,
        weight,
    )
    if current is None:
        return install(target, step.values, step.description, echo)
    return _deploy(target, step, current, echo)


def shift(target: Target, weight: Any, *, echo: Echo = _quiet) -> Release:
    """The canary at ``weight``; returns once the gateway serves it."""
    w = canary.validate_weight(weight, "shift", "WEIGHT")
    current = _require_deployed(target, "shift")
    return _deploy(target, canary.shift(current.values, defaults(target), w), current, echo)


def promote(target: Target, *, require_traffic: bool = False, echo: Echo = _quiet) -> Release:
    """The canary becomes stable, in three revisions (see ``workbook.canary.promote``).

    ``require_traffic``: refuse a canary that never took weighted traffic (``workbook.canary.
    took_traffic``); the command line asks for it unless ``--force`` is given.
    """
    rel = _require_deployed(target, "promote")
    steps = canary.promote(rel.values, defaults(target))  # no canary: its own error first
    if require_traffic and not canary.took_traffic(target.releases.history(), defaults(target)):
        full = full_values(target, rel.values)
        raise ConfigError(
            "promote",
            "canary.weight",
            f"was 0% in every revision since canary {canary.version_of(full, canary.CANARY)} "
            "was deployed: it took no traffic, so nothing says it works; shift traffic to it "
            "first (`workbook shift 10`) or promote anyway with --force",
        )
    for step in steps:
        rel = _deploy(target, step, rel, echo)
    return rel


def rollback(target: Target, revision: int | None = None, *, echo: Echo = _quiet) -> Release:
    """No revision: stable 100%, canary 0% (``workbook.canary.rollback``). A revision: return to
    that revision's values, as ``helm rollback N`` does."""
    current = _require_deployed(target, "rollback")
    if revision is None:
        plan = canary.rollback(target.releases.history(), defaults(target))
        if plan.step is not None:
            return _deploy(target, plan.step, current, echo)
        assert plan.revision is not None
        revision = plan.revision
        echo(f"{plan.description} ...")
    else:
        echo(f"rollback to {revision} ...")
    rel = target.releases.rollback(revision)
    wait_served(target, canary.expected_weights(full_values(target, rel.values)))
    echo(f"revision {rel.revision}: {rel.description}")
    return rel


def status(target: Target) -> Status:
    """Revision, gateway URL and per track: image, ready pods, the weight the gateway serves."""
    current = target.releases.deployed()
    if current is None:
        raise MeshError(
            f"nothing is deployed for {target.settings.namespace}/{target.settings.release}; "
            "run `workbook up`"
        )
    served = target.traffic.served_weights()
    versions = target.releases.readiness()
    for v in versions:
        v.weight = int(served.get(v.track, 0))
    url = target.traffic.gateway_url()
    extra = {}
    if not url:
        extra["gateway_hint"] = (
            "the gateway has no address; reach it with e.g. `kubectl -n istio-system "
            "port-forward svc/istio-ingressgateway 8080:80` and set "
            "WORKBOOK_GATEWAY_URL=http://127.0.0.1:8080"
        )
    return Status(
        target=target.name,
        namespace=target.settings.namespace,
        release=target.settings.release,
        revision=current.revision,
        gateway_url=url,
        versions=versions,
        extra=extra,
    )


def _require_deployed(target: Target, verb: str) -> Release:
    current = target.releases.deployed()
    if current is None:
        raise ConfigError(verb, "release", "nothing is deployed yet: run `workbook up` first")
    return current
