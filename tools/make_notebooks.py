"""Write the six workbook notebooks (sources only; outputs come from a local papermill run).

The notebooks are the product; this script is how they are kept consistent. Run it, then
``make notebooks`` to execute them against a local mesh and store their outputs for nbval.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent / "notebooks"
IGNORE = "# NBVAL_IGNORE_OUTPUT\n"
CHECK = "# NBVAL_CHECK_OUTPUT\n"


def md(text: str):
    return new_markdown_cell(text.strip())


def code(text: str, tags: list[str] | None = None):
    cell = new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = tags
    return cell


def params(text: str):
    return code(text, ["parameters"])


NOTEBOOKS: dict[str, list] = {}

NOTEBOOKS["01_workspace_setup"] = [
    md("""
# 1. Workspace setup

A canary starts from models that are **registered**: each version has a name, a version and the
files that make it. This notebook connects to the model registry and registers the two versions
the canary will compare: `v1` (stable, in production today) and `v2` (the canary).

- `target="local"` (default): a folder registry in the project's state directory, no Azure needed.
- `target="k8s"`: the Azure ML workspace, from `config.json` or the service principal variables
  (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, ...). Credentials never pass as
  notebook parameters.
"""),
    code("""
from workbook import workspace
from workbook.record import record
from workbook.settings import Settings
"""),
    params("""
target = "local"
versions = ["v1", "v2"]
"""),
    md("""
## 1.1 Settings
One settings object carries the names every later notebook uses: namespace, release, model name,
the image repository in the team's registry.
"""),
    code(
        CHECK
        + """
settings = Settings.from_env(target=target)
print(f"target={settings.target} namespace={settings.namespace} model={settings.model_name}")
"""
    ),
    md("""
## 1.2 Connect to the registry
"""),
    code(
        IGNORE
        + """
registry = workspace.open_registry(settings)
print(type(registry).__name__)
"""
    ),
    md("""
## 1.3 Register the model versions
Registering a version that already exists with the same files is a no-op, so this notebook can run
again safely. Each dummy version reports its own version string when it scores, which is how the
probe tells the two versions apart in the traffic.
"""),
    code(
        CHECK
        + """
models = workspace.register_versions(settings, registry, versions)
print("registered:", [f"{m.name}:{m.version}" for m in models])
"""
    ),
    code(
        IGNORE
        + """
import pandas as pd

pd.DataFrame(workspace.models_table(registry, settings.model_name))
"""
    ),
    code(
        IGNORE
        + """
record("models", [f"{m.name}:{m.version}" for m in models])
"""
    ),
]

NOTEBOOKS["02_package_image"] = [
    md("""
# 2. Package the scoring image

A scoring image holds the model files, `score.py` (with `init()` and `run()`), the Python
requirements and a Dockerfile whose entrypoint is the Azure ML inference server (`azmlinfsrv`).
In Azure this is `Model.package` into the workspace's container registry. Locally the same build
context is stored as an image bundle under `repository:tag`, and the local mesh runs it with the
real `azmlinfsrv`.
"""),
    code("""
from workbook import workspace
from workbook.record import record
from workbook.settings import Settings
"""),
    params("""
target = "local"
model_version = "v2"
"""),
    code(
        CHECK
        + """
settings = Settings.from_env(target=target)
registry = workspace.open_registry(settings)
image = workspace.package_image(settings, registry, model_version)
print("image:", image["ref"])
print("model:", image["model"])
"""
    ),
    md("""
## 2.1 The build context
The image reference is what the Helm chart's values take (`stable.image` / `canary.image`).
"""),
    code(
        CHECK
        + """
print("\\n".join(image["files"]))
"""
    ),
    code(
        IGNORE
        + """
print(image["dockerfile"])
"""
    ),
    code(
        IGNORE
        + """
record("image", {"ref": image["ref"], "digest": image["digest"], "model": image["model"]})
"""
    ),
]

NOTEBOOKS["03_deploy_helm"] = [
    md("""
# 3. Deploy stable and canary with Helm

