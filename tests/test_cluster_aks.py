"""The whole canary on a real cluster: up, shift 10 → 50 → 100 with probes, promote, down.

Skipped unless ``WORKBOOK_CLUSTER_TESTS=1`` and a kubeconfig exists (``KUBECONFIG`` or
``~/.kube/config``). What the cluster needs:

* Kubernetes with Istio (``istioctl install`` or the AKS Istio add-on) and an ingress gateway with
  an external address, or a port-forward named in ``WORKBOOK_GATEWAY_URL``;
* the scoring images ``<registry>/<repository>:v1`` and ``:v2`` pushed (``02_package_image``);
* if the registry is not attached to the cluster (``az aks update --attach-acr``),
  ``ACR_USERNAME``/``ACR_PASSWORD`` for the pull secret.

How to run it (AKS)::

    az aks get-credentials --resource-group <rg> --name <cluster>
    export WORKBOOK_CLUSTER_TESTS=1 WORKBOOK_NAMESPACE=canary-e2e \\
           WORKBOOK_REGISTRY=<acr>.azurecr.io
    # AKS Istio add-on: its gateway Service and selector differ from upstream Istio
    export WORKBOOK_GATEWAY_SERVICE=aks-istio-ingress/aks-istio-ingressgateway-external
    export WORKBOOK_E2E_SET='gateway.selector.istio=aks-istio-ingressgateway-external'
    .venv/bin/python -m pytest -m cluster tests/test_cluster_aks.py -v

``WORKBOOK_KUBE_CONTEXT`` picks a kubeconfig context; ``WORKBOOK_E2E_KEEP=1`` leaves the release
installed afterwards; ``WORKBOOK_E2E_PROBES`` sets requests per stage (default 400).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from workbook.kube.target import KubernetesTarget

from workbook import chart
from workbook.analysis import check_split
from workbook.settings import Settings
from workbook.traffic import probe


def _kubeconfig_exists() -> bool:
    raw = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    return any(Path(p).expanduser().is_file() for p in raw.split(os.pathsep) if p)


pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        os.environ.get("WORKBOOK_CLUSTER_TESTS") != "1" or not _kubeconfig_exists(),
        reason="needs a real cluster: WORKBOOK_CLUSTER_TESTS=1 and a kubeconfig",
    ),
]

PROBES = int(os.environ.get("WORKBOOK_E2E_PROBES", "400"))


@pytest.fixture(scope="module")
def aks() -> Iterator[KubernetesCluster]:
    """The k8s target from the environment; the release is removed at the end."""
    settings = Settings.from_env(target="k8s")
    cluster = KubernetesCluster(settings, verify_timeout_s=180, rollout_timeout_s=900)
    try:
        yield cluster
    finally:
        if os.environ.get("WORKBOOK_E2E_KEEP") != "1":
            cluster.down()


def _overrides() -> dict[str, object]:
    raw = os.environ.get("WORKBOOK_E2E_SET", "")
    return chart.parse_sets([s for s in raw.split(",") if s.strip()])


def _served(cluster: KubernetesCluster, weights: dict[str, int]) -> None:
    """Probe through the gateway and test the split against ``weights`` (by model version)."""
    url = cluster.status().gateway_url
    assert url, "no gateway address: set WORKBOOK_GATEWAY_URL or give the gateway a LoadBalancer"
    result = probe(url + "/score", PROBES, concurrency=8, payload={"data": [[0.1, 0.2, 0.3]]})
    assert result.errors == 0, result.to_dict()
    verdict = check_split(result.counts, weights)
    assert verdict.passed, verdict.reason


def test_full_canary_flow(aks: KubernetesCluster) -> None:
    s = aks.settings
    first = aks.up(_overrides())
    assert first.revision >= 1
    status = aks.status()
    assert {v.track for v in status.versions} == {"stable", "canary"}
    assert all(v.ready == v.replicas for v in status.versions), status.to_dict()
    _served(aks, {s.stable_version: 100, s.canary_version: 0})

    for weight in s.stages:  # 10, 50, 100
        release = aks.shift(weight)
        assert release.revision > first.revision
        assert aks.status().weights() == {s.stable_version: 100 - weight, s.canary_version: weight}
        _served(aks, {s.stable_version: 100 - weight, s.canary_version: weight})
        if weight < 100:  # a pinned request ignores the weights
            pinned = probe(
                aks.status().gateway_url + "/score",
                20,
                headers={s.header_name: "canary"},
                payload={"data": [[0.1, 0.2, 0.3]]},
            )
            assert pinned.counts == {s.canary_version: 20}, pinned.to_dict()

    promoted = aks.promote()
    assert promoted.values["stable"]["version"] == s.canary_version
    status = aks.status()
    assert [v.track for v in status.versions] == ["stable"]
    assert status.versions[0].image.endswith(f":{s.canary_version}")
    _served(aks, {s.canary_version: 100})
    assert [r.revision for r in aks.history()][-1] == promoted.revision
