"""Faults and hostile local users against a real local mesh (Envoy + azmlinfsrv, loopback only).

After each fault, ``status``, ``history`` and what Envoy serves agree; only the owner can drive
the supervisor or reach Envoy's admin; no secret of the caller's environment reaches a child.
Each test starts its own small mesh (one pod per track) in its own state dir.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workbook import canary, operations, traffic
from workbook.errors import MeshError, WorkbookError
from workbook.local.supervisor import TOKEN_HEADER, mesh_dir, token_path
from workbook.local.target import LocalTarget
from workbook.settings import Settings

pytestmark = pytest.mark.integration

SENTINELS = {"AZURE_CLIENT_SECRET": "sentinel-sp-secret", "ACR_PASSWORD": "sentinel-acr-pw"}


@pytest.fixture
def mesh() -> Iterator[LocalTarget]:
    """A fresh mesh started by a caller whose environment holds (sentinel) secrets.

    Its state dir sits in a folder every user may enter, so only the mesh's own permissions
    keep other users out.
    """
    home = Path(tempfile.mkdtemp(prefix="wb-faults-"))
    home.chmod(0o755)
    target = LocalTarget(Settings(state_dir=home / "state"))
    with pytest.MonkeyPatch.context() as mp:
        for k, v in SENTINELS.items():
            mp.setenv(k, v)
        operations.up(target, {})
    try:
        yield target
    finally:
        target.down()
        shutil.rmtree(home, ignore_errors=True)


def served(target: LocalTarget) -> dict[str, int]:
    return {k: v for k, v in target.traffic.served_weights().items() if v}


def expected(target: LocalTarget) -> dict[str, int]:
    """What the history's deployed revision says the gateway must serve."""
    rel = target.releases.deployed()
    assert rel is not None
    want = canary.expected_weights(operations.full_values(target, rel.values))
    return {k: v for k, v in want.items() if v}


def assert_agree(target: LocalTarget) -> None:
    """status, history and the gateway tell one story, and traffic follows it."""
    st = operations.status(target)
    hist = target.releases.history()
    deployed = [r for r in hist if r.status == "deployed"]
    assert len(deployed) == 1 and deployed[0].revision == st.revision
    assert not [r for r in hist if r.status == "pending"]
    assert served(target) == expected(target)
    assert {v.track: v.weight for v in st.versions if v.weight} == expected(target)
    assert all(v.ready == v.replicas for v in st.versions)
    result = traffic.probe(st.gateway_url + "/score", 200, show_progress=False)
    assert result.errors == 0, result.error_kinds
    track_version = {v.track: v.version for v in st.versions}
    assert set(result.counts) == {track_version[t] for t in expected(target)}


def supervisor_pid(target: LocalTarget) -> int:
    return int(target.info()["supervisor_pid"])


def wait_gone(pid: int, timeout_s: float = 30) -> None:
    """Until ``pid`` exited (a zombie counts: nothing reaps it in this test process)."""
    deadline = time.monotonic() + timeout_s
    while os.path.exists(f"/proc/{pid}") and "Z" not in _state(pid):
        assert time.monotonic() < deadline, f"pid {pid} did not exit"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return "Z"


# ---- crashes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_up_after_the_supervisor_died_serves_the_history_again(
    mesh: LocalTarget, sig: signal.Signals
) -> None:
    operations.shift(mesh, 30)
    pid = supervisor_pid(mesh)
    os.kill(pid, sig)
    wait_gone(pid)
    assert not mesh.running()
    # the next supervisor (as `up` starts it) serves the deployed revision of the history by
    # itself, though Envoy's files of the dead one are still there
    mesh.prepare({})
    operations.wait_served(mesh, {"stable": 70, "canary": 30}, timeout_s=60)
    assert_agree(mesh)
    assert operations.status(mesh).revision == 2
    operations.shift(mesh, 60)  # and it takes new releases
    assert_agree(mesh)


def test_a_revision_interrupted_by_a_crash_is_marked_failed(mesh: LocalTarget) -> None:
    operations.shift(mesh, 20)
    pid = supervisor_pid(mesh)
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    # what a crash between write-ahead and commit leaves: a pending record of revision 3
    releases = mesh_dir(mesh.settings) / "releases"
    record = json.loads((releases / "00002.json").read_text())
    record.update(revision=3, status="pending", description="shift canary to 90%")
    record["values"]["canary"]["weight"] = 90
    (releases / "00003.json").write_text(json.dumps(record))
    mesh.prepare({})
    operations.wait_served(mesh, {"stable": 80, "canary": 20}, timeout_s=60)
    hist = {r.revision: r for r in mesh.releases.history()}
    assert hist[3].status == "failed" and "interrupted" in hist[3].description
    assert_agree(mesh)


