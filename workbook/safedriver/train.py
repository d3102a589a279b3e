"""Train the safe-driver model versions (LightGBM) and measure them on a held-out split.

Two versions with the same request schema: ``v1`` is a baseline on all 57 columns; ``v2`` drops
the ``calc`` columns (noise, in the competition as here) and is tuned slower, with smaller trees,
bagging and L2. Training is deterministic for a seed (one
thread, LightGBM's ``deterministic`` mode), so the same seed gives the same model file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from workbook.errors import ConfigError
from workbook.safedriver.data import Dataset, make_dataset
from workbook.safedriver.schema import columns

MODEL_FILE = "model.txt"
META_FILE = "model.json"

#: Share of the rows held out for the metrics.
TEST_SHARE = 0.2


@dataclass(frozen=True)
class VersionSpec:
    """How one model version is trained: which column groups it leaves out, and its LightGBM
    parameters."""

    version: str
    description: str
    drop_groups: tuple[str, ...]
    categorical: bool
    rounds: int
    params: dict[str, Any] = field(default_factory=dict)

    def features(self) -> list[str]:
        """The columns this version reads, in schema order."""
        return [c.name for c in columns() if c.group not in self.drop_groups]


VERSIONS: dict[str, VersionSpec] = {
    "v1": VersionSpec(
        version="v1",
        description="baseline: all 57 columns, 60 trees of 15 leaves, learning rate 0.1",
        drop_groups=(),
        categorical=False,
        rounds=60,
        params={"num_leaves": 15, "learning_rate": 0.1, "min_data_in_leaf": 40},
    ),
    "v2": VersionSpec(
        version="v2",
        description=(
            "no calc columns (noise), 150 trees of 7 leaves, learning rate 0.04, "
            "feature and row bagging, L2 5"
        ),
        drop_groups=("calc",),
        categorical=False,
        rounds=150,
        params={
            "num_leaves": 7,
            "learning_rate": 0.04,
            "min_data_in_leaf": 100,
            "feature_fraction": 0.8,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 5.0,
        },
    ),
}


@dataclass
class TrainedModel:
    """A trained version: the booster, the columns it reads, and its held-out metrics."""

    spec: VersionSpec
    booster: Any  # lightgbm.Booster
    features: list[str]
    metrics: dict[str, float]
    seed: int
    n_rows: int

    def predict(self, X: np.ndarray, all_columns: tuple[str, ...] | list[str]) -> np.ndarray:
        """Claim probabilities for rows ``X`` whose columns are ``all_columns``."""
        idx = [list(all_columns).index(f) for f in self.features]
        return np.asarray(self.booster.predict(X[:, idx], num_threads=1), dtype=np.float64)


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U over average ranks, so ties count half)."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both classes in y")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def gini(y: np.ndarray, score: np.ndarray) -> float:
    """Normalised Gini, the competition's metric: ``2 * AUC - 1``."""
    return 2.0 * roc_auc(y, score) - 1.0


def split(
    y: np.ndarray, seed: int, test_share: float = TEST_SHARE
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test row indices (sorted), the same for the same ``y`` and seed."""
    rng = np.random.default_rng([seed, 1])
    test = []
    for label in (0, 1):
        rows = np.flatnonzero(y == label)
        rng.shuffle(rows)
        test.append(rows[: round(len(rows) * test_share)])
    test_idx = np.sort(np.concatenate(test))
    train_mask = np.ones(len(y), dtype=bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask), test_idx


def train_version(spec: VersionSpec, data: Dataset, seed: int = 0) -> TrainedModel:
    """Train one version on the training split of ``data``; metrics on the held-out split."""
    import lightgbm as lgb

    features = spec.features()
    idx = np.array([data.columns.index(f) for f in features])
    train_idx, test_idx = split(data.y, seed)
    categorical = [f for f in features if f.endswith("_cat")] if spec.categorical else []
    params = {
        "objective": "binary",
        "verbose": -1,
        "seed": seed,
        "num_threads": 1,
        "deterministic": True,
        "force_col_wise": True,
        **spec.params,
    }
    train_set = lgb.Dataset(
        data.X[np.ix_(train_idx, idx)],
        label=data.y[train_idx],
        feature_name=features,
        categorical_feature=categorical or "auto",
        free_raw_data=True,
    )
    booster = lgb.train(params, train_set, num_boost_round=spec.rounds)
    model = TrainedModel(spec, booster, features, {}, seed, len(data.y))
    p_test = model.predict(data.X[test_idx], data.columns)
    y_test = data.y[test_idx]
    eps = 1e-15
    logloss = -np.mean(
        y_test * np.log(np.clip(p_test, eps, 1))
        + (1 - y_test) * np.log(np.clip(1 - p_test, eps, 1))
    )
    auc = roc_auc(y_test, p_test)
    model.metrics = {
        "auc": round(auc, 6),
        "gini": round(2 * auc - 1, 6),
        "logloss": round(float(logloss), 6),
        "positive_rate": round(float(data.y.mean()), 6),
        "n_train": float(len(train_idx)),
        "n_test": float(len(test_idx)),
    }
    return model


def train_versions(
    versions: list[str] | tuple[str, ...] = ("v1", "v2"), *, n_rows: int = 20_000, seed: int = 0
) -> dict[str, TrainedModel]:
    """Train the named versions on one synthetic data set of ``n_rows`` from ``seed``."""
    unknown = [v for v in versions if v not in VERSIONS]
    if unknown:
        raise ConfigError(
            "safe-driver model", "version", f"must be one of {sorted(VERSIONS)}, got {unknown}"
        )
    data = make_dataset(n_rows, seed)
    return {v: train_version(VERSIONS[v], data, seed) for v in versions}


def model_metadata(model: TrainedModel, name: str) -> dict[str, Any]:
    """What ``model.json`` holds next to the LightGBM model file (read by score.py)."""
    import lightgbm as lgb

    return {
        "name": name,
        "version": model.spec.version,
        "description": model.spec.description,
        "features": model.features,
        "metrics": model.metrics,
        "seed": model.seed,
        "n_rows": model.n_rows,
        "params": dict(model.spec.params, rounds=model.spec.rounds),
        "lightgbm": lgb.__version__,
        "model_file": MODEL_FILE,
    }


def save_model(model: TrainedModel, dest: Path, name: str) -> Path:
    """Write ``model.txt`` (LightGBM's text format) and ``model.json`` into ``dest``; return it."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model.booster.save_model(str(dest / MODEL_FILE))
    text = json.dumps(model_metadata(model, name), indent=2, sort_keys=True) + "\n"
    (dest / META_FILE).write_text(text, encoding="utf-8")
    return dest


def load_booster(folder: Path) -> tuple[Any, dict[str, Any]]:
    """A saved version back: its booster and its metadata."""
    import lightgbm as lgb

    meta = json.loads((Path(folder) / META_FILE).read_text(encoding="utf-8"))
    return lgb.Booster(model_file=str(Path(folder) / MODEL_FILE)), meta
