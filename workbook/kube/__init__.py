"""The ``k8s`` target: a Helm release of the chart on a real cluster with Istio.

``target.KubernetesTarget`` implements the seam of ``workbook.seam``; ``helm`` holds the Helm
calls and ``client`` the Kubernetes API calls (pure functions over an ``ApiClient``, tested
against kmock).
"""
