"""The dummy score.py: unit tests by file path, and one run inside the real azmlinfsrv."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from workbook.apps import SCORING_DIR
from workbook.local.packaging import dummy_model_source, package_local
from workbook.local.registry import LocalImageStore, LocalModelRegistry

SCORE_PY = SCORING_DIR / "dummy" / "score.py"


def load_score(name: str = "dummy_score") -> ModuleType:
    """A fresh copy of score.py, imported by path the way azmlinfsrv does."""
    spec = importlib.util.spec_from_file_location(name, SCORE_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def aml_model_dir(root: Path, name: str = "safe-driver", version: str = "v3") -> Path:
    """``root`` holding ``<name>/<version>/model.json``, as AZUREML_MODEL_DIR in an image."""
    dummy_model_source(version, root / name / version, name=name)
    return root


@pytest.fixture
def score(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(aml_model_dir(tmp_path / "models")))
    monkeypatch.delenv("MODEL_VERSION", raising=False)
    module = load_score()
    module.init()
    return module


def body(response: Any) -> dict[str, Any]:
    return json.loads(response.get_data())


def test_score_py_does_not_import_workbook() -> None:
    tree = ast.parse(SCORE_PY.read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not [m for m in imported if m.split(".")[0] == "workbook"]


def test_reports_the_model_file_version_without_model_version_env(score: ModuleType) -> None:
    response = score.run(json.dumps({"data": [[1, 2, 3]]}))
    assert response.status_code == 200
    assert body(response)["version"] == "v3"
    assert body(response)["model"] == "safe-driver"
    assert response.headers["x-model-version"] == "v3"


def test_model_version_env_overrides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(aml_model_dir(tmp_path)))
    monkeypatch.setenv("MODEL_VERSION", "v9")
    score = load_score()
    score.init()
    answer = score.score('{"data": [[0.5]]}')
    assert answer["version"] == "v9"
    assert score.run("").headers["x-model-version"] == "v9"


def test_model_json_directly_in_the_model_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dummy_model_source("v4", tmp_path, name="flat")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    monkeypatch.delenv("MODEL_VERSION", raising=False)
    score = load_score()
    score.init()
    assert score.score(None) == {"version": "v4", "model": "flat", "predictions": [], "n": 0}


def test_several_models_pick_model_version_or_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aml_model_dir(tmp_path, version="v1")
    aml_model_dir(tmp_path, version="v2")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    monkeypatch.delenv("MODEL_VERSION", raising=False)
    score = load_score()
    with pytest.raises(FileNotFoundError, match="several models"):
        score.init()
    monkeypatch.setenv("MODEL_VERSION", "v2")
    score.init()
    assert score.MODEL["version"] == "v2"


def test_missing_model_fails_init_naming_the_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_score().init()


@pytest.mark.parametrize("raw", [None, "", "  ", "{}", '{"data": []}', b"", {"data": []}])
def test_empty_input_answers_no_predictions(score: ModuleType, raw: Any) -> None:
    response = score.run(raw)
    assert response.status_code == 200
    assert body(response) == {"version": "v3", "model": "safe-driver", "predictions": [], "n": 0}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "not JSON"),
        ('{"rows": [[1]]}', '{"data"'),
        ("[[1, 2]]", '{"data"'),
        ('{"data": 5}', "data must be a list of rows"),
        ('{"data": [1, 2]}', "data[0] must be a list of numbers"),
        ('{"data": [[1, "x"]]}', "data[0][1] must be a finite number"),
        ('{"data": [[1], [true]]}', "data[1][0] must be a finite number"),
        ('{"data": [[NaN]]}', "data[0][0] must be a finite number"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_input_is_a_400_with_a_message(score: ModuleType, raw: Any, message: str) -> None:
    response = score.run(raw)
    assert response.status_code == 400
    assert message in body(response)["message"]
    assert response.headers["x-model-version"] == "v3"


def test_a_body_the_server_did_not_read_is_a_400(score: ModuleType) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": "16"}
    response = score.run("", request_headers=headers)
    assert response.status_code == 400
    assert "application/json" in body(response)["message"]
    assert score.run("", request_headers={"Content-Length": "0"}).status_code == 200


def test_predictions_are_deterministic_probabilities(score: ModuleType) -> None:
    rows = [[0, 0, 0], [1, 2, 3], [-1e6, 5, 1e6], [0.25] * 57, []]
    first = score.score({"data": rows})
    again = load_score("dummy_score_again")
    again.MODEL, again.MODEL_VERSION = dict(score.MODEL), score.MODEL_VERSION
    assert again.score(json.dumps({"data": rows})) == first
    assert first["n"] == len(rows) == len(first["predictions"])
    assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in first["predictions"])
    assert len(set(first["predictions"][:2])) == 2


def test_versions_predict_differently(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = []
    for version in ("v1", "v2"):
        monkeypatch.setenv(
            "AZUREML_MODEL_DIR", str(aml_model_dir(tmp_path / version, version=version))
        )
        score = load_score()
        score.init()
        answers.append(score.score('{"data": [[1, 2, 3]]}')["predictions"])
    assert answers[0] != answers[1]


# ---- integration: the real azmlinfsrv --------------------------------------------------------

LAUNCH = (
    "import sys; import azureml_inference_server_http.amlserver as s; "
    "s.DEFAULT_HOST = '127.0.0.1'; sys.argv = ['azmlinfsrv', *sys.argv[1:]]; s.run()"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(
    method: str,
    url: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 20,
) -> tuple[int, dict[str, str], bytes]:
    """One request to a server on loopback: status, headers, body (errors too)."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@contextlib.contextmanager
