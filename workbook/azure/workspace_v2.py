"""``MLWorkspace`` over azure-ai-ml (Azure ML SDK v2), the successor of azureml-core.

The same seam as ``AzureMLWorkspace``: models registered and listed, one scoring image built per
model version, the registry's login server. Packaging uses SDK v2's model packaging
(``MLClient.models.package`` with a ``ModelPackage``; experimental in azure-ai-ml 1.35): the base
environment carries the pip list of the InferenceConfig that ``workbook.azure.packaging`` builds
offline, and the package adds score.py as the AzureML online inferencing server's code. The result
is an Environment whose ``image`` is the built image.

``connect_ml_workspace`` picks SDK v1 or v2 by ``WORKBOOK_AZUREML_SDK`` (``v1`` by default).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

from workbook.azure.workspace import (
    SP_VARS,
    WORKSPACE_VARS,
    AzureMLWorkspace,
    MLWorkspace,
    RegisteredModel,
    call_with_timeout,
    registry_login_server,
    secrets_from,
)
from workbook.errors import AzureError, ConfigError, MissingDependencyError

T = TypeVar("T")

_INSTALL = "pip install 'azure-ai-ml==1.35.2' (or: pip install -r requirements.txt)"
#: The base image of the packaged environment: the one azureml-core's Model.package uses for CPU
#: inference (github.com/Azure/AzureML-Containers, base/cpu/openmpi4.1.0-ubuntu20.04).
BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest"
SDK_VARIABLE = "WORKBOOK_AZUREML_SDK"


def require_azure_ai_ml() -> None:
    """MissingDependencyError with the pip command when azure-ai-ml is not installed."""
    try:
        import azure.ai.ml  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"azure-ai-ml is not installed: {_INSTALL}") from exc


def _model(raw: Any) -> RegisteredModel:
    context = getattr(raw, "creation_context", None)
    created: Any = getattr(context, "created_at", None)
    return RegisteredModel(
        name=str(raw.name),
        version=int(raw.version),
        id=str(getattr(raw, "id", "") or ""),
        tags=dict(getattr(raw, "tags", None) or {}),
        created=created.isoformat() if hasattr(created, "isoformat") else str(created or ""),
        raw=raw,
    )


def conda_file(inference_config: Any) -> dict[str, Any]:
    """The conda specification of an SDK v1 InferenceConfig's environment (python + pip list)."""
    deps = inference_config.environment.python.conda_dependencies
    conda = [p for p in deps.conda_packages if not p.startswith("pip")]
    return {
        "name": str(inference_config.environment.name),
        "channels": ["conda-forge"],
        "dependencies": [*conda, "pip", {"pip": list(deps.pip_packages)}],
    }


