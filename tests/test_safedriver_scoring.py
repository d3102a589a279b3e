"""The safe-driver score.py: by file path, and inside the real azmlinfsrv on loopback."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from test_scoring import azmlinfsrv, http

from workbook.apps import SCORING_DIR, SHARED_MODULES
from workbook.local.packaging import ensure_safe_driver_images
from workbook.registry import ImageBundle
from workbook.safedriver import schema
from workbook.safedriver.data import make_dataset
from workbook.safedriver.publish import MODEL_NAME
from workbook.safedriver.train import load_booster
from workbook.settings import Settings

APP = SCORING_DIR / "safe-driver"
SCORE_PY = APP / "score.py"


_LOADED = itertools.count()


def load_score() -> ModuleType:
    """A fresh copy of score.py, imported by path the way azmlinfsrv does.

    Each copy gets its own module name: inference-schema registers the decorated ``run`` under
    the module's name and refuses a second schema for the same name.
    """
    spec = importlib.util.spec_from_file_location(f"safe_driver_score_{next(_LOADED)}", SCORE_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> list[ImageBundle]:
    """The v1 and v2 image bundles, trained and packaged once for this module."""
    return ensure_safe_driver_images(Settings(state_dir=tmp_path_factory.mktemp("sd-state")))


@pytest.fixture
def score(bundles: list[ImageBundle], monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(bundles[1].model_dir_path))
    monkeypatch.delenv("MODEL_VERSION", raising=False)
    module = load_score()
    module.init()
    return module


def body(response: Any) -> dict[str, Any]:
    return json.loads(response.get_data())


def model_predictions(bundle: ImageBundle, rows: list[dict[str, Any]]) -> list[float]:
    """What the registered model files predict for ``rows``, without score.py."""
    version = bundle.model.split(":")[1]
    booster, meta = load_booster(bundle.model_dir_path / MODEL_NAME / version)
    X = np.array([[row[f] for f in meta["features"]] for row in rows], dtype=np.float64)
    return [float(p) for p in booster.predict(X, num_threads=1)]


def good_rows(n: int, seed: int = 11) -> list[dict[str, Any]]:
    return make_dataset(max(n, 100), seed).rows(0, n)


def with_value(column: str, value: Any) -> dict[str, Any]:
    row = dict(schema.example_row())
    row[column] = value
    return {"data": [dict(schema.example_row()), row]}


# ---- the script by path -------------------------------------------------------------------------


def test_score_py_imports_only_what_its_image_installs() -> None:
    tree = ast.parse(SCORE_PY.read_text())
    top = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0
    }
    shared = {m.removesuffix(".py") for m in SHARED_MODULES}  # copied next to score.py
    third_party = sorted(
        m for m in top if m not in sys.stdlib_module_names and m not in {"__future__", *shared}
    )
    assert "workbook" not in top
    pins = dict(
        line.split("==")
        for line in (APP / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    provided = importlib.metadata.packages_distributions()
    for module in third_party:
        dists = {d.lower() for d in provided[module]}
        # inference_schema comes with the server (azureml-inference-server-http requires it)
        server_deps = importlib.metadata.requires("azureml-inference-server-http") or []
        in_server = any(r.split("~")[0].split("=")[0].strip() in dists for r in server_deps)
        assert dists & set(pins) or in_server, f"{module} is not installed by requirements.txt"
    for dist, version in pins.items():  # the image gets what the tests ran with
        assert importlib.metadata.version(dist) == version, dist
    for req in importlib.metadata.requires("lightgbm") or []:  # LightGBM's runtime needs
        if "extra ==" not in req:
            name = req.split(">")[0].split("=")[0].split("<")[0].strip().lower()
            assert name in pins, f"lightgbm needs {name}; pin it in the image"


def test_answers_version_model_and_the_models_own_probabilities(
    score: ModuleType, bundles: list[ImageBundle]
) -> None:
    rows = good_rows(20)
    response = score.run(data=rows)
    assert response.status_code == 200
    answer = body(response)
    assert (answer["version"], answer["model"], answer["n"]) == ("v2", MODEL_NAME, 20)
    assert answer["predictions"] == model_predictions(bundles[1], rows)
    assert all(0.0 < p < 1.0 for p in answer["predictions"])
    assert response.headers["x-model-version"] == "v2"


def test_the_versions_answer_differently(bundles: list[ImageBundle]) -> None:
    rows = good_rows(50)
    p1, p2 = (np.array(model_predictions(b, rows)) for b in bundles)
    assert np.mean(np.abs(p1 - p2)) > 0.005


def test_model_version_env_overrides_and_picks_among_several(
    bundles: list[ImageBundle], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    both = tmp_path / "models"
    for b in bundles:
        version = b.model.split(":")[1]
        src = b.model_dir_path / MODEL_NAME / version
        dest = both / MODEL_NAME / version
        dest.mkdir(parents=True)
        for f in src.iterdir():
            (dest / f.name).write_bytes(f.read_bytes())
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(both))
    monkeypatch.delenv("MODEL_VERSION", raising=False)
    module = load_score()
    with pytest.raises(FileNotFoundError, match="several models"):
        module.init()
    monkeypatch.setenv("MODEL_VERSION", "v1")
    module.init()
    assert module.MODEL["version"] == "v1" and len(module.MODEL["features"]) == 57


def test_missing_model_fails_init_naming_the_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_score().init()


@pytest.mark.parametrize("data", [None, []])
def test_empty_input_answers_no_predictions(score: ModuleType, data: Any) -> None:
    response = score.run(data=data)
    assert response.status_code == 200
    assert body(response) == {"version": "v2", "model": MODEL_NAME, "predictions": [], "n": 0}


MALFORMED = [
    # (data, status, field, words in the message)
    ({"ps_ind_01": 1}, 400, "data", "data must be a list of rows"),
    ("rows", 400, "data", "got str"),
    ([[1, 2, 3]], 400, "data[0]", "data[0] must be an object {column: value}, got list"),
    (
        [{k: v for k, v in schema.example_row().items() if k != "ps_car_13"}],
        400,
        "data[0].ps_car_13",
        "data[0] lacks column ps_car_13 (send -1",
    ),
    (
        [{**schema.example_row(), "ps_car_99": 1}],
        400,
        "data[0].ps_car_99",
        "unknown column ps_car_99",
    ),
    (with_value("ps_car_13", "big")["data"], 400, "data[1].ps_car_13", "must be a finite number"),
    (with_value("ps_reg_03", None)["data"], 400, "data[1].ps_reg_03", "-1 for missing, got None"),
    (with_value("ps_ind_06_bin", 2)["data"], 400, "data[1].ps_ind_06_bin", "must be 0 or 1, got 2"),
    (with_value("ps_ind_06_bin", True)["data"], 400, "data[1].ps_ind_06_bin", "got True"),
    (with_value("ps_car_11_cat", 2.5)["data"], 400, "data[1].ps_car_11_cat", "whole number"),
    (with_value("ps_car_11_cat", -3)["data"], 400, "data[1].ps_car_11_cat", "got -3"),
    (with_value("ps_car_12", float("nan"))["data"], 400, "data[1].ps_car_12", "finite"),
    ([schema.example_row()] * 1001, 413, "data", "1001 rows; at most 1000 per request"),
]


@pytest.mark.parametrize(("data", "status", "field", "message"), MALFORMED)
def test_malformed_data_is_a_4xx_naming_the_field(
    score: ModuleType, data: Any, status: int, field: str, message: str
) -> None:
    response = score.run(data=data)
    assert response.status_code == status
    answer = body(response)
    assert message in answer["message"] and answer["field"] == field
    assert response.headers["x-model-version"] == "v2"


def test_a_body_without_data_is_a_400(score: ModuleType) -> None:
    response = score.run(data=None, request_headers={"Content-Length": "12"})
    assert response.status_code == 400
    assert '"data" field' in body(response)["message"]


def test_integral_floats_are_whole_numbers(score: ModuleType) -> None:
    row = {k: float(v) for k, v in schema.example_row().items()}
    response = score.run(data=[row])
    assert response.status_code == 200
    assert body(response)["predictions"] == score.score([schema.example_row()])["predictions"]


def test_batch_limit_and_threads_come_from_the_environment(
    bundles: list[ImageBundle], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(bundles[0].model_dir_path))
    monkeypatch.setenv("SAFE_DRIVER_MAX_ROWS", "3")
    monkeypatch.setenv("SAFE_DRIVER_THREADS", "2")
    module = load_score()
    module.init()
    assert (module.MAX_ROWS, module.THREADS) == (3, 2)
    assert module.run(data=good_rows(3)).status_code == 200
    response = module.run(data=good_rows(4))
    assert response.status_code == 413 and "SAFE_DRIVER_MAX_ROWS" in body(response)["message"]
    monkeypatch.setenv("SAFE_DRIVER_MAX_ROWS", "many")
    with pytest.raises(ValueError, match="SAFE_DRIVER_MAX_ROWS must be a positive integer"):
        load_score()


def test_the_swagger_example_is_a_valid_request(score: ModuleType) -> None:
    response = score.run(data=[schema.example_row()])
    assert response.status_code == 200 and body(response)["n"] == 1


# ---- integration: the real azmlinfsrv ------------------------------------------------------------


@pytest.fixture(scope="module")
def server(bundles: list[ImageBundle], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """azmlinfsrv serving the v2 bundle on 127.0.0.1, as a local pod runs it."""
    bundle = bundles[1]
    home = tmp_path_factory.mktemp("sd-home")
    with azmlinfsrv(bundle.entry_script_path, bundle.model_dir_path, home, ready_s=90) as (base, _):
        yield base


JSON = {"Content-Type": "application/json"}


@pytest.mark.integration
def test_served_predictions_equal_the_models_own(server: str, bundles: list[ImageBundle]) -> None:
    rows = good_rows(100, seed=21)
    status, headers, raw = http(
        "POST", server + "/score", json.dumps({"data": rows}).encode(), JSON
    )
    assert status == 200, raw
    answer = json.loads(raw)
    assert (answer["version"], answer["model"], answer["n"]) == ("v2", MODEL_NAME, 100)
    assert answer["predictions"] == model_predictions(bundles[1], rows)
    assert headers.get("x-model-version") == "v2"
    status, _, raw = http("GET", server + "/score")  # what a health check sends
    assert status == 200, raw
    assert json.loads(raw) == {"version": "v2", "model": MODEL_NAME, "predictions": [], "n": 0}


def _too_many() -> bytes:
    return json.dumps({"data": [schema.example_row()] * 1001}).encode()


SERVED_MALFORMED = [
    # (body, headers, status, words in the message)
    (b"not json", JSON, 400, "could not be decoded as JSON"),
    (b"", JSON, 400, "POST body is empty"),
    (b"[1, 2]", JSON, 400, "should be a JSON dictionary"),
    (b'{"rows": []}', JSON, 400, 'no "data" field'),
    (b'{"data": "x"}', JSON, 400, "data must be a list of rows"),
    (json.dumps(with_value("ps_car_13", "x")).encode(), JSON, 400, "data[1].ps_car_13"),
    (json.dumps({"data": [{"ps_ind_01": 1}]}).encode(), JSON, 400, "data[0] lacks columns"),
    (_too_many(), JSON, 413, "at most 1000"),
    (b'{"data": []}', {}, 415, "application/json"),  # form-encoded (curl -d without -H)
]


@pytest.mark.integration
@pytest.mark.parametrize(("payload", "headers", "status", "message"), SERVED_MALFORMED)
def test_served_malformed_payloads_are_4xx_with_a_message(
    server: str, payload: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    got, _, raw = http("POST", server + "/score", payload, headers)
    assert got == status, raw
    assert message in json.loads(raw)["message"]


@pytest.mark.integration
def test_swagger_publishes_the_schema_with_an_example(server: str) -> None:
    status, _, raw = http("GET", server + "/swagger.json")
    assert status == 200
    definitions = json.loads(raw)["definitions"]
    data = definitions["ServiceInput"]["properties"]["data"]
    assert data["type"] == "array"
    columns = data["items"]["properties"]
    assert list(columns) == schema.column_names()
    for c in schema.columns():
        assert columns[c.name]["type"] == ("integer" if c.whole else "number"), c.name
    assert list(definitions["ServiceInput"]["properties"]) == ["data"]
    assert definitions["ServiceInput"]["example"] == {"data": [schema.example_row()]}
    output = definitions["ServiceOutput"]["properties"]
    assert {"version", "model", "predictions", "n"} <= set(output)
    assert http("GET", server + "/swagger.json?version=3")[0] == 200