def azmlinfsrv(
    entry_script: Path,
    model_dir: Path,
    home: Path,
    env: dict[str, str] | None = None,
    *,
    ready_s: float = 60,
) -> Iterator[tuple[str, Path]]:
    """The real azmlinfsrv serving ``entry_script`` on 127.0.0.1, as a local pod runs it: yields
    its base URL and log once ``GET /`` answers; stopped (its process group) at the end."""
    assert (Path(sys.executable).parent / "azmlinfsrv").exists(), "azmlinfsrv not in the venv"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    child = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
    child.update(HOME=str(home), AZUREML_MODEL_DIR=str(model_dir), PYTHONUNBUFFERED="1")
    child.update(env or {})
    argv = [sys.executable, "-c", LAUNCH, "--entry_script", str(entry_script)]
    argv += ["--model_dir", str(model_dir), "--port", str(port)]
    log_path = home / "azmlinfsrv.log"
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, env=child, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + ready_s
        while True:
            assert proc.poll() is None, f"azmlinfsrv exited:\n{log_path.read_text()}"
            try:
                if http("GET", base + "/")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (
                f"no GET / in {ready_s:g} s:\n{log_path.read_text()}"
            )
            time.sleep(0.2)
        yield base, log_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


@pytest.mark.integration
def test_azmlinfsrv_serves_the_bundle(tmp_path: Path) -> None:
    assert (Path(sys.executable).parent / "azmlinfsrv").exists(), "azmlinfsrv not in the venv"
    registry, store = LocalModelRegistry(tmp_path), LocalImageStore(tmp_path)
    source = dummy_model_source("v2", tmp_path / "src", name="safe-driver")
    registry.register("safe-driver", source, "v2")
    bundle = package_local(registry, store, "safe-driver", "v2", "example.io/scoring:v2")
    with azmlinfsrv(
        bundle.entry_script_path,
        bundle.model_dir_path,
        tmp_path / "home",
        {"MODEL_VERSION": "v7"},
    ) as (base, _):
        json_headers = {"Content-Type": "application/json"}
        payload = json.dumps({"data": [[1, 2, 3], [0, 0, 0]]}).encode()
        status, headers, raw = http("POST", base + "/score", payload, json_headers)
        answer = json.loads(raw)
        assert status == 200, raw
        assert answer["version"] == "v7"
        assert answer["model"] == "safe-driver"
        assert answer["n"] == 2 and len(answer["predictions"]) == 2
        assert all(0 <= p <= 1 for p in answer["predictions"])
        assert headers.get("x-model-version") == "v7"

        status, _, raw = http("GET", base + "/score")
        assert status == 200, raw
        assert json.loads(raw) == {
            "version": "v7",
            "model": "safe-driver",
            "predictions": [],
            "n": 0,
        }

        status, _, raw = http("POST", base + "/score", b"not json", json_headers)
        assert 400 <= status < 500, raw
        assert "not JSON" in json.loads(raw)["message"]
        status, _, raw = http("POST", base + "/score", b'{"data": [[1]]}')  # form-encoded
        assert 400 <= status < 500, raw


def test_fault_knob_fails_the_given_share_after_the_first_requests(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """DUMMY_ERROR_RATE / DUMMY_ERROR_AFTER: a canary that degrades under traffic."""
    model_dir = tmp_path / "m"
    dummy_model_source("v2", model_dir)
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("DUMMY_ERROR_RATE", "0.25")
    monkeypatch.setenv("DUMMY_ERROR_AFTER", "10")
    score = load_score()
    score.init()
    codes = [score.run(json.dumps({"data": [[1.0, 2.0]]})).status_code for _ in range(50)]
    assert codes[:10] == [200] * 10
    assert codes[10:].count(500) == 10  # a quarter of the 40 after the first 10


def test_hostile_payloads_are_4xx_never_500(score: ModuleType) -> None:
    """A client's garbage must not count as a canary error: deep nesting is a 400, an oversized
    body a 413."""
    deep = '{"data": ' + "[" * 3000 + "]" * 3000 + "}"
    reply = score.run(deep)
    assert reply.status_code == 400 and "nests deeper" in json.loads(reply.get_data())["message"]
    big = '{"data": [[' + ",".join(["1"] * 600_000) + "]]}"
    assert len(big) > score.MAX_BODY_BYTES
    reply = score.run(big)
    assert reply.status_code == 413 and "more than" in json.loads(reply.get_data())["message"]
