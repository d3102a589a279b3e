"""Figures for a canary rollout: split per stage, latency per version, and a Kiali-style mesh graph.

Pure: stage dicts (``StageResult.to_dict()``) or gateway stats in, a matplotlib ``Figure`` out.
Figures are built without pyplot (no global state, Agg-safe). Each is a :class:`NotebookFigure`,
which carries its own Agg canvas and gives IPython a PNG (``_repr_png_``): a cell that ends with a
figure shows it inline in JupyterLab, in papermill's executed notebooks and in nbconvert's HTML,
whatever matplotlib backend the kernel has. Only :func:`save` writes a file.

Which version is the canary: pass ``canary_version``. Otherwise it is the version whose configured
weight equals the stage's ``canary_weight`` in every stage; if that leaves no single version (e.g.
one 50/50 stage), the second key of the first stage's ``weights`` (stable is listed first).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch, Polygon
from matplotlib.ticker import PercentFormatter

STABLE_COLOR = "#1f77b4"
CANARY_COLOR = "#ff7f0e"
OTHER_COLORS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2")
FAIL_COLOR = "#d62728"
OK_COLOR = "#3f9c35"  # Kiali's healthy-edge green
IDLE_COLOR = "#8a8d90"
DPI = 110


# ---------------------------------------------------------------- helpers


class NotebookFigure(Figure):
    """A ``Figure`` with an Agg canvas that renders itself as PNG for IPython's display.

    IPython asks an object for ``_repr_png_`` when it shows it; a plain ``Figure`` built without
    pyplot has none (only ``%matplotlib inline`` registers a PNG printer for figures), so a cell
    showed ``<Figure size 650x500 with 1 Axes>``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        FigureCanvasAgg(self)

    def __repr__(self) -> str:
        """The plain-text stand-in (what a terminal or a text-only viewer shows): the title."""
        title = next((t for ax in self.axes if (t := ax.get_title())), "")
        w, h = self.get_size_inches() * DPI
        return f"[figure {w:.0f}x{h:.0f}px: {title}]" if title else f"[figure {w:.0f}x{h:.0f}px]"

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, dpi=DPI, format="png", bbox_inches="tight")
        return buf.getvalue()


def stage_label(stage: Mapping[str, Any]) -> str:
    """The x tick of a stage: its canary weight, ``"10%"``."""
    return f"{stage['canary_weight']}%"


