"""The Azure ML path offline: Environment/InferenceConfig built for real, the service faked at the
edge (the azureml classes are monkeypatched), errors translated, deadlines honoured, no secrets.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azureml.exceptions import AuthenticationException, UserErrorException, WebserviceException

from workbook.azure import packaging
from workbook.azure.packaging import (
    inference_config,
    package_image,
    pip_requirements,
    scoring_source,
    split_image,
)
from workbook.azure.registry import AzureModelRegistry
from workbook.azure.workspace import (
    AzureMLWorkspace,
    RegisteredModel,
    call_with_timeout,
    connect_workspace,
    redact,
    require_azureml,
)
from workbook.errors import AzureError, ConfigError, MissingDependencyError, RegistryError
from workbook.settings import Settings

#: azureml-core's own use of ruamel.yaml warns on every Environment round trip; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

SECRET = "sup3r-s3cret-Value"
SP_ENV = {"AZURE_TENANT_ID": "tenant", "AZURE_CLIENT_ID": "client", "AZURE_CLIENT_SECRET": SECRET}
WS_ENV = {
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "AZURE_RESOURCE_GROUP": "rg-canary",
    "AZUREML_WORKSPACE_NAME": "ws-canary",
}
DUMMY = Path(__file__).resolve().parent.parent / "workbook" / "scoring" / "dummy"


# ---- Environment and InferenceConfig, offline -------------------------------------------------


def test_inference_config_is_built_offline_from_the_dummy_app(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.WARNING)
    ic = inference_config(scoring_app="dummy", model_version="v2")
    assert ic.entry_script == "score.py"
    assert_staged(Path(ic.source_directory), DUMMY)
    env = ic.environment
    pip = list(env.python.conda_dependencies.pip_packages)
    # azureml-defaults, which Azure ML inference images expect, and the app's own server pin, once
    assert pip == ["azureml-defaults==1.61.0", "azureml-inference-server-http==1.5.1"]
    assert env.environment_variables == {"MODEL_VERSION": "v2"}
    assert "python=3.11" in list(env.python.conda_dependencies.conda_packages)
    noise = caplog.text + capsys.readouterr().out
    assert "azureml-defaults not detected" not in noise
    assert "environment_variables is deprecated" not in noise


def test_environment_serializes_what_azure_ml_would_receive(tmp_path: Path) -> None:
    from azureml.core import Environment

    env = inference_config(DUMMY.parent, model_version="v7").environment
    payload = Environment._serialize_to_dict(env)
    assert payload["environmentVariables"] == {"MODEL_VERSION": "v7"}
    assert payload["name"] == "dummy-scoring"
    env.save_to_directory(str(tmp_path / "env"), overwrite=True)
    again = Environment.load_from_directory(str(tmp_path / "env"))
    assert again.environment_variables == {"MODEL_VERSION": "v7"}


def test_scoring_source_accepts_an_app_dir_or_a_build_context(tmp_path: Path) -> None:
    assert scoring_source(None, "dummy") == DUMMY
    assert scoring_source(DUMMY) == DUMMY
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "score.py").write_text("def init():\n    pass\n")
    assert scoring_source(tmp_path) == tmp_path / "src"
    with pytest.raises(ConfigError, match=r"scoring app: nope has no score\.py"):
        scoring_source(tmp_path / "empty", "nope")


def test_pip_requirements_add_the_stack_once(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "# pinned\nazureml-inference-server-http==1.5.1\nlightgbm>=4  # model\n"
    )
    assert pip_requirements(tmp_path) == [
        "azureml-defaults==1.61.0",
        "azureml-inference-server-http==1.5.1",
        "lightgbm>=4",
    ]
    (tmp_path / "requirements.txt").write_text("lightgbm\nazureml-defaults\n")
    assert pip_requirements(tmp_path) == [
        "azureml-inference-server-http==1.5.1",
        "lightgbm",
        "azureml-defaults",
    ]


DIGEST = "sha256:" + "f" * 64


@pytest.mark.parametrize(
    ("ref", "parts"),
    [
        ("myacr.azurecr.io/scoring:v2", ("myacr.azurecr.io", "scoring", "v2", "")),
        ("myacr.azurecr.io/team/scoring:v2", ("myacr.azurecr.io", "team/scoring", "v2", "")),
        (f"myacr.azurecr.cn/package@{DIGEST}", ("myacr.azurecr.cn", "package", "", DIGEST)),
        (f"localhost:5000/scoring:v3@{DIGEST}", ("localhost:5000", "scoring", "v3", DIGEST)),
        ("scoring:v1", ("", "scoring", "v1", "")),
    ],
)
def test_split_image(ref: str, parts: tuple[str, str, str, str]) -> None:
    keys = ("registry", "repository", "tag", "digest")
    assert split_image(ref) == dict(zip(keys, parts, strict=True))


def test_split_image_refuses_a_reference_without_tag_or_digest() -> None:
    with pytest.raises(ConfigError) as info:
        split_image("localhost:5000/scoring")
    assert info.value.field == "tag"


# ---- fakes at the edge ------------------------------------------------------------------------


class Forbidden:
    """Interactive login must never be constructed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("interactive authentication was attempted")