def test_an_unwritable_history_changes_nothing(mesh: LocalTarget) -> None:
    operations.shift(mesh, 10)
    routes = mesh.traffic.served_routes()
    releases = mesh_dir(mesh.settings) / "releases"
    (releases / "00003.json").mkdir()  # the next record cannot be written, even by root
    try:
        with pytest.raises(MeshError, match="could not be written"):
            operations.shift(mesh, 90)
        with pytest.raises(MeshError, match="could not be written"):
            operations.promote(mesh)
        with pytest.raises(MeshError, match="could not be written"):
            operations.rollback(mesh, 1)
        assert mesh.traffic.served_routes() == routes
        assert [r.revision for r in mesh.releases.history()] == [1, 2]
        assert_agree(mesh)
    finally:
        (releases / "00003.json").rmdir()
    operations.shift(mesh, 90)
    assert_agree(mesh)


def test_an_unrecordable_apply_changes_nothing(mesh: LocalTarget) -> None:
    routes = mesh.traffic.served_routes()
    vs = mesh.objects.get("VirtualService", "scoring")[0]
    weighted = next(h for h in vs["spec"]["http"] if h.get("name") == "weighted")
    for dest in weighted["route"]:
        dest["weight"] = 100 if dest["destination"]["subset"] == "canary" else 0
    applied = mesh_dir(mesh.settings) / "applied.json"
    applied.mkdir()
    try:
        with pytest.raises(MeshError, match="could not be recorded"):
            mesh.objects.apply([vs])
        assert mesh.traffic.served_routes() == routes
    finally:
        applied.rmdir()
    assert_agree(mesh)


def test_down_of_a_supervisor_that_does_not_stop_says_so_and_keeps_history(
    mesh: LocalTarget,
) -> None:
    pid = supervisor_pid(mesh)
    os.kill(pid, signal.SIGSTOP)  # alive, holding its lock, answering nothing
    try:
        with pytest.raises(MeshError, match="runs but does not answer"):
            operations.shift(mesh, 10)  # not "nothing is deployed"
        with pytest.raises(MeshError, match=r"did not stop within 2 s.*history is kept"):
            mesh.api.stop(timeout_s=2)
        assert list((mesh_dir(mesh.settings) / "releases").glob("*.json"))
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_gone(pid)  # the SIGTERM sent meanwhile is handled once it runs again
    assert "no local mesh was running" in mesh.down()


# ---- owner only --------------------------------------------------------------------------------


def _request(
    url: str, *, method: str = "GET", headers: dict[str, str] | None = None, body: Any = None
) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_the_supervisor_answers_only_its_owner(mesh: LocalTarget) -> None:
    info = mesh.api.info()
    assert info is not None
    api, token = info["api"], token_path(mesh.settings).read_text().strip()
    shift = {"values": {"canary": {"weight": 50}}, "description": "hostile"}
    json_type = {"Content-Type": "application/json"}
    cases = [
        ({**json_type}, 401),  # no token
        ({**json_type, TOKEN_HEADER: "x" * len(token)}, 401),  # wrong token
        ({**json_type, TOKEN_HEADER: token, "Host": "evil.example:80"}, 421),  # DNS rebinding
        ({"Content-Type": "text/plain", TOKEN_HEADER: token}, 415),  # a cross-site form post
    ]
    for headers, status in cases:
        code, _ = _request(api + "/release", method="POST", headers=headers, body=shift)
        assert code == status, headers
    assert _request(api + "/history")[0] == 401
    assert [r.revision for r in mesh.releases.history()] == [1]
    # the owner's files are the owner's only
    assert token_path(mesh.settings).stat().st_mode & 0o077 == 0
    assert mesh_dir(mesh.settings).stat().st_mode & 0o077 == 0
    # a body over the limit is refused, named, quickly
    big = {"values": {"x": "y" * (9 * 1024 * 1024)}, "description": "big"}
    code, payload = _request(
        api + "/release", method="POST", headers={**json_type, TOKEN_HEADER: token}, body=big
    )
    assert code == 413 and "larger than" in payload["error"]


SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")


