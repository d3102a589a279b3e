"""One canary stage: shift the weight, send traffic through the gateway, test the observed split."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbook import analysis, chart, kiali, traffic
from workbook.cluster import Cluster, Release
from workbook.errors import ConfigError, WorkbookError
from workbook.files import read_json, write_json
from workbook.registry import parse_image_ref
from workbook.settings import (
    DEFAULT_REQUESTS,
    HEADER_NAME,
    SPLIT_ALPHA,
    STAGE_PLAN,
    Settings,
    validate_weight,
)


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
    started: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One human line: configured vs observed per version."""
        shares = self.split.get("shares", {})
        parts = [
            f"{v}: configured {w:3d}%  observed {100 * shares.get(v, 0.0):5.1f}%"
            for v, w in sorted(self.weights.items())
        ]
        verdict = "fits" if self.passed else "DOES NOT FIT"
        return (
            f"canary {self.canary_weight:3d}% | "
            + " | ".join(parts)
            + f" | n={self.probe['total']} errors={self.probe['errors']}"
            + f" p={self.split.get('p_value', float('nan')):.3g} → {verdict}"
        )


def measure(
    cluster: Cluster,
    n: int = DEFAULT_REQUESTS,
    *,
    concurrency: int = 8,
    alpha: float = SPLIT_ALPHA,
    headers: dict[str, str] | None = None,
    show_progress: bool | None = None,
) -> tuple[traffic.ProbeResult, analysis.SplitCheck, Any]:
    """Probe the gateway as it is configured now and test the split against the weights."""
    status = cluster.status()
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
    cluster: Cluster,
    canary_weight: int,
    n: int = DEFAULT_REQUESTS,
    *,
    concurrency: int = 8,
    alpha: float = SPLIT_ALPHA,
    show_progress: bool | None = None,
) -> StageResult:
    """Shift to ``canary_weight`` (returns once the gateway serves it), probe, test the split."""
    release = cluster.shift(canary_weight)
    before = gateway_stats(cluster)
    result, check, status = measure(
        cluster, n, concurrency=concurrency, alpha=alpha, show_progress=show_progress
    )
    after = gateway_stats(cluster)
    return StageResult(
        canary_weight=canary_weight,
        revision=release.revision,
        weights=status.weights(),
        probe=result.to_dict(),
        split=check.to_dict(),
        passed=check.passed and result.errors == 0,
        gateway_url=status.gateway_url,
        gateway=stats_delta(before, after),
        versions={v.track: v.version for v in status.versions},
    )


def gateway_stats(cluster: Cluster) -> dict[str, dict[str, int]]:
    """Per-cluster counters from the gateway, where the target exposes them (local: Envoy)."""
    read = getattr(cluster, "gateway_stats", None)
    return dict(read()) if read is not None else {}


def stats_delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    """What happened between two reads of cumulative counters (pure)."""
    out = {}
    for name, counters in after.items():
        prev = before.get(name, {})
        out[name] = {k: int(v) - int(prev.get(k, 0)) for k, v in counters.items()}
    return out


def walk(
    cluster: Cluster,
    stages: Iterable[int] = (0, *STAGE_PLAN),
    n: int = DEFAULT_REQUESTS,
    *,
    on_stage: Callable[[StageResult], None] | None = None,
    show_progress: bool | None = None,
) -> list[StageResult]:
    """Run the stages in order; stop at the first stage whose split or errors fail."""
    results = []
    for w in stages:
        res = run_stage(cluster, w, n, show_progress=show_progress)
        results.append(res)
        if on_stage:
            on_stage(res)
        if not res.passed:
            break
    return results


class StageFailed(WorkbookError):
    """A stage's observed split or health did not pass: the pipeline rolls back."""


def deploy(
    cluster: Cluster,
    canary_weight: int = 0,
    canary_env: dict[str, str] | None = None,
    *,
    canary_image: str = "",
    canary_version: str = "",
) -> Release:
    """Deploy the canary next to what production runs; returns when both tracks are ready.

    With a release in place this is an upgrade that only touches the canary (stable stays what
    it is, e.g. the version promoted last time); otherwise an install with the settings' stable.
    ``canary_image`` is the reference packaging produced (default: the settings' image of
    ``canary_version``); ``canary_env`` sets environment variables on the canary pods only.
    """
    settings = cluster.settings
    version = canary_version or settings.canary_version
    ref = parse_image_ref(canary_image or settings.image(version))
    canary = {
        "enabled": True,
        "weight": validate_weight(canary_weight),
        "version": version,
        "image": {"repository": ref.repository, "tag": ref.tag},
        "env": [{"name": k, "value": str(v)} for k, v in (canary_env or {}).items()],
    }
    overrides: dict[str, Any] = {"canary": canary}
    if canary_image and ref.registry:
        overrides["image"] = {"registry": ref.registry}
    description = f"deploy canary {version} at {canary_weight}%"
    if _has_release(cluster):
        return cluster.upgrade(overrides, description)
    return cluster.up(chart.merge_values(settings.chart_values(), overrides))


