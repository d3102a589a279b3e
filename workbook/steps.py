"""The steps of the canary flow, each defined once: deploy the canary, smoke-test the header
pins, run one stage (shift, probe, judge), promote, roll back. The CLI, the notebooks and the
pipeline all call these; ``workbook.flow`` orders them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbook import (
    analysis,
    apps,
    canary,
    faults,
    kiali,
    operations,
    predictions,
    served,
    traffic,
)
from workbook.errors import ConfigError, StageFailed
from workbook.files import read_json
from workbook.registry import parse_image_ref
from workbook.seam import Release, Status, Target
from workbook.sequential import SplitMonitor
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
    checks: dict[str, Any] = field(default_factory=dict)
    #: Scores of the replayed inputs per track (``stable``, ``canary``) and their comparison.
    predictions: dict[str, Any] = field(default_factory=dict)
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


#: A stage gate: the stage's evidence in, a verdict out (``analysis.judge`` by default).
Gate = Callable[[analysis.StageEvidence], analysis.Verdict]

#: Requests pinned to each track in every stage: all must land on their version.
PIN_REQUESTS = 40
#: Inputs replayed to both versions through the pins, to compare their predictions.
REPLAY_ROWS = 200


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
        headers={**_host(target), **(headers or {})},
        payload=_payload(target),
        show_progress=show_progress,
    )
    check = analysis.check_split(result.counts, status.weights(), alpha=alpha)
    return result, check, status


def _host(target: Target) -> dict[str, str]:
    host = target.traffic.host()
    return {"host": host} if host else {}


def _payload(target: Target) -> dict[str, Any]:
    """One request body the deployed scoring app accepts."""
    return apps.probe_payload(target.settings.scoring_app)


def _replay_rows(target: Target, n: int) -> list[Any]:
    """The inputs replayed to both versions: the dummy's numbers, or synthetic drivers."""
    app = target.settings.scoring_app
    if app == "dummy":
        return predictions.replay_inputs(n)
    return list(apps.probe_payload(app, n)["data"])