class Recorder:
    """A stand-in auth class that records how it was built."""

    made: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, **kwargs: Any) -> None:
        Recorder.made.append((type(self).__name__, kwargs))


class SP(Recorder):
    pass


class MSI(Recorder):
    pass


@pytest.fixture
def auth(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    import azureml.core.authentication as a

    Recorder.made = []
    monkeypatch.setattr(a, "ServicePrincipalAuthentication", SP)
    monkeypatch.setattr(a, "MsiAuthentication", MSI)
    monkeypatch.setattr(a, "InteractiveLoginAuthentication", Forbidden)
    return Recorder.made


def fake_workspace(monkeypatch: pytest.MonkeyPatch, behaviour: Any) -> list[dict[str, Any]]:
    """Replace ``azureml.core.Workspace``: construction and from_config call ``behaviour``."""
    import azureml.core

    calls: list[dict[str, Any]] = []

    class FakeWorkspace:
        name = "ws-canary"

        def __init__(self, **kwargs: Any) -> None:
            calls.append(kwargs)
            behaviour()

        @staticmethod
        def from_config(path: str | None = None, auth: Any = None) -> FakeWorkspace:
            calls.append({"path": path, "auth": auth})
            behaviour()
            return FakeWorkspace.__new__(FakeWorkspace)

    monkeypatch.setattr(azureml.core, "Workspace", FakeWorkspace)
    return calls


def test_connects_with_the_service_principal_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, auth: list[Any]
) -> None:
    calls = fake_workspace(monkeypatch, lambda: None)
    connect_workspace(env={**WS_ENV, **SP_ENV})
    assert auth == [
        (
            "SP",
            {
                "tenant_id": "tenant",
                "service_principal_id": "client",
                "service_principal_password": SECRET,
            },
        )
    ]
    assert calls[0]["workspace_name"] == "ws-canary"
    assert calls[0]["resource_group"] == "rg-canary"
    assert isinstance(calls[0]["auth"], SP)


def test_config_json_is_used_with_the_service_principal(
    monkeypatch: pytest.MonkeyPatch, auth: list[Any], tmp_path: Path
) -> None:
    calls = fake_workspace(monkeypatch, lambda: None)
    (tmp_path / ".azureml").mkdir()
    (tmp_path / ".azureml" / "config.json").write_text(json.dumps({"workspace_name": "w"}))
    monkeypatch.chdir(tmp_path)
    connect_workspace(env=SP_ENV)
    assert calls[0]["path"] == str(tmp_path / ".azureml" / "config.json")


def test_managed_identity_when_asked(
    monkeypatch: pytest.MonkeyPatch, auth: list[Any], tmp_path: Path
) -> None:
    fake_workspace(monkeypatch, lambda: None)
    connect_workspace(env={**WS_ENV, "AZUREML_AUTH": "msi"})
    assert auth == [("MSI", {})]


def test_nothing_configured_names_every_variable(
    monkeypatch: pytest.MonkeyPatch, auth: list[Any], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AzureError) as err:
        connect_workspace(env={})
    for var in (*WS_ENV, *SP_ENV):
        assert var in str(err.value)
    assert auth == []


def test_config_without_credentials_never_logs_in_interactively(
    monkeypatch: pytest.MonkeyPatch, auth: list[Any], tmp_path: Path
) -> None:
    calls = fake_workspace(monkeypatch, lambda: None)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(AzureError) as err:
        connect_workspace(tmp_path / "config.json", env={"AZURE_CLIENT_ID": "client"})
    assert "set AZURE_TENANT_ID, AZURE_CLIENT_SECRET" in str(err.value)
    assert "interactive login is never used" in str(err.value)
    assert calls == [] and auth == []


