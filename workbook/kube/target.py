"""The ``k8s`` target: a Helm release on a cluster with Istio, behind the seam of ``workbook.seam``.

The release backend is Helm (helm-python-sdk): every change is a new revision, validated (values
schema, rendered manifests) before any cluster call, and returns once every Deployment has rolled
out. The traffic view reads what the ingress routes by; the object store reads and applies Istio
objects through the Kubernetes API. The canary rules themselves live in ``workbook.canary``.

Environment: ``KUBECONFIG`` (else ``~/.kube/config``), ``WORKBOOK_KUBE_CONTEXT``,
``WORKBOOK_GATEWAY_URL`` (overrides the discovered gateway address), ``WORKBOOK_GATEWAY_SERVICE``
(``namespace/name`` of the ingress gateway Service, default ``istio-system/istio-ingressgateway``;
the AKS Istio add-on uses ``aks-istio-ingress/aks-istio-ingressgateway-external``),
``ACR_USERNAME``/``ACR_PASSWORD`` (image pull secret).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workbook import chart
from workbook.errors import AzureError, ConfigError
from workbook.kube import client, proxy
from workbook.kube.helm import HelmOps, HelmRelease, kubeconfig_path
from workbook.kube.istio_flavour import FlavourOverrides, IstioFlavour, resolve_flavour
from workbook.seam import Release, VersionStatus
from workbook.served import WEIGHTED_ROUTE
from workbook.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ReleaseObjects:
    """The objects of a rendered release that the k8s target watches."""

    deployments: dict[str, str] = field(default_factory=dict)  # track -> Deployment name
    virtual_service: str = ""
    manifests: list[dict[str, Any]] = field(default_factory=list)


def release_objects(docs: list[dict[str, Any]]) -> ReleaseObjects:
    """Deployments by ``track`` label and the VirtualService of rendered manifests."""
    out = ReleaseObjects(manifests=docs)
    for doc in docs:
        kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name", "")
        if kind == "Deployment":
            labels = ((doc.get("spec") or {}).get("template") or {}).get("metadata", {}).get(
                "labels"
            ) or {}
            out.deployments[str(labels.get("track") or name)] = name
        elif kind == "VirtualService" and not out.virtual_service:
            out.virtual_service = name
    return out


def parse_manifest(text: str) -> list[dict[str, Any]]:
    """A multi-document manifest as dicts (empty documents dropped)."""
    return [d for d in yaml.safe_load_all(text or "") if isinstance(d, dict)]


class KubeAPI:
    """The ``kubernetes`` ApiClient for the kubeconfig and context (created on first use)."""

    def __init__(self, settings: Settings, env: Mapping[str, str], api: Any = None) -> None:
        self.settings, self.env, self._api = settings, env, api

    def get(self) -> Any:
        if self._api is None:
            self._api = self._new_api()
        return self._api

    def _new_api(self) -> Any:
        from kubernetes import client as k8s
        from kubernetes import config as kconfig

        raw = self.env.get("KUBECONFIG") or str(
            Path(self.env.get("HOME", str(Path.home()))) / ".kube" / "config"
        )
        files = [p for p in raw.split(os.pathsep) if p and Path(p).expanduser().is_file()]
        try:
            if files:
                return kconfig.new_client_from_config(
                    config_file=os.pathsep.join(files), context=self.settings.kube_context
                )
            if self.env.get("KUBERNETES_SERVICE_HOST"):
                configuration = k8s.Configuration()
                kconfig.load_incluster_config(client_configuration=configuration)
                return k8s.ApiClient(configuration)
        except kconfig.ConfigException as exc:
            raise AzureError(f"kubeconfig {raw}: {exc}") from None
        raise AzureError(
            f"no kubeconfig at {raw}: set KUBECONFIG, or run "
            "`az aks get-credentials --resource-group <rg> --name <cluster>`"
        )


class HelmReleases:
    """Release backend: Helm revisions; each returns once every Deployment has rolled out."""

    def __init__(
        self,
        settings: Settings,
        helm: HelmOps,
        kube: KubeAPI,
        *,
        rollout_timeout_s: float,
        poll_s: float,
    ) -> None:
        self.settings, self.helm, self.kube = settings, helm, kube
        self.rollout_timeout_s, self.poll_s = rollout_timeout_s, poll_s

    @property
    def name(self) -> str:
        return f"Helm release {self.settings.namespace}/{self.settings.release}"

    def render(self, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Validate values (schema) and the manifests they render; the manifests.

        Runs before any cluster call, so bad input never reaches Helm.
        """
        from workbook.manifests import manifest_warnings, validate_manifests

        chart.validate_values(values, self.settings.chart_dir)
        docs = chart.render(
            dict(values),
            release=self.settings.release,
            namespace=self.settings.namespace,
            chart_dir=self.settings.chart_dir,
        )
        problems = validate_manifests(docs)
        if problems:
            raise ConfigError(self.name, "manifests", "are invalid: " + "; ".join(problems))
        for warning in manifest_warnings(docs):
            log.warning("%s", warning)
        return docs

    def _release(
        self, summary: Mapping[str, Any], values: Mapping[str, Any], description: str
    ) -> Release:
        return Release(
            revision=int(summary.get("revision") or 0),
            status=str(summary.get("status") or "deployed"),
            description=str(summary.get("description") or description),
            values=dict(values),
            updated=str(summary.get("deployed_at") or summary.get("updated") or ""),
            manifest=str(summary.get("manifest") or ""),
        )

    def wait_rolled_out(self, docs: list[dict[str, Any]]) -> None:
        client.wait_for_rollout(
            self.kube.get(),
            self.settings.namespace,
            list(release_objects(docs).deployments.values()),
            timeout_s=self.rollout_timeout_s,
            interval_s=self.poll_s,
        )

    def deployed(self) -> Release | None:
        """The release's latest revision (Helm serves it even when its rollout failed)."""
        summary = self.helm.status()
        return None if summary is None else self._release(summary, self.helm.get_values(), "")

    def upgrade(
        self, values: dict[str, Any], description: str, *, expect_revision: int | None = None
    ) -> Release:
        docs = self.render(values)
        summary = self.helm.status()
        if expect_revision is not None:
            deployed = int((summary or {}).get("revision") or 0)
            if deployed != expect_revision:
                from workbook.errors import ConflictError

                raise ConflictError(
                    f"{self.name}: revision {deployed} is deployed, not {expect_revision}; another "
                    "run changed it meanwhile: look at `workbook history` and try again"
                )
        if summary is None:
            result = self.helm.install(values, description=description)
        else:
            result = self.helm.upgrade(values, description=description)
        self.wait_rolled_out(docs)
        log.info("%s: revision %s: %s", self.name, result.get("revision"), description)
        return self._release(result, values, description)

    def rollback(self, revision: int) -> Release:
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
            raise ConfigError(
                "rollback", "revision", f"must be a positive integer, got {revision!r}"
            )
        if self.helm.status() is None:
            raise AzureError(f"{self.name}: not installed; nothing to roll back")
        self.helm.rollback(revision)
        summary = self.helm.status() or {}
        values = self.helm.get_values()
        docs = parse_manifest(str(summary.get("manifest") or "")) or self.render(values)
        self.wait_rolled_out(docs)
        return self._release(summary, values, f"rollback to {revision}")

    def history(self) -> list[Release]:
        out = []
        for row in self.helm.history():
            revision = int(row.get("revision") or 0)
            try:
                values = self.helm.get_values(revision)
            except AzureError:
                values = {}
            out.append(self._release({**row, "manifest": ""}, values, ""))
        return out

    def uninstall(self) -> None:
        """``helm uninstall``; the namespace and the pull secret stay."""
        self.helm.uninstall(keep_history=False)

    def manifests(self) -> list[dict[str, Any]]:
        summary = self.helm.status()
        if summary is None:
            raise AzureError(f"{self.name}: not installed; run `workbook up --target k8s`")
        return parse_manifest(str(summary.get("manifest") or "")) or self.render(
            self.helm.get_values()
        )

    def readiness(self) -> list[VersionStatus]:
        docs = self.manifests()
        objects = release_objects(docs)
        by_name = {(d.get("metadata") or {}).get("name"): d for d in docs}
        out = []
        for track, name in objects.deployments.items():
            live = client.read_deployment(self.kube.get(), self.settings.namespace, name)
            info = client.deployment_summary(live or by_name.get(name) or {})
            out.append(
                VersionStatus(
                    track=track,
                    version=info["version"],
                    image=info["image"],
                    replicas=info["replicas"],
                    ready=info["ready"] if live else 0,
                )
            )
        return out


