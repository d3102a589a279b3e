"""The canary rules, once: the stage plan, the chart values each step sets, the weights the gateway
must serve after it, and the preconditions of each step. Values in, values out, no I/O.

The steps of a rollout, on every target:

- **deploy** the canary next to what production runs, at weight 0 (stable is never touched);
- **shift** the canary to each weight of the stage plan;
- **promote** in three revisions: stable takes the canary's image while the canary keeps its share
  (the subsets select pods by ``track``, so old and new stable pods both serve while stable
  rolls); then no route sends traffic to the canary (``canary.routed: false``) while its subset
  still exists; then the canary is retired. So no request meets a subset the gateway has dropped;
- **rollback**: stable serves 100% and the canary 0%, by returning to the latest earlier revision
  in which the canary took no traffic (this rollout's deploy revision), else by setting weight 0.

``workbook.operations`` applies these through a target; tests check them by table.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workbook.errors import ConfigError

STABLE, CANARY = "stable", "canary"

#: Canary weights a rollout walks through when nothing else is said (``WORKBOOK_STAGES``).
DEFAULT_STAGES: tuple[int, ...] = (10, 50, 100)


# ---- weights and the stage plan ---------------------------------------------------------------


def validate_weight(value: Any, obj: str = "canary", field_name: str = "weight") -> int:
    """An integer percentage 0..100, or a ConfigError naming the object and field."""
    bad = ConfigError(obj, field_name, f"must be an integer 0..100, got {_show(value)}")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.lstrip("-").isdigit()) or len(text) > 4:
            raise bad
        value = int(text)
    if isinstance(value, float):
        if not value.is_integer():
            raise bad
        value = int(value)
    if not isinstance(value, int):
        raise bad
    if not 0 <= value <= 100:
        raise ConfigError(obj, field_name, f"must be 0..100, got {_show(value)}")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def stage_plan(stages: Sequence[Any], obj: str = "stage plan") -> tuple[int, ...]:
    """The canary weights of a rollout: at least one, each 1..100, strictly increasing.

    The plan need not end at 100: promote follows the last stage (as Flagger promotes once the
    canary reaches its maximum weight). Weight 0 is no stage: deploy already puts the canary there.
    """
    if isinstance(stages, str | bytes) or not isinstance(stages, Sequence):
        raise ConfigError(obj, "stages", f"must be a list of weights, got {_show(stages)}")
    if not stages:
        raise ConfigError(
            obj, "stages", "is empty: give at least one canary weight, e.g. 10,50,100"
        )
    out = tuple(validate_weight(w, obj, f"stages[{i}]") for i, w in enumerate(stages))
    for i, w in enumerate(out):
        if w == 0:
            raise ConfigError(obj, f"stages[{i}]", "must be 1..100: deploy puts the canary at 0")
        if i and w <= out[i - 1]:
            raise ConfigError(obj, f"stages[{i}]", f"must be greater than {out[i - 1]}, got {w}")
    return out


def parse_stages(text: str, obj: str = "WORKBOOK_STAGES") -> tuple[int, ...]:
    """``"10,50,100"`` → ``(10, 50, 100)``, checked as a stage plan."""
    return stage_plan([x.strip() for x in text.split(",") if x.strip()], obj)


# ---- reading values -----------------------------------------------------------------------------


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of chart values (``override`` wins; lists are replaced, as Helm does)."""
    out = copy.deepcopy(dict(base))
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _track(full: Mapping[str, Any], track: str) -> Mapping[str, Any]:
    value = full.get(track)
    return value if isinstance(value, Mapping) else {}


def canary_enabled(full: Mapping[str, Any]) -> bool:
    return bool(_track(full, CANARY).get("enabled", True))


def canary_routed(full: Mapping[str, Any]) -> bool:
    """The canary is deployed and the VirtualService routes to it."""
    return canary_enabled(full) and bool(_track(full, CANARY).get("routed", True))


def canary_weight(full: Mapping[str, Any]) -> int:
    """The canary's configured weight (0 when it is disabled or not routed)."""
    if not canary_routed(full):
        return 0
    return validate_weight(_track(full, CANARY).get("weight", 0), "values", "canary.weight")