def _raise(exc: BaseException) -> Any:
    def behaviour() -> None:
        raise exc

    return behaviour


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            UserErrorException("The workspace configuration file config.json, could not be found"),
            "download config.json from https://ml.azure.com",
        ),
        (
            AuthenticationException("AADSTS7000215: Invalid client secret provided."),
            "authentication failed: AADSTS7000215: Invalid client secret provided.; check "
            "AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET",
        ),
        (
            requests.exceptions.ConnectionError(
                "HTTPSConnectionPool(host='login.microsoftonline.com', port=443): Max retries"
            ),
            "the service could not be reached (ConnectionError: HTTPSConnectionPool(host="
            "'login.microsoftonline.com'",
        ),
        (requests.exceptions.ReadTimeout("read timed out"), "could not be reached (ReadTimeout"),
        (
            WebserviceException("Received bad response from Model Management Service: 403"),
            "the service refused the request: Received bad response",
        ),
    ],
    ids=["UserError", "Authentication", "ConnectionError", "ReadTimeout", "Webservice"],
)
def test_errors_are_translated_with_what_to_do(
    monkeypatch: pytest.MonkeyPatch, auth: list[Any], exc: BaseException, expected: str
) -> None:
    fake_workspace(monkeypatch, _raise(exc))
    with pytest.raises(AzureError) as err:
        connect_workspace(env={**WS_ENV, **SP_ENV})
    assert str(err.value).startswith("Azure ML: connect to workspace rg-canary/ws-canary")
    assert expected in str(err.value)
    assert err.value.__cause__ is exc


def test_an_unexpected_exception_is_not_disguised(
    monkeypatch: pytest.MonkeyPatch, auth: list[Any]
) -> None:
    fake_workspace(monkeypatch, _raise(KeyError("bug")))
    with pytest.raises(KeyError):
        connect_workspace(env={**WS_ENV, **SP_ENV})


def test_secrets_never_reach_the_message(monkeypatch: pytest.MonkeyPatch, auth: list[Any]) -> None:
    leak = AuthenticationException(f"login with client=client secret={SECRET} failed")
    fake_workspace(monkeypatch, _raise(leak))
    with pytest.raises(AzureError) as err:
        connect_workspace(env={**WS_ENV, **SP_ENV})
    assert SECRET not in str(err.value) and "secret=***" in str(err.value)
    assert err.value.__cause__ is None  # the original (holding the secret) is not chained


def test_sas_tokens_are_cut_from_urls() -> None:
    url = "https://acct.blob.core.windows.net/logs/build.log?sv=2021&sig=AbC%2Fdef&se=2026"
    assert redact(f"see {url} now") == (
        "see https://acct.blob.core.windows.net/logs/build.log?<redacted> now"
    )


@pytest.fixture
def hang() -> Iterator[threading.Event]:
    """A call that blocks until the test ends."""
    release = threading.Event()
    yield release
    release.set()


def test_every_call_has_a_deadline(
    monkeypatch: pytest.MonkeyPatch, auth: list[Any], hang: threading.Event
) -> None:
    fake_workspace(monkeypatch, lambda: hang.wait(30))
    with pytest.raises(
        AzureError, match=r"connect to workspace rg-canary/ws-canary did not finish"
    ):
        connect_workspace(env={**WS_ENV, **SP_ENV}, timeout_s=0.05)


def test_call_with_timeout_returns_values() -> None:
    assert call_with_timeout(lambda: 42, timeout_s=5, what="answer") == 42


def test_offline_for_real_without_fakes(tmp_path: Path) -> None:
    """No fakes: a missing config is a UserErrorException inside azureml, translated."""
    with pytest.raises(AzureError, match="could not be found") as err:
        connect_workspace(tmp_path / "nowhere", env=SP_ENV, timeout_s=10)
    assert "download config.json" in str(err.value)


def test_offline_network_failure_for_real() -> None:
    """No fakes: the service principal login fails (no network) and is translated."""
    with pytest.raises(AzureError) as err:
        connect_workspace(env={**WS_ENV, **SP_ENV}, timeout_s=5)
    assert "could not be reached" in str(err.value) or "did not finish" in str(err.value)
    assert SECRET not in str(err.value)


def test_missing_azureml_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azureml.core", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'azureml-core=="):
        require_azureml()


# ---- AzureMLWorkspace over a faked azureml.core.Model -----------------------------------------


class FakeRaw:
    def __init__(self, name: str, version: int, tags: dict[str, str]) -> None:
        self.name, self.version, self.tags = name, version, tags
        self.properties: dict[str, str] = {}
        self.id = f"{name}:{version}"
        self.url = f"aml://asset/{name}/{version}"
        self.created_time = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.UTC)