def versions_of(stages: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every version named in any stage's weights or counts, in first-seen order."""
    seen: dict[str, None] = {}
    for s in stages:
        for v in s.get("weights", {}):
            seen.setdefault(v, None)
        for v in s.get("probe", {}).get("counts", {}):
            seen.setdefault(v, None)
    return list(seen)


def canary_of(stages: Sequence[Mapping[str, Any]], canary_version: str | None = None) -> str | None:
    """The canary version by the rule in the module docstring (None for a single version)."""
    if canary_version is not None:
        return canary_version
    if not stages:
        return None
    candidates: set[str] | None = None
    for s in stages:
        here = {v for v, w in s.get("weights", {}).items() if w == s["canary_weight"]}
        candidates = here if candidates is None else candidates & here
    if candidates and len(candidates) == 1:
        return next(iter(candidates))
    keys = list(stages[0].get("weights", {}))
    return keys[1] if len(keys) > 1 else None


def _colors(versions: Sequence[str], canary: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    others = iter(OTHER_COLORS * 4)
    stable_done = False
    for v in versions:
        if v == canary:
            out[v] = CANARY_COLOR
        elif not stable_done:
            out[v], stable_done = STABLE_COLOR, True
        else:
            out[v] = next(others)
    return out


def _role(version: str, canary: str | None) -> str:
    return "canary" if version == canary else "stable"


def wilson(count: int, total: int, alpha: float = 0.01) -> tuple[float, float]:
    """Wilson score interval of a share ``count/total`` at confidence ``1 - alpha``."""
    if total <= 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(1 - alpha / 2)
    p = count / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _observed(stage: Mapping[str, Any], version: str) -> tuple[float, float, float] | None:
    """(share, lo, hi) as fractions, from the split check or, failing that, the probe counts."""
    split = stage.get("split") or {}
    probe = stage.get("probe") or {}
    total = int(split.get("total") or probe.get("total") or 0)
    counts = split.get("counts") or probe.get("counts") or {}
    if total <= 0:
        return None
    share = split.get("shares", {}).get(version)
    if share is None:
        share = counts.get(version, 0) / total
    interval = split.get("intervals", {}).get(version)
    if interval is None:
        interval = wilson(int(counts.get(version, 0)), total, float(split.get("alpha", 0.01)))
    return float(share), float(interval[0]), float(interval[1])


def _finite(lat: Mapping[str, Any] | None, key: str) -> bool:
    value = (lat or {}).get(key)
    return isinstance(value, int | float) and math.isfinite(value)


def _failed(stage: Mapping[str, Any]) -> bool:
    split = stage.get("split") or {}
    return not stage.get("passed", True) or split.get("passed") is False


def _verdict(stage: Mapping[str, Any]) -> str:
    split = stage.get("split") or {}
    p = split.get("p_value")
    if isinstance(p, int | float):
        parts = [f"p={p:.2f}" if p >= 0.01 else f"p={p:.1e}"]
    else:
        parts = ["p=n/a"]
    errors = (stage.get("probe") or {}).get("errors", 0)
    if errors:
        parts.append(f"{errors} errors")
    return ("FAIL " if _failed(stage) else "ok ") + "\n".join(parts)


# ---------------------------------------------------------------- split


def split_figure(
    stages: Sequence[Mapping[str, Any]],
    *,
    title: str | None = None,
    canary_version: str | None = None,
) -> Figure:
    """Configured weight (dashed bar) vs observed share (point, Wilson interval) per version.

    A stage that failed (split test or errors) gets a red band, red point edges and ``FAIL p=…``.
    """
    fig = NotebookFigure(figsize=(max(6.5, 1.5 * len(stages) + 3.5), 5.0), layout="constrained")
    ax = fig.add_subplot()
    versions = versions_of(stages)
    canary = canary_of(stages, canary_version)
    colors = _colors(versions, canary)
    xs = list(range(len(stages)))
    offset = {v: (i - (len(versions) - 1) / 2) * 0.2 for i, v in enumerate(versions)}

    for x, stage in zip(xs, stages, strict=True):
        if _failed(stage):
            ax.axvspan(x - 0.45, x + 0.45, color=FAIL_COLOR, alpha=0.08, lw=0, gid=f"fail:{x}")

    for v in versions:
        label = f"{v} ({_role(v, canary)})"
        weights = [s.get("weights", {}).get(v, 0) for s in stages]
        ax.hlines(
            weights,
            [x + offset[v] - 0.2 for x in xs],
            [x + offset[v] + 0.2 for x in xs],
            colors=colors[v],
            linestyles="--",
            lw=2,
            alpha=0.8,
            label=f"{label} configured",
            gid=f"configured:{v}",
        )
        pts = [(x, _observed(s, v), _failed(s)) for x, s in zip(xs, stages, strict=True)]
        pts_ok = [(x + offset[v], o, f) for x, o, f in pts if o is not None]
        if not pts_ok:
            continue
        px = [p[0] for p in pts_ok]
        py = [100 * p[1][0] for p in pts_ok]
        lo = [100 * (p[1][0] - p[1][1]) for p in pts_ok]
        hi = [100 * (p[1][2] - p[1][0]) for p in pts_ok]
        bars = ax.errorbar(
            px,
            py,
            yerr=[[max(0.0, e) for e in lo], [max(0.0, e) for e in hi]],
            fmt="o",
            ms=7,
            color=colors[v],
            mec=colors[v],
            capsize=5,
            elinewidth=1.6,
            label=f"{label} observed (Wilson CI)",
            zorder=3,
        )
        bars.lines[0].set_gid(f"observed:{v}")
        failed_x = [p[0] for p in pts_ok if p[2]]
        failed_y = [100 * p[1][0] for p in pts_ok if p[2]]
        if failed_x:
            ax.plot(
                failed_x,
                failed_y,
                "o",
                ms=11,
                mfc="none",
                mec=FAIL_COLOR,
                mew=2.2,
                zorder=4,
                gid=f"failed:{v}",
            )
        if v == canary:
            for cx, cy in zip(px, py, strict=True):
                ax.annotate(
                    f"{cy:.1f}%",
                    (cx, cy),
                    xytext=(12, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=8.5,
                    color=colors[v],
                    fontweight="bold",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9},
                    zorder=5,
                )

    for x, stage in zip(xs, stages, strict=True):
        failed = _failed(stage)
        ax.text(
            x,
            103,
            _verdict(stage),
            ha="center",
            va="bottom",
            fontsize=8.5,
            color=FAIL_COLOR if failed else "#4d4d4d",
            fontweight="bold" if failed else "normal",
            gid=f"verdict:{x}",
        )

    ax.set_xticks(xs, [stage_label(s) for s in stages])
    ax.set_xlim(-0.6, len(stages) - 0.4)
    ax.set_ylim(0, 118)
    ax.set_yticks(range(0, 101, 10))
    ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=0))
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_xlabel("stage (configured canary weight)")
    ax.set_ylabel("share of requests")
    ax.set_title(title or "Traffic split per stage: configured weight vs observed share")
    handles, _ = ax.get_legend_handles_labels()
    if any(_failed(s) for s in stages):
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="none",
                ms=11,
                mfc="none",
                mec=FAIL_COLOR,
                mew=2.2,
                label="stage failed (split test or errors)",
            )
        )
    ax.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8.5
    )
    return fig


