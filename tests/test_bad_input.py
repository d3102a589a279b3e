"""Bad input: a clear error naming object and field, a non-zero exit, and nothing changed."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import fixtures
import pytest
import yaml

from workbook import analysis, cli, operations, traffic
from workbook.local.target import LocalTarget
from workbook.settings import Settings

pytestmark = pytest.mark.integration


def _dump(*docs: dict[str, Any]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def _chart_vs() -> dict[str, Any]:
    return fixtures.of_kind(fixtures.istio_objects(canary_weight=50), "VirtualService")


def _weighted(vs: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in vs["spec"]["http"] if r["name"] == "weighted")


def vs_unknown_subset() -> str:
    """The chart's VirtualService with its canary destination renamed to a subset nobody defines."""
    vs = _chart_vs()
    _weighted(vs)["route"][1]["destination"]["subset"] = "shadow"
    return _dump(vs)


def vs_unsupported() -> str:
    """The chart's VirtualService with ``mirrors``, which the local gateway does not implement."""
    vs = _chart_vs()
    _weighted(vs)["mirrors"] = [{"destination": {"host": fixtures.HOST, "subset": "canary"}}]
    return _dump(vs)


def re2_rejects() -> str:
    """A DestinationRule that would re-point the canary subset at the stable pods, with a
    VirtualService whose regex RE2 (Envoy's and istiod's engine) refuses though Python's re
    takes it: nothing of the two may reach the gateway."""
    objs = fixtures.istio_objects(canary_weight=50)
    dr, vs = fixtures.of_kind(objs, "DestinationRule"), fixtures.of_kind(objs, "VirtualService")
    dr["spec"]["subsets"][1]["labels"] = {"track": "stable"}
    _weighted(vs)["match"] = [{"uri": {"regex": "/score\\Z"}}]
    return _dump(dr, vs)


NO_NAME = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {namespace: canary-demo}
spec: {hosts: ["*"]}
"""

YAML_BROKEN = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: scoring
spec: [
"""


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(args)
    return code, capsys.readouterr().err


@pytest.fixture
def unchanged(mesh: LocalTarget):
    """Assert after the test that the mesh serves exactly what it served before, and still works."""
    operations.shift(mesh, 20)
    before_routes, before_clusters = mesh.traffic.served_routes(), mesh.traffic.served_clusters()
    before_revision = operations.status(mesh).revision
    yield
    assert mesh.traffic.served_routes() == before_routes
    assert mesh.traffic.served_clusters() == before_clusters
    assert operations.status(mesh).revision == before_revision
    result = traffic.probe(operations.status(mesh).gateway_url + "/score", 400, show_progress=False)
    assert result.errors == 0
    assert analysis.check_split(result.counts, {"v1": 80, "v2": 20}, alpha=1e-4).passed


@pytest.mark.parametrize(
    ("weight", "needle"),
    [
        ("150", "must be 0..100, got 150"),
        ("-1", "got -1"),
        ("12.5", "'12.5'"),
        ("ten", "'ten'"),
        ("²", "'²'"),  # a digit to str.isdigit, no number to int()
        ("9" * 5000, "'999"),  # longer than int() converts by default
        ("1\n0", "must be an integer"),
    ],
    ids=["150", "-1", "12.5", "ten", "superscript", "5000-digits", "newline"],
)
def test_bad_weight(weight, needle, state_args, capsys, unchanged) -> None:
    code, err = run([*state_args, "shift", weight], capsys)
    assert code == 2
    assert "WEIGHT" in err and needle in err


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        (["canary.image.tag=v9"], "canary"),  # an unknown version: no such image
        (["routing.headerName=X_Bad"], "routing.headerName"),
        (["canary.weight=150"], "canary.weight"),
        (["canary.weight=" + "9" * 5000], "canary.weight"),
        (["canary.replicas=1000"], "canary.replicas must be at most 8"),
        (["stable.replicas=9"], "stable.replicas must be at most 8"),
        (["stable.version=v2"], "versions of the two tracks must differ"),
        (["canary.version=v1"], "versions of the two tracks must differ"),
        (["canary.env[0].name=A\nB", "canary.env[0].value=x"], "canary.env[0].name"),
    ],
    ids=[
        "unknown-image",
        "header-name",
        "weight-150",
        "weight-5000-digits",
        "replicas-1000",
        "stable-replicas-9",
        "stable-version-of-canary",
        "canary-version-of-stable",
        "env-name-newline",
    ],
)
def test_bad_upgrade_values(sets, needle, state_args, capsys, unchanged) -> None:
    args = [*state_args, "upgrade"]
    for s in sets:
        args += ["--set", s]
    code, err = run(args, capsys)
    assert code == 2
    assert needle in err, err
    assert len(err.strip().splitlines()) == 1 and len(err) < 700


