"""The Azure ML workspace: connect without a prompt, call the service under a deadline.

Everything here uses azureml-core (SDK v1), which Microsoft deprecated on 31 March 2025 and whose
support ends on **30 June 2026**. Callers hold the ``MLWorkspace`` protocol only, so an
azure-ai-ml (SDK v2) implementation can replace ``AzureMLWorkspace`` without touching them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from workbook.deadline import DeadlineExceeded, call_with_deadline
from workbook.errors import AzureError, MissingDependencyError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Variables that name the workspace when there is no config.json.
WORKSPACE_VARS = ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME")
#: Service principal variables; the only credentials this module reads by default.
SP_VARS = ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET")
#: Variables whose values must never appear in an error message.
SECRET_VARS = ("AZURE_CLIENT_SECRET", "ACR_PASSWORD")

_INSTALL = "pip install 'azureml-core==1.61.0.post4' (or: pip install -r requirements.txt)"
_CONFIG_PLACES = (".azureml/config.json", "aml_config/config.json", "config.json")


def require_azureml() -> None:
    """Import azureml-core or fail with the command that installs it."""
    try:
        import azureml.core  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"azureml-core is needed for the Azure ML steps but is not installed: {_INSTALL}"
        ) from exc


# ---- secrets and error translation ------------------------------------------------------------

_URL_QUERY = re.compile(r"(https?://[^\s?\"'<>]+)\?[^\s\"'<>]*")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the given secret values and without URL query strings (SAS tokens)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _URL_QUERY.sub(r"\1?<redacted>", text)


def secrets_from(env: Mapping[str, str]) -> list[str]:
    """The secret values present in ``env`` (to be kept out of messages)."""
    return [env[k] for k in SECRET_VARS if env.get(k)]


def _detail(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = " ".join(str(text).split())
    return text if len(text) <= 600 else text[:600] + " ..."


def translate_error(
    exc: BaseException, what: str, secrets: Iterable[str] = ()
) -> AzureError | None:
    """The ``AzureError`` (with what to do) for an azureml/requests failure, else None."""
    import requests

    secrets = list(secrets)
    try:
        from azureml.exceptions import (
            AuthenticationException,
            AzureMLException,
            UserErrorException,
            WebserviceException,
        )
    except ImportError:  # pragma: no cover - without azureml only requests errors can occur
        AuthenticationException = UserErrorException = WebserviceException = ()  # type: ignore[assignment,misc]
        AzureMLException = ()  # type: ignore[assignment,misc]
    detail = redact(_detail(exc), secrets)
    if isinstance(exc, AuthenticationException):
        fix = (
            f"check {', '.join(SP_VARS)} (a service principal with a role such as 'AzureML Data "
            "Scientist' on the workspace) and that login.microsoftonline.com is reachable"
        )
        return AzureError(f"Azure ML: {what}: authentication failed: {detail}; {fix}")
    if isinstance(exc, UserErrorException):
        fix = (
            "download config.json from https://ml.azure.com (workspace name, top right) into the "
            f"project, pass its path, or set {', '.join(WORKSPACE_VARS)}"
            if "config" in detail.lower()
            else "check the arguments and the workspace name"
        )
        return AzureError(f"Azure ML: {what}: {detail}; {fix}")
    if isinstance(exc, requests.exceptions.RequestException):
        return AzureError(
            f"Azure ML: {what}: the service could not be reached ({type(exc).__name__}: {detail}); "
            "check network access to *.azure.com and login.microsoftonline.com (DNS, proxy via "
            "HTTPS_PROXY, firewall)"
        )
    if isinstance(exc, WebserviceException):
        return AzureError(
            f"Azure ML: {what}: the service refused the request: {detail}; see the workspace's "
            "activity log at https://ml.azure.com"
        )
    if isinstance(exc, AzureMLException):
        return AzureError(f"Azure ML: {what}: {detail}")
    return None


def call_with_timeout(
    fn: Callable[[], T], *, timeout_s: float, what: str, secrets: Iterable[str] = ()
) -> T:
    """Run one service call in a worker thread; past ``timeout_s`` raise ``AzureError``.

    The worker is a daemon thread: a call that never returns cannot keep the process alive.
    """
    try:
        return call_with_deadline(fn, timeout_s, f"azureml: {what}")
    except DeadlineExceeded:
        raise AzureError(
            f"Azure ML: {what} did not finish within {timeout_s:g}s; check network access to "
            "Azure (DNS, proxy, firewall) or raise the timeout (the call goes on in the background)"
        ) from None
    except Exception as exc:
        secrets = list(secrets)
        translated = translate_error(exc, what, secrets)
        if translated is None:
            raise
        leaks = any(s and s in str(exc) for s in secrets)
        raise translated from (None if leaks else exc)


# ---- connecting -------------------------------------------------------------------------------


def find_config(start: Path | None = None) -> Path | None:
    """The workspace config.json Azure ML would find from ``start`` (cwd) upwards, or None."""
    here = (start or Path.cwd()).resolve()
    for parent in [here, *here.parents]:
        for place in _CONFIG_PLACES:
            if (parent / place).is_file():
                return parent / place
    return None


def _authentication(env: Mapping[str, str]) -> Any:
    """Service principal from the environment (or MSI / CLI when asked); never interactive."""
    from azureml.core.authentication import (
        AzureCliAuthentication,
        MsiAuthentication,
        ServicePrincipalAuthentication,
    )

    present = [k for k in SP_VARS if env.get(k)]
    if len(present) == len(SP_VARS):
        return ServicePrincipalAuthentication(
            tenant_id=env["AZURE_TENANT_ID"],
            service_principal_id=env["AZURE_CLIENT_ID"],
            service_principal_password=env["AZURE_CLIENT_SECRET"],
        )
    mode = env.get("AZUREML_AUTH", "").strip().lower()
    if mode == "msi":
        return MsiAuthentication()
    if mode == "cli":
        return AzureCliAuthentication()
    missing = [k for k in SP_VARS if k not in present]
    raise AzureError(
        f"Azure ML: no credentials: set {', '.join(missing)} (a service principal), or "
        "AZUREML_AUTH=msi on Azure compute with a managed identity, or AZUREML_AUTH=cli after "
        "`az login`; interactive login is never used"
    )


def connect_workspace(
    config_path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    timeout_s: float = 60,
) -> Any:
    """The azureml ``Workspace``: from ``config_path``, the ``AZURE_*`` variables or config.json.

    Credentials come from the service principal variables (``AZURE_TENANT_ID``,
    ``AZURE_CLIENT_ID``, ``AZURE_CLIENT_SECRET``); a login prompt never appears.
    """
    require_azureml()
    from azureml.core import Workspace

    named = all(env.get(k) for k in WORKSPACE_VARS)
    config = Path(config_path) if config_path is not None else None
    if config is None and not named:
        config = find_config()
    has_sp = all(env.get(k) for k in SP_VARS) or env.get("AZUREML_AUTH")
    if config is None and not named:
        need = [k for k in WORKSPACE_VARS if not env.get(k)]
        if not has_sp:
            need += [k for k in SP_VARS if not env.get(k)]
        raise AzureError(
            "Azure ML: no workspace configured: put the workspace's config.json (from "
            f"https://ml.azure.com) in the project or set {', '.join(need)}"
        )
    secrets = secrets_from(env)
    try:
        auth = _authentication(env)
    except AzureError:
        raise
    except Exception as exc:  # e.g. AZUREML_AUTH=cli without azure-cli installed
        translated = translate_error(exc, "authentication", secrets)
        if translated is None:
            raise
        raise translated from None
    if config is not None:
        return call_with_timeout(
            lambda: Workspace.from_config(path=str(config), auth=auth),
            timeout_s=timeout_s,
            what=f"connect to the workspace in {config}",
            secrets=secrets,
        )
    name = env["AZUREML_WORKSPACE_NAME"]
    return call_with_timeout(
        lambda: Workspace(
            subscription_id=env["AZURE_SUBSCRIPTION_ID"],
            resource_group=env["AZURE_RESOURCE_GROUP"],
            workspace_name=name,
            auth=auth,
        ),
        timeout_s=timeout_s,
        what=f"connect to workspace {env['AZURE_RESOURCE_GROUP']}/{name}",
        secrets=secrets,
    )


# ---- the workspace interface ------------------------------------------------------------------


@dataclass
class RegisteredModel:
    """One version of a model in the workspace registry, SDK-independent."""

    name: str
    version: int
    id: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    created: str = ""
    url: str = ""
    properties: dict[str, str] = field(default_factory=dict)
    raw: Any = field(default=None, repr=False, compare=False)


class MLWorkspace(Protocol):
    """What the workbook needs from an Azure ML workspace (SDK v1 today, v2 tomorrow)."""

    def register_model(
        self,
        name: str,
        path: str | os.PathLike[str],
        version_tags: dict[str, str] | None = None,
        properties: dict[str, str] | None = None,
    ) -> RegisteredModel:
        """Upload ``path`` as the next version of model ``name`` (``properties``: fixed facts)."""

    def get_model(self, name: str, version: int | None = None) -> RegisteredModel:
        """One version (the latest by default)."""

    def list_models(self, name: str | None = None) -> list[RegisteredModel]:
        """Every version, of one model or of all."""

    def package(
        self,
        model: Any,
        inference_config: Any,
        image_name: str,
        image_label: str,
        timeout_s: float = 1800,
    ) -> str:
        """Build the scoring image in the workspace registry; return its reference."""

    def container_registry(self) -> str:
        """The login server of the workspace's container registry, e.g. ``x.azurecr.io``."""