class AzureMLClientWorkspace:
    """``MLWorkspace`` over an azure-ai-ml ``MLClient``; every call under a deadline."""

    def __init__(
        self, client: Any, *, timeout_s: float = 60, env: Mapping[str, str] = os.environ
    ) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self._secrets = secrets_from(env)

    @classmethod
    def connect(
        cls, *, env: Mapping[str, str] = os.environ, timeout_s: float = 60
    ) -> AzureMLClientWorkspace:
        """An MLClient for ``AZURE_SUBSCRIPTION_ID``/``AZURE_RESOURCE_GROUP``/
        ``AZUREML_WORKSPACE_NAME`` with the service principal variables (never interactive)."""
        require_azure_ai_ml()
        from azure.ai.ml import MLClient
        from azure.identity import (
            AzureCliCredential,
            ClientSecretCredential,
            ManagedIdentityCredential,
        )

        missing = [k for k in WORKSPACE_VARS if not env.get(k)]
        if missing:
            raise AzureError(f"Azure ML (SDK v2): set {', '.join(missing)}")
        credential: Any
        if all(env.get(k) for k in SP_VARS):
            credential = ClientSecretCredential(
                env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"]
            )
        elif env.get("AZUREML_AUTH", "").lower() == "msi":
            credential = ManagedIdentityCredential()
        elif env.get("AZUREML_AUTH", "").lower() == "cli":
            credential = AzureCliCredential()
        else:
            raise AzureError(
                f"Azure ML (SDK v2): no credentials: set {', '.join(SP_VARS)}, or AZUREML_AUTH="
                "msi|cli; interactive login is never used"
            )
        client = MLClient(
            credential,
            subscription_id=env["AZURE_SUBSCRIPTION_ID"],
            resource_group_name=env["AZURE_RESOURCE_GROUP"],
            workspace_name=env["AZUREML_WORKSPACE_NAME"],
        )
        return cls(client, timeout_s=timeout_s, env=env)

    @property
    def name(self) -> str:
        return str(getattr(self.client, "workspace_name", "") or "")

    def _call(self, fn: Callable[[], T], what: str, timeout_s: float | None = None) -> T:
        return call_with_timeout(
            fn,
            timeout_s=self.timeout_s if timeout_s is None else timeout_s,
            what=what,
            secrets=self._secrets,
        )

    def register_model(
        self,
        name: str,
        path: str | os.PathLike[str],
        version_tags: dict[str, str] | None = None,
        properties: dict[str, str] | None = None,
    ) -> RegisteredModel:
        from azure.ai.ml.entities import Model

        body = Model(
            name=name,
            path=str(path),
            type="custom_model",
            tags=dict(version_tags or {}),
            properties=dict(properties or {}),
        )
        raw = self._call(
            lambda: self.client.models.create_or_update(body),
            f"register model {name} from {path}",
            timeout_s=max(self.timeout_s, 600),
        )
        return _model(raw)

    def get_model(self, name: str, version: int | None = None) -> RegisteredModel:
        if version is None:
            raw = self._call(
                lambda: self.client.models.get(name, label="latest"), f"get model {name}"
            )
        else:
            raw = self._call(
                lambda: self.client.models.get(name, version=str(version)),
                f"get model {name}:{version}",
            )
        return _model(raw)

    def list_models(self, name: str | None = None) -> list[RegisteredModel]:
        models = self.client.models

        def versions(model_name: str) -> list[Any]:
            return list(models.list(name=model_name))

        if name:
            names = [name]
        else:
            containers: list[Any] = self._call(lambda: list(models.list()), "list models")
            names = [str(c.name) for c in containers]
        out: list[RegisteredModel] = []
        for n in names:
            raws: list[Any] = self._call(partial(versions, n), f"list models {n}")
            out += [_model(r) for r in raws]
        return sorted(out, key=lambda m: (m.name, m.version))

    def package(
        self,
        model: Any,
        inference_config: Any,
        image_name: str,
        image_label: str,
        timeout_s: float = 1800,
    ) -> str:
        """Model packaging (SDK v2): a base environment with the inference stack, score.py as the
        server's code; returns the image reference Azure ML reports."""
        from azure.ai.ml.entities import (
            AzureMLOnlineInferencingServer,
            BaseEnvironment,
            CodeConfiguration,
            Environment,
            ModelPackage,
        )

        name, version = str(model.name), str(getattr(model, "version", ""))
        az_id = str((getattr(model, "tags", None) or {}).get("azureml.id", ""))
        if ":" in az_id:  # a workbook ModelVersion names its Azure version in tags["azureml.id"]
            version = az_id.rsplit(":", 1)[-1]
        if not version.isdigit():
            raise ConfigError(
                f"model {name}", "version", f"needs an Azure ML version, got {version!r}"
            )
        base = Environment(
            name=f"{image_name}-base",
            image=BASE_IMAGE,
            conda_file=conda_file(inference_config),
        )
        env = self._call(
            lambda: self.client.environments.create_or_update(base),
            f"register environment {base.name}",
        )
        request = ModelPackage(
            # SDK v2 names the packaged environment, not the image tag: Azure ML builds the image
            # and reports it by digest; the workbook's label travels as a tag.
            target_environment=image_name,
            tags={"workbook.image_label": image_label},
            inferencing_server=AzureMLOnlineInferencingServer(
                code_configuration=CodeConfiguration(
                    code=str(inference_config.source_directory),
                    scoring_script=str(inference_config.entry_script),
                )
            ),
            base_environment_source=BaseEnvironment(
                type="EnvironmentAsset", resource_id=f"azureml:{env.name}:{env.version}"
            ),
            environment_variables=dict(inference_config.environment.environment_variables or {}),
        )
        built = self._call(
            lambda: self.client.models.package(name, version, request),
            f"package image {image_name}:{image_label}",
            timeout_s=timeout_s,
        )
        image = str(getattr(built, "image", "") or "")
        if not image:
            raise AzureError(
                f"Azure ML: package {image_name}:{image_label} of model {name}:{version} "
                "finished without an image reference"
            )
        return image

    def container_registry(self) -> str:
        """The login server of the workspace's registry (from its ARM resource)."""
        ws = self._call(lambda: self.client.workspaces.get(self.name), "read workspace")
        arm_id = str(getattr(ws, "container_registry", "") or "")
        if not arm_id:
            raise AzureError(
                f"Azure ML: workspace {self.name} has no container registry yet; Azure ML creates "
                "one on the first image build"
            )
        resource = self._call(
            lambda: _read_registry(self.client, arm_id), "read container registry"
        )
        return registry_login_server(arm_id, resource, "", workspace=self.name)


def _read_registry(client: Any, arm_id: str) -> dict[str, Any]:
    """The registry's ARM resource, read with the client's own credential at the client's
    Resource Manager endpoint (``MLClient._base_url``, the cloud's own)."""
    import requests

    from workbook.azure.workspace import ACR_API_VERSION

    endpoint = str(getattr(client, "_base_url", "") or "https://management.azure.com").rstrip("/")
    token = client._credential.get_token(f"{endpoint}/.default").token
    response = requests.get(
        f"{endpoint}{arm_id}",
        params={"api-version": ACR_API_VERSION},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    response.raise_for_status()
    return dict(response.json())


def connect_ml_workspace(
    *, env: Mapping[str, str] = os.environ, timeout_s: float = 60
) -> MLWorkspace:
    """The workspace through SDK v1 (azureml-core, default) or v2 (azure-ai-ml), by
    ``WORKBOOK_AZUREML_SDK``."""
    sdk = env.get(SDK_VARIABLE, "v1").strip().lower() or "v1"
    if sdk == "v1":
        return AzureMLWorkspace.connect(env=env, timeout_s=timeout_s)
    if sdk == "v2":
        return AzureMLClientWorkspace.connect(env=env, timeout_s=timeout_s)
    raise ConfigError(SDK_VARIABLE, "value", f"must be v1 or v2, got {sdk!r}")