class FakePackage:
    def __init__(self, outcome: str, hang: threading.Event | None = None) -> None:
        self.outcome, self.hang = outcome, hang
        self.location = "canaryworkbook.azurecr.io/scoring:v2" if outcome == "ok" else None
        self.package_build_log_uri = (
            "https://acct.blob.core.windows.net/logs/build.log?sv=2021&sig=TOPSECRETSIG"
        )

    def wait_for_creation(self, show_output: bool = False) -> None:
        assert show_output is False
        if self.outcome == "hang" and self.hang is not None:
            self.hang.wait(30)
        if self.outcome == "fail":
            raise WebserviceException(
                "Package creation reached non-successful terminal state.\nState: Failed"
            )

    def get_logs(self, decode: bool = True, offset: int = 0) -> str:
        return "Step 1/9 : FROM mcr.microsoft.com/azureml/minimal\n...\nERROR: No matching dist"


class FakeModel:
    """``azureml.core.Model`` for one in-memory workspace."""

    store: list[FakeRaw] = []
    packages: list[dict[str, Any]] = []
    outcome = "ok"
    hang: threading.Event | None = None

    def __new__(cls, workspace: Any, name: str | None = None, version: int | None = None) -> Any:
        found = [m for m in cls.store if m.name == name and version in (None, m.version)]
        if not found:
            raise WebserviceException(f"ModelNotFound: {name}:{version}")
        return found[-1]

    @staticmethod
    def register(
        workspace: Any,
        model_path: str,
        model_name: str,
        tags: Any = None,
        properties: Any = None,
    ) -> FakeRaw:
        version = 1 + max((m.version for m in FakeModel.store if m.name == model_name), default=0)
        raw = FakeRaw(model_name, version, dict(tags or {}))
        raw.properties = dict(properties or {})
        FakeModel.store.append(raw)
        return raw

    @staticmethod
    def list(workspace: Any, name: str | None = None) -> list[FakeRaw]:
        return [m for m in FakeModel.store if name in (None, m.name)]

    @staticmethod
    def package(workspace: Any, models: list[Any], inference_config: Any, **kw: Any) -> FakePackage:
        FakeModel.packages.append({"models": models, "inference_config": inference_config, **kw})
        return FakePackage(FakeModel.outcome, FakeModel.hang)


class FakeCloud:
    """azureml-core's cloud object (azureml/_vendor/azure_cli_core/cloud.py): suffixes per cloud."""

    def __init__(self, acr_suffix: str) -> None:
        self.suffixes = type("Suffixes", (), {"acr_login_server_endpoint": acr_suffix})()


class FakeAuth:
    def __init__(self, acr_suffix: str = ".azurecr.io") -> None:
        self.cloud = FakeCloud(acr_suffix)

    def _get_cloud_type(self) -> FakeCloud:
        return self.cloud

    def _get_arm_end_point(self) -> str:
        return "https://management.chinacloudapi.cn/"

    def get_authentication_header(self) -> dict[str, str]:
        return {"Authorization": "Bearer x"}


class FakeAmlWorkspace:
    name = "ws-canary"
    _auth: Any = FakeAuth()

    def get_details(self) -> dict[str, Any]:
        return {
            "containerRegistry": "/subscriptions/0/resourceGroups/rg/providers/"
            "Microsoft.ContainerRegistry/registries/CanaryWorkbook"
        }


@pytest.fixture
def aml(monkeypatch: pytest.MonkeyPatch) -> AzureMLWorkspace:
    import azureml.core

    FakeModel.store, FakeModel.packages, FakeModel.outcome = [], [], "ok"
    monkeypatch.setattr(azureml.core, "Model", FakeModel)
    return AzureMLWorkspace(FakeAmlWorkspace(), timeout_s=5, env=SP_ENV)


def test_register_get_and_list_models(aml: AzureMLWorkspace, tmp_path: Path) -> None:
    first = aml.register_model("safe-driver", tmp_path, {"stage": "dev"})
    assert (first.name, first.version, first.tags) == ("safe-driver", 1, {"stage": "dev"})
    assert first.created.startswith("2026-11-26")
    aml.register_model("safe-driver", tmp_path)
    assert [m.version for m in aml.list_models("safe-driver")] == [1, 2]
    assert aml.get_model("safe-driver").version == 2
    assert aml.get_model("safe-driver", 1).id == "safe-driver:1"
    with pytest.raises(AzureError, match="get model safe-driver:9: the service refused"):
        aml.get_model("safe-driver", 9)


