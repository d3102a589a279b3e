"""``KubernetesCluster``: the Cluster verbs as a Helm release on a cluster with Istio.

Every weight change is ``helm upgrade`` with the last revision's values and a new
``canary.weight`` (so the release history is the audit trail), followed by VerifyWeight: the
VirtualService is read back until its weighted route says what was asked, and both Deployments
are waited for. Values are validated (schema, rendered manifests) before any cluster call.

Environment: ``KUBECONFIG`` (else ``~/.kube/config``), ``WORKBOOK_KUBE_CONTEXT``,
``WORKBOOK_GATEWAY_URL`` (overrides the discovered gateway address), ``WORKBOOK_GATEWAY_SERVICE``
(``namespace/name`` of the ingress gateway Service, default ``istio-system/istio-ingressgateway``;
the AKS Istio add-on uses ``aks-istio-ingress/aks-istio-ingressgateway-external``),
``ACR_USERNAME``/``ACR_PASSWORD`` (image pull secret).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workbook import chart
from workbook.cluster import Release, Status, VersionStatus
from workbook.errors import AzureError, ConfigError
from workbook.kube import client
from workbook.kube.helm import HelmOps, HelmRelease, kubeconfig_path
from workbook.settings import Settings, validate_weight

log = logging.getLogger(__name__)

#: Name of the VirtualService route that carries the stable/canary split (see docs/CONTRACTS.md).
WEIGHTED_ROUTE = "weighted"
DEFAULT_GATEWAY_SERVICE = "istio-system/istio-ingressgateway"


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


def expected_weights(values: Mapping[str, Any]) -> dict[str, int]:
    """The weighted route's subsets and weights that full chart values imply."""
    canary = values.get("canary") or {}
    if not canary.get("enabled", True):
        return {"stable": 100}
    w = validate_weight(canary.get("weight", 0), "values", "canary.weight")
    return {"stable": 100 - w, "canary": w}


def parse_manifest(text: str) -> list[dict[str, Any]]:
    """A multi-document manifest as dicts (empty documents dropped)."""
    return [d for d in yaml.safe_load_all(text or "") if isinstance(d, dict)]


