"""Figures from synthetic stage dicts and gateway stats: artists and texts, not pixels."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from workbook import plots

HOST = "scoring.canary-demo.svc.cluster.local"
VERSIONS = {"stable": "v1", "canary": "v2"}


def make_stage(
    weight: int,
    canary_count: int,
    *,
    total: int = 1000,
    passed: bool = True,
    p_value: float = 0.5,
    errors: int = 0,
    with_intervals: bool = True,
) -> dict[str, Any]:
    """A ``StageResult.to_dict()`` shaped stage with stable v1 and canary v2."""
    counts = {"v1": total - canary_count, "v2": canary_count}
    split: dict[str, Any] = {
        "weights": {"v1": 100 - weight, "v2": weight},
        "counts": counts,
        "total": total,
        "p_value": p_value,
        "alpha": 0.01,
        "passed": passed,
        "shares": {v: c / total for v, c in counts.items()},
    }
    if with_intervals:
        split["intervals"] = {v: list(plots.wilson(c, total)) for v, c in counts.items()}
    by_version = {"v1": {"p50": 10.0, "p90": 15.0, "p99": 30.0, "mean": 11.0, "max": 40.0}}
    if canary_count:
        by_version["v2"] = {"p50": 12.0, "p90": 18.0, "p99": 45.0, "mean": 13.0, "max": 60.0}
    return {
        "canary_weight": weight,
        "revision": weight // 10 + 1,
        "weights": {"v1": 100 - weight, "v2": weight},
        "probe": {
            "total": total,
            "counts": counts,
            "errors": errors,
            "status_codes": {"200": total - errors},
            "latency_ms": {"p50": 10.0, "p90": 15.0, "p99": 35.0, "mean": 11.0, "max": 60.0},
            "latency_by_version": by_version,
            "duration_s": 2.0,
            "rps": total / 2,
        },
        "split": split,
        "passed": passed and errors == 0,
        "gateway_url": "http://127.0.0.1:8080",
    }


@pytest.fixture
def stages() -> list[dict[str, Any]]:
    return [
        make_stage(0, 0, p_value=1.0),
        make_stage(10, 96),
        make_stage(50, 430, passed=False, p_value=1.2e-5),
        make_stage(100, 1000, p_value=1.0),
    ]


def by_gid(fig: Figure, gid: str) -> list[Any]:
    return [a for a in fig.axes[0].get_children() if a.get_gid() == gid]


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


# ---------------------------------------------------------------- canary rule


@pytest.mark.parametrize(
    ("weights", "canary_weight", "expected"),
    [
        ([{"v1": 90, "v2": 10}], 10, "v2"),
        ([{"v2": 10, "v1": 90}], 10, "v2"),  # order does not matter when unambiguous
        ([{"v1": 50, "v2": 50}], 50, "v2"),  # ambiguous: second key
        ([{"v1": 100, "v2": 0}], 0, "v2"),
        ([{"v1": 100}], 0, None),
    ],
)
def test_canary_rule(weights: list[dict[str, int]], canary_weight: int, expected: str) -> None:
    stages = [{"canary_weight": canary_weight, "weights": w} for w in weights]
    assert plots.canary_of(stages) == expected


def test_canary_rule_uses_every_stage() -> None:
    stages = [
        {"canary_weight": 50, "weights": {"b": 50, "a": 50}},
        {"canary_weight": 10, "weights": {"b": 90, "a": 10}},
    ]
    assert plots.canary_of(stages) == "a"
    assert plots.canary_of(stages, "b") == "b"


def test_wilson_interval_brackets_the_share() -> None:
    lo, hi = plots.wilson(96, 1000, alpha=0.01)
    assert lo < 0.096 < hi
    assert hi - lo == pytest.approx(0.048, abs=0.004)
    assert plots.wilson(0, 0) == (0.0, 1.0)


# ---------------------------------------------------------------- split figure


def test_split_figure_points_labels_and_limits(stages: list[dict[str, Any]]) -> None:
    fig = plots.split_figure(stages)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0%", "10%", "50%", "100%"]
    assert ax.get_ylim() == (0, 118)
    assert ax.get_yticks()[0] == 0 and ax.get_yticks()[-1] == 100
    errorbars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(errorbars) == 2  # one series per version
    for version in ("v1", "v2"):
        (line,) = by_gid(fig, f"observed:{version}")
        assert len(line.get_xdata()) == 4
    (canary,) = by_gid(fig, "observed:v2")
    assert list(canary.get_ydata()) == pytest.approx([0.0, 9.6, 43.0, 100.0])
    (configured,) = by_gid(fig, "configured:v2")
    assert [seg[0][1] for seg in configured.get_segments()] == [0, 10, 50, 100]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "v2 (canary) observed (Wilson CI)" in legend
    assert "v1 (stable) configured" in legend
    assert "9.6%" in texts(fig)


def test_split_figure_marks_the_failed_stage(stages: list[dict[str, Any]]) -> None:
    fig = plots.split_figure(stages)
    assert by_gid(fig, "fail:2") and not by_gid(fig, "fail:1")
    (verdict,) = by_gid(fig, "verdict:2")
    assert verdict.get_text() == "FAIL p=1.2e-05"
    assert verdict.get_color() == plots.FAIL_COLOR
    assert by_gid(fig, "verdict:1")[0].get_text() == "ok p=0.50"
    (ring,) = by_gid(fig, "failed:v2")
    assert list(ring.get_xdata()) == pytest.approx([2.1])
    assert "stage failed (split test or errors)" in [
        t.get_text() for t in fig.axes[0].get_legend().get_texts()
    ]


def test_split_figure_marks_a_stage_failed_by_errors_only() -> None:
    fig = plots.split_figure([make_stage(10, 100, errors=3)])
    assert by_gid(fig, "fail:0")
    assert by_gid(fig, "verdict:0")[0].get_text() == "FAIL p=0.50\n3 errors"


def test_split_figure_computes_intervals_when_missing() -> None:
    fig = plots.split_figure([make_stage(10, 96, with_intervals=False)], title="t")
    (bars,) = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)][:1]
    assert bars.has_yerr
    assert fig.axes[0].get_title() == "t"


def test_split_figure_without_failures_has_no_fail_marks(stages: list[dict[str, Any]]) -> None:
    fig = plots.split_figure([s for s in stages if s["passed"]])
    assert not any(str(a.get_gid()).startswith("fail") for a in fig.axes[0].get_children())


# ---------------------------------------------------------------- latency figure


def test_latency_figure_bars_per_version_and_stage(stages: list[dict[str, Any]]) -> None:
    fig = plots.latency_figure(stages)
    ax = fig.axes[0]
    bars = {gid: by_gid(fig, gid) for gid in ("p50:v1", "p99:v1", "p50:v2", "p99:v2")}
    # one bar per version per stage and quantile; v2 has no traffic in the 0% stage
    assert [len(b) for b in bars.values()] == [4, 4, 3, 3]
    assert [r.get_height() for r in bars["p99:v2"]] == [45.0, 45.0, 45.0]
    assert [r.get_height() for r in bars["p50:v1"]] == [10.0] * 4
    assert len(ax.patches) == 14
    assert "no\ntraffic" in texts(fig)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0%", "10%", "50%", "100%"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["v1 (stable) p99", "v1 (stable) p50", "v2 (canary) p99", "v2 (canary) p50"]


# ---------------------------------------------------------------- edge table and graph


def gateway_stats() -> dict[str, dict[str, int]]:
    return {
        f"outbound|80|stable|{HOST}": {
            "upstream_rq_total": 900,
            "upstream_rq_2xx": 899,
            "upstream_rq_5xx": 1,
            "upstream_cx_connect_fail": 0,
            "upstream_rq_retry": 0,
        },
        f"outbound|80|canary|{HOST}": {
            "upstream_rq_total": 100,
            "upstream_rq_2xx": 96,
            "upstream_rq_5xx": 2,
            "upstream_cx_connect_fail": 2,
            "upstream_rq_retry": 1,
        },
        "outbound|80|stable|other.canary-demo.svc.cluster.local": {"upstream_rq_total": 50},
        "xds_cluster": {"upstream_rq_total": 7},
    }


def test_edge_table_numbers() -> None:
    rows = plots.edge_table(gateway_stats(), versions=VERSIONS, host="scoring.canary-demo")
    assert [(r["subset"], r["version"], r["requests"]) for r in rows] == [
        ("stable", "v1", 900),
        ("canary", "v2", 100),
    ]
    assert [r["share"] for r in rows] == pytest.approx([0.9, 0.1])
    assert [r["error_rate"] for r in rows] == pytest.approx([1 / 900, 4 / 100])
    assert [r["errors"] for r in rows] == [1, 4]
    assert rows[1]["port"] == 80 and rows[1]["host"] == HOST


def test_edge_table_without_filter_keeps_every_outbound_cluster() -> None:
    rows = plots.edge_table(gateway_stats())
    assert len(rows) == 3
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert {r["version"] for r in rows} == {"stable", "canary"}  # subset when no mapping


@pytest.mark.parametrize(
    ("counters", "share", "error_rate"),
    [
        ({}, 0.0, 0.0),
        ({"upstream_cx_connect_fail": 3}, 0.0, 1.0),
    ],
)
def test_edge_table_no_traffic(counters: dict[str, int], share: float, error_rate: float) -> None:
    (row,) = plots.edge_table({f"outbound|80|canary|{HOST}": counters})
    assert (row["requests"], row["share"], row["error_rate"]) == (0, share, error_rate)


def test_parse_cluster() -> None:
    assert plots.parse_cluster(f"outbound|80|canary|{HOST}") == (80, "canary", HOST)
    assert plots.parse_cluster(f"outbound|80||{HOST}") == (80, "", HOST)
    assert plots.parse_cluster("inbound|80|x|y") is None
    assert plots.parse_cluster("xds_cluster") is None


def test_mesh_graph_nodes_edges_and_labels() -> None:
    fig = plots.mesh_graph_figure(
        gateway_stats(), namespace="canary-demo", app="scoring", versions=VERSIONS
    )
    for gid in ("node:gateway", "node:service", "node:version:v1", "node:version:v2"):
        assert len(by_gid(fig, gid)) == 1, gid
    edges = {gid: by_gid(fig, gid)[0] for gid in ("edge:gateway", "edge:stable", "edge:canary")}
    assert edges["edge:stable"].get_linewidth() > edges["edge:canary"].get_linewidth()
    assert edges["edge:gateway"].get_linewidth() > edges["edge:stable"].get_linewidth()
    labels = {gid: by_gid(fig, f"label:{gid}")[0].get_text() for gid in edges}
    assert labels["edge:gateway"] == "100.0%  (1000 rq)\nerr 0.5%"
    assert labels["edge:stable"] == "90.0%  (900 rq)\nerr 0.1%"
    assert labels["edge:canary"] == "10.0%  (100 rq)\nerr 4.0%"
    assert "1000 requests" in fig.axes[0].get_title()


def test_mesh_graph_colours_edges_by_errors() -> None:
    stats = {
        f"outbound|80|stable|{HOST}": {"upstream_rq_total": 300},
        f"outbound|80|canary|{HOST}": {"upstream_rq_total": 0},
    }
    fig = plots.mesh_graph_figure(stats, namespace="canary-demo", app="scoring", versions=VERSIONS)
    stable = by_gid(fig, "edge:stable")[0]
    canary = by_gid(fig, "edge:canary")[0]
    assert stable.get_edgecolor()[:3] == pytest.approx((0x3F / 255, 0x9C / 255, 0x35 / 255))
    assert canary.get_linestyle() == "--"
    assert by_gid(fig, "label:edge:canary")[0].get_text() == "0.0%  (0 rq)"
    bad = plots.mesh_graph_figure(gateway_stats(), namespace="canary-demo", app="scoring")
    red = (0xD6 / 255, 0x27 / 255, 0x28 / 255)
    assert by_gid(bad, "edge:canary")[0].get_edgecolor()[:3] == pytest.approx(red)


def test_mesh_graph_without_clusters_says_so() -> None:
    fig = plots.mesh_graph_figure({}, namespace="ns", app="scoring", title="empty")
    assert "no outbound clusters for scoring.ns" in texts(fig)
    assert fig.axes[0].get_title() == "empty"


# ---------------------------------------------------------------- save


def test_save_writes_a_png(tmp_path: Path, stages: list[dict[str, Any]]) -> None:
    out = plots.save(plots.split_figure(stages), tmp_path / "deep" / "dir" / "split.png")
    assert out == tmp_path / "deep" / "dir" / "split.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_figures_are_not_registered_with_pyplot(stages: list[dict[str, Any]]) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plots.split_figure(stages)
    plots.latency_figure(stages)
    plots.mesh_graph_figure(gateway_stats(), namespace="canary-demo", app="scoring")
    assert plt.get_fignums() == before


def _displayed(obj: Any) -> dict[str, Any]:
    """What IPython's display machinery makes of ``obj`` (the bundle a notebook output holds)."""
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(obj)
    return data