ALIAS_BOMB = "\n".join(
    ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    + [f"{c}: &{c} [{','.join([f'*{p}'] * 10)}]" for p, c in zip("abcdefg", "bcdefgh", strict=True)]
    + ["kind: VirtualService"]
)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "holds no objects: nothing to apply"),
        (b"# only a comment\n", "holds no objects: nothing to apply"),
        (b"a: " + b"[" * 3000 + b"]" * 3000, "nested deeper than 64 levels"),
        (b'{"a":' * 3000 + b"1" + b"}" * 3000, "nested deeper than 64 levels"),
        (ALIAS_BOMB.encode(), "expands to more than 100000 nodes"),
        (b"kind: Virtual\xffService\n", "is not valid UTF-8"),
        (b"#" * (2 * 1024 * 1024), "larger than 1048576 bytes"),
    ],
    ids=["empty", "comment-only", "deep-yaml", "deep-json", "alias-bomb", "bad-utf8", "2-MiB"],
)
def test_hostile_apply_files(
    content: bytes, needle: str, tmp_path: Path, state_args, capsys, unchanged
) -> None:
    f = tmp_path / "objects.yaml"
    f.write_bytes(content)
    code, err = run([*state_args, "apply", "-f", str(f)], capsys)
    assert code == 2
    assert str(f) in err and needle in err, err


def test_apply_of_an_endless_file(state_args, capsys, unchanged) -> None:
    code, err = run([*state_args, "apply", "-f", "/dev/zero"], capsys)
    assert code == 2
    assert "/dev/zero is larger than" in err


def test_probe_bounds(state_args, capsys, unchanged) -> None:
    code, err = run([*state_args, "probe", "-n", "100001"], capsys)
    assert code == 2 and "probe: -n must be 1..100000" in err


def test_unknown_version_names_the_image(state_args, capsys, unchanged) -> None:
    code, err = run([*state_args, "upgrade", "--set", "canary.image.tag=v9"], capsys)
    assert code == 2
    assert "scoring:v9" in err and "image" in err


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (vs_unknown_subset(), ["VirtualService canary-demo/scoring", "shadow"]),
        (vs_unsupported(), ["VirtualService canary-demo/scoring", "mirrors"]),
        (YAML_BROKEN, ["line", "not valid YAML"]),
        (re2_rejects(), ["VirtualService canary-demo/scoring", "uri.regex", "RE2", "escape"]),
        (NO_NAME, ["document 0 (VirtualService)", "metadata.name"]),
    ],
)
def test_bad_apply(text, needles, tmp_path: Path, state_args, capsys, unchanged) -> None:
    f = tmp_path / "objects.yaml"
    f.write_text(text)
    code, err = run([*state_args, "apply", "-f", str(f)], capsys)
    assert code == 2
    for needle in needles:
        assert needle in err, err


def test_second_up_while_running(state_args, capsys, unchanged) -> None:
    code, err = run([*state_args, "up"], capsys)
    assert code == 2
    assert "already runs" in err


def test_port_already_taken(tmp_path: Path, capsys) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, err = run(["--state-dir", str(tmp_path), "up", "--port", str(port)], capsys)
    assert code == 2
    assert f"127.0.0.1:{port} is already taken" in err
    assert not (tmp_path / "mesh" / "supervisor.json").exists()
    assert not Settings(state_dir=tmp_path).state_dir.joinpath("mesh", "releases").exists()


def test_a_canary_that_cannot_start_fails_its_release(
    mesh: LocalTarget, state_args, capsys, unchanged
) -> None:
    """Pods that never get ready within the startup probe's budget: the release fails whole."""
    before = {p["name"] for p in mesh.info()["pods"]}
    code, err = run(
        [
            *state_args,
            "upgrade",
            "--set", "canary.env[0].name=DUMMY_INIT_FAIL",
            "--set", "canary.env[0].value=yes",
            "--set", "probes.startup.failureThreshold=4",
            "--set", "probes.startup.periodSeconds=2",
        ],
        capsys,
    )  # fmt: skip
    assert code != 0
    assert "scoring-canary" in err and "did not become ready within 8 s" in err
    assert mesh.releases.history()[-1].status == "failed"
    assert {p["name"] for p in mesh.info()["pods"]} == before
