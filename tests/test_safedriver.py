"""The safe-driver model: synthetic data, training, metrics, registration, packaging, settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from workbook.azure.registry import AzureModelRegistry
from workbook.azure.workspace import RegisteredModel
from workbook.errors import ConfigError, RegistryError
from workbook.packaging import (
    SCORING_DIR,
    ensure_demo_images,
    ensure_safe_driver_images,
    probe_payload,
    scoring_apps,
)
from workbook.registry import LocalImageStore, LocalModelRegistry
from workbook.safedriver import schema
from workbook.safedriver.data import make_dataset
from workbook.safedriver.publish import MODEL_NAME, register_models, sample_payload
from workbook.safedriver.train import (
    TrainedModel,
    gini,
    load_booster,
    roc_auc,
    save_model,
    split,
    train_versions,
)
from workbook.settings import SCORING_APPS, Settings

SEED = 0
N_ROWS = 20_000


@pytest.fixture(scope="module")
def trained() -> dict[str, TrainedModel]:
    return train_versions(n_rows=N_ROWS, seed=SEED)


# ---- schema and data ----------------------------------------------------------------------------


def test_schema_is_the_porto_seguro_layout() -> None:
    cols = schema.columns()
    assert len(cols) == 57
    assert len({c.name for c in cols}) == 57
    groups = [c.group for c in cols]
    assert [groups.count(g) for g in ("ind", "reg", "car", "calc")] == [18, 3, 16, 20]
    for c in cols:
        assert c.type in schema.TYPES
        assert (c.type == "binary") == c.name.endswith("_bin"), c
        assert (c.type == "category") == c.name.endswith("_cat"), c
    assert set(schema.example_row()) == set(schema.column_names())


def test_data_has_the_schema_ranges_and_missing_values() -> None:
    data = make_dataset(20_000, SEED)
    assert data.columns == tuple(schema.column_names())
    assert data.X.shape == (20_000, 57) and data.y.shape == (20_000,)
    for c in schema.columns():
        values = data.column(c.name)
        if c.type == "binary":
            assert set(np.unique(values)) <= {0.0, 1.0}, c.name
        if c.whole:
            assert np.all(values == np.round(values)) and values.min() >= -1, c.name
    for name, share in {"ps_reg_03": 0.18, "ps_car_03_cat": 0.69, "ps_car_05_cat": 0.45}.items():
        assert abs(np.mean(data.column(name) == -1) - share) < 0.02, name
    assert 0.025 < data.y.mean() < 0.05  # the competition has 3.6 % claims
    onehot = sum(data.column(f"ps_ind_{i:02d}_bin") for i in range(6, 10))
    assert np.all(onehot == 1)


def test_data_is_deterministic_for_a_seed() -> None:
    a, b, c = make_dataset(500, 7), make_dataset(500, 7), make_dataset(500, 8)
    assert a.X.tobytes() == b.X.tobytes() and a.y.tobytes() == b.y.tobytes()
    assert a.X.tobytes() != c.X.tobytes()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"n_rows": 10}, "n_rows"), ({"seed": -1}, "seed"), ({"n_rows": "9"}, "n_rows")],
)
def test_bad_data_arguments_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=f"safe-driver data: {field}"):
        make_dataset(**kwargs)


def test_rows_are_json_records_with_whole_numbers_as_integers() -> None:
    row = make_dataset(100, 1).rows(0, 1)[0]
    assert list(row) == schema.column_names()
    for c in schema.columns():
        assert isinstance(row[c.name], int if c.whole else float), c.name
    assert json.loads(json.dumps(row)) == row


# ---- metrics and training -----------------------------------------------------------------------


def test_auc_agrees_with_scikit_learn_including_ties() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(2000) < 0.1
    score = np.round(rng.random(2000) + 0.3 * y, 1)  # many ties
    assert roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert gini(y, score) == pytest.approx(2 * roc_auc_score(y, score) - 1, abs=1e-12)
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(np.zeros(5), np.arange(5))


def test_split_is_stratified_disjoint_and_seeded() -> None:
    y = (np.arange(1000) % 25 == 0).astype(int)
    train, test = split(y, 1)
    assert len(set(train) & set(test)) == 0 and len(train) + len(test) == 1000
    assert y[test].sum() == 8 and len(test) == 200
    assert np.array_equal(split(y, 1)[1], test)
    assert not np.array_equal(split(y, 2)[1], test)


def test_training_is_deterministic_for_a_seed(trained: dict[str, TrainedModel]) -> None:
    again = train_versions(n_rows=N_ROWS, seed=SEED)
    other = train_versions(["v1"], n_rows=N_ROWS, seed=SEED + 1)
    for v in ("v1", "v2"):
        assert again[v].booster.model_to_string() == trained[v].booster.model_to_string()
        assert again[v].metrics == trained[v].metrics
    assert other["v1"].booster.model_to_string() != trained["v1"].booster.model_to_string()


def test_versions_learn_the_signal_and_predict_differently(
    trained: dict[str, TrainedModel],
) -> None:
    data = make_dataset(N_ROWS, SEED)
    _, test = split(data.y, SEED)
    p1, p2 = (trained[v].predict(data.X[test], data.columns) for v in ("v1", "v2"))
    for v, model in trained.items():
        assert 0.6 < model.metrics["auc"] < 0.9, v  # better than chance, short of perfect
        assert model.metrics["gini"] == pytest.approx(2 * model.metrics["auc"] - 1, abs=1e-5)
        assert model.metrics["n_test"] == len(test)
    assert trained["v1"].features == schema.column_names()
    assert not any(f.startswith("ps_calc") for f in trained["v2"].features)
    assert np.mean(np.abs(p1 - p2)) > 0.005  # measurably different predictions
    assert np.corrcoef(p1, p2)[0, 1] > 0.5  # of the same risk


def test_unknown_version_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"safe-driver model: version must be one of"):
        train_versions(["v9"], n_rows=200)


def test_saved_model_predicts_what_the_trained_one_does(
    trained: dict[str, TrainedModel], tmp_path: Path
) -> None:
    folder = save_model(trained["v2"], tmp_path / "v2", MODEL_NAME)
    booster, meta = load_booster(folder)
    assert meta["features"] == trained["v2"].features and meta["version"] == "v2"
    assert meta["metrics"] == trained["v2"].metrics
    data = make_dataset(300, 5)
    idx = [data.columns.index(f) for f in meta["features"]]
    assert np.array_equal(
        booster.predict(data.X[:, idx], num_threads=1), trained["v2"].predict(data.X, data.columns)
    )


# ---- registration -------------------------------------------------------------------------------


def test_register_models_stores_metrics_as_properties(
    trained: dict[str, TrainedModel], tmp_path: Path
) -> None:
    registry = LocalModelRegistry(tmp_path)
    v1, v2 = register_models(registry, n_rows=N_ROWS, seed=SEED)
    assert (v1.id, v2.id) == (f"{MODEL_NAME}:v1", f"{MODEL_NAME}:v2")
    for mv, model in ((v1, trained["v1"]), (v2, trained["v2"])):
        assert float(mv.properties["auc"]) == pytest.approx(model.metrics["auc"], abs=1e-6)
        assert float(mv.properties["gini"]) == pytest.approx(model.metrics["gini"], abs=1e-6)
        assert mv.properties["features"] == str(len(model.features))
        assert mv.tags["kind"] == "lightgbm"
        assert sorted(p.name for p in mv.path.iterdir()) == ["model.json", "model.txt"]
    # deterministic training: registering again is a no-op, not a conflict
    assert register_models(registry, n_rows=N_ROWS, seed=SEED) == [v1, v2]
    # another seed would be other files for the same versions: refused, nothing changed
    registry_other = LocalModelRegistry(tmp_path / "other")
    register_models(registry_other, ["v1"], n_rows=500, seed=1)
    with pytest.raises(RegistryError, match="already registered with other files"):
        registry_other.register(MODEL_NAME, v1.path, "v1")


class MemoryWorkspace:
    """An ``MLWorkspace`` in memory, standing in for Azure ML at the edge."""

    name = "ws-memory"

    def __init__(self) -> None:
        self.models: list[RegisteredModel] = []

    def register_model(
        self,
        name: str,
        path: Any,
        version_tags: dict[str, str] | None = None,
        properties: dict[str, str] | None = None,
    ) -> RegisteredModel:
        version = 1 + sum(m.name == name for m in self.models)
        model = RegisteredModel(name, version, f"{name}:{version}", dict(version_tags or {}))
        model.properties = dict(properties or {})
        self.models.append(model)
        return model

    def list_models(self, name: str | None = None) -> list[RegisteredModel]:
        return [m for m in self.models if name in (None, m.name)]


def test_the_azure_path_registers_through_the_same_interface() -> None:
    ws = MemoryWorkspace()
    registry = AzureModelRegistry(ws)  # type: ignore[arg-type]
    (v1,) = register_models(registry, ["v1"], n_rows=500, seed=2)
    assert v1.version == "v1" and v1.tags["azureml.id"] == f"{MODEL_NAME}:1"
    assert ws.models[0].properties["auc"] == v1.properties["auc"]
    assert register_models(registry, ["v1"], n_rows=500, seed=2) == [v1]
    assert len(ws.models) == 1


def test_sample_payload_rows_follow_the_schema() -> None:
    payload = sample_payload(3)
    assert len(payload["data"]) == 3
    assert all(list(r) == schema.column_names() for r in payload["data"])
    assert sample_payload(3) == payload
    with pytest.raises(ConfigError, match="n_rows"):
        sample_payload(0)


# ---- packaging and settings ---------------------------------------------------------------------


def test_scoring_apps_match_the_settings_table() -> None:
    assert scoring_apps() == sorted(SCORING_APPS) == ["dummy", "safe-driver"]


def test_safe_driver_images_are_bundled_next_to_the_dummy_ones(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    dummies = ensure_demo_images(settings)
    bundles = ensure_safe_driver_images(settings)
    assert [b.ref for b in bundles] == [
        "canaryworkbook.azurecr.io/scoring-safe-driver:v1",
        "canaryworkbook.azurecr.io/scoring-safe-driver:v2",
    ]
    store = LocalImageStore(tmp_path)
    assert {b.ref for b in store.list()} == {b.ref for b in dummies + bundles}
    v2 = bundles[1]
    files = sorted(p.relative_to(v2.path).as_posix() for p in v2.path.rglob("*") if p.is_file())
    assert files == [
        "Dockerfile",
        f"model/{MODEL_NAME}/v2/model.json",
        f"model/{MODEL_NAME}/v2/model.txt",
        "requirements.txt",
        "src/fault_injection.py",
        "src/schema.json",
        "src/score.py",
    ]
    app = SCORING_DIR / "safe-driver"
    assert (v2.path / "requirements.txt").read_text() == (app / "requirements.txt").read_text()
    dockerfile = (v2.path / "Dockerfile").read_text()
    assert 'scoring app "safe-driver"' in dockerfile
    assert (
        f"COPY model/{MODEL_NAME}/v2/ /var/azureml-app/azureml-models/{MODEL_NAME}/v2/"
        in dockerfile
    )
    # LightGBM's wheel links the system OpenMP runtime: installed as root, then back to non-root
    lines = dockerfile.splitlines()
    assert "USER root" in lines and lines[lines.index("USER root") + 1].startswith("RUN apt-get")
    assert " && apt-get install -y --no-install-recommends libgomp1 \\" in lines
    assert [x for x in lines if x.startswith("USER ")][-1] == "USER dockeruser"
    assert v2.model == f"{MODEL_NAME}:v2" and v2.env["MODEL_VERSION"] == "v2"
    assert [b.digest for b in ensure_safe_driver_images(settings)] == [b.digest for b in bundles]


def test_settings_pick_the_app_with_its_repository_and_model() -> None:
    base = Settings()
    assert (base.scoring_app, base.repository, base.model_name) == (
        "dummy",
        "scoring",
        "safe-driver",
    )
    sd = base.for_app("safe-driver")
    assert (sd.repository, sd.model_name) == ("scoring-safe-driver", MODEL_NAME)
    assert sd.image("v2") == "canaryworkbook.azurecr.io/scoring-safe-driver:v2"
    assert sd.chart_values()["canary"]["image"] == {
        "repository": "scoring-safe-driver",
        "tag": "v2",
    }
    assert sd.for_app("dummy") == base
    explicit = Settings(repository="team/scoring").for_app("safe-driver")
    assert (explicit.repository, explicit.model_name) == ("team/scoring", MODEL_NAME)
    env = Settings.from_env({"WORKBOOK_SCORING_APP": "safe-driver"})
    assert (env.scoring_app, env.repository) == ("safe-driver", "scoring-safe-driver")
    env = Settings.from_env({"WORKBOOK_SCORING_APP": "safe-driver", "WORKBOOK_REPOSITORY": "x"})
    assert env.repository == "x"
    with pytest.raises(ConfigError, match=r"settings: scoring_app must be one of"):
        Settings(scoring_app="nope")
    with pytest.raises(ConfigError, match=r"settings: scoring_app must be one of"):
        base.for_app("nope")


def test_probe_payload_per_app() -> None:
    assert probe_payload("dummy") == {"data": [[0.1, 0.2, 0.3, 0.4]]}
    payload = probe_payload("safe-driver", 2)
    assert len(payload["data"]) == 2 and set(payload["data"][0]) == set(schema.column_names())
    with pytest.raises(ConfigError, match="scoring_app"):
        probe_payload("nope")


def test_the_azure_image_config_carries_the_apps_files_and_requirements() -> None:
    """Offline: the InferenceConfig Model.package would receive for a safe-driver version."""
    from workbook.azure.packaging import inference_config

    app = SCORING_DIR / "safe-driver"
    ic = inference_config(scoring_app="safe-driver", model_version="v2")
    assert_staged(Path(ic.source_directory), app)
    assert ic.entry_script == "score.py"
    assert (app / "schema.json").is_file()  # uploaded with the source directory
    pip = list(ic.environment.python.conda_dependencies.pip_packages)
    pins = [x for x in (app / "requirements.txt").read_text().splitlines() if "==" in x]
    # the app's pins, after what the inference stack needs (azureml-defaults, the server)
    assert pip[-len(pins) :] == pins and any(p.startswith("azureml-defaults==") for p in pip)
    assert ic.environment.environment_variables == {"MODEL_VERSION": "v2"}


def assert_staged(staged: Path, app: Path) -> None:
    """The source directory Model.package uploads: the app's files plus the shared modules."""
    from workbook.packaging import SCORING_DIR, SHARED_MODULES

    for f in (p for p in app.iterdir() if p.is_file()):
        assert (staged / f.name).read_bytes() == f.read_bytes(), f.name
    for module in SHARED_MODULES:
        assert (staged / module).read_bytes() == (SCORING_DIR / module).read_bytes()