class IngressTraffic:
    """Traffic view of the Istio ingress gateway: what its pods' Envoys really serve."""

    def __init__(
        self,
        settings: Settings,
        env: Mapping[str, str],
        kube: KubeAPI,
        releases: HelmReleases,
        flavour: Callable[[], IstioFlavour],
        fetch: proxy.Fetch | None = None,
    ) -> None:
        self.settings, self.env, self.kube, self.releases = settings, env, kube, releases
        self.flavour, self.fetch = flavour, fetch

    def gateway_url(self) -> str:
        """``WORKBOOK_GATEWAY_URL``, else the ingress gateway's LoadBalancer address, else ""."""
        explicit = self.env.get("WORKBOOK_GATEWAY_URL", "").strip()
        if explicit:
            return explicit.rstrip("/")
        f = self.flavour()
        return client.gateway_address(
            self.kube.get(), name=f.gateway_service, namespace=f.gateway_namespace
        )

    def host(self) -> str:
        """The Host header callers from outside send (the VirtualService's host; "" for any)."""
        return chart.request_host(self.releases.manifests())

    def served_weights(self) -> dict[str, int]:
        """Track → percent the ingress gateway's pods serve on the weighted route. When the pods
        disagree (istiod is still pushing), the first pod that differs from the others."""
        vs_name = release_objects(self.releases.manifests()).virtual_service
        if not vs_name:
            return {}
        f = self.flavour()
        seen = proxy.served_by_pods(
            self.kube.get(),
            proxy.GatewayPods(f.gateway_namespace, dict(f.gateway_selector)),
            self.settings.namespace,
            vs_name,
            route=WEIGHTED_ROUTE,
            fetch=self.fetch,
        )
        if not seen:
            raise AzureError(
                f"no ready ingress gateway pod in {f.gateway_namespace} selected by "
                f"{dict(f.gateway_selector)}; check `kubectl -n {f.gateway_namespace} get pods`"
            )
        views = [w or {} for w in seen.values()]
        return next((w for w in views if w != views[0]), views[0])

    def counters(self) -> dict[str, dict[str, int]]:
        return {}

    def telemetry_mark(self) -> float:
        return time.time()

    def telemetry_since(self, mark: Any, versions: dict[str, str]) -> dict[str, Any]:
        """Istio's standard metrics for the release's Service from Prometheus
        (``settings.prometheus_url``), over the window since ``mark``, by destination version."""
        from workbook.telemetry import PrometheusClient

        now = time.time()
        host = f"{self.settings.app}.{self.settings.namespace}.svc.cluster.local"
        window = max(1, math.ceil(now - float(mark)))
        return PrometheusClient(self.settings.prometheus_url).istio_telemetry_blocking(
            host, window, at=now
        )


