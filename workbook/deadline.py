"""Run a blocking call with a deadline: for SDKs (azureml-core, Helm reads) that have no timeout."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class DeadlineExceeded(Exception):
    """The call did not return in time (it goes on in a daemon thread)."""


def call_with_deadline(fn: Callable[[], T], timeout_s: float, name: str) -> T:
    """``fn()`` in a daemon thread; its exception re-raised; DeadlineExceeded past ``timeout_s``.

    A daemon worker cannot keep the process alive if the call never returns.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise DeadlineExceeded(name)
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]