def expected_weights(full: Mapping[str, Any]) -> dict[str, int]:
    """Track → weight the gateway must serve for these (full) values."""
    if not canary_routed(full):
        return {STABLE: 100}
    w = canary_weight(full)
    return {STABLE: 100 - w, CANARY: w}


def image_ref(full: Mapping[str, Any], track: str) -> str:
    """The image reference a track runs: ``[registry/]repository(:tag|@digest)``."""
    image = _track(full, track).get("image") or {}
    shared = full.get("image") if isinstance(full.get("image"), Mapping) else {}
    registry = image.get("registry") or (shared or {}).get("registry", "")  # "" falls back
    ref = f"{registry}/{image.get('repository', '')}" if registry else str(image.get("repository"))
    if image.get("digest"):
        return f"{ref}@{image['digest']}"
    return f"{ref}:{image.get('tag', '')}"


def version_of(full: Mapping[str, Any], track: str) -> str:
    return str(_track(full, track).get("version", ""))


# ---- the steps ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One new revision: the values to deploy and what the history says about it."""

    values: dict[str, Any]
    description: str


@dataclass(frozen=True)
class CanarySpec:
    """What to deploy as the canary: its version label, image values and extra env."""

    version: str
    image: dict[str, Any]
    env: tuple[tuple[str, str], ...] = ()


def deploy(
    current: Mapping[str, Any] | None,
    base: Mapping[str, Any],
    defaults: Mapping[str, Any],
    canary: CanarySpec,
    weight: int = 0,
) -> Step:
    """The canary next to what production runs now, at ``weight``.

    ``current``: the deployed user values (None before the first release, then ``base`` — the
    settings' values — is installed). Stable is never touched: after a promote it is the version
    promoted last time. Refused when the canary would run the image stable runs.
    """
    weight = validate_weight(weight, "canary", "weight")
    start = dict(current) if current is not None else dict(base)
    track = {
        "enabled": True,
        "routed": True,
        "weight": weight,
        "version": canary.version,
        "image": dict(canary.image),
        "env": [{"name": k, "value": v} for k, v in canary.env],
    }
    values = merge(start, {CANARY: track})
    values[CANARY]["image"] = dict(canary.image)  # replace, so no stale tag or digest survives
    full = merge(defaults, values)
    stable_ref, canary_ref = image_ref(full, STABLE), image_ref(full, CANARY)
    if stable_ref == canary_ref:
        raise ConfigError(
            "canary",
            "image",
            f"is {canary_ref}, the image stable runs already: package the new model version "
            "first (notebook 02), or there is nothing to compare",
        )
    return Step(values, f"deploy canary {canary.version} at {weight}%")


def _deployed(current: Mapping[str, Any] | None, verb: str) -> dict[str, Any]:
    if current is None:
        raise ConfigError(verb, "release", "nothing is deployed yet: deploy first (notebook 03)")
    return copy.deepcopy(dict(current))


def _require_canary(full: Mapping[str, Any], verb: str) -> None:
    if not canary_enabled(full):
        raise ConfigError(
            "canary",
            "enabled",
            f"is false: there is no canary to {verb} (it was promoted or never deployed); "
            "deploy a new canary first (notebook 03)",
        )


def shift(current: Mapping[str, Any] | None, defaults: Mapping[str, Any], weight: Any) -> Step:
    """The deployed values with the canary at ``weight``."""
    w = validate_weight(weight, "shift", "weight")
    values = _deployed(current, "shift")
    _require_canary(merge(defaults, values), "shift traffic to")
    values = merge(values, {CANARY: {"weight": w}})
    return Step(values, f"shift canary to {w}%")


def promote(
    current: Mapping[str, Any] | None, defaults: Mapping[str, Any]
) -> tuple[Step, Step, Step]:
    """Three revisions: stable takes the canary's image (the canary keeps its share while stable
    rolls); stable takes all traffic while the canary's subset still exists; the canary retires."""
    values = _deployed(current, "promote")
    full = merge(defaults, values)
    _require_canary(full, "promote")
    canary = _track(full, CANARY)
    version = str(canary.get("version", ""))
    stable = {
        "version": version,
        "image": copy.deepcopy(dict(canary.get("image") or {})),
        "env": copy.deepcopy(list(canary.get("env") or [])),
    }
    first = merge(values, {STABLE: stable})
    first[STABLE]["image"] = stable["image"]  # replace: no tag or digest of the old image stays
    second = merge(first, {CANARY: {"routed": False, "weight": 0}})
    third = merge(second, {CANARY: {"enabled": False}})
    return (
        Step(first, f"promote {version}: stable runs the canary's image"),
        Step(second, f"promote {version}: stable takes all traffic"),
        Step(third, f"promote {version}: canary retired"),
    )


