"""The steps of the canary flow, each defined once: deploy the canary, smoke-test the header
pins, run one stage (shift, probe, judge), promote, roll back. The CLI, the notebooks and the
pipeline all call these; ``workbook.flow`` orders them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbook import analysis, canary, kiali, operations, traffic
from workbook.errors import ConfigError, StageFailed
from workbook.files import read_json
from workbook.registry import parse_image_ref
from workbook.seam import Release, Status, Target
from workbook.settings import DEFAULT_REQUESTS, SPLIT_ALPHA


@dataclass
class StageResult:
    """What one stage configured and what traffic really did."""

    canary_weight: int
    revision: int
    weights: dict[str, int]
    probe: dict[str, Any]
    split: dict[str, Any]
    passed: bool
    gateway_url: str
    gateway: dict[str, dict[str, int]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "line": self.line()}

    def line(self) -> str:
        """One human line: configured vs observed per version."""
        shares = self.split.get("shares", {})
        parts = [
            f"{v}: configured {w:3d}%  observed {100 * shares.get(v, 0.0):5.1f}%"
            for v, w in sorted(self.weights.items())
        ]
        verdict = "passed" if self.passed else "FAILED: " + "; ".join(self.reasons)
        return (
            f"canary {self.canary_weight:3d}% | "
            + " | ".join(parts)
            + f" | n={self.probe['total']} errors={self.probe['errors']}"
            + f" p={self.split.get('p_value', float('nan')):.3g} → {verdict}"
        )


@dataclass(frozen=True)
class Verdict:
    """A gate's decision on one stage: passed, and one human line per reason it did not."""

    passed: bool
    reasons: list[str] = field(default_factory=list)


#: A stage gate: the stage's evidence in, a verdict out. ``split_gate`` is the default.
Gate = Callable[["StageResult"], Verdict]


def split_gate(stage: StageResult) -> Verdict:
    """The observed split fits the served weights and no request failed."""
    reasons = []
    if not stage.split.get("passed", False):
        reasons.append(f"split: {stage.split.get('reason', 'does not fit the weights')}")
    errors = int(stage.probe.get("errors", 0))
    if errors:
        reasons.append(f"errors: {errors} of {stage.probe.get('total', 0)} requests failed")
    return Verdict(not reasons, reasons)


def measure(
    target: Target,
    n: int = DEFAULT_REQUESTS,
    *,
    concurrency: int = 8,
    alpha: float = SPLIT_ALPHA,
    headers: dict[str, str] | None = None,
    show_progress: bool | None = None,
) -> tuple[traffic.ProbeResult, analysis.SplitCheck, Status]:
    """Probe the gateway as it serves now and test the split against the served weights."""
    status = operations.status(target)
    result = traffic.probe(
        status.gateway_url + "/score",
        n,
        concurrency=concurrency,
        headers=headers,
        show_progress=show_progress,
    )
    check = analysis.check_split(result.counts, status.weights(), alpha=alpha)
    return result, check, status


def run_stage(
    target: Target,
    canary_weight: int,
    n: int = DEFAULT_REQUESTS,
    *,
    concurrency: int = 8,
    alpha: float = SPLIT_ALPHA,
    gate: Gate = split_gate,
    show_progress: bool | None = None,
    echo: operations.Echo = operations._quiet,
) -> StageResult:
    """Shift to ``canary_weight`` (returns once the gateway serves it), probe, judge."""
    release = operations.shift(target, canary_weight, echo=echo)
    before = target.traffic.counters()
    result, check, status = measure(
        target, n, concurrency=concurrency, alpha=alpha, show_progress=show_progress
    )
    after = target.traffic.counters()
    stage = StageResult(
        canary_weight=canary_weight,
        revision=release.revision,
        weights=status.weights(),
        probe=result.to_dict(),
        split=check.to_dict(),
        passed=False,
        gateway_url=status.gateway_url,
        gateway=stats_delta(before, after),
        versions={v.track: v.version for v in status.versions},
    )
    verdict = gate(stage)
    stage.passed, stage.reasons = verdict.passed, list(verdict.reasons)
    return stage


def stats_delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    """What happened between two reads of cumulative counters (pure)."""
    out = {}
    for name, counters in after.items():
        prev = before.get(name, {})
        out[name] = {k: int(v) - int(prev.get(k, 0)) for k, v in counters.items()}
    return out


def canary_spec(
    settings: Any,
    canary_image: str = "",
    canary_version: str = "",
    canary_env: dict[str, str] | None = None,
) -> canary.CanarySpec:
    """What to deploy as the canary: the packaged image (default: the settings' image of the
    version) with its version label and extra env."""
    version = canary_version or settings.canary_version
    ref = parse_image_ref(canary_image or settings.image(version))
    image = {k: v for k, v in ref.chart_image().items() if v or k == "registry"}
    return canary.CanarySpec(
        version=version,
        image=image,
        env=tuple((k, str(v)) for k, v in (canary_env or {}).items()),
    )


def deploy_canary(
    target: Target,
    *,
    canary_image: str = "",
    canary_version: str = "",
    canary_env: dict[str, str] | None = None,
    echo: operations.Echo = operations._quiet,
) -> Release:
    """Deploy the canary at weight 0 next to what production runs; returns when ready and served.

    The settings' rehearsal faults (``canary_fault``) apply first, ``canary_env`` on top."""
    env = {**parse_fault(target.settings.canary_fault), **(canary_env or {})}
    spec = canary_spec(target.settings, canary_image, canary_version, env)
    return operations.deploy(target, spec, 0, echo=echo)