The chart `charts/scoring-canary` renders, for one release:
- two **Deployments**, `scoring-stable` (v1) and `scoring-canary` (v2), side by side;
- one **Service** and an Istio **Gateway**: the single scoring endpoint;
- a **DestinationRule** with one subset per version (selected by the pods' `version` label);
- a **VirtualService**: first the routes that pin a version by the `x-model-version` header, then
  the weighted route that splits the rest between stable and canary.

The canary starts at weight 0: deployed and ready, reachable by header, but taking no user traffic.
"""),
    code("""
import yaml
from IPython.display import Markdown

from workbook import kiali, rollout
from workbook.cluster import connect
from workbook.record import record
from workbook.settings import Settings
"""),
    params("""
target = "local"
canary_weight = 0
canary_version = ""  # default: the settings' canary version (v2)
canary_image = ""  # default: the settings' registry/repository:<canary_version>
# Rehearse a failing canary (dummy model only): this share of its answers fail after the first N.
canary_error_rate = 0.0
canary_errors_after = 0
"""),
    md("""
## 3.1 Install or upgrade the release
This returns when both Deployments are ready and the gateway serves the new routes.
"""),
    code(
        IGNORE
        + """
settings = Settings.from_env(target=target)
cluster = connect(settings)
rollout.reset_stages(settings)
canary_env = rollout.fault_env(canary_error_rate, canary_errors_after)
release = rollout.deploy(
    cluster, canary_weight, canary_env, canary_image=canary_image, canary_version=canary_version
)
print(f"revision {release.revision}: {release.description}")
"""
    ),
    code(
        CHECK
        + """
status = cluster.status()
for v in status.versions:
    print(f"{v.track:7} {v.version}  ready {v.ready}/{v.replicas}  weight {v.weight}%  {v.image}")
print("configured weights:", status.weights())
"""
    ),
    md("""
## 3.2 What Istio routes by
The rendered VirtualService and DestinationRule, as the cluster (or the local gateway) holds them.
"""),
    code(
        IGNORE
        + """
print(yaml.safe_dump(cluster.get("VirtualService", settings.app)[0]["spec"], sort_keys=False))
"""
    ),
    code(
        IGNORE
        + """
print(yaml.safe_dump(cluster.get("DestinationRule", settings.app)[0]["spec"], sort_keys=False))
"""
    ),
    md("""
## 3.3 Watch it in Kiali
Kiali draws the mesh from Istio's telemetry: the versioned-app graph shows the gateway, the service
and both versions with the share of requests on each edge.
"""),
    code(
        IGNORE
        + """
links = rollout.kiali_links(settings, cluster)
Markdown(kiali.markdown(links))
"""
    ),
    code(
        IGNORE
        + """
record("deploy", {"revision": release.revision, "weights": status.weights(), "kiali": links.graph})
"""
    ),
]

NOTEBOOKS["04_shift_traffic"] = [
    md("""
# 4. Shift traffic to the canary

One stage of the rollout: set the canary weight, wait until the gateway serves it, send real
requests through the endpoint, and compare the share each version **really** got with the
configured weights. A chi-square goodness-of-fit test says whether the observed split is
consistent with the weights (a fixed tolerance would be too strict for small stages and too lax
for large ones). Errors fail the stage as well.
"""),
    code("""
from IPython.display import Markdown

from workbook import kiali, plots, rollout
from workbook.cluster import connect
from workbook.record import record, run_dir
from workbook.settings import Settings
"""),
    params("""
target = "local"
canary_weight = 10
requests = 1000
alpha = 0.001  # a split fits when p >= alpha (workbook.settings.SPLIT_ALPHA)
"""),
    code(
        IGNORE
        + """
settings = Settings.from_env(target=target)
cluster = connect(settings)
stage = rollout.run_stage(cluster, canary_weight, requests, alpha=alpha, show_progress=False)
print(stage.line())
"""
    ),
    code(
        CHECK
        + """
print("configured weights:", stage.weights)
"""
    ),
    md("""
## 4.1 Observed versus configured, stage by stage
Points are the observed shares with 95% Wilson intervals; dashed bars are the configured weights.
"""),
    code(
        IGNORE
        + """
stages = rollout.append_stage(settings, stage, run_dir())
fig = plots.split_figure(stages, canary_version=settings.canary_version)
plots.save(fig, run_dir() / f"split-{canary_weight:03d}.png")
fig
"""
    ),
    code(
        IGNORE
        + """
fig = plots.latency_figure(stages, canary_version=settings.canary_version)
plots.save(fig, run_dir() / f"latency-{canary_weight:03d}.png")
fig
"""
    ),
    md("""
## 4.2 The mesh as the gateway saw it
Drawn from the gateway's own per-version counters during this stage (the probe's requests), the
way Kiali's versioned-app graph draws Istio's telemetry. The probe counted versions from the
answers; the gateway counted them on its side: both must agree.
"""),
    code(
        IGNORE
        + """