class KubernetesCluster:
    """The ``k8s`` target (``Cluster`` protocol): Helm + Istio through the Kubernetes API."""

    def __init__(
        self,
        settings: Settings,
        *,
        helm: HelmOps | None = None,
        api: Any = None,
        env: Mapping[str, str] | None = None,
        helm_timeout_s: int = 600,
        verify_timeout_s: float = 120,
        rollout_timeout_s: float = 600,
        poll_s: float = 2.0,
    ) -> None:
        self.settings = settings
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.verify_timeout_s, self.rollout_timeout_s = verify_timeout_s, rollout_timeout_s
        self.poll_s = poll_s
        self._api = api
        self.helm: HelmOps = helm or HelmRelease(
            release=settings.release,
            namespace=settings.namespace,
            chart_dir=settings.chart_dir,
            kubeconfig=kubeconfig_path(self.env),
            kube_context=settings.kube_context,
            timeout_s=helm_timeout_s,
        )

    def __repr__(self) -> str:
        return f"KubernetesCluster({self.settings.namespace}/{self.settings.release})"

    @property
    def name(self) -> str:
        return f"Helm release {self.settings.namespace}/{self.settings.release}"

    # ---- plumbing -----------------------------------------------------------------------------

    @property
    def api(self) -> Any:
        """The ``kubernetes`` ApiClient for the kubeconfig and context (created on first use)."""
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

    def _values(self, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        return chart.merge_values(self.settings.chart_values(), dict(overrides or {}))

    def _full(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return chart.merge_values(chart.default_values(self.settings.chart_dir), values)

    def prepare(self, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Validate values (schema) and the manifests they render; the manifests.

        Runs before any cluster call, so bad input never reaches Helm.
        """
        from workbook.manifests import validate_manifests

        chart.validate_values(values, self.settings.chart_dir)
        docs = chart.render(
            values,
            release=self.settings.release,
            namespace=self.settings.namespace,
            chart_dir=self.settings.chart_dir,
        )
        problems = validate_manifests(docs)
        if problems:
            raise ConfigError(self.name, "manifests", "are invalid: " + "; ".join(problems))
        return docs

    def _deployed_values(self) -> dict[str, Any]:
        if self.helm.status() is None:
            raise AzureError(f"{self.name}: not installed; run `workbook up --target k8s` first")
        return self.helm.get_values()

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

    def verify(self, values: Mapping[str, Any], docs: list[dict[str, Any]]) -> dict[str, int]:
        """VerifyWeight, then rollouts: the VirtualService serves ``values``' weights and every
        Deployment of the release has rolled out. Returns the weights read back."""
        objects = release_objects(docs)
        full = self._full(values)
        ns = self.settings.namespace
        seen: dict[str, int] = {}
        if objects.virtual_service:
            seen = client.wait_for_weights(
                self.api,
                ns,
                objects.virtual_service,
                expected_weights(full),
                route=WEIGHTED_ROUTE,
                timeout_s=self.verify_timeout_s,
                interval_s=self.poll_s,
            )
        client.wait_for_rollout(
            self.api,
            ns,
            list(objects.deployments.values()),
            timeout_s=self.rollout_timeout_s,
            interval_s=self.poll_s,
        )
        return seen

    def _deploy(self, values: dict[str, Any], description: str, *, install: bool) -> Release:
        docs = self.prepare(values)
        if install:
            summary = self.helm.install(values, description=description)
        else:
            summary = self.helm.upgrade(values, description=description)
        self.verify(values, docs)
        log.info("%s: revision %s: %s", self.name, summary.get("revision"), description)
        return self._release(summary, values, description)

    # ---- Cluster verbs ------------------------------------------------------------------------

    def up(self, overrides: dict[str, Any] | None = None) -> Release:
        """Install (or upgrade to) settings + overrides; namespace and pull secret first."""
        values = self._values(overrides)
        docs = self.prepare(values)
        full = self._full(values)
        self.ensure_namespace(owned_by_chart=bool((full.get("namespace") or {}).get("create")))
        secret = _pull_secret_name(full)
        if secret and self.env.get("ACR_USERNAME") and self.env.get("ACR_PASSWORD"):
            registry = str((full.get("image") or {}).get("registry") or self.settings.registry)
            self.ensure_pull_secret(registry, name=secret)
        install = self.helm.status() is None
        summary = (
            self.helm.install(values, description="up")
            if install
            else self.helm.upgrade(values, description="up")
        )
        self.verify(values, docs)
        return self._release(summary, values, "up")

    def upgrade(self, overrides: dict[str, Any], description: str = "upgrade") -> Release:
        """A new revision from the deployed values plus these overrides."""
        values = chart.merge_values(self._deployed_values(), overrides)
        return self._deploy(values, description, install=False)

    def shift(self, canary_weight: int) -> Release:
        """``helm upgrade`` with the last values and ``canary.weight``; VerifyWeight; rollouts."""
        w = validate_weight(canary_weight)
        last = self._deployed_values()
        if w and not (self._full(last).get("canary") or {}).get("enabled", True):
            raise ConfigError(
                "canary", "enabled", "is false: there is no canary to send traffic to"
            )
        values = chart.merge_values(last, {"canary": {"weight": w}})
        return self._deploy(values, f"shift canary weight to {w}", install=False)

    def promote(self) -> Release:
        """The stable track takes the canary's version and image; the canary is retired."""
        last = self._deployed_values()
        canary = self._full(last).get("canary") or {}
        if not canary.get("enabled", True):
            raise ConfigError("canary", "enabled", "is false: there is no canary to promote")
        # 1: stable rolls to the canary's image while the canary keeps its traffic (the stable
        #    subset selects by track, so old and new stable pods both serve during the rollout)
        version = canary["version"]
        stable = {"version": version, "image": dict(canary["image"]), "env": canary.get("env", [])}
        values = chart.merge_values(last, {"stable": stable})
        self._deploy(values, f"promote {version}: stable runs the canary's image", install=False)
        # 2: only then is the canary retired and stable takes all traffic
        values = chart.merge_values(values, {"canary": {"enabled": False, "weight": 0}})
        return self._deploy(values, f"promote {version}: canary retired", install=False)

    def rollback(self, revision: int | None = None) -> Release:
        """``helm rollback`` (to the previous revision by default), then verify what it restored."""
        if revision is not None and (
            isinstance(revision, bool) or not isinstance(revision, int) or revision < 1
        ):
            raise ConfigError(
                "rollback", "revision", f"must be a positive integer, got {revision!r}"
            )
        if self.helm.status() is None:
            raise AzureError(f"{self.name}: not installed; nothing to roll back")
        self.helm.rollback(revision)
        summary = self.helm.status() or {}
        values = self.helm.get_values()
        docs = parse_manifest(str(summary.get("manifest") or "")) or self.prepare(values)
        self.verify(values, docs)
        target = f"revision {revision}" if revision else "the previous revision"
        return self._release(summary, values, f"rollback to {target}")

    def history(self) -> list[Release]:
        """Revisions, oldest first, each with its user-supplied values."""
        out = []
        for row in self.helm.history():
            revision = int(row.get("revision") or 0)
            try:
                values = self.helm.get_values(revision)
            except AzureError:
                values = {}
            out.append(self._release({**row, "manifest": ""}, values, ""))
        return out

    def status(self) -> Status:
        """Revision, gateway URL, and per track: image, ready pods, live weight."""
        from workbook.istio import route_weights

        summary = self.helm.status()
        if summary is None:
            raise AzureError(f"{self.name}: not installed; run `workbook up --target k8s`")
        docs = parse_manifest(str(summary.get("manifest") or ""))
        if not docs:
            docs = self.prepare(self.helm.get_values())
        objects = release_objects(docs)
        ns = self.settings.namespace
        weights: dict[str, int] = {}
        if objects.virtual_service:
            vs = client.read_custom(self.api, ns, "VirtualService", objects.virtual_service)
            if vs is not None:
                weights = dict(route_weights(vs).get(WEIGHTED_ROUTE, {}))
        by_name = {(d.get("metadata") or {}).get("name"): d for d in docs}
        versions = []
        for track, name in objects.deployments.items():
            live = client.read_deployment(self.api, ns, name)
            info = client.deployment_summary(live or by_name.get(name) or {})
            versions.append(
                VersionStatus(
                    track=track,
                    version=info["version"],
                    image=info["image"],
                    replicas=info["replicas"],
                    ready=info["ready"] if live else 0,
                    weight=int(weights.get(track, 0)),
                )
            )
        url = self.gateway_url()
        extra: dict[str, Any] = {
            "release_status": summary.get("status", ""),
            "chart": f"{summary.get('chart_name', '')}-{summary.get('chart_version', '')}",
            "virtual_service": objects.virtual_service,
        }
        if not url:
            gw_ns, gw_name = self._gateway_service()
            extra["gateway_hint"] = (
                f"no LoadBalancer address on {gw_ns}/{gw_name}; run `kubectl -n {gw_ns} "
                f"port-forward svc/{gw_name} 8080:80` and set WORKBOOK_GATEWAY_URL="
                "http://127.0.0.1:8080"
            )
        return Status(
            target="k8s",
            namespace=ns,
            release=self.settings.release,
            revision=int(summary.get("revision") or 0),
            gateway_url=url,
            versions=versions,
            extra=extra,
        )

    def apply(self, objects: list[dict[str, Any]]) -> list[str]:
        """Create or replace Istio objects (validated first) until the next release."""
        from workbook.manifests import validate_manifests

        for i, obj in enumerate(objects):
            if obj.get("kind") not in client.ISTIO_KINDS:
                raise ConfigError(
                    "apply",
                    f"objects[{i}].kind",
                    f"must be one of {', '.join(client.ISTIO_KINDS)}, got {obj.get('kind')!r}",
                )
        ns = self.settings.namespace
        live_rules = client.get_objects(self.api, ns, "DestinationRule")
        problems = validate_manifests(objects, known=live_rules, default_namespace=ns)
        if problems:
            raise ConfigError("apply", "objects", "are invalid: " + "; ".join(problems))
        return [client.apply_object(self.api, ns, obj) for obj in objects]

    def get(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        """Live objects of a kind in the namespace: Istio kinds, Deployment, Service, Pod."""
        return client.get_objects(self.api, self.settings.namespace, kind, name)

    def down(self, keep_history: bool = False) -> None:
        """``helm uninstall``; the namespace and the pull secret stay."""
        self.helm.uninstall(keep_history=keep_history)

    # ---- cluster preparation ------------------------------------------------------------------

    def ensure_namespace(self, owned_by_chart: bool = False) -> str:
        """Create the namespace labelled ``istio-injection=enabled``, or add the label.

        When the chart renders the Namespace itself (``namespace.create``), a missing namespace
        is created with Helm's ownership metadata so that Helm adopts it.
        """
        ns = self.settings.namespace
        if owned_by_chart:
            result = client.ensure_namespace(
                self.api,
                ns,
                labels={"app.kubernetes.io/managed-by": "Helm"},
                annotations={
                    "meta.helm.sh/release-name": self.settings.release,
                    "meta.helm.sh/release-namespace": ns,
                },
            )
        else:
            result = client.ensure_namespace(self.api, ns)
        log.info("Namespace %s: %s", ns, result)
        return result

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

    def _gateway_service(self) -> tuple[str, str]:
        raw = self.env.get("WORKBOOK_GATEWAY_SERVICE") or DEFAULT_GATEWAY_SERVICE
        ns, _, name = raw.partition("/")
        return (ns, name) if name else ("istio-system", ns)

    def gateway_url(self) -> str:
        """``WORKBOOK_GATEWAY_URL``, else the ingress gateway's LoadBalancer address, else ""."""
        explicit = self.env.get("WORKBOOK_GATEWAY_URL", "").strip()
        if explicit:
            return explicit.rstrip("/")
        ns, name = self._gateway_service()
        return client.gateway_address(self.api, name=name, namespace=ns)


def _pull_secret_name(values: Mapping[str, Any]) -> str:
    """The first ``imagePullSecrets`` name, or "" when the chart values use none."""
    secrets = values.get("imagePullSecrets") or []
    first = secrets[0] if secrets and isinstance(secrets[0], Mapping) else {}
    return str(first.get("name") or "")