def run_stage(
    target: Target,
    canary_weight: int,
    n: int = DEFAULT_REQUESTS,
    *,
    concurrency: int = 8,
    alpha: float = SPLIT_ALPHA,
    gate: Gate = analysis.judge,
    show_progress: bool | None = None,
    echo: operations.Echo = operations._quiet,
) -> StageResult:
    """Shift to ``canary_weight`` (returns once the gateway serves it), then gather the evidence
    and let the gate judge the canary against stable:

    - a sequential probe of the split through the weighted route (stops once the answer is
      clear, at most ``n`` requests; the fixed-size chi-square is kept as the reference);
    - requests pinned to each track by the header (every one must land on its version);
    - one set of inputs replayed to both versions, to compare their predictions;
    - the gateway's own per-version telemetry over the stage (errors, latency).
    """
    release = operations.shift(target, canary_weight, echo=echo)
    status = operations.status(target)
    tracks = {v.track: v.version for v in status.versions}
    weights = status.weights()
    url = status.gateway_url + "/score"
    host = _host(target)
    before = target.traffic.counters()
    mark = target.traffic.telemetry_mark()
    monitor = SplitMonitor(weights, alpha=alpha)
    payload = _payload(target)
    probe = traffic.probe_until(
        url,
        lambda r: monitor.update(r.counts).done,
        max_n=n,
        batch=max(50, min(200, n // 10)),
        concurrency=concurrency,
        headers=host,
        payload=payload,
    )
    header = target.settings.header_name
    pins = _pinned_at_once(url, tracks, {**host}, header, payload)
    compared, scores = None, {}
    if len(tracks) == 2:
        replayed = traffic.replay(
            url,
            _replay_rows(target, REPLAY_ROWS),
            {t: {**host, header: t} for t in tracks},
            chunk=25,
            concurrency=2,
        )
        compared = predictions.compare_replays(
            replayed[canary.STABLE].scores, replayed[canary.CANARY].scores
        )
        scores = {
            t: [round(float(x), 6) for x in replayed[t].scores if math.isfinite(float(x))]
            for t in (canary.STABLE, canary.CANARY)
        }
    seen = target.traffic.telemetry_since(mark, tracks)
    after = target.traffic.counters()
    delta = stats_delta(before, after)
    check = analysis.check_split(probe.counts, weights, alpha=alpha)
    verdict = gate(
        analysis.StageEvidence(
            weights=weights,
            stable=tracks.get(canary.STABLE, ""),
            canary=tracks.get(canary.CANARY, ""),
            probe=probe,
            telemetry=seen,
            predictions=compared,
            pins=pins,
            split=monitor.update(probe.counts),
            retries=retries_by_version(delta, tracks),
        )
    )
    return StageResult(
        canary_weight=canary_weight,
        revision=release.revision,
        weights=weights,
        probe=probe.to_dict(),
        split=check.to_dict(),
        passed=verdict.passed,
        gateway_url=status.gateway_url,
        gateway=delta,
        versions=tracks,
        reasons=list(verdict.reasons) if not verdict.passed else [],
        checks=verdict.to_dict().get("checks", {}),
        predictions=scores,
    )


def verdict_rows(stage: dict[str, Any]) -> list[dict[str, Any]]:
    """The verdict panel of a recorded stage: one row per check of the gate, failed ones first."""
    rows = [
        {"check": name, "passed": bool(c.get("passed")), "reason": str(c.get("reason", ""))}
        for name, c in (stage.get("checks") or {}).items()
    ]
    return sorted(rows, key=lambda r: (r["passed"], r["check"]))


def retries_by_version(
    delta: dict[str, dict[str, int]], tracks: dict[str, str]
) -> dict[str, tuple[int, int]]:
    """Version → (requests retried, requests sent) from the gateway's per-cluster counters over a
    stage; {} when the target has no such counters."""
    out: dict[str, tuple[int, int]] = {}
    for name, c in delta.items():
        subset = served.subset_of_cluster(name)
        if subset in tracks:
            r, n = out.get(tracks[subset], (0, 0))
            out[tracks[subset]] = (
                r + int(c.get("upstream_rq_retry", 0)),
                n + int(c.get("upstream_rq_total", 0)),
            )
    return out


def _pinned_at_once(
    url: str, tracks: dict[str, str], headers: dict[str, str], header: str, payload: Any
) -> dict[str, traffic.ProbeResult]:
    """``PIN_REQUESTS`` pinned to each track, all tracks at the same time: the same load in the
    same moment, so a busy machine slows both alike (their latencies are compared)."""
    with ThreadPoolExecutor(max_workers=max(1, len(tracks))) as pool:
        futures = {
            version: pool.submit(
                traffic.probe,
                url,
                PIN_REQUESTS,
                headers={**headers, header: track},
                payload=payload,
                show_progress=False,
            )
            for track, version in tracks.items()
        }
        return {version: f.result() for version, f in futures.items()}


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
    env = {**faults.parse(target.settings.canary_fault), **(canary_env or {})}
    spec = canary_spec(target.settings, canary_image, canary_version, env)
    return operations.deploy(target, spec, 0, echo=echo)


def fault_env(error_rate: float = 0.0, errors_after: int = 0) -> dict[str, str]:
    """Env that makes the canary degrade (a rehearsal knob of the scoring apps, see
    ``workbook.faults``): ``error_rate`` of its answers fail after its first ``errors_after``.
    Empty when ``error_rate`` is 0."""
    if not error_rate:
        return {}
    return faults.parse(f"errors={error_rate},errors-after={int(errors_after)}")


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
    # one stage per weight: a stage retried on Azure (``<stage>.<attempt>``) counts as its latest
    latest: dict[Any, dict[str, Any]] = {}
    for stage in sorted(stages, key=lambda s: float(s.get("started", 0))):
        latest[stage.get("canary_weight")] = stage
    return sorted(latest.values(), key=lambda s: float(s.get("started", 0)))


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
    host, payload = _host(target), _payload(target)
    by_track = {v.track: v.version for v in status.versions}
    out: dict[str, Any] = {}
    for track, version in sorted(by_track.items()):
        res = traffic.probe(
            url, n, headers={**host, header: track}, payload=payload, show_progress=False
        )
        out[track] = {
            "header": f"{header}: {track}",
            "expected": version,
            "counts": res.counts,
            "errors": res.errors,
            "all_landed": res.counts == {version: n} and res.errors == 0,
        }
    res = traffic.probe(url, n, headers=host, payload=payload, show_progress=False)
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