def fault_env(error_rate: float = 0.0, errors_after: int = 0) -> dict[str, str]:
    """Env that makes the dummy canary degrade: ``error_rate`` of its answers fail after the first
    ``errors_after`` (the dummy score.py's rehearsal knob). Empty when ``error_rate`` is 0."""
    if not 0.0 <= float(error_rate) <= 1.0:
        raise ConfigError("canary", "error_rate", f"must be 0..1, got {error_rate!r}")
    if not error_rate:
        return {}
    return {"DUMMY_ERROR_RATE": str(float(error_rate)), "DUMMY_ERROR_AFTER": str(int(errors_after))}


def parse_fault(spec: str) -> dict[str, str]:
    """``errors=0.5,after=200`` → the dummy canary's env: that share of its answers fail after its
    first ``after`` answers. Empty spec, empty env."""
    values: dict[str, str] = {}
    for item in (x.strip() for x in spec.split(",") if x.strip()):
        key, sep, raw = item.partition("=")
        if not sep or key not in ("errors", "after"):
            raise ConfigError("canary fault", key or item, "must be errors=RATE or after=N")
        values[key] = raw.strip()
    try:
        rate, after = float(values.get("errors", 0)), int(values.get("after", 0))
    except ValueError:
        raise ConfigError("canary fault", spec, "must be errors=RATE,after=N") from None
    return fault_env(rate, after)


def stages_so_far(run_dir: Path | None) -> list[dict[str, Any]]:
    """This rollout's stages, oldest first, from the records of the run's stage folders.

    A run keeps each step in its own folder (``runs/<run-id>/<step>/records.json``); on pipeline
    agents the earlier stages' artifacts are downloaded next to this one. So a plot shows the
    stages of this run only.
    """
    if run_dir is None:
        return []
    stages = []
    for path in sorted(Path(run_dir).parent.glob("*/records.json")):
        recorded = read_json(path, {}).get("stage")
        if isinstance(recorded, dict) and "started" in recorded:
            stages.append(recorded)
    unique = {(s.get("canary_weight"), round(float(s.get("started", 0)), 3)): s for s in stages}
    return sorted(unique.values(), key=lambda s: float(s.get("started", 0)))


def require_pass(stage: StageResult) -> None:
    """Raise StageFailed (a failed notebook, a failed pipeline stage) unless the stage passed."""
    if not stage.passed:
        raise StageFailed(
            f"stage canary {stage.canary_weight}% failed: " + "; ".join(stage.reasons)
        )


def header_routing(target: Target, n: int = 200) -> dict[str, dict[str, Any]]:
    """Send ``n`` requests pinned to each track (the settings' header), and ``n`` unpinned: where
    did each land? ``passed`` says every pinned request landed where it asked."""
    status = operations.status(target)
    header = target.settings.header_name
    url = status.gateway_url + "/score"
    by_track = {v.track: v.version for v in status.versions}
    out: dict[str, Any] = {}
    for track, version in sorted(by_track.items()):
        res = traffic.probe(url, n, headers={header: track}, show_progress=False)
        out[track] = {
            "header": f"{header}: {track}",
            "expected": version,
            "counts": res.counts,
            "errors": res.errors,
            "all_landed": res.counts == {version: n} and res.errors == 0,
        }
    res = traffic.probe(url, n, show_progress=False)
    check = analysis.check_split(res.counts, status.weights(), alpha=SPLIT_ALPHA)
    out["unpinned"] = {
        "weights": status.weights(),
        "counts": res.counts,
        "errors": res.errors,
        "split_fits": check.passed,
        "p_value": check.p_value,
    }
    out["passed"] = all(out[t]["all_landed"] for t in by_track)
    return out


def require_pins(result: dict[str, Any]) -> None:
    """Raise StageFailed unless every pinned request landed on the version it asked for."""
    if not result.get("passed"):
        bad = [
            f"{r['header']} → {r['counts']} (errors {r['errors']})"
            for t, r in result.items()
            if isinstance(r, dict) and "all_landed" in r and not r["all_landed"]
        ]
        raise StageFailed("header pin failed: " + "; ".join(bad))


def kiali_links(target: Target) -> kiali.KialiLinks:
    """Kiali console links for the release's namespace, app, workloads and Istio objects."""
    settings = target.settings
    workloads = [d["metadata"]["name"] for d in target.objects.get("Deployment")]
    istio_objects = [
        f"{kind}/{o['metadata']['name']}"
        for kind in ("Gateway", "VirtualService", "DestinationRule")
        for o in target.objects.get(kind)
    ]
    return kiali.links(
        settings.kiali_url, settings.namespace, settings.app, workloads, istio_objects
    )


def decide(target: Target, decision: str, *, echo: operations.Echo = operations._quiet) -> Release:
    """``promote``: the canary becomes stable. ``rollback``: stable 100%, canary 0%."""
    if decision == "promote":
        return operations.promote(target, echo=echo)
    if decision == "rollback":
        return operations.rollback(target, echo=echo)
    raise ConfigError("decision", "decision", f"must be 'promote' or 'rollback', got {decision!r}")
