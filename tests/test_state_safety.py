"""The local mesh's safety rules without processes: release transactions, bounds, hostile files,
child environments, housekeeping, and the two canary preconditions (by table, in milliseconds)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fake_target import FakeTarget
from workbook import canary, chart, cli, operations, steps
from workbook.errors import ConfigError, MeshError
from workbook.local import environ, housekeeping, limits
from workbook.local.releases import ReleaseStore
from workbook.local.target import check_state_dir
from workbook.seam import Release

DEFAULTS = chart.default_values()


# ---- release history as a transaction ---------------------------------------------------------


def test_a_release_is_pending_until_committed(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path)
    first = store.commit(store.begin({"n": 1}, "", "up"))
    pending = store.begin({"n": 2}, "", "shift")
    assert [r.status for r in store.history()] == ["deployed", "pending"]
    assert store.deployed().revision == first.revision  # a pending revision serves nothing
    store.commit(pending)
    assert [r.status for r in store.history()] == ["superseded", "deployed"]


def test_a_failed_release_says_why_and_the_previous_one_still_serves(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path)
    store.commit(store.begin({"n": 1}, "", "up"))
    store.fail(store.begin({"n": 2}, "", "shift"), "pods not ready")
    hist = store.history()
    assert [r.status for r in hist] == ["deployed", "failed"]
    assert hist[1].description == "shift (failed: pods not ready)"
    assert store.deployed().values == {"n": 1}


def test_reconcile_settles_what_a_crash_left(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path)
    store.commit(store.begin({"n": 1}, "", "up"))
    crashed_commit = store.begin({"n": 2}, "", "shift")  # deployed written, old not superseded
    crashed_commit.status = "deployed"
    store._write(crashed_commit)
    store.begin({"n": 3}, "", "shift")  # written ahead, never served
    changed = store.reconcile()
    assert changed == ["revision 1: deployed → superseded", "revision 3: pending → failed"]
    assert [r.status for r in store.history()] == ["superseded", "deployed", "failed"]
    assert store.reconcile() == []  # idempotent


def test_an_unwritable_history_refuses_before_anything_serves(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path)
    store.commit(store.begin({"n": 1}, "", "up"))
    (tmp_path / "00002.json").mkdir()  # the next record cannot be written (even as root)
    with pytest.raises(MeshError, match=r"revision 2 could not be written.*nothing was changed"):
        store.begin({"n": 2}, "", "shift")
    assert [r.revision for r in store.history()] == [1]


def test_a_torn_record_is_skipped(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path)
    store.commit(store.begin({"n": 1}, "", "up"))
    (tmp_path / "00002.json").write_text('{"revision": 2, "sta')
    assert [r.revision for r in store.history()] == [1]


# ---- bounds -----------------------------------------------------------------------------------


def _rendered(**values: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    return chart.render(values, release="scoring", namespace="canary-demo"), values


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"canary": {"replicas": 9}}, "canary.replicas"),
        ({"stable": {"replicas": 1000}}, "stable.replicas"),
        ({"canary": {"env": [{"name": "A\nB", "value": "x"}]}}, "canary.env[0].name"),
        ({"stable": {"env": [{"name": "OK", "value": "1"}, {"name": "1X"}]}}, "stable.env[1].name"),
    ],
)
def test_release_bounds_name_the_chart_value(values: dict[str, Any], field: str) -> None:
    docs, vals = _rendered(**values)
    with pytest.raises(ConfigError) as e:
        limits.check_release(docs, vals)
    assert e.value.field == field


def test_release_bounds_accept_the_defaults_and_the_maximum() -> None:
    limits.check_release(*_rendered(canary={"replicas": limits.MAX_REPLICAS_PER_TRACK}))


# ---- hostile files for apply -f ------------------------------------------------------------------

ALIAS_BOMB = "\n".join(
    ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    + [f"{c}: &{c} [{','.join([f'*{p}'] * 10)}]" for p, c in zip("abcdefg", "bcdefgh", strict=True)]
    + ["kind: VirtualService"]
)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "holds no objects"),
        (b"---\n---\n", "holds no objects"),
        (b"a: " + b"[" * 5000 + b"]" * 5000, "nested deeper than 64 levels"),
        (b"- " * 3000 + b"x", "nested deeper than 64 levels"),
        (ALIAS_BOMB.encode(), "expands to more than 100000 nodes"),
        (b"kind: Virtual\xffService\n", "byte 13 is not valid UTF-8"),
        (b"x" * (cli.MAX_APPLY_BYTES + 1), f"larger than {cli.MAX_APPLY_BYTES} bytes"),
        (b"- 1\n- 2\n", "must be a mapping"),
        (b"kind: [\n", "is not valid YAML"),
    ],
)
def test_hostile_apply_files_are_refused_naming_the_file(
    tmp_path: Path, content: bytes, needle: str
) -> None:
    path = tmp_path / "objects.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=needle) as e:
        cli.load_objects(str(path))
    assert e.value.obj == str(path)


def test_an_endless_file_is_refused_after_reading_the_limit() -> None:
    with pytest.raises(ConfigError, match="larger than"):
        cli.load_objects("/dev/zero")


def test_a_folder_is_no_apply_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        cli.load_objects(str(tmp_path))


# ---- state dir ------------------------------------------------------------------------------


def test_a_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        check_state_dir(f)
    with pytest.raises(ConfigError, match="cannot be created: Not a directory"):
        check_state_dir(f / "sub")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_state_dir_is_refused(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="not writable"):
            check_state_dir(ro)
    finally:
        ro.chmod(0o700)


# ---- command line: one line, exit 2, no traceback --------------------------------------------


def _cli(*args: str, stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBOOK_")}
    return subprocess.run(
        [sys.executable, "-m", "workbook.cli", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["shift", "²"], "shift: WEIGHT must be an integer 0..100"),
        (["shift", "9" * 5000], "shift: WEIGHT must be an integer 0..100"),
        (["probe", "-n", "1000001"], "probe: -n must be 1..100000"),
        (["probe", "-c", "0"], "probe: -c must be 1..64"),
        (["get", "vs\udcff"], "get: KIND is not valid UTF-8"),
        (["up", "--set", "stable.version=v2"], "versions of the two tracks must differ"),
        (["up", "--set", "canary.weight=" + "9" * 5000], "canary.weight must be an integer"),
        (["up", "--set", "canary.replicas=1000"], "canary.replicas must be at most 8"),
    ],
)
def test_bad_command_lines_exit_2_with_one_line(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    r = _cli("--state-dir", str(tmp_path / "state"), *args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "state" / "mesh").exists()  # nothing started


def test_state_dir_that_is_a_file_exits_2(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    r = _cli("--state-dir", str(f), "status")
    assert r.returncode == 2 and "is a file, not a folder" in r.stderr


def test_down_without_a_mesh_says_so(tmp_path: Path) -> None:
    r = _cli("--state-dir", str(tmp_path), "down")
    assert r.returncode == 0
    assert "no local mesh was running" in r.stdout and "mesh stopped" not in r.stdout


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line (`| head -0`)
    try:
        r = _cli("--state-dir", str(tmp_path), "down", stdout=write)
    finally:
        os.close(write)
    assert r.returncode == 141
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr


# ---- child environments ---------------------------------------------------------------------


def test_children_get_no_secrets() -> None:
    parent = {
        "PATH": "/bin",
        "HOME": "/home/u",
        "AZURE_CLIENT_SECRET": "s",
        "ACR_PASSWORD": "p",
        "GITHUB_TOKEN": "t",
        "SYSTEM_ACCESSTOKEN": "a",
        "HELM_REGISTRY_PASSWORD": "h",
    }
    allowed = [*environ.PYTHON_CHILD, *parent]  # even when asked for, a secret is not passed on
    assert environ.child_env(allowed, parent) == {"PATH": "/bin", "HOME": "/home/u"}
    assert environ.child_env(environ.ENVOY, parent) == {"PATH": "/bin"}


# ---- housekeeping ---------------------------------------------------------------------------


def test_a_log_over_the_limit_is_rotated_and_keeps_growing_in_place(tmp_path: Path) -> None:
    log = tmp_path / "envoy.log"
    with open(log, "ab") as writer:  # as Envoy holds it: append mode
        writer.write(b"x" * 100)
        writer.flush()
        assert not housekeeping.rotate(log, max_bytes=200)
        writer.write(b"y" * 200)
        writer.flush()
        assert housekeeping.rotate(log, max_bytes=200)
        writer.write(b"z")
        writer.flush()
    assert (tmp_path / "envoy.log.1").read_bytes() == b"x" * 100 + b"y" * 200
    assert log.read_bytes() == b"z"


def test_folders_of_stopped_pods_are_pruned_to_the_newest(tmp_path: Path) -> None:
    for i in range(6):
        (tmp_path / f"pod-{i}").mkdir()
        os.utime(tmp_path / f"pod-{i}", (i, i))
    removed = housekeeping.prune_pod_dirs(tmp_path, active={"pod-0"}, keep=2)
    assert sorted(removed) == ["pod-1", "pod-2", "pod-3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pod-0", "pod-4", "pod-5"]


# ---- canary preconditions -------------------------------------------------------------------


def _full(**tracks: dict[str, Any]) -> dict[str, Any]:
    return canary.merge(DEFAULTS, tracks)


V1 = {"repository": "scoring", "tag": "v1"}
V2 = {"repository": "scoring", "tag": "v2"}


@pytest.mark.parametrize(
    ("values", "ok"),
    [
        ({"stable": {"version": "v1", "image": V1}, "canary": {"version": "v2", "image": V2}}, 1),
        ({"stable": {"version": "v2", "image": V1}, "canary": {"version": "v2", "image": V2}}, 0),
        ({"stable": {"version": "v2", "image": V2}, "canary": {"version": "v2", "image": V2}}, 1),
        ({"stable": {"version": "v2", "image": V1}, "canary": {"version": "v2", "enabled": 0}}, 1),
    ],
    ids=["differ", "same-version-other-image", "promote-step-1", "canary-off"],
)
def test_versions_of_the_two_tracks_differ(values: dict[str, Any], ok: int) -> None:
    if ok:
        canary.check_tracks(_full(**values))
    else:
        with pytest.raises(ConfigError, match="versions of the two tracks must differ"):
            canary.check_tracks(_full(**values))


def _history(*rows: tuple[str, str, int]) -> list[Release]:
    """(status, canary tag, canary weight) per revision, oldest first."""
    return [
        Release(i + 1, status, "", {"canary": {"image": {"tag": tag}, "weight": w}})
        for i, (status, tag, w) in enumerate(rows)
    ]


@pytest.mark.parametrize(
    ("rows", "took"),
    [
        ([("deployed", "v2", 0)], False),
        ([("superseded", "v2", 0), ("deployed", "v2", 10)], True),
        ([("superseded", "v2", 30), ("deployed", "v2", 0)], True),  # shift 30, shift 0
        ([("superseded", "v2", 30), ("deployed", "v3", 0)], False),  # another canary since
        ([("superseded", "v2", 0), ("failed", "v2", 50), ("deployed", "v2", 0)], False),
        ([("superseded", "v2", 0), ("deployed", "v2", 0), ("pending", "v2", 50)], False),
    ],
)
def test_took_traffic_reads_the_history_of_this_canary(
    rows: list[tuple[str, str, int]], took: bool
) -> None:
    assert canary.took_traffic(_history(*rows), DEFAULTS) is took


def test_promote_of_a_canary_without_traffic_needs_force() -> None:
    target = FakeTarget()
    steps.deploy_canary(target)
    with pytest.raises(ConfigError, match=r"took no traffic.*--force"):
        operations.promote(target, require_traffic=True)
    assert target.releases.deployed().description.startswith("deploy canary")
    operations.shift(target, 10)
    assert operations.promote(target, require_traffic=True).description.endswith("retired")
