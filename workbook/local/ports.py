"""Loopback ports and child-process lifetime for the local control plane."""

from __future__ import annotations

import socket

from workbook.errors import ConfigError


def die_with_parent() -> None:
    """``preexec_fn`` for the supervisor's children: SIGTERM when the supervisor dies (Linux).

    Without it, a killed supervisor would leave Envoy and the pods serving with nobody to stop them.
    """
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_port_free(port: int, what: str = "gateway") -> int:
    """The port itself when 127.0.0.1:port can be bound, else a ConfigError naming it."""
    if not 1 <= port <= 65535:
        raise ConfigError(what, "port", f"must be 1..65535, got {port}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            raise ConfigError(
                what, "port", f"127.0.0.1:{port} is already taken ({e.strerror}); pick another"
            ) from None
    return port
