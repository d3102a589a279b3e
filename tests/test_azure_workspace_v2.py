"""The Azure ML SDK v2 (azure-ai-ml) side of the workspace seam, against a fake ``MLClient``.

The fake stands at the SDK edge: it receives azure-ai-ml's own entities (``Model``,
``Environment``, ``ModelPackage``), so the test reads exactly what would be sent to Azure ML.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("azure.ai.ml")

from workbook.azure import workspace_v2
from workbook.azure.packaging import inference_config, package_image, split_image
from workbook.azure.registry import AzureModelRegistry
from workbook.azure.workspace import AzureMLWorkspace
from workbook.azure.workspace_v2 import AzureMLClientWorkspace, connect_ml_workspace
from workbook.errors import AzureError, ConfigError
from workbook.settings import Settings

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

DIGEST = "sha256:" + "c" * 64


class FakeModels:
    def __init__(self) -> None:
        self.store: list[Any] = []
        self.packaged: list[tuple[str, str, Any]] = []

    def create_or_update(self, model: Any) -> Any:
        version = 1 + sum(1 for m in self.store if m.name == model.name)
        stored = SimpleNamespace(
            name=model.name,
            version=str(version),
            id=f"azureml:{model.name}:{version}",
            tags=dict(model.tags or {}),
            path=model.path,
            type=model.type,
            creation_context=SimpleNamespace(created_at=datetime(2026, 11, 30, tzinfo=UTC)),
        )
        self.store.append(stored)
        return stored

    def get(self, name: str, version: str | None = None, label: str | None = None) -> Any:
        found = [m for m in self.store if m.name == name]
        if label == "latest":
            return max(found, key=lambda m: int(m.version))
        return next(m for m in found if m.version == version)

    def list(self, name: str | None = None) -> list[Any]:
        if name is None:
            return [SimpleNamespace(name=n) for n in sorted({m.name for m in self.store})]
        return [m for m in self.store if m.name == name]

    def package(self, name: str, version: str, request: Any) -> Any:
        self.packaged.append((name, version, request))
        return SimpleNamespace(image=f"ws1.azurecr.cn/azureml/azureml_{name}@{DIGEST}")


class FakeEnvironments:
    def __init__(self) -> None:
        self.created: list[Any] = []

    def create_or_update(self, env: Any) -> Any:
        self.created.append(env)
        return SimpleNamespace(name=env.name, version="3")


class FakeClient:
    workspace_name = "ws-canary"

    def __init__(self) -> None:
        self.models = FakeModels()
        self.environments = FakeEnvironments()
        registry = (
            "/subscriptions/0/resourceGroups/rg/providers/"
            "Microsoft.ContainerRegistry/registries/Ws1"
        )
        self.workspaces = SimpleNamespace(
            get=lambda name: SimpleNamespace(container_registry=registry)
        )


@pytest.fixture
def v2() -> AzureMLClientWorkspace:
    return AzureMLClientWorkspace(FakeClient(), timeout_s=5, env={})


def test_models_register_get_and_list(v2: AzureMLClientWorkspace, tmp_path: Path) -> None:
    first = v2.register_model("safe-driver", tmp_path, {"stage": "dev"})
    assert (first.name, first.version, first.tags) == ("safe-driver", 1, {"stage": "dev"})
    assert first.created.startswith("2026-11-30")
    sent = v2.client.models.store[0]
    assert (sent.type, sent.path) == ("custom_model", str(tmp_path))
    v2.register_model("safe-driver", tmp_path)
    v2.register_model("other", tmp_path)
    assert v2.get_model("safe-driver").version == 2
    assert v2.get_model("safe-driver", 1).tags == {"stage": "dev"}
    assert [(m.name, m.version) for m in v2.list_models()] == [
        ("other", 1),
        ("safe-driver", 1),
        ("safe-driver", 2),
    ]


def test_the_registry_protocol_runs_over_sdk_v2(v2: AzureMLClientWorkspace, tmp_path: Path) -> None:
    (tmp_path / "m1").mkdir()
    (tmp_path / "m1" / "model.txt").write_text("1")
    reg = AzureModelRegistry(v2)
    v1 = reg.register("safe-driver", tmp_path / "m1")
    assert v1.version == "v1" and reg.get("safe-driver").version == "v1"


def test_package_sends_the_inference_stack_and_returns_the_digest_reference(
    v2: AzureMLClientWorkspace, tmp_path: Path
) -> None:
    model = v2.register_model("safe-driver", tmp_path)
    ref = package_image(v2, model, Settings(state_dir=tmp_path), "v2")
    assert ref == f"ws1.azurecr.cn/azureml/azureml_safe-driver@{DIGEST}"  # kept as a digest
    assert split_image(ref)["digest"] == DIGEST
    (base,) = v2.client.environments.created
    assert base.image == workspace_v2.BASE_IMAGE
    pip = next(d for d in base.conda_file["dependencies"] if isinstance(d, dict))["pip"]
    assert "azureml-defaults==1.61.0" in pip and "azureml-inference-server-http==1.5.1" in pip
    name, version, request = v2.client.models.packaged[0]
    assert (name, version) == ("safe-driver", "1")
    assert request.base_environment_source.resource_id == "azureml:scoring-base:3"
    assert request.inferencing_server.code_configuration.scoring_script == "score.py"
    assert request.environment_variables == {"MODEL_VERSION": "v2"}
    assert (request.target_environment_id, request.tags) == (
        "scoring",
        {"workbook.image_label": "v2"},
    )


def test_package_needs_an_azure_version(v2: AzureMLClientWorkspace) -> None:
    ic = inference_config(model_version="v1")
    unregistered = SimpleNamespace(name="m", version="v1", tags={})
    with pytest.raises(ConfigError) as info:
        v2.package(unregistered, ic, "scoring", "v1")
    assert info.value.field == "version"


def test_container_registry_from_its_arm_resource(
    v2: AzureMLClientWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read(client: Any, arm_id: str) -> dict[str, Any]:
        assert arm_id.endswith("/registries/Ws1")
        return {"properties": {"loginServer": "ws1.azurecr.cn"}}

    monkeypatch.setattr(workspace_v2, "_read_registry", read)
    assert v2.container_registry() == "ws1.azurecr.cn"


def test_the_sdk_is_chosen_by_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr(
        AzureMLWorkspace, "connect", classmethod(lambda cls, **kw: seen.append("v1"))
    )
    monkeypatch.setattr(
        AzureMLClientWorkspace, "connect", classmethod(lambda cls, **kw: seen.append("v2"))
    )
    connect_ml_workspace(env={})
    connect_ml_workspace(env={"WORKBOOK_AZUREML_SDK": "v2"})
    assert seen == ["v1", "v2"]
    with pytest.raises(ConfigError) as info:
        connect_ml_workspace(env={"WORKBOOK_AZUREML_SDK": "v3"})
    assert info.value.obj == "WORKBOOK_AZUREML_SDK"


def test_v2_without_credentials_says_what_to_set() -> None:
    env = {
        "AZURE_SUBSCRIPTION_ID": "0",
        "AZURE_RESOURCE_GROUP": "rg",
        "AZUREML_WORKSPACE_NAME": "ws",
    }
    with pytest.raises(AzureError, match="no credentials: set AZURE_TENANT_ID"):
        AzureMLClientWorkspace.connect(env=env)
    with pytest.raises(AzureError, match="set AZURE_SUBSCRIPTION_ID"):
        AzureMLClientWorkspace.connect(env={})