@dataclass(frozen=True)
class RollbackPlan:
    """Either return to an earlier revision, or deploy ``step`` (weight 0) as a new one."""

    revision: int | None
    step: Step | None
    description: str


def rollback(history: Sequence[Any], defaults: Mapping[str, Any]) -> RollbackPlan:
    """Stable serves 100% and the canary 0%.

    ``history``: releases oldest first (objects with ``revision``, ``status``, ``values``). While
    the canary takes traffic, or a promote has begun, the target is the latest earlier revision
    that did not fail, in which the canary took no traffic and stable ran its own image: this
    rollout's deploy revision. Otherwise the deployed values with canary weight 0 become a new
    revision (nothing to undo but the record of the decision).
    """
    deployed = [r for r in history if r.status == "deployed"]
    if not deployed:
        raise ConfigError(
            "rollback", "release", "nothing is deployed: there is nothing to roll back"
        )
    current = deployed[-1]
    full_current = merge(defaults, current.values)
    if canary_weight(full_current) == 0 and not promote_started(full_current):
        values = copy.deepcopy(dict(current.values))
        if canary_enabled(full_current):
            values = merge(values, {CANARY: {"weight": 0}})
        return RollbackPlan(None, Step(values, "rollback: stable 100%, canary 0%"), "")
    for rel in reversed(history):
        if rel.revision >= current.revision or rel.status == "failed":
            continue
        full = merge(defaults, rel.values)
        if canary_weight(full) == 0 and not promote_started(full):
            return RollbackPlan(
                rel.revision, None, f"rollback to {rel.revision}: stable 100%, canary 0%"
            )
    if promote_started(full_current):
        raise ConfigError(
            "rollback",
            "revision",
            f"revision {current.revision} is half-way through a promote and no earlier revision "
            "ran the previous stable: roll back to a revision by number (`workbook history`)",
        )
    values = merge(copy.deepcopy(dict(current.values)), {CANARY: {"weight": 0}})
    return RollbackPlan(None, Step(values, "rollback: stable 100%, canary 0%"), "")


def promote_started(full: Mapping[str, Any]) -> bool:
    """Promote step 1 is deployed: stable runs the canary's image while the canary is still on."""
    return canary_enabled(full) and image_ref(full, STABLE) == image_ref(full, CANARY)


def check_tracks(full: Mapping[str, Any]) -> None:
    """Stable and canary carry different ``version`` labels while the canary is on.

    Telemetry, header pins and the split check tell the tracks apart by version, so two tracks
    labelled alike are refused, except during a promote (stable already runs the canary's image:
    the same version on both is then the truth).
    """
    if not canary_enabled(full):
        return
    stable, canary = version_of(full, STABLE), version_of(full, CANARY)
    if stable and stable == canary and not promote_started(full):
        raise ConfigError(
            "values",
            "stable.version",
            f"equals canary.version ({stable!r}) while the tracks run different images: "
            "versions of the two tracks must differ",
        )


def took_traffic(history: Sequence[Any], defaults: Mapping[str, Any]) -> bool:
    """Whether the deployed canary ever had weight > 0 while it ran its current image.

    ``history``: releases oldest first. Walks back from the deployed revision over the revisions
    that did not fail and ran the same canary image; stops at the first that ran another one.
    """
    deployed = [r for r in history if r.status == "deployed"]
    if not deployed:
        return False
    current = merge(defaults, deployed[-1].values)
    image = image_ref(current, CANARY)
    for rel in reversed(history):
        if rel.revision > deployed[-1].revision or rel.status not in ("deployed", "superseded"):
            continue  # failed or pending revisions never served
        full = merge(defaults, rel.values)
        if not canary_enabled(full) or image_ref(full, CANARY) != image:
            return False
        if canary_weight(full) > 0:
            return True
    return False