def _model(raw: Any) -> RegisteredModel:
    created: Any = getattr(raw, "created_time", None)
    return RegisteredModel(
        name=str(raw.name),
        version=int(raw.version),
        id=str(getattr(raw, "id", "") or ""),
        tags=dict(getattr(raw, "tags", None) or {}),
        created=created.isoformat() if hasattr(created, "isoformat") else str(created or ""),
        url=str(getattr(raw, "url", "") or ""),
        properties=dict(getattr(raw, "properties", None) or {}),
        raw=raw,
    )


class AzureMLWorkspace:
    """``MLWorkspace`` over azureml-core (SDK v1, end of support 30 June 2026).

    Every service call runs under a deadline and fails as ``AzureError`` saying what to do.
    """

    def __init__(
        self, workspace: Any, *, timeout_s: float = 60, env: Mapping[str, str] = os.environ
    ) -> None:
        self.workspace = workspace
        self.timeout_s = timeout_s
        self._secrets = secrets_from(env)

    @classmethod
    def connect(
        cls,
        config_path: str | os.PathLike[str] | None = None,
        *,
        env: Mapping[str, str] = os.environ,
        timeout_s: float = 60,
    ) -> AzureMLWorkspace:
        """``connect_workspace`` wrapped in this interface."""
        ws = connect_workspace(config_path, env=env, timeout_s=timeout_s)
        return cls(ws, timeout_s=timeout_s, env=env)

    @property
    def name(self) -> str:
        return str(getattr(self.workspace, "name", ""))

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
        require_azureml()
        from azureml.core import Model

        raw = self._call(
            lambda: Model.register(
                workspace=self.workspace,
                model_path=str(path),
                model_name=name,
                tags=dict(version_tags or {}),
                properties=dict(properties or {}),
            ),
            f"register model {name} from {path}",
            timeout_s=max(self.timeout_s, 600),
        )
        return _model(raw)

    def get_model(self, name: str, version: int | None = None) -> RegisteredModel:
        require_azureml()
        from azureml.core import Model

        label = f"{name}:{version}" if version is not None else f"{name} (latest)"
        raw = self._call(
            lambda: Model(self.workspace, name=name, version=version), f"get model {label}"
        )
        return _model(raw)

    def list_models(self, name: str | None = None) -> list[RegisteredModel]:
        require_azureml()
        from azureml.core import Model

        raws = self._call(
            lambda: Model.list(self.workspace, name=name), f"list models {name or ''}".strip()
        )
        return sorted((_model(r) for r in raws), key=lambda m: (m.name, m.version))

    def _model_handle(self, model: Any) -> Any:
        raw = getattr(model, "raw", None)
        if raw is not None:
            return raw
        from azureml.core import Model

        if hasattr(model, "name") and hasattr(model, "version"):
            # A ModelVersion from AzureModelRegistry names its Azure version in tags["azureml.id"].
            az_id = str((getattr(model, "tags", None) or {}).get("azureml.id", ""))
            digits = az_id.rsplit(":", 1)[-1] if ":" in az_id else str(model.version).lstrip("v")
            if not digits.isdigit():
                raise AzureError(
                    f"Azure ML: model {model.name}:{model.version} has no Azure ML version; "
                    "register it through AzureModelRegistry first"
                )
            version = int(digits)
            return self._call(
                lambda: Model(self.workspace, name=model.name, version=version),
                f"get model {model.name}:{version}",
            )
        return model  # an azureml Model already

    def package(
        self,
        model: Any,
        inference_config: Any,
        image_name: str,
        image_label: str,
        timeout_s: float = 1800,
    ) -> str:
        """``Model.package`` into the workspace registry, waited for; the image reference.

        On failure the message carries where the build log is and its last lines.
        """
        require_azureml()
        from azureml.core import Model

        handle = self._model_handle(model)
        ref = f"{image_name}:{image_label}"
        pkg = self._call(
            lambda: Model.package(
                self.workspace,
                [handle],
                inference_config,
                generate_dockerfile=False,
                image_name=image_name,
                image_label=image_label,
            ),
            f"package image {ref}",
        )
        try:
            self._call(
                lambda: pkg.wait_for_creation(show_output=False),
                f"build of image {ref}",
                timeout_s=timeout_s,
            )
        except AzureError as exc:
            raise AzureError(f"{exc}\n{self._package_logs(pkg)}") from exc.__cause__
        location = str(getattr(pkg, "location", "") or "")
        return location or f"{self.container_registry()}/{ref}"

    def _package_logs(self, pkg: Any, lines: int = 40) -> str:
        """Where the package build log is, and its tail (best effort, never raises)."""
        uri = redact(str(getattr(pkg, "package_build_log_uri", "") or "unknown"))
        out = f"build log: {uri}"
        try:
            text = call_with_timeout(
                lambda: pkg.get_logs(), timeout_s=min(self.timeout_s, 30), what="read build log"
            )
        except Exception as exc:
            return f"{out} (could not read it: {type(exc).__name__})"
        tail = "\n".join(str(text or "").splitlines()[-lines:])
        return f"{out}\n--- last {lines} lines ---\n{redact(tail, self._secrets)}"

    def container_registry(self) -> str:
        """The workspace registry's login server, as Azure reports it (no assumed suffix).

        The workspace names its registry by ARM id; the registry's own ARM resource holds its
        ``loginServer`` (``x.azurecr.io``, ``x.azurecr.cn``, ``x.azurecr.us``...). Without read
        access to it, the workspace's cloud gives the suffix (azureml-core's cloud table,
        ``azureml/_vendor/azure_cli_core/cloud.py``: ``acr_login_server_endpoint``).
        """
        details = self._call(self.workspace.get_details, "read workspace details")
        arm_id = str(details.get("containerRegistry") or "")
        if not arm_id:
            raise AzureError(
                f"Azure ML: workspace {self.name} has no container registry yet; Azure ML creates "
                "one on the first image build (run package_image once), or attach one in the portal"
            )
        auth = getattr(self.workspace, "_auth", None)
        resource: Mapping[str, Any] | None = None
        if auth is not None:
            try:
                resource = self._call(lambda: _read_arm(auth, arm_id), "read container registry")
            except (AzureError, OSError, ValueError) as exc:  # requests' errors are OSErrors
                log.info("container registry %s: %s; using the cloud's suffix", arm_id, exc)
        return registry_login_server(arm_id, resource, _acr_suffix(auth), workspace=self.name)


