"""Typed settings and the stage plan shared by the notebooks, the CLI and the pipeline."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from workbook.canary import DEFAULT_STAGES, parse_stages, stage_plan, validate_weight
from workbook.errors import ConfigError

__all__ = ["DEFAULT_STAGES", "Settings", "validate_weight"]

#: Significance of the split test: a stage whose observed split has p < SPLIT_ALPHA fails. Small,
#: because a false alarm rolls back a healthy canary; misrouting is gross and still caught.
SPLIT_ALPHA = 0.001

#: Requests each stage sends through the gateway (enough for the split test at 10%).
DEFAULT_REQUESTS = 1000

#: Request header that pins a request to one version: ``x-model-version: stable|canary``.
HEADER_NAME = "x-model-version"

TARGETS = ("local", "k8s")
CHART_NAME = "scoring-canary"

#: The scoring apps (``workbook/scoring/<app>/``) and, for each, the image repository and the
#: registered model name it uses unless they are set explicitly. The dummy keeps the historical
#: model name; the LightGBM model has its own, so both can live in one registry.
SCORING_APPS: dict[str, dict[str, str]] = {
    "dummy": {"repository": "scoring", "model_name": "safe-driver"},
    "safe-driver": {"repository": "scoring-safe-driver", "model_name": "safe-driver-lgbm"},
}


def project_root() -> Path:
    """The checkout that holds ``charts/``: next to the package, else the nearest parent of cwd."""
    here = Path(__file__).resolve().parent.parent
    if (here / "charts" / CHART_NAME).is_dir():
        return here
    for parent in [Path.cwd(), *Path.cwd().parents]:
        if (parent / "charts" / CHART_NAME).is_dir():
            return parent
    return Path.cwd()


@dataclass(frozen=True)
class Settings:
    """Where and what to deploy. Every field can come from a ``WORKBOOK_*`` environment variable."""

    target: str = "local"
    namespace: str = "canary-demo"
    release: str = "scoring"
    app: str = "scoring"
    registry: str = "canaryworkbook.azurecr.io"
    repository: str = "scoring"
    model_name: str = "safe-driver"
    stable_version: str = "v1"
    canary_version: str = "v2"
    header_name: str = HEADER_NAME
    stages: tuple[int, ...] = DEFAULT_STAGES
    kiali_url: str = "http://localhost:20001/kiali"
    #: Prometheus HTTP API that holds the cluster's Istio metrics (k8s target), e.g. a
    #: ``kubectl port-forward`` to the Prometheus service that scrapes the mesh.
    prometheus_url: str = "http://127.0.0.1:9090"
    kube_context: str | None = None
    #: k8s: ``addon`` (AKS Istio add-on) or ``upstream``; empty: detected from the cluster.
    istio_flavour: str = ""
    #: k8s: the istiod revision to inject by (``asm-1-26``); empty: detected.
    istio_revision: str = ""
    #: k8s, add-on: ``external`` or ``internal`` ingress gateway.
    istio_addon_ingress: str = ""
    #: k8s: ``namespace/name`` of the ingress gateway Service; empty: the flavour's.
    gateway_service: str = ""
    #: Rehearsal faults of the canary (``workbook.faults``), e.g. ``errors=0.5,errors-after=200``.
    canary_fault: str = ""
    #: Seconds a verb waits for the gateway to serve new weights (``WORKBOOK_SERVE_TIMEOUT_S``).
    serve_timeout_s: float = 120.0
    scoring_app: str = "dummy"
    state_dir: Path = field(default_factory=lambda: project_root() / ".workbook")
    chart_dir: Path = field(default_factory=lambda: project_root() / "charts" / CHART_NAME)

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(
                "settings", "target", f"must be one of {TARGETS}, got {self.target!r}"
            )
        object.__setattr__(self, "stages", stage_plan(self.stages, "settings"))
        if self.scoring_app not in SCORING_APPS:
            raise ConfigError(
                "settings",
                "scoring_app",
                f"must be one of {sorted(SCORING_APPS)}, got {self.scoring_app!r}",
            )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``WORKBOOK_<FIELD>`` variables, then explicit keyword overrides."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            raw = env.get(f"WORKBOOK_{name.upper()}")
            if raw is None:
                continue
            if name == "stages":
                values[name] = parse_stages(raw, "WORKBOOK_STAGES")
            elif name in ("state_dir", "chart_dir"):
                values[name] = Path(raw)
            elif name == "serve_timeout_s":
                try:
                    values[name] = float(raw)
                except ValueError:
                    raise ConfigError(
                        "WORKBOOK_SERVE_TIMEOUT_S", "", f"must be seconds, got {raw!r}"
                    ) from None
            else:
                values[name] = raw
        if "KIALI_URL" in env and "kiali_url" not in values:
            values["kiali_url"] = env["KIALI_URL"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        app = values.get("scoring_app")
        if app in SCORING_APPS:  # the app's repository and model name unless given
            values = {**SCORING_APPS[app], **values}
        return cls(**values)

    def for_app(self, scoring_app: str) -> Settings:
        """A copy that deploys ``scoring_app``: its repository and model name replace the ones
        still at the current app's defaults (values set explicitly are kept)."""
        if scoring_app not in SCORING_APPS:
            raise ConfigError(
                "settings",
                "scoring_app",
                f"must be one of {sorted(SCORING_APPS)}, got {scoring_app!r}",
            )
        current = SCORING_APPS[self.scoring_app]
        changes: dict[str, Any] = {
            k: v for k, v in SCORING_APPS[scoring_app].items() if getattr(self, k) == current[k]
        }
        return replace(self, scoring_app=scoring_app, **changes)

    def image(self, version: str) -> str:
        """The image reference of one model version in the team's registry."""
        return f"{self.registry}/{self.repository}:{version}"

    def chart_values(self) -> dict[str, Any]:
        """The chart values these settings imply (the chart's defaults fill in the rest)."""
        return {
            "app": self.app,
            "image": {"registry": self.registry},
            "routing": {"headerName": self.header_name},
            "stable": {
                "version": self.stable_version,
                "image": {"repository": self.repository, "tag": self.stable_version},
            },
            "canary": {
                "version": self.canary_version,
                "image": {"repository": self.repository, "tag": self.canary_version},
            },
        }
