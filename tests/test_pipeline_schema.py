"""azure-pipelines.yml and its templates validate against Azure Pipelines' own JSON schema.

The schema is read with PyYAML's BaseLoader (every scalar a string), as the service reads YAML.
It cannot read ``${{ each }}`` / ``${{ if }}`` keys, so the root pipeline is validated after
compile-time expansion (templates included); each template under pipelines/ uses none of those
keys in places the schema checks, so it is validated as it is.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from workbook.pipeline import compile_pipeline
from workbook.pipeline.template import load_yaml, stringify

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "azure-pipelines.yml"
#: Azure DevOps' published schema (service-schema.json in microsoft/azure-pipelines-vscode); it is
#: not vendored here: AZURE_PIPELINES_SCHEMA names it, else the team's shared folder next to the
#: checkout.
SCHEMA = Path(
    os.environ.get("AZURE_PIPELINES_SCHEMA")
    or ROOT.parent / "shared" / "azure-pipelines" / "service-schema.json"
)
TEMPLATES = sorted((ROOT / "pipelines").glob("*.yml"))

pytestmark = pytest.mark.skipif(
    not SCHEMA.is_file(),
    reason=(
        f"NOT CHECKED: the pipeline was not validated against Azure's schema ({SCHEMA} does not "
        "exist). Download service-schema.json from github.com/microsoft/azure-pipelines-vscode "
        "and set AZURE_PIPELINES_SCHEMA=/path/to/service-schema.json to run these checks"
    ),
)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema)


def errors(validator: jsonschema.Draft7Validator, doc: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in validator.iter_errors(doc)
    ]


def expanded(target: str) -> dict[str, Any]:
    return stringify(compile_pipeline(PIPELINE, {"target": target}, repo_root=ROOT).document)


def walk(node: Any) -> Iterator[Any]:
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from walk(child)


@pytest.mark.parametrize("target", ["k8s", "local"])
def test_expanded_pipeline_validates(validator: jsonschema.Draft7Validator, target: str) -> None:
    doc = expanded(target)
    assert errors(validator, doc) == []
    leftovers = [n for n in walk(doc) if isinstance(n, str) and "${{" in n]
    assert leftovers == [], "compile-time expressions left after expansion"


@pytest.mark.parametrize("path", TEMPLATES, ids=[p.name for p in TEMPLATES])
def test_template_validates(validator: jsonschema.Draft7Validator, path: Path) -> None:
    assert errors(validator, load_yaml(path)) == []


def test_every_template_is_used() -> None:
    text = PIPELINE.read_text() + "".join(p.read_text() for p in TEMPLATES)
    for path in TEMPLATES:
        assert f"template: pipelines/{path.name}" in text or f"template: {path.name}" in text


def steps_of(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for node in walk(doc):
        if isinstance(node, dict) and "task" in node:
            yield node


def test_a_typo_in_a_task_input_fails(validator: jsonschema.Draft7Validator) -> None:
    doc = copy.deepcopy(expanded("k8s"))
    step = next(s for s in steps_of(doc) if s["task"] == "PublishPipelineArtifact@1")
    step["inputs"]["targetPth"] = step["inputs"].pop("targetPath")
    assert errors(validator, doc), "a misspelt task input must not validate"


def test_a_typo_in_a_template_fails(validator: jsonschema.Draft7Validator, tmp_path: Path) -> None:
    bad = tmp_path / "steps.yml"
    text = (ROOT / "pipelines" / "steps-setup.yml").read_text()
    bad.write_text(text.replace("scriptLocation:", "scriptLocaton:"), encoding="utf-8")
    assert errors(validator, load_yaml(bad))
