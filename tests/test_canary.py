"""The canary core by table: values in, values out, no process started."""

from __future__ import annotations

from typing import Any

import pytest

from workbook import canary
from workbook.errors import ConfigError
from workbook.seam import Release

DEFAULTS: dict[str, Any] = {
    "image": {"registry": "acr.example.io"},
    "stable": {"version": "v1", "image": {"repository": "scoring", "tag": "v1"}},
    "canary": {
        "enabled": True,
        "version": "v2",
        "image": {"repository": "scoring", "tag": "v2"},
        "weight": 0,
    },
}
V2 = canary.CanarySpec("v2", {"repository": "scoring", "tag": "v2"})


@pytest.mark.parametrize(
    ("stages", "plan"),
    [([10, 50, 100], (10, 50, 100)), (["20", "60"], (20, 60)), ([100], (100,)), ([5.0], (5,))],
)
def test_stage_plan_accepts_increasing_weights(stages: list[Any], plan: tuple[int, ...]) -> None:
    assert canary.stage_plan(stages) == plan


@pytest.mark.parametrize(
    ("stages", "field", "needle"),
    [
        ([], "stages", "is empty"),
        ([50, 10], "stages[1]", "greater than 50"),
        ([10, 10], "stages[1]", "greater than 10"),
        ([0, 10], "stages[0]", "1..100"),
        ([10, 150], "stages[1]", "0..100"),
        ([True], "stages[0]", "integer"),
        (["ten"], "stages[0]", "integer"),
        (["²"], "stages[0]", "integer"),
        (["9" * 5000], "stages[0]", "integer"),
        ("10,50", "stages", "list"),
    ],
)
def test_stage_plan_refuses_what_is_no_rollout(stages: Any, field: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        canary.stage_plan(stages)
    assert e.value.field == field and needle in str(e.value)
    assert len(str(e.value)) < 200


@pytest.mark.parametrize(
    ("values", "weights"),
    [
        ({}, {"stable": 100, "canary": 0}),
        ({"canary": {"weight": 30}}, {"stable": 70, "canary": 30}),
        ({"canary": {"weight": 100}}, {"stable": 0, "canary": 100}),
        ({"canary": {"enabled": False, "weight": 40}}, {"stable": 100}),
    ],
)
def test_expected_weights(values: dict[str, Any], weights: dict[str, int]) -> None:
    assert canary.expected_weights(canary.merge(DEFAULTS, values)) == weights


def test_deploy_puts_the_canary_at_zero_next_to_the_deployed_stable() -> None:
    promoted = {
        "stable": {"version": "v2", "image": {"repository": "scoring", "tag": "v2"}},
        "canary": {"enabled": False, "weight": 0},
    }
    v3 = canary.CanarySpec("v3", {"repository": "scoring", "tag": "v3"}, (("FLAG", "1"),))
    step = canary.deploy(promoted, {}, DEFAULTS, v3)
    full = canary.merge(DEFAULTS, step.values)
    assert canary.image_ref(full, "stable") == "acr.example.io/scoring:v2"  # untouched
    assert canary.image_ref(full, "canary") == "acr.example.io/scoring:v3"
    assert full["canary"]["enabled"] and full["canary"]["weight"] == 0
    assert full["canary"]["env"] == [{"name": "FLAG", "value": "1"}]
    assert step.description == "deploy canary v3 at 0%"


def test_deploy_refuses_a_canary_that_runs_the_stable_image() -> None:
    promoted = {"stable": {"version": "v2", "image": {"repository": "scoring", "tag": "v2"}}}
    with pytest.raises(ConfigError, match=r"canary: image is acr.example.io/scoring:v2, the image"):
        canary.deploy(promoted, {}, DEFAULTS, V2)


def test_deploy_replaces_the_canary_image_whole() -> None:
    current = {"canary": {"image": {"repository": "scoring", "digest": "sha256:" + "a" * 64}}}
    step = canary.deploy(
        current, {}, DEFAULTS, canary.CanarySpec("v3", {"repository": "s", "tag": "v3"})
    )
    assert step.values["canary"]["image"] == {"repository": "s", "tag": "v3"}


@pytest.mark.parametrize(
    ("current", "weight", "error"),
    [
        (None, 10, "nothing is deployed"),
        ({"canary": {"enabled": False}}, 10, "no canary to shift"),
        ({}, 101, "0..100"),
        ({}, "x", "integer"),
    ],
)
def test_shift_preconditions(current: Any, weight: Any, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        canary.shift(current, DEFAULTS, weight)


def test_shift_changes_only_the_weight() -> None:
    current = {"canary": {"weight": 10, "env": [{"name": "A", "value": "b"}]}, "x": 1}
    step = canary.shift(current, DEFAULTS, 50)
    assert step.values == {"canary": {"weight": 50, "env": [{"name": "A", "value": "b"}]}, "x": 1}
    assert current["canary"]["weight"] == 10  # pure: the input is not changed


def test_promote_is_three_revisions_so_no_request_meets_a_removed_subset() -> None:
    current = {
        "canary": {"weight": 100, "version": "v2", "image": {"repository": "scoring", "tag": "v2"}}
    }
    first, second, third = canary.promote(current, DEFAULTS)
    f1, f2, f3 = (canary.merge(DEFAULTS, s.values) for s in (first, second, third))
    # 1: stable runs the canary's image while the canary keeps its share
    assert canary.image_ref(f1, "stable") == canary.image_ref(f1, "canary")
    assert canary.expected_weights(f1) == {"stable": 0, "canary": 100}
    assert canary.promote_started(f1)
    # 2: no route to the canary any more, while its subset and pods still exist
    assert canary.expected_weights(f2) == {"stable": 100}
    assert canary.canary_enabled(f2) and not canary.canary_routed(f2)
    # 3: the canary retires
    assert canary.expected_weights(f3) == {"stable": 100} and not canary.canary_enabled(f3)
    assert f3["stable"]["version"] == "v2"
    assert [s.description for s in (first, second, third)] == [
        "promote v2: stable runs the canary's image",
        "promote v2: stable takes all traffic",
        "promote v2: canary retired",
    ]


def test_promote_without_a_canary_is_refused() -> None:
    with pytest.raises(ConfigError, match="no canary to promote"):
        canary.promote({"canary": {"enabled": False}}, DEFAULTS)


def rel(revision: int, values: dict[str, Any], status: str = "superseded") -> Release:
    return Release(revision, status, "", values)


def w(weight: int) -> dict[str, Any]:
    return {"canary": {"weight": weight}}


@pytest.mark.parametrize(
    ("history", "revision", "weight_after"),
    [
        # the deploy revision of this rollout (canary at 0) is where a rollback returns
        ([rel(1, w(0)), rel(2, w(10)), rel(3, w(50), "deployed")], 1, None),
        # failed revisions are never a target
        ([rel(1, w(0)), rel(2, w(0), "failed"), rel(3, w(50), "deployed")], 1, None),
        # the latest zero-weight revision wins (an earlier rollout's is older)
        ([rel(1, w(0)), rel(2, w(30)), rel(3, w(0)), rel(4, w(10), "deployed")], 3, None),
        # already at 0: a new revision with weight 0 records the decision
        ([rel(1, w(0)), rel(2, w(0), "deployed")], None, 0),
        # no earlier zero-weight revision: weight 0 as a new revision
        ([rel(1, w(20), "deployed")], None, 0),
    ],
)
def test_rollback_plan(
    history: list[Release], revision: int | None, weight_after: int | None
) -> None:
    plan = canary.rollback(history, DEFAULTS)
    assert plan.revision == revision
    if weight_after is not None:
        assert plan.step is not None
        assert canary.expected_weights(canary.merge(DEFAULTS, plan.step.values)) == {
            "stable": 100,
            "canary": 0,
        }


@pytest.mark.parametrize("done", [1, 2])
def test_rollback_half_way_through_promote_restores_the_old_stable(done: int) -> None:
    promote = canary.promote(w(50), DEFAULTS)
    history = [rel(1, w(0)), rel(2, w(50))]
    history += [rel(3 + i, s.values) for i, s in enumerate(promote[:done])]
    history[-1].status = "deployed"
    assert canary.rollback(history, DEFAULTS).revision == 1


def test_rollback_half_way_through_promote_with_no_earlier_revision_is_refused() -> None:
    first, _, _ = canary.promote(w(50), DEFAULTS)
    with pytest.raises(ConfigError, match="half-way through a promote"):
        canary.rollback([rel(1, first.values, "deployed")], DEFAULTS)


def test_rollback_with_nothing_deployed_is_refused() -> None:
    with pytest.raises(ConfigError, match="nothing is deployed"):
        canary.rollback([rel(1, w(0), "failed")], DEFAULTS)


@pytest.mark.parametrize(
    ("image", "ref"),
    [
        ({"repository": "scoring", "tag": "v2"}, "acr.example.io/scoring:v2"),
        ({"registry": "other.io", "repository": "s", "tag": "v2"}, "other.io/s:v2"),
        ({"registry": "", "repository": "s", "tag": "v2"}, "acr.example.io/s:v2"),  # falls back
        (
            {"repository": "s", "digest": "sha256:" + "b" * 64},
            "acr.example.io/s@sha256:" + "b" * 64,
        ),
    ],
)
def test_image_ref(image: dict[str, Any], ref: str) -> None:
    assert canary.image_ref(canary.merge(DEFAULTS, {"canary": {"image": image}}), "canary") == ref