def test_properties_reach_model_register(aml: AzureMLWorkspace, tmp_path: Path) -> None:
    model = aml.register_model("safe-driver", tmp_path, {"kind": "lightgbm"}, {"auc": "0.71"})
    assert model.properties == {"auc": "0.71"}
    assert aml.get_model("safe-driver", 1).properties == {"auc": "0.71"}


def test_package_returns_the_image_reference(aml: AzureMLWorkspace, tmp_path: Path) -> None:
    model = aml.register_model("safe-driver", tmp_path)
    ref = aml.package(model, "IC", image_name="scoring", image_label="v2", timeout_s=5)
    assert ref == "canaryworkbook.azurecr.io/scoring:v2"
    call = FakeModel.packages[-1]
    assert call["models"] == [model.raw] and call["inference_config"] == "IC"
    assert (call["image_name"], call["image_label"]) == ("scoring", "v2")
    assert call["generate_dockerfile"] is False


def test_failed_package_carries_the_build_log(aml: AzureMLWorkspace, tmp_path: Path) -> None:
    model = aml.register_model("safe-driver", tmp_path)
    FakeModel.outcome = "fail"
    with pytest.raises(AzureError) as err:
        aml.package(model, "IC", image_name="scoring", image_label="v2")
    text = str(err.value)
    assert "build of image scoring:v2: the service refused the request" in text
    assert "build log: https://acct.blob.core.windows.net/logs/build.log?<redacted>" in text
    assert "ERROR: No matching dist" in text
    assert "TOPSECRETSIG" not in text


def test_package_build_has_a_deadline(
    aml: AzureMLWorkspace, tmp_path: Path, hang: threading.Event
) -> None:
    model = aml.register_model("safe-driver", tmp_path)
    FakeModel.outcome, FakeModel.hang = "hang", hang
    with pytest.raises(AzureError) as err:
        aml.package(model, "IC", image_name="scoring", image_label="v2", timeout_s=0.05)
    assert "build of image scoring:v2 did not finish within 0.05s" in str(err.value)
    assert "build log:" in str(err.value)


