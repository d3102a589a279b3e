"""The Kubernetes Pod Security Standards as pure checks over a pod spec.

Rules from kubernetes.io/docs/concepts/security/pod-security-standards (the "Baseline" and
"Restricted" tables; Restricted includes Baseline). Each check returns what breaks a rule, with the
field, so a test (or a reviewer running ``workbook template``) sees why a pod would be refused by
a namespace labelled ``pod-security.kubernetes.io/enforce=<level>``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

#: Baseline: capabilities a container may add.
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
#: Baseline: sysctls a pod may set.
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
#: Restricted: the only volume types allowed.
RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for key in _CONTAINER_LISTS:
        for i, c in enumerate(spec.get(key) or []):
            yield f"{key}[{i}]", c


def baseline_violations(spec: Mapping[str, Any]) -> list[str]:
    """Fields of a pod spec that break the Baseline profile."""
    out = [f"{k}: must not be true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]
    psc = spec.get("securityContext") or {}
    for i, v in enumerate(spec.get("volumes") or []):
        if "hostPath" in v:
            out.append(f"volumes[{i}].hostPath: not allowed")
    if (psc.get("seccompProfile") or {}).get("type") == "Unconfined":
        out.append("securityContext.seccompProfile.type: must not be Unconfined")
    for s in psc.get("sysctls") or []:
        if s.get("name") not in SAFE_SYSCTLS:
            out.append(f"securityContext.sysctls: {s.get('name')} is not a safe sysctl")
    for path, c in _containers(spec):
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            out.append(f"{path}.securityContext.privileged: must not be true")
        added = set((sc.get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        if added:
            out.append(f"{path}.securityContext.capabilities.add: {sorted(added)} not allowed")
        for j, port in enumerate(c.get("ports") or []):
            if port.get("hostPort"):
                out.append(f"{path}.ports[{j}].hostPort: must be 0 or unset")
        if sc.get("procMount", "Default") != "Default":
            out.append(f"{path}.securityContext.procMount: must be Default")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            out.append(f"{path}.securityContext.seccompProfile.type: must not be Unconfined")
    return out


def restricted_violations(spec: Mapping[str, Any]) -> list[str]:
    """Fields of a pod spec that break the Restricted profile (Baseline included)."""
    out = baseline_violations(spec)
    psc = spec.get("securityContext") or {}
    for i, v in enumerate(spec.get("volumes") or []):
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            out.append(f"volumes[{i}]: type {sorted(kinds)} not allowed")
    if psc.get("runAsUser") == 0:
        out.append("securityContext.runAsUser: must not be 0")
    pod_nonroot = psc.get("runAsNonRoot") is True
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
    for path, c in _containers(spec):
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{path}.securityContext.allowPrivilegeEscalation: must be false")
        nonroot = sc.get("runAsNonRoot")
        if nonroot is False or (nonroot is None and not pod_nonroot):
            out.append(f"{path}.securityContext.runAsNonRoot: must be true (here or on the pod)")
        if sc.get("runAsUser") == 0:
            out.append(f"{path}.securityContext.runAsUser: must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is None and not pod_seccomp:
            out.append(f"{path}.securityContext.seccompProfile.type: must be RuntimeDefault")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{path}.securityContext.capabilities.drop: must include ALL")
        extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if extra:
            out.append(f"{path}.securityContext.capabilities.add: only NET_BIND_SERVICE allowed")
    return out


def violations(profile: str, spec: Mapping[str, Any]) -> list[str]:
    """``baseline_violations`` or ``restricted_violations`` by profile name."""
    if profile == "restricted":
        return restricted_violations(spec)
    if profile == "baseline":
        return baseline_violations(spec)
    raise ValueError(f"unknown Pod Security profile {profile!r}")