# ---------------------------------------------------------------- latency


def latency_figure(
    stages: Sequence[Mapping[str, Any]], *, canary_version: str | None = None
) -> Figure:
    """p50 (solid) and p99 (light) latency per version per stage, grouped by stage."""
    fig = NotebookFigure(figsize=(max(6.5, 1.5 * len(stages) + 3.5), 4.6), layout="constrained")
    ax = fig.add_subplot()
    versions = versions_of(stages)
    canary = canary_of(stages, canary_version)
    colors = _colors(versions, canary)
    width = 0.8 / max(1, len(versions))
    top = 0.0
    for i, v in enumerate(versions):
        xs, p50, p99 = [], [], []
        for x, s in enumerate(stages):
            lat = (s.get("probe") or {}).get("latency_by_version", {}).get(v)
            if not _finite(lat, "p50") or not _finite(lat, "p99"):
                continue
            xs.append(x + (i - (len(versions) - 1) / 2) * width)
            p50.append(float(lat["p50"]))
            p99.append(float(lat["p99"]))
        missing = [
            sx + (i - (len(versions) - 1) / 2) * width
            for sx, s in enumerate(stages)
            if not _finite((s.get("probe") or {}).get("latency_by_version", {}).get(v), "p99")
        ]
        for bx in missing:
            ax.text(bx, 0, "no\ntraffic", ha="center", va="bottom", fontsize=7.5, color=IDLE_COLOR)
        if not xs:
            continue
        top = max(top, *p99)
        label = f"{v} ({_role(v, canary)})"
        ax.bar(
            xs, p99, width * 0.9, color=colors[v], alpha=0.35, label=f"{label} p99", gid=f"p99:{v}"
        )
        ax.bar(xs, p50, width * 0.9, color=colors[v], label=f"{label} p50", gid=f"p50:{v}")
        for bx, by in zip(xs, p99, strict=True):
            ax.text(bx, by, f"{by:.0f}", ha="center", va="bottom", fontsize=7.5, color="#4d4d4d")
    ax.set_xticks(range(len(stages)), [stage_label(s) for s in stages])
    ax.set_ylim(0, top * 1.15 if top > 0 else 1)
    ax.set_xlabel("stage (configured canary weight)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency per version: p50 (solid) and p99 (light)")
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8.5, ncol=2, loc="upper left")
    return fig


def predictions_figure(stage: Mapping[str, Any]) -> Figure:
    """The distributions of both versions' scores on the same replayed inputs (a stage record's
    ``predictions``): a legitimate model update moves them a little, a broken one a lot."""
    fig = NotebookFigure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    scores = stage.get("predictions") or {}
    versions = stage.get("versions") or {}
    canary = versions.get("canary")
    colors = _colors([versions.get(t, t) for t in ("stable", "canary")], canary)
    bins = [i / 20 for i in range(21)]
    for track in ("stable", "canary"):
        values = [float(x) for x in scores.get(track) or []]
        if not values:
            continue
        version = versions.get(track, track)
        ax.hist(
            values,
            bins=bins,
            alpha=0.55,
            color=colors.get(version),
            label=f"{version} ({track}), n={len(values)}",
            gid=f"scores:{track}",
        )
    check = (stage.get("checks") or {}).get("predictions") or {}
    if check.get("reason"):
        ax.text(
            0.5,
            1.02,
            str(check["reason"])[:110],
            transform=ax.transAxes,
            ha="center",
            fontsize=7.5,
            color=FAIL_COLOR if not check.get("passed") else "#4d4d4d",
        )
    ax.set_xlim(0, 1)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("replayed inputs")
    ax.set_title(f"Predictions on the same inputs at {stage_label(stage)}", pad=18)
    ax.spines[["top", "right"]].set_visible(False)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8.5)
    return fig


