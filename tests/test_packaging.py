"""Build contexts and local packaging: layout, Dockerfile, determinism, demo images."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from workbook.errors import ConfigError, RegistryError
from workbook.packaging import (
    SCORING_DIR,
    build_context,
    dummy_bias,
    dummy_model_source,
    ensure_demo_images,
    package_local,
    scoring_apps,
)
from workbook.registry import LocalImageStore, LocalModelRegistry, ModelVersion, tree_digest
from workbook.settings import Settings, project_root


def registered(tmp_path: Path, version: str = "v1", name: str = "safe-driver") -> ModelVersion:
    registry = LocalModelRegistry(tmp_path / "state")
    source = dummy_model_source(version, tmp_path / "sources" / version, name=name)
    return registry.register(name, source, version)


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_build_context_layout(tmp_path: Path) -> None:
    model = registered(tmp_path, "v2")
    dest = build_context(model, tmp_path / "ctx")
    assert dest == tmp_path / "ctx"
    assert files(dest) == [
        "Dockerfile",
        "model/safe-driver/v2/model.json",
        "requirements.txt",
        "src/fault_injection.py",  # the rehearsal faults every scoring app imports
        "src/score.py",
    ]
    assert (dest / "src" / "score.py").read_bytes() == (
        SCORING_DIR / "dummy" / "score.py"
    ).read_bytes()
    assert json.loads((dest / "model/safe-driver/v2/model.json").read_text())["version"] == "v2"


def test_dockerfile_is_filled_for_the_model(tmp_path: Path) -> None:
    dockerfile = (
        build_context(registered(tmp_path, "v2"), tmp_path / "ctx") / "Dockerfile"
    ).read_text()
    assert "{{" not in dockerfile
    lines = dockerfile.splitlines()
    assert next(x for x in lines if x.startswith("FROM ")).startswith(
        "FROM mcr.microsoft.com/azureml/"
    )
    assert "COPY src/ /var/azureml-app/" in lines
    assert "COPY model/safe-driver/v2/ /var/azureml-app/azureml-models/safe-driver/v2/" in lines
    assert 'ENV MODEL_VERSION="v2"' in lines
    assert 'ENV AZUREML_MODEL_DIR="/var/azureml-app/azureml-models"' in lines
    assert 'ENV AZUREML_ENTRY_SCRIPT="score.py"' in lines
    assert "EXPOSE 5001" in lines
    users = [x.split()[1] for x in lines if x.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    cmd = json.loads(next(x for x in lines if x.startswith("CMD ")).removeprefix("CMD "))
    assert cmd == ["azmlinfsrv", "--entry_script", "/var/azureml-app/score.py", "--port", "5001"]


def test_extra_env_is_sorted_and_quoted(tmp_path: Path) -> None:
    env = {"WORKER_COUNT": "2", "AML_APP_INSIGHTS_ENABLED": 'say "no"'}
    text = (
        build_context(registered(tmp_path), tmp_path / "ctx", env=env) / "Dockerfile"
    ).read_text()
    extra = [x for x in text.splitlines() if x.startswith(("ENV WORKER", "ENV AML_APP_INSIGHTS"))]
    assert extra == ['ENV AML_APP_INSIGHTS_ENABLED="say \\"no\\""', 'ENV WORKER_COUNT="2"']


@pytest.mark.parametrize(
    ("env", "field"), [({"1BAD": "x"}, "env.1BAD"), ({"OK": "a\nb"}, "env.OK")]
)
def test_bad_env_is_a_config_error(tmp_path: Path, env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        build_context(registered(tmp_path), tmp_path / "ctx", env=env)
    assert e.value.field == field


def test_same_inputs_same_digest(tmp_path: Path) -> None:
    model = registered(tmp_path, "v1")
    a = tree_digest(build_context(model, tmp_path / "a"))
    b = tree_digest(build_context(model, tmp_path / "b"))
    assert a == b
    other = registered(tmp_path, "v2")
    assert tree_digest(build_context(other, tmp_path / "c")) != a


def test_dest_must_be_new_or_empty(tmp_path: Path) -> None:
    model = registered(tmp_path)
    (tmp_path / "empty").mkdir()
    build_context(model, tmp_path / "empty")
    with pytest.raises(RegistryError, match="empty or new folder"):
        build_context(model, tmp_path / "empty")


def test_unknown_scoring_app_lists_the_known_ones(tmp_path: Path) -> None:
    assert "dummy" in scoring_apps()
    with pytest.raises(ConfigError, match=r"scoring_app must be one of \['dummy'"):
        build_context(registered(tmp_path), tmp_path / "ctx", scoring_app="nope")
    with pytest.raises(ConfigError):
        build_context(registered(tmp_path), tmp_path / "ctx", scoring_app="../dummy")


def test_requirements_pin_the_server_as_the_project_does() -> None:
    def pin(text: str) -> str:
        return next(
            line.strip()
            for line in text.splitlines()
            if line.startswith("azureml-inference-server-http")
        )

    scoring = (SCORING_DIR / "dummy" / "requirements.txt").read_text()
    project = (project_root() / "requirements.txt").read_text()
    assert re.fullmatch(r"azureml-inference-server-http==[\w.]+", pin(scoring))
    assert pin(scoring) == pin(project)


def test_package_local_stores_a_runnable_bundle(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path / "state")
    store = LocalImageStore(tmp_path / "state")
    registry.register("safe-driver", dummy_model_source("v3", tmp_path / "src"), "v3")
    bundle = package_local(registry, store, "safe-driver", "v3", "example.io/scoring:v3")
    assert bundle.ref == "example.io/scoring:v3"
    assert bundle.model == "safe-driver:v3"
    assert bundle.env == {
        "MODEL_VERSION": "v3",
        "AZUREML_MODEL_DIR": "model",
        "AZUREML_ENTRY_SCRIPT": "src/score.py",
    }
    assert bundle.entry_script_path.name == "score.py" and bundle.entry_script_path.is_file()
    assert (bundle.model_dir_path / "safe-driver" / "v3" / "model.json").is_file()
    assert store.resolve("example.io/scoring:v3") == bundle
    again = package_local(registry, store, "safe-driver", "v3", "example.io/scoring:v3")
    assert again == bundle


def test_package_local_checks_the_ref_and_the_model(tmp_path: Path) -> None:
    registry, store = LocalModelRegistry(tmp_path), LocalImageStore(tmp_path)
    with pytest.raises(ConfigError, match="image"):
        package_local(registry, store, "safe-driver", "v1", "example.io/Scoring:v1")
    with pytest.raises(RegistryError, match="safe-driver"):
        package_local(registry, store, "safe-driver", "v1", "example.io/scoring:v1")
    assert store.list() == []


def test_dummy_versions_have_different_biases(tmp_path: Path) -> None:
    biases = {dummy_bias(v) for v in ("v1", "v2", "v3", "v4")}
    assert len(biases) == 4
    path = dummy_model_source("v2", tmp_path, name="safe-driver")
    assert json.loads(path.read_text()) == {
        "name": "safe-driver",
        "version": "v2",
        "bias": dummy_bias("v2"),
    }
    assert isinstance(dummy_bias("canary-2024"), float)


def test_ensure_demo_images_is_idempotent(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    first = ensure_demo_images(settings)
    assert [b.ref for b in first] == [settings.image("v1"), settings.image("v2")]
    assert [b.model for b in first] == ["safe-driver:v1", "safe-driver:v2"]
    assert first[0].digest != first[1].digest
    registry = LocalModelRegistry(tmp_path)
    assert [mv.id for mv in registry.list()] == ["safe-driver:v1", "safe-driver:v2"]
    again = ensure_demo_images(settings)
    assert again == first
    assert LocalImageStore(tmp_path).list() == first


def test_ensure_demo_images_keeps_what_is_there(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path, model_name="driver", stable_version="v5", canary_version="v6"
    )
    registry = LocalModelRegistry(tmp_path)
    real = tmp_path / "real"
    real.mkdir()
    (real / "model.json").write_text(json.dumps({"name": "driver", "version": "v5", "bias": 3.0}))
    registry.register("driver", real, "v5", tags={"kind": "real"})
    bundles = ensure_demo_images(settings, registry=registry)
    assert [b.ref for b in bundles] == [settings.image("v5"), settings.image("v6")]
    assert registry.get("driver", "v5").tags == {"kind": "real"}
    assert registry.get("driver", "v6").tags == {"kind": "dummy"}
    model_json = bundles[0].model_dir_path / "driver" / "v5" / "model.json"
    assert json.loads(model_json.read_text())["bias"] == 3.0