fig = plots.mesh_graph_figure(
    stage.gateway, namespace=settings.namespace, app=settings.app, versions=stage.versions
)
plots.save(fig, run_dir() / f"mesh-{canary_weight:03d}.png")
fig
"""
    ),
    code(
        IGNORE
        + """
Markdown(kiali.markdown(rollout.kiali_links(settings, cluster)))
"""
    ),
    code(
        IGNORE
        + """
record("stage", stage.to_dict())
"""
    ),
    md("""
## 4.3 Gate
A stage that does not fit its weights, or that saw errors, stops the rollout here: the notebook
fails, and so does the pipeline stage that ran it, which sends the pipeline to its rollback stage.
"""),
    code("""
rollout.require_pass(stage)
"""),
]

NOTEBOOKS["05_header_routing"] = [
    md("""
# 5. Pin requests to a version with a header

Before (and during) a rollout, testers send requests to one version on purpose:
`x-model-version: stable` or `x-model-version: canary`. The VirtualService's first routes match
the header exactly; everything else falls through to the weighted route. Every pinned request must
land on the version it asked for, whatever the weights are.
"""),
    code("""
from workbook import rollout
from workbook.cluster import connect
from workbook.record import record
from workbook.settings import Settings
"""),
    params("""
target = "local"
requests = 200
"""),
    code(
        IGNORE
        + """
settings = Settings.from_env(target=target)
cluster = connect(settings)
result = rollout.header_routing(cluster, requests)
"""
    ),
    code(
        CHECK
        + """
for track in ("stable", "canary"):
    r = result[track]
    print(f"x-model-version: {track:6} → {r['counts']}  all landed on {r['expected']}: {r['all_landed']}")
"""
    ),
    code(
        IGNORE
        + """
u = result["unpinned"]
print(f"unpinned: {u['counts']} for weights {u['weights']}; split fits: {u['split_fits']}")
"""
    ),
    code(
        IGNORE
        + """
record("header_routing", result)
"""
    ),
    code("""
assert result["stable"]["all_landed"] and result["canary"]["all_landed"], result
"""),
]

NOTEBOOKS["06_promote_or_rollback"] = [
    md("""
# 6. Promote or roll back

- **promote**: the canary's image and version become the stable Deployment's, the canary is
  removed, and stable takes 100% of the traffic.
- **rollback**: back to the last release revision in which the canary took no traffic; stable
  serves 100% again and the canary stays deployed at weight 0 for a look at what went wrong.

Both are new release revisions, so the history below is the audit trail of the rollout.
"""),
    code("""
import pandas as pd

from workbook import rollout
from workbook.cluster import connect
from workbook.record import record
from workbook.settings import Settings
"""),
    params("""
target = "local"
decision = "promote"
"""),
    code(
        IGNORE
        + """
settings = Settings.from_env(target=target)
cluster = connect(settings)
release = rollout.decide(cluster, decision)
print(f"revision {release.revision}: {release.description}")
"""
    ),
    code(
        CHECK
        + """
status = cluster.status()
print("decision:", decision)
print("configured weights:", status.weights())
"""
    ),
    code(
        IGNORE
        + """
pd.DataFrame([
    {"revision": h.revision, "status": h.status, "canary weight": h.values.get("canary", {}).get("weight", 0),
     "description": h.description}
    for h in cluster.history()
])
"""
    ),
    code(
        IGNORE
        + """
record("decision", {"decision": decision, "revision": release.revision, "weights": status.weights()})
"""
    ),
]


def main() -> None:
    ROOT.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        nb.metadata["language_info"] = {"name": "python"}
        nbformat.write(nb, ROOT / f"{name}.ipynb")
        print("wrote", name)


if __name__ == "__main__":
    main()