# ---------------------------------------------------------------- mesh graph


def parse_cluster(name: str) -> tuple[int, str, str] | None:
    """``outbound|80|canary|host`` → ``(80, "canary", "host")``; None for other clusters."""
    parts = name.split("|")
    if len(parts) != 4 or parts[0] != "outbound" or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2], parts[3]


def _host_matches(host: str, wanted: str | None) -> bool:
    return wanted is None or host == wanted or host.startswith(wanted + ".")


def edge_table(
    stats: Mapping[str, Mapping[str, Any]],
    *,
    versions: Mapping[str, str] | None = None,
    host: str | None = None,
) -> list[dict[str, Any]]:
    """One row per ``outbound|port|subset|host`` cluster: the numbers behind the mesh graph.

    ``share`` is the cluster's requests over all listed clusters' requests; ``error_rate`` is
    (5xx + connect failures) / requests (1.0 when only failures). ``host`` keeps clusters whose host
    is it or starts with it and a dot (``"scoring.canary-demo"``). Rows follow ``versions`` order.
    """
    versions = versions or {}
    rows: list[dict[str, Any]] = []
    for name, counters in stats.items():
        parsed = parse_cluster(name)
        if parsed is None or not _host_matches(parsed[2], host):
            continue
        port, subset, fqdn = parsed
        requests = int(counters.get("upstream_rq_total", 0))
        if not subset and not requests:
            continue  # the subset-less cluster a host always has; shown only when routed to
        errors = int(counters.get("upstream_rq_5xx", 0)) + int(
            counters.get("upstream_cx_connect_fail", 0)
        )
        rows.append(
            {
                "cluster": name,
                "port": port,
                "subset": subset,
                "host": fqdn,
                "version": versions.get(subset, subset or "-"),
                "requests": requests,
                "errors": errors,
                "retries": int(counters.get("upstream_rq_retry", 0)),
            }
        )
    total = sum(r["requests"] for r in rows)
    for r in rows:
        r["share"] = r["requests"] / total if total else 0.0
        if r["requests"]:
            r["error_rate"] = min(1.0, r["errors"] / r["requests"])
        else:
            r["error_rate"] = 1.0 if r["errors"] else 0.0
    order = {s: i for i, s in enumerate(versions)}
    rows.sort(key=lambda r: order.get(r["subset"], len(order)))
    return rows


def _node_box(ax: Any, x: float, y: float, w: float, h: float, gid: str, **kw: Any) -> None:
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2),
            w,
            h,
            boxstyle="round,pad=0.004,rounding_size=0.015",
            gid=gid,
            **kw,
        )
    )


def _edge(
    ax: Any, a: tuple[float, float], b: tuple[float, float], row: Mapping[str, Any], gid: str
) -> None:
    share, err, n = row["share"], row["error_rate"], row["requests"]
    color = FAIL_COLOR if row["errors"] else (OK_COLOR if n else IDLE_COLOR)
    ax.add_patch(
        FancyArrowPatch(
            a,
            b,
            arrowstyle="-|>",
            mutation_scale=14 + 10 * share,
            lw=1.2 + 9 * share,
            color=color,
            ls="-" if n else "--",
            shrinkA=0,
            shrinkB=0,
            gid=gid,
            zorder=1,
        )
    )
    text = f"{100 * share:.1f}%  ({n} rq)"
    if row["errors"]:
        text += f"\nerr {100 * err:.1f}%"
    mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
    ax.text(
        mx,
        my,
        text,
        ha="center",
        va="center",
        fontsize=8.5,
        color=FAIL_COLOR if row["errors"] else "#1b1d21",
        fontweight="bold" if row["errors"] else "normal",
        bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": color, "lw": 0.8},
        zorder=5,
        gid=f"label:{gid}",
    )


