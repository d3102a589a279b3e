"""The k8s target against a fake Kubernetes API (kmock) and a fake Helm.

The Kubernetes calls run for real against kmock and the tests read back what it stores. Helm
cannot run against kmock (notes/helm.md), so ``FakeHelm`` stands in for it: it renders the same
chart with the values it is given and stores the objects in kmock, as a release would.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kmock_support import KubeFake, kube_fake  # noqa: F401  (the ``kube`` fixture)

from workbook import canary, chart, envoy, operations
from workbook.errors import AzureError, ConfigError, MeshError
from workbook.kube import client
from workbook.kube.helm import HelmRelease, kubeconfig_path
from workbook.kube.target import (
    KubernetesTarget,
    parse_manifest,
    release_objects,
)
from workbook.settings import Settings
from workbook.targets import connect

NS = "canary-demo"
FAST = {"timeout_s": 1.0, "interval_s": 0.02}


def render(weight: int = 0, **overrides: Any) -> list[dict[str, Any]]:
    values = chart.merge_values({"canary": {"weight": weight}}, overrides)
    return chart.render(values, release="scoring", namespace=NS)


def rolled_out(doc: dict[str, Any], ready: bool = True) -> dict[str, Any]:
    """A Deployment as the API server reports it once its rollout finished (or not)."""
    if doc["kind"] != "Deployment":
        return doc
    n = int(doc["spec"].get("replicas", 1))
    done = n if ready else 0
    return {
        **doc,
        "metadata": {**doc["metadata"], "generation": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": n,
            "updatedReplicas": done,
            "availableReplicas": done,
            "readyReplicas": done,
        },
    }


def seed(kube: KubeFake, docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        if doc["kind"] in ("Deployment", "Service", "VirtualService", "DestinationRule", "Gateway"):
            kube.put(rolled_out(doc))


def vs_fetches(kube: KubeFake) -> int:
    return sum(
        1
        for r in kube.emu._requests
        if r.method.value == "GET" and r.resource and r.resource.plural == "virtualservices"
    )


# ---- VerifyWeight -----------------------------------------------------------------------------


def test_verify_weight_succeeds_when_the_virtualservice_has_the_weights(kube: KubeFake) -> None:
    seed(kube, render(10))
    seen = client.wait_for_weights(kube.api, NS, "scoring", {"stable": 90, "canary": 10}, **FAST)
    assert seen == {"stable": 90, "canary": 10}


def test_verify_weight_times_out_naming_the_virtualservice(kube: KubeFake) -> None:
    seed(kube, render(0))
    with pytest.raises(AzureError) as err:
        client.wait_for_weights(
            kube.api, NS, "scoring", {"stable": 90, "canary": 10}, timeout_s=0.2, interval_s=0.02
        )
    text = str(err.value)
    assert text.startswith("VirtualService canary-demo/scoring: expected weights")
    assert "{'stable': 90, 'canary': 10}" in text
    assert "route 'weighted' has weights {'stable': 100, 'canary': 0}" in text
    assert vs_fetches(kube) >= 2  # it polled


def test_verify_weight_waits_for_a_late_update(kube: KubeFake) -> None:
    seed(kube, render(0))
    late = next(d for d in render(50) if d["kind"] == "VirtualService")
    timer = threading.Timer(0.15, kube.put, args=(late,))
    timer.start()
    try:
        seen = client.wait_for_weights(
            kube.api, NS, "scoring", {"stable": 50, "canary": 50}, timeout_s=3, interval_s=0.02
        )
    finally:
        timer.cancel()
    assert seen == {"stable": 50, "canary": 50}


def test_verify_weight_when_the_virtualservice_is_missing(kube: KubeFake) -> None:
    with pytest.raises(AzureError, match="the VirtualService does not exist"):
        client.wait_for_weights(
            kube.api, NS, "scoring", {"stable": 100}, timeout_s=0.05, interval_s=0.01
        )


def test_zero_weights_equal_a_missing_destination() -> None:
    assert canary.expected_weights({"canary": {"enabled": True, "weight": 0}}) == {
        "stable": 100,
        "canary": 0,
    }
    assert canary.expected_weights({"canary": {"enabled": False, "weight": 40}}) == {"stable": 100}


# ---- rollouts ---------------------------------------------------------------------------------


def dep(observed: int, current: int, updated: int, available: int, want: int = 2) -> dict[str, Any]:
    status = {"observedGeneration": observed, "replicas": current}
    status |= {"updatedReplicas": updated, "availableReplicas": available}
    return {"metadata": {"generation": 2}, "spec": {"replicas": want}, "status": status}


@pytest.mark.parametrize(
    ("deployment", "done", "why"),
    [
        (dep(2, 2, 2, 2), True, "2/2 available"),
        (dep(1, 2, 2, 2), False, "generation 2 not yet observed"),
        (dep(2, 2, 1, 2), False, "1/2 replicas updated"),
        (dep(2, 3, 2, 2), False, "1 old replicas pending termination"),
        (dep(2, 2, 2, 1), False, "1/2 updated replicas available"),
        (dep(2, 0, 0, 0, want=0), True, "0/0 available"),
    ],
)
def test_rollout_state(deployment: dict[str, Any], done: bool, why: str) -> None:
    assert client.rollout_state(deployment)[0] is done
    assert why in client.rollout_state(deployment)[1]


def test_wait_for_rollout_returns_once_both_deployments_are_out(kube: KubeFake) -> None:
    docs = render(10)
    seed(kube, docs)
    stable = next(d for d in docs if d["metadata"]["name"] == "scoring-stable")
    kube.put(rolled_out(stable, ready=False))
    timer = threading.Timer(0.15, kube.put, args=(rolled_out(stable),))
    timer.start()
    try:
        client.wait_for_rollout(
            kube.api, NS, ["scoring-stable", "scoring-canary"], timeout_s=3, interval_s=0.02
        )
    finally:
        timer.cancel()


def test_wait_for_rollout_times_out_naming_the_deployment(kube: KubeFake) -> None:
    docs = render(10)
    seed(kube, docs)
    canary = next(d for d in docs if d["metadata"]["name"] == "scoring-canary")
    kube.put(rolled_out(canary, ready=False))
    with pytest.raises(AzureError) as err:
        client.wait_for_rollout(
            kube.api, NS, ["scoring-stable", "scoring-canary"], timeout_s=0.1, interval_s=0.02
        )
    assert "Deployment canary-demo/scoring-canary: 0/1 replicas updated" in str(err.value)
    assert "scoring-stable" not in str(err.value)


def test_wait_for_rollout_fails_fast_on_progress_deadline(kube: KubeFake) -> None:
    docs = render(10)
    seed(kube, docs)
    canary = rolled_out(next(d for d in docs if d["metadata"]["name"] == "scoring-canary"))
    canary["status"]["conditions"] = [
        {"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "stuck"}
    ]
    canary["status"]["updatedReplicas"] = 0
    kube.put(canary)
    with pytest.raises(AzureError, match="scoring-canary: rollout failed: progress deadline"):
        client.wait_for_rollout(kube.api, NS, ["scoring-canary"], timeout_s=30, interval_s=0.02)


# ---- pull secret ------------------------------------------------------------------------------


def test_pull_secret_created_then_reused_then_updated(
    kube: KubeFake, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reg, user, pw = "myacr.azurecr.io", "myacr", "p@ss-w0rd-SECRET"
    assert client.ensure_pull_secret(kube.api, NS, "acr-pull", reg, user, pw) == "created"
    secret = kube.stored("Secret", NS, "acr-pull")
    assert secret is not None
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert config == {
        "auths": {
            reg: {
                "username": user,
                "password": pw,
                "auth": base64.b64encode(f"{user}:{pw}".encode()).decode(),
            }
        }
    }
    writes = len(kube.requests("post")) + len(kube.requests("patch"))
    assert client.ensure_pull_secret(kube.api, NS, "acr-pull", reg, user, pw) == "reused"
    assert len(kube.requests("post")) + len(kube.requests("patch")) == writes
    assert client.ensure_pull_secret(kube.api, NS, "acr-pull", reg, user, "rotated-PW") == "updated"
    rotated = kube.stored("Secret", NS, "acr-pull")
    assert rotated is not None
    assert json.loads(base64.b64decode(rotated["data"][".dockerconfigjson"]))["auths"][reg][
        "password"
    ] == ("rotated-PW")
    assert pw not in caplog.text and "rotated-PW" not in caplog.text


def test_pull_secret_of_another_type_is_an_error_without_the_password(kube: KubeFake) -> None:
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": "acr-pull", "namespace": NS},
            "data": {"x": "eQ=="},
        }
    )
    with pytest.raises(AzureError) as err:
        client.ensure_pull_secret(kube.api, NS, "acr-pull", "r.azurecr.io", "u", "hunter2-SECRET")
    assert "Secret canary-demo/acr-pull: exists with type 'Opaque'" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_cluster_pull_secret_needs_credentials(kube: KubeFake, tmp_path: Path) -> None:
    cluster = make_cluster(kube, tmp_path, env={})
    with pytest.raises(AzureError, match="set ACR_USERNAME and ACR_PASSWORD"):
        cluster.ensure_pull_secret("r.azurecr.io")
    cluster = make_cluster(kube, tmp_path, env={"ACR_USERNAME": "u", "ACR_PASSWORD": "pw-1234"})
    assert cluster.ensure_pull_secret("r.azurecr.io") == "created"


# ---- namespace --------------------------------------------------------------------------------


# (namespace preparation: tests/test_kube_aks.py, against the same fake API)


# ---- apply and get ----------------------------------------------------------------------------


def header_vs(subset: str = "canary", header: str = "x-beta") -> dict[str, Any]:
    host = f"scoring.{NS}.svc.cluster.local"
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "beta", "namespace": NS},
        "spec": {
            "hosts": ["*"],
            "gateways": ["scoring-gateway"],
            "http": [
                {
                    "name": "beta",
                    "match": [{"headers": {header: {"exact": "1"}}}],
                    "route": [{"destination": {"host": host, "subset": subset}}],
                },
                {"name": "rest", "route": [{"destination": {"host": host, "subset": "stable"}}]},
            ],
        },
    }


def test_apply_creates_then_replaces(kube: KubeFake) -> None:
    vs = header_vs()
    assert client.apply_object(kube.api, NS, vs) == "VirtualService/beta created"
    assert kube.stored("VirtualService", NS, "beta")["spec"] == vs["spec"]  # type: ignore[index]
    assert client.apply_object(kube.api, NS, vs) == "VirtualService/beta unchanged"
    changed = header_vs()
    changed["spec"]["http"] = changed["spec"]["http"][1:]  # a replace drops the header route
    assert client.apply_object(kube.api, NS, changed) == "VirtualService/beta configured"
    stored = kube.stored("VirtualService", NS, "beta")
    assert stored is not None and stored["spec"] == changed["spec"]
    assert kube.versions("VirtualService", NS, "beta") == 2
    assert len(kube.requests("put")) == 1


def test_apply_rejects_other_kinds(kube: KubeFake) -> None:
    with pytest.raises(ConfigError, match="document 0: kind must be one of VirtualService"):
        client.apply_object(kube.api, NS, {"apiVersion": "apps/v1", "kind": "Deployment"})


def test_get_objects_by_kind_alias_and_name(kube: KubeFake) -> None:
    seed(kube, render(10))
    assert [o["metadata"]["name"] for o in client.get_objects(kube.api, NS, "vs")] == ["scoring"]
    deps = client.get_objects(kube.api, NS, "deployments")
    assert [(d["kind"], d["metadata"]["name"]) for d in deps] == [
        ("Deployment", "scoring-canary"),
        ("Deployment", "scoring-stable"),
    ]
    assert client.get_objects(kube.api, NS, "DestinationRule", "scoring")[0]["spec"]["host"]
    assert client.get_objects(kube.api, NS, "gw", "missing") == []
    with pytest.raises(ConfigError, match="get: KIND must be one of"):
        client.get_objects(kube.api, NS, "secrets")


def test_get_namespace_is_the_release_namespace(kube: KubeFake) -> None:
    assert client.get_objects(kube.api, NS, "ns") == []
    kube.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    (ns,) = client.get_objects(kube.api, NS, "namespaces")
    assert (ns["kind"], ns["metadata"]["name"]) == ("Namespace", NS)
    assert client.get_objects(kube.api, NS, "ns", "other") == []


# ---- gateway address --------------------------------------------------------------------------


def gateway_service(ingress: list[dict[str, str]], ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
        "spec": {"type": "LoadBalancer", "ports": ports},
        "status": {"loadBalancer": {"ingress": ingress}},
    }


STATUS_PORT = {"name": "status-port", "port": 15021}


@pytest.mark.parametrize(
    ("ingress", "ports", "url"),
    [
        ([{"ip": "20.1.2.3"}], [STATUS_PORT, {"name": "http2", "port": 80}], "http://20.1.2.3"),
        (
            [{"hostname": "gw.example.com"}],
            [{"name": "http2", "port": 8080}],
            "http://gw.example.com:8080",
        ),
        ([], [{"name": "http2", "port": 80}], ""),
    ],
)
def test_gateway_address(kube: KubeFake, ingress: list[Any], ports: list[Any], url: str) -> None:
    kube.put(gateway_service(ingress, ports))
    assert client.gateway_address(kube.api) == url


def test_gateway_address_without_the_service(kube: KubeFake) -> None:
    assert client.gateway_address(kube.api) == ""


# ---- KubernetesTarget with a fake Helm -------------------------------------------------------


class FakeHelm:
    """``HelmOps`` in memory: each revision renders the chart and stores its objects in kmock.

    ``skip`` names kinds it does not write (a VirtualService that never changes, as when another
    controller owns it); ``ready=False`` leaves Deployments un-rolled-out.
    """

    def __init__(self, kube: KubeFake, skip: tuple[str, ...] = (), ready: bool = True) -> None:
        self.kube, self.skip, self.ready = kube, skip, ready
        self.revisions: list[dict[str, Any]] = []
        self.calls: list[tuple[str, Any]] = []

    def _store(self, values: dict[str, Any], description: str) -> dict[str, Any]:
        docs = chart.render(values, release="scoring", namespace=NS)
        for doc in docs:
            if doc["kind"] not in self.skip and doc["kind"] != "Namespace":
                self.kube.put(rolled_out(doc, self.ready))
        for rev in self.revisions:
            rev["status"] = "superseded"
        summary = {
            "name": "scoring",
            "namespace": NS,
            "revision": len(self.revisions) + 1,
            "status": "deployed",
            "description": description,
            "deployed_at": "2026-11-26T08:00:00Z",
            "chart_name": "scoring-canary",
            "chart_version": "0.1.0",
            "manifest": chart.render_manifest(values, release="scoring", namespace=NS),
            "values": values,
        }
        self.revisions.append(summary)
        return dict(summary)

    def status(self) -> dict[str, Any] | None:
        self.calls.append(("status", None))
        return dict(self.revisions[-1]) if self.revisions else None

    def get_values(self, revision: int | None = None) -> dict[str, Any]:
        self.calls.append(("get_values", revision))
        rev = self.revisions[(revision or len(self.revisions)) - 1]
        return json.loads(json.dumps(rev["values"]))

    def install(self, values: dict[str, Any], *, description: str) -> dict[str, Any]:
        self.calls.append(("install", values))
        assert not self.revisions, "install on an existing release"
        return self._store(values, description)

    def upgrade(self, values: dict[str, Any], *, description: str) -> dict[str, Any]:
        self.calls.append(("upgrade", values))
        assert self.revisions, "upgrade without a release"
        return self._store(values, description)

    def rollback(self, revision: int | None = None) -> None:
        self.calls.append(("rollback", revision))
        target = revision or len(self.revisions) - 1
        self._store(self.get_values(target), f"Rollback to {target}")

    def history(self) -> list[dict[str, Any]]:
        self.calls.append(("history", None))
        return [{k: v for k, v in r.items() if k != "manifest"} for r in self.revisions]

    def uninstall(self, *, keep_history: bool = False) -> None:
        self.calls.append(("uninstall", keep_history))
        self.revisions = self.revisions if keep_history else []

    def writes(self) -> list[tuple[str, Any]]:
        return [c for c in self.calls if c[0] in ("install", "upgrade", "rollback", "uninstall")]


GATEWAY_NS = "istio-system"


def istiod(kube: KubeFake) -> Any:
    """What istiod would push to the ingress gateway pods: the Istio objects the API server holds
    now, translated into Envoy routes (``fetch(namespace, pod) -> config dump``)."""
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "istio-ingressgateway-1",
                "namespace": GATEWAY_NS,
                "labels": {"istio": "ingressgateway"},
            },
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        }
    )

    def fetch(namespace: str, pod: str) -> dict[str, Any]:
        assert (namespace, pod) == (GATEWAY_NS, "istio-ingressgateway-1")
        objects = [
            o
            for kind in ("Gateway", "VirtualService", "DestinationRule", "Service")
            for o in client.get_objects(kube.api, NS, kind)
        ]
        routes = envoy.translate(objects, [], namespace=NS).routes
        dump = {"dynamic_route_configs": [{"version_info": "1", "route_config": routes}]}
        return {
            "configs": [{"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", **dump}]
        }

    return fetch


def make_cluster(
    kube: KubeFake,
    tmp_path: Path,
    helm: FakeHelm | None = None,
    env: dict[str, str] | None = None,
) -> KubernetesTarget:
    settings = Settings(
        target="k8s",
        namespace=NS,
        state_dir=tmp_path,
        serve_timeout_s=0.5,
        istio_flavour="upstream",
    )
    return KubernetesTarget(
        settings,
        helm=helm or FakeHelm(kube),
        api=kube.api,
        env={} if env is None else env,
        rollout_timeout_s=0.5,
        poll_s=0.02,
        fetch=istiod(kube),
    )


@pytest.fixture
def deployed(kube: KubeFake, tmp_path: Path) -> Iterator[tuple[KubernetesTarget, FakeHelm]]:
    """A cluster after ``up``: revision 1 at canary weight 0."""
    helm = FakeHelm(kube)
    cluster = make_cluster(kube, tmp_path, helm)
    operations.up(cluster, {})
    yield cluster, helm


def test_up_prepares_the_namespace_and_pull_secret_then_installs(
    kube: KubeFake, tmp_path: Path
) -> None:
    helm = FakeHelm(kube)
    env = {"ACR_USERNAME": "canaryworkbook", "ACR_PASSWORD": "pw-SECRET-1"}
    cluster = make_cluster(kube, tmp_path, helm, env=env)
    rel = operations.up(cluster, {"stable": {"replicas": 2}})
    assert rel.revision == 1 and rel.status == "deployed"
    assert [c[0] for c in helm.writes()] == ["install"]
    values = helm.writes()[0][1]
    assert values["stable"]["replicas"] == 2
    assert values["stable"]["image"] == {"repository": "scoring", "tag": "v1"}  # from settings
    assert kube.stored("Namespace", None, NS)["metadata"]["labels"]["istio-injection"] == "enabled"  # type: ignore[index]
    secret = kube.stored("Secret", NS, "acr-pull")
    assert secret is not None and secret["type"] == "kubernetes.io/dockerconfigjson"
    assert (
        "canaryworkbook.azurecr.io"
        in base64.b64decode(secret["data"][".dockerconfigjson"]).decode()
    )
    assert operations.up(cluster, {}).revision == 2
    assert [c[0] for c in helm.writes()] == ["install", "upgrade"]


def test_shift_upgrades_with_the_last_values_and_verifies(
    kube: KubeFake, deployed: tuple[KubernetesTarget, FakeHelm]
) -> None:
    cluster, helm = deployed
    operations.upgrade(cluster, {"stable": {"replicas": 3}})
    before = vs_fetches(kube)
    rel = operations.shift(cluster, 10)
    kind, values = helm.writes()[-1]
    assert kind == "upgrade"
    assert values["canary"]["weight"] == 10
    assert values["stable"]["replicas"] == 3  # the last revision's values are reused
    assert rel.revision == 3 and rel.description == "shift canary to 10%"
    assert rel.values["canary"]["weight"] == 10
    assert vs_fetches(kube) > before  # VerifyWeight read the VirtualService back
    vs = kube.stored("VirtualService", NS, "scoring")
    assert vs is not None
    assert [r.get("weight") for r in vs["spec"]["http"][-1]["route"]] == [90, 10]


def test_shift_fails_when_the_virtualservice_does_not_follow(
    kube: KubeFake, tmp_path: Path
) -> None:
    helm = FakeHelm(kube)
    cluster = make_cluster(kube, tmp_path, helm)
    operations.up(cluster, {})
    helm.skip = ("VirtualService",)  # something else owns the VS now
    with pytest.raises(MeshError) as err:
        operations.shift(cluster, 50)
    assert "the gateway of canary-demo/scoring still serves {'stable': 100" in str(err.value)
    assert "expected {'stable': 50, 'canary': 50}" in str(err.value)


def test_shift_fails_when_pods_do_not_roll_out(kube: KubeFake, tmp_path: Path) -> None:
    helm = FakeHelm(kube)
    cluster = make_cluster(kube, tmp_path, helm)
    operations.up(cluster, {})
    helm.ready = False
    with pytest.raises(AzureError, match="Deployment canary-demo/scoring-stable: 0/1 replicas"):
        operations.shift(cluster, 10)


@pytest.mark.parametrize("weight", [150, -1, "ten", 10.5, True])
def test_bad_weight_is_rejected_before_any_helm_call(
    kube: KubeFake, tmp_path: Path, weight: Any
) -> None:
    helm = FakeHelm(kube)
    cluster = make_cluster(kube, tmp_path, helm)
    with pytest.raises(ConfigError, match="shift: WEIGHT must be"):
        operations.shift(cluster, weight)
    assert helm.calls == []


def test_bad_values_are_rejected_before_any_cluster_call(kube: KubeFake, tmp_path: Path) -> None:
    helm = FakeHelm(kube)
    cluster = make_cluster(kube, tmp_path, helm)
    with pytest.raises(ConfigError, match=r"values: stable\.replicas"):
        operations.up(cluster, {"stable": {"replicas": "two"}})
    assert helm.writes() == []
    assert kube.stored("Namespace", None, NS) is None


def test_shift_without_a_release(kube: KubeFake, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nothing is deployed yet: run `workbook up` first"):
        operations.shift(make_cluster(kube, tmp_path), 10)


def test_shift_with_the_canary_disabled(kube: KubeFake, tmp_path: Path) -> None:
    helm = FakeHelm(kube)
    cluster = make_cluster(kube, tmp_path, helm)
    operations.up(cluster, {"canary": {"enabled": False}})
    for weight in (10, 0):
        with pytest.raises(ConfigError, match="canary: enabled is false"):
            operations.shift(cluster, weight)


def test_promote_gives_stable_the_canary_and_retires_it(
    kube: KubeFake, deployed: tuple[KubernetesTarget, FakeHelm]
) -> None:
    cluster, helm = deployed
    operations.shift(cluster, 100)
    rel = operations.promote(cluster)
    # three revisions: first stable rolls to the canary's image while the canary keeps 100%
    first, last = helm.writes()[-3][1], helm.writes()[-1][1]
    assert helm.writes()[-2][1]["canary"]["routed"] is False  # then no route to the canary
    # the chart's image values now carry registry and digest per track (empty here)
    set_fields = {k: v for k, v in first["stable"]["image"].items() if v}
    assert set_fields == {"repository": "scoring", "tag": "v2"}
    assert first["canary"].get("enabled", True) is True and first["canary"]["weight"] == 100
    values = last
    assert values["stable"]["version"] == "v2"
    assert {k: v for k, v in values["stable"]["image"].items() if v} == {
        "repository": "scoring",
        "tag": "v2",
    }
    assert values["canary"]["enabled"] is False and values["canary"]["weight"] == 0
    assert rel.description == "promote v2: canary retired"
    vs = kube.stored("VirtualService", NS, "scoring")
    assert vs is not None
    assert vs["spec"]["http"][-1]["route"][0]["weight"] == 100
    with pytest.raises(ConfigError, match="no canary to promote"):
        operations.promote(cluster)


def test_rollback_restores_and_verifies(
    kube: KubeFake, deployed: tuple[KubernetesTarget, FakeHelm]
) -> None:
    cluster, helm = deployed
    operations.shift(cluster, 10)
    operations.shift(cluster, 50)
    rel = operations.rollback(cluster, 2)
    assert ("rollback", 2) in helm.calls
    assert rel.revision == 4 and rel.values["canary"]["weight"] == 10
    assert operations.status(cluster).weights() == {"v1": 90, "v2": 10}
    # without a revision: the flow's rollback, to the revision where the canary had 0%
    rel = operations.rollback(cluster)
    assert ("rollback", 1) in helm.calls and rel.revision == 5
    assert operations.status(cluster).weights() == {"v1": 100, "v2": 0}
    with pytest.raises(ConfigError, match="rollback: revision must be a positive integer"):
        operations.rollback(cluster, 0)


def test_status_reads_images_ready_pods_and_weights(
    kube: KubeFake, deployed: tuple[KubernetesTarget, FakeHelm]
) -> None:
    cluster, _ = deployed
    operations.shift(cluster, 10)
    canary = kube.stored("Deployment", NS, "scoring-canary")
    assert canary is not None
    canary["status"]["readyReplicas"] = 0
    kube.put(canary)
    kube.put(gateway_service([{"ip": "20.1.2.3"}], [{"name": "http2", "port": 80}]))
    status = operations.status(cluster)
    assert status.target == "k8s" and status.revision == 2
    assert status.gateway_url == "http://20.1.2.3"
    by_track = {v.track: v for v in status.versions}
    assert by_track["stable"].image == "canaryworkbook.azurecr.io/scoring:v1"
    assert by_track["canary"].image == "canaryworkbook.azurecr.io/scoring:v2"
    assert (by_track["stable"].ready, by_track["canary"].ready) == (1, 0)
    assert (by_track["stable"].weight, by_track["canary"].weight) == (90, 10)
    assert status.weights() == {"v1": 90, "v2": 10}


def test_status_shows_an_applied_override_and_gateway_settings(
    kube: KubeFake, tmp_path: Path
) -> None:
    helm = FakeHelm(kube)
    env = {"WORKBOOK_GATEWAY_URL": "http://127.0.0.1:8080/"}
    cluster = make_cluster(kube, tmp_path, helm, env=env)
    operations.up(cluster, {})
    live = next(d for d in render(30) if d["kind"] == "VirtualService")
    assert cluster.objects.apply([live]) == ["VirtualService/scoring configured"]
    status = operations.status(cluster)
    assert status.gateway_url == "http://127.0.0.1:8080"
    assert status.weights() == {"v1": 70, "v2": 30}  # live objects, not the release values


def test_gateway_hint_when_there_is_no_address(
    kube: KubeFake, deployed: tuple[KubernetesTarget, FakeHelm]
) -> None:
    cluster, _ = deployed
    status = operations.status(cluster)
    assert status.gateway_url == ""
    assert "port-forward svc/istio-ingressgateway" in status.extra["gateway_hint"]


def test_gateway_service_setting(kube: KubeFake, tmp_path: Path) -> None:
    svc = gateway_service([{"ip": "10.0.0.9"}], [{"name": "http2", "port": 80}])
    svc["metadata"] = {
        "name": "aks-istio-ingressgateway-external",
        "namespace": "aks-istio-ingress",
    }
    kube.put(svc)
    env = {"WORKBOOK_GATEWAY_SERVICE": "aks-istio-ingress/aks-istio-ingressgateway-external"}
    assert make_cluster(kube, tmp_path, env=env).traffic.gateway_url() == "http://10.0.0.9"


def test_cluster_apply_validates_before_writing(
    kube: KubeFake, deployed: tuple[KubernetesTarget, FakeHelm]
) -> None:
    cluster, _ = deployed
    puts, posts = len(kube.requests("put")), len(kube.requests("post"))
    with pytest.raises(ConfigError, match="subset 'preview' is not a subset"):
        cluster.objects.apply([header_vs(subset="preview")])
    with pytest.raises(ConfigError, match=r"document 0: kind must be one of"):
        cluster.objects.apply([{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}])
    assert (len(kube.requests("put")), len(kube.requests("post"))) == (puts, posts)
    assert cluster.objects.apply([header_vs()]) == ["VirtualService/beta created"]
    assert cluster.objects.get("vs", "beta")[0]["spec"]["http"][0]["name"] == "beta"


def test_history_and_down(deployed: tuple[KubernetesTarget, FakeHelm]) -> None:
    cluster, helm = deployed
    operations.shift(cluster, 10)
    history = cluster.releases.history()
    assert [(r.revision, r.status) for r in history] == [(1, "superseded"), (2, "deployed")]
    assert history[1].values["canary"]["weight"] == 10 and history[1].manifest == ""
    cluster.releases.uninstall()
    assert helm.writes()[-1] == ("uninstall", False)


def test_release_objects_come_from_the_manifest() -> None:
    objects = release_objects(parse_manifest(chart.render_manifest({}, namespace=NS)))
    assert objects.deployments == {"stable": "scoring-stable", "canary": "scoring-canary"}
    assert objects.virtual_service == "scoring"
    disabled = release_objects(render(0, canary={"enabled": False}))
    assert disabled.deployments == {"stable": "scoring-stable"}


# ---- wiring: connect, kubeconfig, real Helm SDK against nothing ------------------------------


def test_connect_builds_the_k8s_target(tmp_path: Path) -> None:
    cluster = connect(Settings(target="k8s", state_dir=tmp_path))
    assert isinstance(cluster, KubernetesTarget)
    assert isinstance(cluster.helm, HelmRelease)


def test_kubeconfig_path(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert kubeconfig_path({"KUBECONFIG": "/x/config"}) == "/x/config"
    assert kubeconfig_path({"KUBECONFIG": f"/a{':'}/b"}) is None  # Helm merges a list itself
    assert kubeconfig_path({"HOME": str(home)}) is None
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text("{}")
    assert kubeconfig_path({"HOME": str(home)}) == str(home / ".kube" / "config")


def test_no_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    settings = Settings(target="k8s", state_dir=tmp_path)
    cluster = KubernetesTarget(settings, env={"HOME": str(tmp_path)})
    with pytest.raises(AzureError, match="az aks get-credentials"):
        _ = cluster.api


def unreachable_kubeconfig(tmp_path: Path, server: str = "https://127.0.0.1:1") -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    return path


def test_kube_client_from_kubeconfig_reports_an_unreachable_api(tmp_path: Path) -> None:
    env = {"KUBECONFIG": str(unreachable_kubeconfig(tmp_path))}
    settings = Settings(target="k8s", state_dir=tmp_path, kube_context="ctx")
    cluster = KubernetesTarget(settings, env=env)
    assert cluster.api.configuration.host == "https://127.0.0.1:1"
    with pytest.raises(AzureError, match="the Kubernetes API could not be reached"):
        cluster.traffic.gateway_url()


def test_real_helm_sdk_reports_an_unreachable_cluster(tmp_path: Path) -> None:
    """helm-python-sdk for real: with nothing listening, status and install fail as AzureError."""
    helm = HelmRelease(
        release="scoring",
        namespace=NS,
        chart_dir=Settings().chart_dir,
        kubeconfig=str(unreachable_kubeconfig(tmp_path)),
        timeout_s=5,
    )
    with pytest.raises(
        AzureError, match=r"Helm release canary-demo/scoring: status: .*unreachable"
    ):
        helm.status()
    with pytest.raises(AzureError, match="Helm release canary-demo/scoring: install"):
        helm.install({}, description="up")


def test_real_helm_sdk_reads_release_storage_from_the_fake_api(
    kube: KubeFake, tmp_path: Path
) -> None:
    """helm-python-sdk against kmock: reads work (no release yet); install needs OpenAPI."""
    helm = HelmRelease(
        release="scoring",
        namespace=NS,
        chart_dir=Settings().chart_dir,
        kubeconfig=str(unreachable_kubeconfig(tmp_path, server=kube.url)),
        timeout_s=5,
    )
    assert helm.status() is None
    assert helm.history() == []
    paths = {str(r.url.path) for r in kube.emu._requests}
    assert f"/api/v1/namespaces/{NS}/secrets" in paths  # release records: Secrets in the namespace
    with pytest.raises(AzureError, match=r"install failed .*failed to download openapi"):
        helm.install({}, description="up")
    with pytest.raises(AzureError, match="has no deployed releases"):
        helm.upgrade({"canary": {"weight": 10}}, description="shift")
    with pytest.raises(ConfigError, match=r"rollback: revision 2 does not exist; known: \[\]"):
        helm.rollback(2)


def test_upgrades_take_back_fields_an_apply_changed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Upgrade and rollback pass server-side apply with force_conflicts to the Helm SDK."""
    import helm_python._native as native

    seen: list[tuple[str, tuple[Any, ...]]] = []

    def fake_string(function: str, *args: Any) -> str:
        seen.append((function, args))
        return json.dumps({"revision": 2, "status": "deployed", "manifest": ""})

    def fake_status(function: str, *args: Any) -> None:
        seen.append((function, args))

    monkeypatch.setattr(native, "call_string", fake_string)
    monkeypatch.setattr(native, "call_status", fake_status)
    helm = HelmRelease(release="scoring", namespace=NS, chart_dir=Settings().chart_dir)
    assert helm.upgrade({"canary": {"weight": 10}}, description="shift")["revision"] == 2
    helm.rollback(1)
    (up_fn, up_args), (rb_fn, rb_args) = seen
    assert (up_fn, rb_fn) == ("helm_upgrade", "helm_rollback")
    assert up_args[4] == "scoring" and json.loads(up_args[5]) == {"canary": {"weight": 10}}
    options = json.loads(up_args[6])
    assert options["force_conflicts"] is True and options["server_side_apply"] == "true"
    assert options["rollback_on_failure"] is True and options["wait"] == "watcher"
    assert json.loads(rb_args[2]) == {
        "timeout_seconds": 600,
        "wait": "watcher",
        "server_side_apply": "true",
        "force_conflicts": True,
        "version": 1,
    }
