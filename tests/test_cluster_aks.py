"""The one canary flow on a real cluster: stable up, canary at 0%, header pins, the stage plan
with probes and gates, promote, down.

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
from dataclasses import replace
from pathlib import Path

import pytest

from workbook import chart, flow, operations, rollout
from workbook.kube.target import KubernetesTarget
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
def aks() -> Iterator[KubernetesTarget]:
    """The k8s target from the environment; the release is removed at the end."""
    settings = replace(Settings.from_env(target="k8s"), serve_timeout_s=180)
    target = KubernetesTarget(settings, rollout_timeout_s=900)
    try:
        yield target
    finally:
        if os.environ.get("WORKBOOK_E2E_KEEP") != "1":
            target.releases.uninstall()


def _overrides() -> dict[str, object]:
    return chart.parse_sets([s for s in os.environ.get("WORKBOOK_E2E_SET", "").split(",") if s])


def test_the_one_flow_promotes_on_a_real_cluster(aks: KubernetesTarget) -> None:
    """Deploy stable, then the flow's steps after Package (the images are pushed beforehand)."""
    s = aks.settings
    operations.up(aks, {**_overrides(), "canary": {"enabled": False}})
    stages: list[dict[str, object]] = []
    result = flow.run(
        flow.plan(s.stages)[1:],
        rollout.DirectExecutor(aks, requests=PROBES, echo=print),
        on_step=lambda o: stages.append({"step": o.step, "passed": o.passed, "why": o.reasons}),
    )
    assert result.outcome == "promoted", stages
    status = operations.status(aks)
    assert [(v.track, v.version, v.weight) for v in status.versions] == [
        ("stable", s.canary_version, 100)
    ]
    served = probe(status.gateway_url + "/score", PROBES, show_progress=False)
    assert served.counts == {s.canary_version: PROBES}, served.to_dict()