def _has_release(cluster: Cluster) -> bool:
    try:
        return any(r.status == "deployed" for r in cluster.history())
    except WorkbookError:  # local: no mesh running; k8s: no release yet
        return False


def fault_env(error_rate: float = 0.0, errors_after: int = 0) -> dict[str, str]:
    """Env that makes the dummy canary degrade: ``error_rate`` of its answers fail after the first
    ``errors_after`` (the dummy score.py's rehearsal knob). Empty when ``error_rate`` is 0."""
    if not 0.0 <= float(error_rate) <= 1.0:
        raise ConfigError("canary", "error_rate", f"must be 0..1, got {error_rate!r}")
    if not error_rate:
        return {}
    return {"DUMMY_ERROR_RATE": str(float(error_rate)), "DUMMY_ERROR_AFTER": str(int(errors_after))}


def stage_log(settings: Settings) -> Path:
    return settings.state_dir / "stages.json"


def append_stage(
    settings: Settings, stage: StageResult, run_dir: Path | None = None
) -> list[dict[str, Any]]:
    """Keep the stage in the rollout's log (a new deploy starts a new log); return all so far."""
    stages = list(read_json(stage_log(settings), []))
    stages.append(stage.to_dict())
    write_json(stage_log(settings), stages)
    return stages_so_far(settings, run_dir)


def reset_stages(settings: Settings) -> None:
    write_json(stage_log(settings), [])


def stages_so_far(settings: Settings, run_dir: Path | None = None) -> list[dict[str, Any]]:
    """This rollout's stages, oldest first: the state dir's log, plus the stages recorded in the
    sibling folders of ``run_dir`` (on pipeline agents each stage runs on a fresh machine, and
    the earlier stages' artifacts are downloaded next to this one)."""
    stages = list(read_json(stage_log(settings), []))
    if run_dir is not None:
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
            f"stage canary {stage.canary_weight}% failed: {stage.split.get('reason', '')}; "
            f"errors {stage.probe.get('errors', 0)} of {stage.probe.get('total', 0)}"
        )


def header_routing(
    cluster: Cluster, n: int = 200, header: str = HEADER_NAME
) -> dict[str, dict[str, Any]]:
    """Send ``n`` requests pinned to each track, and ``n`` unpinned: where did each land?"""
    status = cluster.status()
    url = status.gateway_url + "/score"
    by_track = {v.track: v.version for v in status.versions}
    out: dict[str, dict[str, Any]] = {}
    for track, version in sorted(by_track.items()):
        res = traffic.probe(url, n, headers={header: track}, show_progress=False)
        out[track] = {
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
    return out


def last_zero_weight_revision(history: list[Release], current: int) -> int | None:
    """The latest earlier revision in which the canary took no traffic (pure)."""
    for rel in reversed(history):
        weight = int(rel.values.get("canary", {}).get("weight", 0))
        if rel.revision < current and rel.status != "failed" and weight == 0:
            return rel.revision
    return None


def decide(cluster: Cluster, decision: str) -> Release:
    """``promote``: the canary becomes stable. ``rollback``: back to the last revision in which
    the canary took no traffic (the deploy revision of this rollout), so stable serves 100%."""
    if decision == "promote":
        return cluster.promote()
    if decision != "rollback":
        raise ConfigError(
            "decision", "decision", f"must be 'promote' or 'rollback', got {decision!r}"
        )
    history = cluster.history()
    current = max((r.revision for r in history if r.status == "deployed"), default=0)
    if not current:
        raise StageFailed("nothing is deployed: there is no release to roll back")
    target = last_zero_weight_revision(history, current)
    if target is None:
        return cluster.shift(0)
    return cluster.rollback(target)


def kiali_links(settings: Settings, cluster: Cluster) -> kiali.KialiLinks:
    """Kiali console links for the release's namespace, app, workloads and Istio objects."""
    workloads = [d["metadata"]["name"] for d in cluster.get("Deployment")]
    istio_objects = [
        f"{kind}/{o['metadata']['name']}"
        for kind in ("Gateway", "VirtualService", "DestinationRule")
        for o in cluster.get(kind)
    ]
    return kiali.links(
        settings.kiali_url, settings.namespace, settings.app, workloads, istio_objects
    )