#: ARM API version of Microsoft.ContainerRegistry/registries (GA).
ACR_API_VERSION = "2023-07-01"


def registry_login_server(
    arm_id: str, resource: Mapping[str, Any] | None, acr_suffix: str, *, workspace: str = ""
) -> str:
    """The login server from the registry's ARM resource, else ``<name><cloud suffix>``."""
    server = str(((resource or {}).get("properties") or {}).get("loginServer") or "")
    if server:
        return server.lower()
    name = arm_id.rstrip("/").rsplit("/", 1)[-1].lower()
    if acr_suffix:
        return f"{name}.{acr_suffix.lstrip('.')}"
    raise AzureError(
        f"Azure ML: workspace {workspace}: the login server of registry {name} is unknown (no "
        "read access to it, and the workspace's cloud names no registry suffix); grant Reader "
        "on the registry"
    )


def _read_arm(auth: Any, resource_id: str) -> dict[str, Any]:
    import requests

    endpoint = str(auth._get_arm_end_point()).rstrip("/")
    response = requests.get(
        f"{endpoint}{resource_id}",
        params={"api-version": ACR_API_VERSION},
        headers=auth.get_authentication_header(),
        timeout=30,
    )
    response.raise_for_status()
    return dict(response.json())


def _acr_suffix(auth: Any) -> str:
    """The cloud's ACR login suffix (``.azurecr.io`` on AzureCloud), or ""."""
    try:
        suffixes = auth._get_cloud_type().suffixes
        return str(getattr(suffixes, "acr_login_server_endpoint", "") or "")
    except Exception:  # no auth object, or a cloud without suffixes
        return ""
