"""The one flow against an in-memory fake of the seam: milliseconds, no process."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from fake_target import FakeTarget

from workbook import canary, flow, operations, steps
from workbook.errors import ConflictError, MeshError, WorkbookError
from workbook.settings import Settings

PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "workbook"


class Scripted:
    """Runs the flow's steps against a FakeTarget; shift stages pass or fail as told."""

    def __init__(
        self, target: FakeTarget, failing: set[str] = frozenset(), crash: str = ""
    ) -> None:
        self.target, self.failing, self.crash = target, failing, crash
        self.ran: list[str] = []

    def __call__(self, step: str) -> flow.StepOutcome:
        self.ran.append(step)
        if step == self.crash:
            raise RuntimeError("a bug")
        w = flow.shift_weight(step)
        if step == flow.DEPLOY:
            steps.deploy_canary(self.target)
        elif w is not None:
            operations.shift(self.target, w)
        elif step == flow.PROMOTE:
            operations.promote(self.target)
        elif step == flow.ROLLBACK:
            operations.rollback(self.target)
        return flow.StepOutcome(
            step, step not in self.failing, ["told to fail"] * (step in self.failing)
        )


def served(target: FakeTarget) -> dict[str, int]:
    return {k: v for k, v in target.traffic.served_weights().items() if v}


def test_plan_follows_the_stage_plan() -> None:
    assert flow.plan((20, 60)) == ["package", "deploy", "smoke", "shift-20", "shift-60", "promote"]
    assert flow.plan(Settings(stages=(10, 50, 100)).stages)[3:6] == [
        "shift-10",
        "shift-50",
        "shift-100",
    ]


def test_healthy_canary_is_promoted() -> None:
    target = FakeTarget()
    result = flow.run(flow.plan((10, 50, 100)), Scripted(target))
    assert result.outcome == "promoted"
    assert served(target) == {"stable": 100}
    full = canary.merge(target.releases.defaults, target.releases.deployed().values)
    assert canary.version_of(full, "stable") == "v2" and not canary.canary_enabled(full)
    assert [s["weight"] for s in result.stages] == [10, 50, 100]


@pytest.mark.parametrize("failing", ["smoke", "shift-10", "shift-50", "shift-100", "promote"])
def test_any_failure_past_package_rolls_back_to_stable_100(failing: str) -> None:
    target = FakeTarget()
    if failing == "promote":  # half-way: stable took the canary's image, the retire step fails
        target.state.fail_next = ["promote v2: stable takes all traffic"]
    run = Scripted(target, {failing} - {"promote"})
    result = flow.run(flow.plan((10, 50, 100)), run)
    assert result.outcome == "rolled_back"
    assert run.ran[-2:] == [failing, "rollback"]
    assert served(target) == {"stable": 100}
    full = canary.merge(target.releases.defaults, target.releases.deployed().values)
    assert canary.version_of(full, "stable") == "v1"  # the old stable serves, canary kept at 0
    assert canary.expected_weights(full) == {"stable": 100, "canary": 0}


def test_a_failed_package_deploys_nothing_and_rolls_nothing_back() -> None:
    target = FakeTarget()
    run = Scripted(target, {"package"})
    assert flow.run(flow.plan((10,)), run).outcome == "failed"
    assert run.ran == ["package"] and target.releases.history() == []


def test_a_workbook_error_fails_the_step_and_rolls_back() -> None:
    target = FakeTarget()
    target.state.fail_next = ["shift canary to 50%"]
    result = flow.run(flow.plan((10, 50)), Scripted(target))
    assert result.outcome == "rolled_back"
    (stage50,) = [s for s in result.steps if s.step == "shift-50"]
    assert "pods did not become ready" in stage50.reasons[0]
    assert served(target) == {"stable": 100}


def test_a_bug_still_rolls_back_then_propagates() -> None:
    target = FakeTarget()
    run = Scripted(target, crash="shift-50")
    with pytest.raises(RuntimeError, match="a bug"):
        flow.run(flow.plan((10, 50)), run)
    assert run.ran[-1] == "rollback" and served(target) == {"stable": 100}


def test_verbs_wait_until_the_gateway_serves_the_new_weights() -> None:
    target = FakeTarget()
    steps.deploy_canary(target)
    target.state.lag = 3  # the proxy takes three reads to catch up
    rel = operations.shift(target, 30)
    assert target.state._reads_left == 0  # the verb waited
    assert (
        served(target) == {"stable": 70, "canary": 30} and rel.description == "shift canary to 30%"
    )


def test_a_gateway_that_never_serves_the_weights_is_an_error(monkeypatch) -> None:
    target = FakeTarget()
    steps.deploy_canary(target)
    monkeypatch.setattr(target.traffic, "served_weights", lambda: {"stable": 100})
    with pytest.raises(MeshError, match="still serves"):
        operations.wait_served(target, {"stable": 60, "canary": 40}, timeout_s=0, poll_s=0)


def test_a_verb_refuses_to_build_on_a_revision_that_changed_meanwhile() -> None:
    target = FakeTarget()
    steps.deploy_canary(target)
    stale = target.releases.deployed()
    operations.shift(target, 10)
    with pytest.raises(ConflictError):
        target.releases.upgrade(stale.values, "x", expect_revision=stale.revision)


def test_shift_and_promote_without_a_canary_are_refused() -> None:
    target = FakeTarget()
    with pytest.raises(WorkbookError, match="nothing is deployed"):
        operations.shift(target, 10)
    steps.deploy_canary(target)
    operations.promote(target)
    with pytest.raises(WorkbookError, match="no canary to promote"):
        operations.promote(target)
    with pytest.raises(WorkbookError, match="no canary to shift"):
        operations.shift(target, 10)


def test_deploy_after_promote_keeps_the_promoted_stable_and_refuses_the_same_image() -> None:
    target = FakeTarget()
    steps.deploy_canary(target)
    operations.promote(target)
    with pytest.raises(WorkbookError, match="the image stable runs already"):
        steps.deploy_canary(target)  # v2 again: nothing to compare
    steps.deploy_canary(target, canary_version="v3")
    versions = {v.track: v.version for v in target.releases.readiness()}
    assert versions == {"stable": "v2", "canary": "v3"}


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Modules of the package imported at module level (function-level imports are lazy);
    ``from pkg import submodule`` depends on the submodule only."""
    tree = ast.parse(path.read_text())
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("workbook"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("workbook"))
    return out


def test_the_package_has_no_import_circle() -> None:
    modules = {
        ".".join(p.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts).removesuffix(
            ".__init__"
        ): p
        for p in PACKAGE_ROOT.rglob("*.py")
    }
    names = set(modules)
    graph = {
        m: {i for i in _imports(p, names) if i in names and i != m} for m, p in modules.items()
    }
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            assert state.get(n) != 1, "import circle: " + " → ".join([*path, m, n])
            if n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_targets_only_know_the_seam() -> None:
    """Targets do I/O: they never import the canary rules' users (flow, steps, operations)."""
    for path in [*(PACKAGE_ROOT / "local").glob("*.py"), *(PACKAGE_ROOT / "kube").glob("*.py")]:
        text = path.read_text()
        for forbidden in (
            "workbook.flow",
            "workbook.steps",
            "workbook.operations",
            "workbook.targets",
        ):
            assert forbidden not in text, f"{path.name} imports {forbidden}"
