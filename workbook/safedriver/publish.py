"""Register the trained safe-driver versions in a model registry, metrics as model properties.

Works with any ``ModelRegistry``: the local folder registry, or Azure ML through
``workbook.azure.registry.AzureModelRegistry``. Training is deterministic, so registering again
with the same seed and size is a no-op (same files, same digest).
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

from workbook.errors import ConfigError, RegistryError
from workbook.registry import ModelRegistry, ModelVersion
from workbook.safedriver.data import make_dataset
from workbook.safedriver.train import VERSIONS, TrainedModel, save_model, train_version

#: The registered name of the LightGBM safe-driver model.
MODEL_NAME = "safe-driver-lgbm"

#: Rows of the default synthetic data set: a few seconds of training for both versions.
DEFAULT_ROWS = 20_000


def model_properties(model: TrainedModel) -> dict[str, str]:
    """The version's held-out metrics and training facts, as Azure ML property strings."""
    import lightgbm as lgb

    props = {k: f"{v:.6g}" for k, v in model.metrics.items()}
    props.update(
        features=str(len(model.features)),
        seed=str(model.seed),
        n_rows=str(model.n_rows),
        algorithm=f"lightgbm {lgb.__version__}",
        description=model.spec.description,
    )
    return props


def register_models(
    registry: ModelRegistry,
    versions: list[str] | tuple[str, ...] = ("v1", "v2"),
    *,
    name: str = MODEL_NAME,
    n_rows: int = DEFAULT_ROWS,
    seed: int = 0,
) -> list[ModelVersion]:
    """Train and register each of ``versions`` that ``registry`` lacks; return all of them.

    A version already registered is kept as it is (a version never changes).
    """
    unknown = [v for v in versions if v not in VERSIONS]
    if unknown:
        raise ConfigError(
            f"model {name}",
            "version",
            f"must be one of the trained versions {sorted(VERSIONS)}, got {unknown}",
        )
    found: dict[str, ModelVersion] = {}
    for version in versions:
        with contextlib.suppress(RegistryError):
            found[version] = registry.get(name, version)
    todo = [v for v in dict.fromkeys(versions) if v not in found]
    if todo:
        data = make_dataset(n_rows, seed)
        with tempfile.TemporaryDirectory(prefix="workbook-safe-driver-") as tmp:
            for version in todo:
                model = train_version(VERSIONS[version], data, seed)
                folder = save_model(model, Path(tmp) / version, name)
                found[version] = registry.register(
                    name,
                    folder,
                    version,
                    tags={"kind": "lightgbm", "app": "safe-driver"},
                    properties=model_properties(model),
                )
    return [found[v] for v in versions]


def sample_payload(n_rows: int = 1, seed: int = 1) -> dict[str, Any]:
    """A scoring request body of ``n_rows`` synthetic drivers: ``{"data": [{column: value}]}``."""
    if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows < 1:
        raise ConfigError(
            "safe-driver payload", "n_rows", f"must be an integer >= 1, got {n_rows!r}"
        )
    data = make_dataset(max(n_rows, 100), seed)
    return {"data": data.rows(0, n_rows)}