def mesh_graph_figure(
    stats: Mapping[str, Mapping[str, Any]],
    *,
    namespace: str,
    app: str,
    versions: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """Gateway → service → one workload node per version, as Kiali's versioned-app graph shows it.

    Edge labels: share of the gateway's requests and error rate; width ∝ share; red when errors.
    """
    rows = edge_table(stats, versions=versions, host=f"{app}.{namespace}")
    total = sum(r["requests"] for r in rows)
    errors = sum(r["errors"] for r in rows)
    fig = NotebookFigure(figsize=(9.5, max(3.8, 1.4 * len(rows) + 1.8)), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")

    gw, svc = (0.1, 0.5), (0.4, 0.5)
    n = max(1, len(rows))
    ys = [0.5] if n == 1 else [0.78 - i * 0.56 / (n - 1) for i in range(n)]
    vx = 0.8

    # app box (Kiali draws the versions of one app inside a box labelled with the app)
    box_h = (max(ys) - min(ys)) + 0.26
    _node_box(
        ax,
        vx,
        sum(ys) / len(ys),
        0.24,
        box_h,
        gid="node:app-box",
        fc="#f5f5f5",
        ec="#8a8d90",
        ls="--",
        lw=1.0,
        zorder=0,
    )
    ax.text(
        vx,
        sum(ys) / len(ys) - box_h / 2 - 0.015,
        f"{app} (app)",
        ha="center",
        va="top",
        fontsize=9.5,
        color="#4d4d4d",
    )

    if rows:
        into_service = {
            "share": 1.0,
            "requests": total,
            "errors": errors,
            "error_rate": min(1.0, errors / total) if total else 0.0,
        }
        _edge(ax, gw, svc, into_service, gid="edge:gateway")
    for row, y in zip(rows, ys, strict=False):
        _edge(ax, svc, (vx - 0.05, y), row, gid=f"edge:{row['subset']}")

    # gateway node: Kiali draws the ingress gateway as an app node with a gateway badge
    _node_box(ax, *gw, 0.07, 0.12, gid="node:gateway", fc="white", ec="#1b1d21", lw=1.5, zorder=3)
    ax.text(*gw, "GW", ha="center", va="center", fontsize=10, fontweight="bold", zorder=4)
    ax.text(gw[0], gw[1] - 0.09, "istio-ingressgateway", ha="center", va="top", fontsize=9)
    # service node: a triangle
    tri = Polygon(
        [
            (svc[0] - 0.035, svc[1] - 0.055),
            (svc[0] + 0.035, svc[1] - 0.055),
            (svc[0], svc[1] + 0.06),
        ],
        closed=True,
        fc="white",
        ec="#1b1d21",
        lw=1.5,
        zorder=3,
        gid="node:service",
    )
    ax.add_patch(tri)
    ax.text(svc[0], svc[1] - 0.08, f"{app}\n(service)", ha="center", va="top", fontsize=9)
    # one workload node per version
    for row, y in zip(rows, ys, strict=False):
        bad = row["errors"] > 0
        _node_box(
            ax,
            vx,
            y,
            0.1,
            0.11,
            gid=f"node:version:{row['version']}",
            fc="white",
            ec=FAIL_COLOR if bad else "#1b1d21",
            lw=2 if bad else 1.5,
            zorder=3,
        )
        ax.text(vx, y, row["version"], ha="center", va="center", fontsize=11, fontweight="bold")
        ax.text(vx + 0.065, y, row["subset"], ha="left", va="center", fontsize=8.5, color="#4d4d4d")

    if not rows:
        ax.text(
            0.6, 0.5, f"no outbound clusters for {app}.{namespace}", ha="center", color=IDLE_COLOR
        )
    ax.set_title(
        title or f"{namespace}/{app}: versioned app graph, {total} requests through the gateway"
    )
    legend = [
        Patch(color=OK_COLOR, label="traffic, no errors"),
        Patch(color=FAIL_COLOR, label="5xx or connect failures"),
        Patch(color=IDLE_COLOR, label="no traffic"),
    ]
    ax.legend(handles=legend, loc="lower left", fontsize=8, frameon=False)
    return fig


# ---------------------------------------------------------------- output


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG at 110 dpi, creating parent directories; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, format="png", bbox_inches="tight")
    return out