def test_container_registry_from_the_workspace(
    aml: AzureMLWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry's own ARM resource names its login server (sovereign clouds differ)."""
    import workbook.azure.workspace as wsmod

    asked: list[str] = []

    def read_arm(auth: Any, resource_id: str) -> dict[str, Any]:
        asked.append(resource_id)
        return {"properties": {"loginServer": "CanaryWorkbook.azurecr.cn"}}

    monkeypatch.setattr(wsmod, "_read_arm", read_arm)
    assert aml.container_registry() == "canaryworkbook.azurecr.cn"
    assert asked == [
        "/subscriptions/0/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/"
        "CanaryWorkbook"
    ]


def test_container_registry_falls_back_to_the_clouds_suffix(
    aml: AzureMLWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workbook.azure.workspace as wsmod

    def forbidden(auth: Any, resource_id: str) -> dict[str, Any]:
        raise PermissionError("403 AuthorizationFailed")

    monkeypatch.setattr(wsmod, "_read_arm", forbidden)
    aml.workspace._auth = FakeAuth(".azurecr.us")
    assert aml.container_registry() == "canaryworkbook.azurecr.us"
    aml.workspace._auth = FakeAuth("")
    with pytest.raises(AzureError, match="login server of registry canaryworkbook is unknown"):
        aml.container_registry()


# ---- the ModelRegistry protocol and package_image over a fake MLWorkspace ---------------------


class MemoryWorkspace:
    """An ``MLWorkspace`` in memory (what an azure-ai-ml implementation would also satisfy)."""

    name = "ws-memory"

    def __init__(self) -> None:
        self.models: list[RegisteredModel] = []
        self.packaged: list[dict[str, Any]] = []

    def register_model(
        self,
        name: str,
        path: Any,
        version_tags: dict[str, str] | None = None,
        properties: dict[str, str] | None = None,
    ) -> RegisteredModel:
        version = 1 + max((m.version for m in self.models if m.name == name), default=0)
        model = RegisteredModel(name, version, f"{name}:{version}", dict(version_tags or {}))
        model.properties = dict(properties or {})
        self.models.append(model)
        return model

    def get_model(self, name: str, version: int | None = None) -> RegisteredModel:
        return next(
            m for m in reversed(self.models) if m.name == name and version in (None, m.version)
        )

    def list_models(self, name: str | None = None) -> list[RegisteredModel]:
        return [m for m in self.models if name in (None, m.name)]

    def package(
        self,
        model: Any,
        inference_config: Any,
        image_name: str,
        image_label: str,
        timeout_s: float = 0,
    ) -> str:
        self.packaged.append({"model": model, "ic": inference_config, "label": image_label})
        return f"memoryacr.azurecr.io/{image_name}:{image_label}"

    def container_registry(self) -> str:
        return "memoryacr.azurecr.io"


def test_azure_model_registry_names_versions_like_the_local_one(tmp_path: Path) -> None:
    (tmp_path / "m1").mkdir()
    (tmp_path / "m1" / "model.json").write_text('{"bias": 1}')
    (tmp_path / "m2").mkdir()
    (tmp_path / "m2" / "model.json").write_text('{"bias": 2}')
    ws = MemoryWorkspace()
    reg = AzureModelRegistry(ws)
    v1 = reg.register("safe-driver", tmp_path / "m1", tags={"kind": "dummy"})
    assert (v1.version, v1.tags) == ("v1", {"kind": "dummy", "azureml.id": "safe-driver:1"})
    assert v1.path == Path("azureml:safe-driver:1")  # the files live in the workspace
    assert reg.register("safe-driver", tmp_path / "m1", "v1") == v1  # same files: no-op
    assert len(ws.models) == 1
    with pytest.raises(RegistryError, match=r"already registered .* with other files"):
        reg.register("safe-driver", tmp_path / "m2", "v1")
    v2 = reg.register("safe-driver", tmp_path / "m2")
    assert v2.version == "v2" and v2.digest.startswith("sha256:")
    assert [v.version for v in reg.list("safe-driver")] == ["v1", "v2"]
    assert reg.get("safe-driver").version == "v2"
    assert reg.get("safe-driver", "v1").tags["azureml.id"] == "safe-driver:1"
    with pytest.raises(
        RegistryError, match=r"safe-driver:v9 is not registered; known: \['v1', 'v2'\]"
    ):
        reg.get("safe-driver", "v9")


def test_azure_model_registry_keeps_properties(tmp_path: Path) -> None:
    (tmp_path / "model.txt").write_text("tree")
    reg = AzureModelRegistry(MemoryWorkspace())
    v1 = reg.register("safe-driver-lgbm", tmp_path, "v1", properties={"gini": "0.41"})
    assert v1.properties == {"gini": "0.41"}
    assert reg.get("safe-driver-lgbm", "v1").properties == {"gini": "0.41"}
    assert "gini" not in v1.tags


def test_package_image_builds_the_config_and_returns_the_reference(tmp_path: Path) -> None:
    ws = MemoryWorkspace()
    model = ws.register_model("safe-driver", tmp_path)
    ref = package_image(ws, model, Settings(state_dir=tmp_path), "v2")
    assert ref == "memoryacr.azurecr.io/scoring:v2"
    ic = ws.packaged[0]["ic"]
    assert ic.environment.environment_variables == {"MODEL_VERSION": "v2"}
    assert_staged(Path(ic.source_directory), DUMMY)
    assert split_image(ref) == {
        "registry": "memoryacr.azurecr.io",
        "repository": "scoring",
        "tag": "v2",
        "digest": "",
    }


def test_packaging_module_uses_the_shipped_scoring_apps() -> None:
    assert DUMMY.parent == packaging.SCORING_ROOT


def test_cli_auth_without_azure_cli_is_translated(monkeypatch: pytest.MonkeyPatch) -> None:
    import azureml.core.authentication as a

    def no_cli() -> None:
        raise AuthenticationException("azure-cli package is not installed.")

    monkeypatch.setattr(a, "AzureCliAuthentication", no_cli)
    with pytest.raises(AzureError, match="authentication: authentication failed: azure-cli"):
        connect_workspace(env={**WS_ENV, "AZUREML_AUTH": "cli"})


def assert_staged(staged: Path, app: Path) -> None:
    """The source directory Model.package uploads: the app's files plus the shared modules."""
    from workbook.packaging import SCORING_DIR, SHARED_MODULES

    for f in (p for p in app.iterdir() if p.is_file()):
        assert (staged / f.name).read_bytes() == f.read_bytes(), f.name
    for module in SHARED_MODULES:
        assert (staged / module).read_bytes() == (SCORING_DIR / module).read_bytes()