@pytest.mark.parametrize("kind", ["split", "latency", "mesh"])
def test_figures_display_inline_as_png(kind: str, stages: list[dict[str, Any]]) -> None:
    # a cell that ends with the figure must show an image, not "<Figure size 650x500 ...>"
    if kind == "split":
        fig = plots.split_figure(stages)
    elif kind == "latency":
        fig = plots.latency_figure(stages)
    else:
        stats = {f"outbound|80|stable|{HOST}": {"upstream_rq_completed": 10}}
        fig = plots.mesh_graph_figure(stats, namespace="canary-demo", app="scoring")
    data = _displayed(fig)
    png = data["image/png"]
    raw = png if isinstance(png, bytes) else base64.b64decode(png)
    assert raw.startswith(b"\x89PNG\r\n\x1a\n")
    assert "<Figure size" not in data["text/plain"]
    assert fig.axes[0].get_title() in data["text/plain"]


def test_predictions_figure_draws_both_versions_on_the_same_inputs() -> None:
    stage = {
        "canary_weight": 50,
        "versions": {"stable": "v1", "canary": "v2"},
        "predictions": {"stable": [0.1, 0.2, 0.25, 0.3], "canary": [0.6, 0.7, 0.75]},
        "checks": {"predictions": {"passed": False, "reason": "predictions differ: PSI 5.7"}},
    }
    fig = plots.predictions_figure(stage)
    gids = {p.get_gid() for ax in fig.axes for p in ax.patches}
    assert {"scores:stable", "scores:canary"} <= gids
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == ["v1 (stable), n=4", "v2 (canary), n=3"]
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_verdict_rows_put_failed_checks_first() -> None:
    from workbook import steps

    stage = {
        "checks": {
            "split": {"passed": True, "reason": "split fits"},
            "errors (probe)": {"passed": False, "reason": "canary fails more than stable"},
        }
    }
    rows = steps.verdict_rows(stage)
    assert [(r["check"], r["passed"]) for r in rows] == [
        ("errors (probe)", False),
        ("split", True),
    ]
