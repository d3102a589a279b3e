"""The command line's contract (README, "Command line"): options where documented, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbook import cli


@pytest.mark.parametrize(
    "argv",
    [
        ["up", "--target", "k8s", "--set", "canary.weight=5"],
        ["--target", "k8s", "up", "--set", "canary.weight=5"],
    ],
)
def test_target_before_or_after_the_verb(argv: list[str]) -> None:
    args = cli.parser().parse_args(argv)
    assert args.target == "k8s" and args.set == ["canary.weight=5"]


def test_verb_option_wins_over_the_global_one() -> None:
    args = cli.parser().parse_args(["--state-dir", "a", "status", "--state-dir", "b"])
    assert args.state_dir == "b"


def test_bad_input_exits_2_and_names_the_field(tmp_path: Path, capsys) -> None:
    assert cli.main(["--state-dir", str(tmp_path), "shift", "ten"]) == 2
    assert "shift: WEIGHT must be an integer 0..100, got 'ten'" in capsys.readouterr().err


def test_a_verb_without_a_mesh_says_how_to_start_one(tmp_path: Path, capsys) -> None:
    assert cli.main(["status", "--state-dir", str(tmp_path)]) == 1
    assert "run `workbook up`" in capsys.readouterr().err


def _template(capsys, *argv: str) -> list[dict]:
    import yaml

    assert cli.main(["template", *argv]) == 0
    return [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]


def test_template_renders_the_addon_flavour_without_a_cluster(capsys) -> None:
    docs = _template(
        capsys, "--istio", "addon", "--istio-revision", "asm-1-26", "--set", "namespace.create=true"
    )
    by_kind = {d["kind"]: d for d in docs}
    assert by_kind["Gateway"]["spec"]["selector"] == {"istio": "aks-istio-ingressgateway-external"}
    ns_labels = by_kind["Namespace"]["metadata"]["labels"]
    assert ns_labels["istio.io/rev"] == "asm-1-26" and "istio-injection" not in ns_labels
    assert "mesh" in by_kind["VirtualService"]["spec"]["gateways"]  # in-cluster callers too
    pods = [d["spec"]["template"] for d in docs if d["kind"] == "Deployment"]
    assert all(p["metadata"]["labels"]["istio.io/rev"] == "asm-1-26" for p in pods)


def test_template_renders_upstream_and_refuses_an_addon_without_revision(capsys) -> None:
    docs = _template(capsys, "--istio", "upstream")
    (gateway,) = [d for d in docs if d["kind"] == "Gateway"]
    assert gateway["spec"]["selector"] == {"istio": "ingressgateway"}
    assert cli.main(["template", "--istio", "addon"]) == 2
    assert "istio.revision is required" in capsys.readouterr().err
