"""The safe-driver app on the local mesh: its pods behind the real Envoy gateway."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from workbook import operations, traffic
from workbook.local.target import LocalTarget
from workbook.packaging import probe_payload
from workbook.registry import LocalImageStore
from workbook.safedriver.publish import MODEL_NAME
from workbook.safedriver.train import load_booster
from workbook.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sd_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTarget]:
    settings = Settings(state_dir=tmp_path_factory.mktemp("sd-mesh")).for_app("safe-driver")
    cluster = LocalTarget(settings)
    operations.up(cluster, {})
    try:
        yield cluster
    finally:
        cluster.down()


def post(url: str, payload: dict, headers: dict[str, str]) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())


def test_up_deploys_the_safe_driver_images(sd_mesh: LocalTarget) -> None:
    st = operations.status(sd_mesh)
    images = sorted(v.image for v in st.versions)
    assert images == [
        "canaryworkbook.azurecr.io/scoring-safe-driver:v1",
        "canaryworkbook.azurecr.io/scoring-safe-driver:v2",
    ]


@pytest.mark.parametrize(("pin", "version"), [("stable", "v1"), ("canary", "v2")])
def test_gateway_serves_each_versions_own_predictions(
    sd_mesh: LocalTarget, pin: str, version: str
) -> None:
    settings = sd_mesh.settings
    payload = probe_payload("safe-driver", 100)
    answer = post(
        operations.status(sd_mesh).gateway_url + "/score", payload, {"x-model-version": pin}
    )
    assert (answer["version"], answer["model"], answer["n"]) == (version, MODEL_NAME, 100)
    bundle = LocalImageStore(Path(settings.state_dir)).resolve(settings.image(version))
    booster, meta = load_booster(bundle.model_dir_path / MODEL_NAME / version)
    X = np.array([[row[f] for f in meta["features"]] for row in payload["data"]])
    assert answer["predictions"] == [float(p) for p in booster.predict(X, num_threads=1)]


def test_probe_with_the_apps_payload_splits_without_errors(sd_mesh: LocalTarget) -> None:
    operations.shift(sd_mesh, 50)
    result = traffic.probe(
        operations.status(sd_mesh).gateway_url + "/score",
        200,
        concurrency=4,
        payload=probe_payload("safe-driver"),
        show_progress=False,
    )
    assert result.errors == 0
    assert set(result.counts) == {"v1", "v2"}
