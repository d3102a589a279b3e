"""First contact with a real cluster: the Istio flavour, its ingress pods and their Envoy.

Skipped unless ``WORKBOOK_CLUSTER_TESTS=1`` and a kubeconfig exist. Read-only: it creates nothing.
By default it expects the AKS Istio add-on (``WORKBOOK_EXPECT_ISTIO=upstream`` for upstream Istio).
Needs ``pods/portforward`` in the gateway namespace, as the k8s target's shift does::

    az aks get-credentials --resource-group <rg> --name <cluster>
    WORKBOOK_CLUSTER_TESTS=1 .venv/bin/python -m pytest -m cluster tests/test_cluster_flavour.py -v
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from workbook import chart, served
from workbook.kube import proxy
from workbook.kube.istio_flavour import detect_flavour


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


@pytest.fixture(scope="module")
def api() -> Any:
    from kubernetes import config

    return config.new_client_from_config(context=os.environ.get("WORKBOOK_KUBE_CONTEXT") or None)


def test_the_cluster_flavour_selects_live_ingress_pods_whose_envoy_answers(api: Any) -> None:
    flavour = detect_flavour(api)
    assert flavour.name == os.environ.get("WORKBOOK_EXPECT_ISTIO", "addon")
    if flavour.name == "addon":
        assert flavour.revision.startswith("asm-")
    gateway = proxy.GatewayPods(flavour.gateway_namespace, flavour.gateway_selector)
    pods = proxy.gateway_pod_names(api, gateway)
    assert pods, f"no ready {gateway.describe()}"
    dump = proxy.port_forward_config_dump(api, gateway.namespace, pods[0])
    assert list(served.route_configs(dump)) is not None  # the admin port answered with JSON
    docs = chart.template({}, istio=flavour.name, revision=flavour.revision)
    gw = next(d for d in docs if d["kind"] == "Gateway")
    assert gw["spec"]["selector"] == dict(flavour.gateway_selector)