class KubeObjects:
    """Object store: Istio and workload objects in the release's namespace."""

    def __init__(self, settings: Settings, kube: KubeAPI) -> None:
        self.settings, self.kube = settings, kube

    def get(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        return client.get_objects(self.kube.get(), self.settings.namespace, kind, name)

    def apply(self, objects: list[dict[str, Any]]) -> list[str]:
        """Create or replace Istio objects (validated first) until the next release."""
        from workbook import istio
        from workbook.manifests import validate_manifests

        for i, obj in enumerate(objects):
            istio.check_object_shape(obj, i)
        ns = self.settings.namespace
        api = self.kube.get()
        live_rules = client.get_objects(api, ns, "DestinationRule")
        problems = validate_manifests(objects, known=live_rules, default_namespace=ns)
        if problems:
            raise ConfigError("apply", "objects", "are invalid: " + "; ".join(problems))
        return [client.apply_object(api, ns, obj) for obj in objects]


class KubernetesTarget:
    """The ``k8s`` target: Helm + Istio through the Kubernetes API."""

    name = "k8s"

    def __init__(
        self,
        settings: Settings,
        *,
        helm: HelmOps | None = None,
        api: Any = None,
        env: Mapping[str, str] | None = None,
        helm_timeout_s: int = 600,
        rollout_timeout_s: float = 600,
        poll_s: float = 2.0,
        fetch: proxy.Fetch | None = None,
    ) -> None:
        self.settings = settings
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.kube = KubeAPI(settings, self.env, api)
        self.helm: HelmOps = helm or HelmRelease(
            release=settings.release,
            namespace=settings.namespace,
            chart_dir=settings.chart_dir,
            kubeconfig=kubeconfig_path(self.env),
            kube_context=settings.kube_context,
            timeout_s=helm_timeout_s,
        )
        self.releases = HelmReleases(
            settings, self.helm, self.kube, rollout_timeout_s=rollout_timeout_s, poll_s=poll_s
        )
        self._flavour: IstioFlavour | None = None
        self.traffic = IngressTraffic(
            settings, self.env, self.kube, self.releases, self.flavour, fetch=fetch
        )
        self.objects = KubeObjects(settings, self.kube)

    def __repr__(self) -> str:
        return f"KubernetesTarget({self.settings.namespace}/{self.settings.release})"

    @property
    def api(self) -> Any:
        return self.kube.get()

    def flavour(self) -> IstioFlavour:
        """The cluster's Istio (add-on or upstream), detected once, with the settings' overrides."""
        if self._flavour is None:
            s = self.settings
            overrides = FlavourOverrides(
                flavour=s.istio_flavour,
                revision=s.istio_revision,
                gateway_service=s.gateway_service or self.env.get("WORKBOOK_GATEWAY_SERVICE", ""),
                addon_ingress=s.istio_addon_ingress,
            )
            self._flavour = resolve_flavour(self.api, overrides)
        return self._flavour

    def prepare(self, values: dict[str, Any]) -> dict[str, Any]:
        """Before the first revision: the cluster's Istio flavour goes into the values (ingress
        selector, injection label), the namespace is made ready without ever taking ownership of
        one the release did not create, and the image pull secret is created or reused."""
        self.releases.render(values)
        flavour = self.flavour()
        values = chart.merge_values(flavour.chart_values(), values)
        full = chart.merge_values(chart.default_values(self.settings.chart_dir), values)
        plan = client.prepare_namespace(
            self.api,
            self.settings.namespace,
            release=self.settings.release,
            injection=flavour.namespace_labels(),
            create=bool((full.get("namespace") or {}).get("create")),
        )
        for note in plan.notes:
            log.info("%s", note)
        values = chart.merge_values(values, plan.chart_values())
        secret = _pull_secret_name(full)
        if secret and self.env.get("ACR_USERNAME") and self.env.get("ACR_PASSWORD"):
            registry = str((full.get("image") or {}).get("registry") or self.settings.registry)
            self.ensure_pull_secret(registry, name=secret)
        self.releases.render(values)
        return values

    def abandon(self) -> None:
        """Helm keeps a failed release in its history; nothing else to undo."""

    def ensure_pull_secret(
        self,
        registry: str | None = None,
        username: str | None = None,
        password: str | None = None,
        *,
        name: str = "acr-pull",
    ) -> str:
        """Create or reuse the ``kubernetes.io/dockerconfigjson`` Secret the pods pull with.

        Credentials default to ``ACR_USERNAME``/``ACR_PASSWORD``. Returns ``created``,
        ``reused`` or ``updated``; the password is never logged.
        """
        registry = registry or self.settings.registry
        username = username or self.env.get("ACR_USERNAME", "")
        password = password or self.env.get("ACR_PASSWORD", "")
        if not username or not password:
            raise AzureError(
                f"Secret {self.settings.namespace}/{name}: set ACR_USERNAME and ACR_PASSWORD "
                f"(e.g. a service principal with AcrPull on {registry}), or attach the registry "
                "to the cluster with `az aks update --attach-acr` and skip the pull secret"
            )
        result = client.ensure_pull_secret(
            self.api, self.settings.namespace, name, registry, username, password
        )
        log.info("Secret %s/%s for %s: %s", self.settings.namespace, name, registry, result)
        return result


def _pull_secret_name(values: Mapping[str, Any]) -> str:
    """The first ``imagePullSecrets`` name, or "" when the chart values use none."""
    secrets = values.get("imagePullSecrets") or []
    first = secrets[0] if secrets and isinstance(secrets[0], Mapping) else {}
    return str(first.get("name") or "")
