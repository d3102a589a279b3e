"""Run the real AML inference server (azmlinfsrv) bound to 127.0.0.1 instead of 0.0.0.0.

azmlinfsrv hard-codes its bind host; in a pod that is right, on a laptop nothing may listen
beyond loopback. Arguments are azmlinfsrv's own: ``--entry_script``, ``--model_dir``, ``--port``.
"""

from __future__ import annotations

import sys

LOOPBACK = "127.0.0.1"


def main(argv: list[str] | None = None) -> None:
    from azureml_inference_server_http import amlserver

    amlserver.DEFAULT_HOST = LOOPBACK  # type: ignore[attr-defined]
    sys.argv = ["azmlinfsrv", *(sys.argv[1:] if argv is None else argv)]
    amlserver.run()


if __name__ == "__main__":
    main()