def _as_nobody(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` as the unprivileged user ``nobody`` (the test runs as root), with the
    system's interpreter (the project's may sit where ``nobody`` cannot read)."""
    assert SYSTEM_PYTHON
    return subprocess.run(
        [SYSTEM_PYTHON, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=30,
        user=65534,
        group=65534,
        extra_groups=[],
        env={"PATH": os.environ.get("PATH", "")},
        cwd="/",
    )


NOBODY_READS_TOKEN = """
import sys
try:
    open(sys.argv[1]).read()
    print("read")
except OSError as e:
    print(type(e).__name__)
"""

NOBODY_ADMIN = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    s.sendall(b"POST /drain_listeners HTTP/1.0\\r\\n\\r\\n")
    print("connected", s.recv(100))
except OSError as e:
    print(type(e).__name__)
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or not SYSTEM_PYTHON,
    reason="needs root and /usr/bin/python3 to act as nobody",
)
def test_another_local_user_can_neither_drive_the_mesh_nor_reach_envoy_admin(
    mesh: LocalTarget,
) -> None:
    r = _as_nobody(NOBODY_READS_TOKEN, str(token_path(mesh.settings)))
    assert r.stdout.strip() == "PermissionError", r.stderr
    admin = str(mesh.info()["admin_url"]).removeprefix("unix:")
    r = _as_nobody(NOBODY_ADMIN, admin)
    assert r.stdout.strip() == "PermissionError", r.stdout + r.stderr
    assert served(mesh) == {"stable": 100}


def _listening_tcp(pid: int) -> list[tuple[str, int]]:
    """(address, port) of the TCP sockets ``pid`` listens on (from /proc, no tools needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    out = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and inode in inodes:  # LISTEN
                host, port = local.split(":")
                addr = (
                    socket.inet_ntoa(bytes.fromhex(host)[::-1]) if len(host) == 8 else f"[{host}]"
                )
                out.append((addr, int(port, 16)))
    return out


def test_envoy_listens_on_the_gateway_port_of_127_0_0_1_only(mesh: LocalTarget) -> None:
    info = mesh.info()
    port = int(operations.status(mesh).gateway_url.rsplit(":", 1)[1])
    assert _listening_tcp(int(info["gateway_pid"])) == [("127.0.0.1", port)]
    assert str(info["admin_url"]).startswith("unix:")
    api_port = int(str(mesh.api.info()["api"]).rsplit(":", 1)[1])
    assert _listening_tcp(supervisor_pid(mesh)) == [("127.0.0.1", api_port)]


def test_no_secret_reaches_the_supervisor_envoy_or_pods(mesh: LocalTarget) -> None:
    info = mesh.info()
    pids = [supervisor_pid(mesh), int(info["gateway_pid"])] + [p["pid"] for p in info["pods"]]
    assert len(pids) == 4
    for pid in pids:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        for name, value in SENTINELS.items():
            assert name.encode() not in environ and value.encode() not in environ, pid


# ---- a release the machine cannot hold -------------------------------------------------------


def test_too_many_replicas_are_refused_before_anything_starts(mesh: LocalTarget) -> None:
    pods_before = [p["pid"] for p in mesh.info()["pods"]]
    with pytest.raises(WorkbookError, match=r"canary\.replicas must be at most 8"):
        operations.upgrade(mesh, {"canary": {"replicas": 1000}})
    assert [p["pid"] for p in mesh.info()["pods"]] == pods_before
    assert_agree(mesh)


def test_a_commit_that_cannot_be_written_undoes_the_gateway(mesh: LocalTarget) -> None:
    """The history cannot take the ``deployed`` record after the gateway switched: the gateway
    goes back to the previous revision, so history and gateway still agree."""
    operations.shift(mesh, 10)
    routes, clusters = mesh.traffic.served_routes(), mesh.traffic.served_clusters()
    record = mesh_dir(mesh.settings) / "releases" / "00003.json"
    errors: list[BaseException] = []

    def release() -> None:  # a new canary template: new pods start, so the release takes seconds
        try:
            operations.upgrade(
                mesh, {"canary": {"weight": 50, "env": [{"name": "X", "value": "1"}]}}
            )
        except BaseException as e:
            errors.append(e)

    worker = threading.Thread(target=release)
    worker.start()
    deadline = time.monotonic() + 60
    while not (record.exists() and json.loads(record.read_text())["status"] == "pending"):
        assert time.monotonic() < deadline and worker.is_alive(), errors
        time.sleep(0.005)
    record.unlink()
    record.mkdir()  # written ahead, then the disk refuses the commit (even to root)
    worker.join(120)
    try:
        assert errors and isinstance(errors[0], MeshError), errors
        assert "could not be written" in str(errors[0])
        assert mesh.traffic.served_routes() == routes
        assert mesh.traffic.served_clusters() == clusters
        assert_agree(mesh)
        assert [r.revision for r in mesh.releases.history()] == [1, 2]
    finally:
        record.rmdir()
