"""Canary workbook: take a registered Azure ML model to production with a canary on Istio.

The same flow runs on a real Kubernetes + Istio cluster (``target="k8s"``) and on this machine
(``target="local"``: a real Envoy gateway in front of real azmlinfsrv scoring processes).
"""

__version__ = "0.1.0"
