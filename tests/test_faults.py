"""Fault rehearsal: the spec parser by table, the dummy's faults in-process and in the real
azmlinfsrv (crash-after exits the worker; latency and drift show in its answers)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from test_scoring import azmlinfsrv, http, load_score

from workbook import faults
from workbook.errors import ConfigError
from workbook.local.packaging import dummy_model_source


@pytest.mark.parametrize(
    ("spec", "env"),
    [
        ("", {}),
        ("errors=0.05", {"FAULT_ERROR_RATE": "0.05"}),
        ("latency=200ms", {"FAULT_LATENCY_MS": "200.0"}),
        ("latency=200", {"FAULT_LATENCY_MS": "200.0"}),
        ("latency=0.25s", {"FAULT_LATENCY_MS": "250.0"}),
        ("crash-after=300", {"FAULT_CRASH_AFTER": "300"}),
        ("drift=0.3", {"FAULT_DRIFT": "0.3"}),
        ("drift=-0.2", {"FAULT_DRIFT": "-0.2"}),
        (
            " errors=0.05, latency=200ms ,crash-after=300,drift=0.3 ",
            {
                "FAULT_ERROR_RATE": "0.05",
                "FAULT_LATENCY_MS": "200.0",
                "FAULT_CRASH_AFTER": "300",
                "FAULT_DRIFT": "0.3",
            },
        ),
    ],
)
def test_parse(spec: str, env: dict[str, str]) -> None:
    assert faults.parse(spec) == env
    assert faults.parse(faults.describe(env)) == env


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ("errors=1.5", "errors", "fraction 0..1"),
        ("errors=lots", "errors", "must be a number"),
        ("errors=nan", "errors", "finite"),
        ("latency=fast", "latency", "milliseconds"),
        ("latency=-5ms", "latency", "milliseconds"),
        ("latency=2min", "latency", "milliseconds"),
        ("latency=90s", "latency", "at most 60s"),
        ("crash-after=0", "crash-after", "at least 1"),
        ("crash-after=1.5", "crash-after", "at least 1"),
        ("drift=2", "drift", "-1..1"),
        ("slow=1", "slow", "is not a fault"),
        ("errors", "errors", "needs a value"),
        ("errors=0.1,errors=0.2", "errors", "given twice"),
    ],
)
def test_parse_names_the_bad_key(spec: str, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        faults.parse(spec)
    assert (err.value.obj, err.value.field) == ("--canary-fault", field)
    assert words in str(err.value)


@pytest.fixture
def dummy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``dummy(**env)``: a fresh score.py initialised with these fault variables."""
    dummy_model_source("v2", tmp_path / "m")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path / "m"))
    for name in (
        "DUMMY_ERROR_RATE",
        "DUMMY_ERROR_AFTER",
        faults.ERROR_RATE_ENV,
        faults.LATENCY_MS_ENV,
        faults.CRASH_AFTER_ENV,
        faults.DRIFT_ENV,
    ):
        monkeypatch.delenv(name, raising=False)

    def make(**env: str) -> ModuleType:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        module = load_score()
        module.init()
        return module

    yield make


def predictions(module: ModuleType, rows: list[list[float]]) -> list[float]:
    return list(json.loads(module.run(json.dumps({"data": rows})).get_data())["predictions"])


def test_error_rate_from_the_spec(dummy: Any) -> None:
    score = dummy(**faults.parse("errors=0.2"))
    replies = [score.run('{"data": [[1]]}') for _ in range(50)]
    failed = [r for r in replies if r.status_code == 500]
    assert len(failed) == 10
    # a failed answer still names its version, so the probe can attribute the error
    assert {r.headers["x-model-version"] for r in failed} == {"v2"}


def test_the_old_knob_still_works_with_its_delay(dummy: Any) -> None:
    score = dummy(DUMMY_ERROR_RATE="0.5", DUMMY_ERROR_AFTER="4")
    codes = [score.run('{"data": [[1]]}').status_code for _ in range(12)]
    assert codes[:4] == [200] * 4 and codes[4:].count(500) == 4


def test_drift_shifts_every_prediction_within_0_1(dummy: Any) -> None:
    rows = [[0.0, 0.0], [1.0, -2.0], [30.0, -30.0]]
    plain = predictions(dummy(), rows)
    drifted = predictions(dummy(**faults.parse("drift=0.3")), rows)
    assert drifted == [pytest.approx(min(p + 0.3, 1.0), abs=1e-6) for p in plain]


def test_a_bad_fault_value_fails_init(dummy: Any) -> None:
    with pytest.raises(ValueError):
        dummy(FAULT_LATENCY_MS="slow")


@pytest.mark.integration
def test_faults_in_the_real_azmlinfsrv(tmp_path: Path) -> None:
    """crash-after=3 with latency=150ms: three answers each at least 150 ms late, then the
    worker exits with the fourth request unanswered (the gunicorn master logs the exit)."""
    model_dir = tmp_path / "model"
    dummy_model_source("v2", model_dir, name="safe-driver")
    spec = faults.parse("crash-after=3,latency=150ms,drift=0.25")
    score_py = Path(load_score().__file__ or "")
    with azmlinfsrv(score_py, model_dir, tmp_path / "home", spec) as (base, log_path):
        body = json.dumps({"data": [[0.0, 0.0]]}).encode()
        headers = {"Content-Type": "application/json"}
        for _ in range(3):
            status, reply_headers, raw = http("POST", base + "/score", body, headers)
            assert status == 200, raw
            # the server's own measure of run(): the injected delay is inside it
            assert float(reply_headers["x-ms-run-fn-exec-ms"]) >= 150
            # bias -1.5 for v2: sigmoid(-1.5) = 0.182426, plus the drift 0.25
            assert json.loads(raw)["predictions"] == [pytest.approx(0.432426, abs=1e-6)]
        with pytest.raises(OSError):
            http("POST", base + "/score", body, headers)
        deadline = time.monotonic() + 30
        while "FAULT_CRASH_AFTER=3: the worker exits now" not in log_path.read_text():
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
