"""Compile time: load pipeline YAML, bind parameters, expand templates and ``${{ }}`` expressions.

What Azure Pipelines does before a run starts, for the subset this project uses: typed
``parameters`` (root and template), ``- template: file`` with ``parameters:`` in ``stages``,
``jobs``, ``steps`` and ``variables`` lists (paths relative to the including file, ``/`` for the
repository root), ``${{ expr }}`` in values and keys, and the ``${{ each x in y }}``,
``${{ if }}``, ``${{ elseif }}``, ``${{ else }}`` directives. Runtime syntax (``$(var)``,
``$[ expr ]``, ``condition:``) passes through untouched. Pure apart from reading files.

YAML is read with PyYAML's ``BaseLoader`` (every scalar a string), as the service reads it;
typed parameters are converted when they are bound.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workbook.errors import ConfigError
from workbook.pipeline.expressions import (
    Evaluator,
    ExpressionError,
    find_expressions,
    to_text,
    truthy,
)

LIST_KEYS = ("stages", "jobs", "steps", "variables")
PARAMETER_TYPES = (
    "string",
    "number",
    "boolean",
    "object",
    "step",
    "stepList",
    "job",
    "jobList",
    "deployment",
    "deploymentList",
    "stage",
    "stageList",
)
MAX_DEPTH = 50

_EACH = re.compile(r"^\$\{\{\s*each\s+(\w+)\s+in\s+(.+?)\s*\}\}$", re.S)
_IF = re.compile(r"^\$\{\{\s*(if|elseif)\s+(.+?)\s*\}\}$", re.S)
_ELSE = re.compile(r"^\$\{\{\s*else\s*\}\}$")
_INSERT = re.compile(r"^\$\{\{\s*insert\s*\}\}$")
_DIRECTIVE = re.compile(r"^\$\{\{\s*(each|if|elseif|else|insert)\b")


def load_yaml(path: Path) -> Any:
    """One YAML document read the way the service reads it (all scalars strings)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(path), "", f"cannot be read: {e.strerror}") from None
    try:
        return yaml.load(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(str(path), where, f"is not valid YAML: {problem}") from None


def parse_value(text: str) -> Any:
    """A ``-p name=value`` value: YAML flow syntax (``[10, 50]``), scalars stay strings."""
    try:
        return yaml.load(text, Loader=yaml.BaseLoader) if text.strip() else ""
    except yaml.YAMLError:
        return text


@dataclass
class Parameter:
    """One declared parameter of a pipeline or template."""

    name: str
    type: str = "string"
    default: Any = None
    has_default: bool = False
    values: list[str] = field(default_factory=list)


def declared_parameters(raw: Any, where: str) -> list[Parameter]:
    """The ``parameters:`` block: a list of ``{name, type, default, values}``, or a mapping."""
    if raw is None or raw == "":
        return []
    if isinstance(raw, Mapping):  # legacy template form: name: default
        return [Parameter(str(k), "object", v, True) for k, v in raw.items()]
    if not isinstance(raw, list):
        raise ConfigError(where, "parameters", "must be a list of {name, type, default}")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or not item.get("name"):
            raise ConfigError(where, f"parameters[{i}]", "must be a mapping with a name")
        ptype = str(item.get("type", "string"))
        if ptype not in PARAMETER_TYPES:
            raise ConfigError(
                where, f"parameters[{i}].type", f"must be one of {list(PARAMETER_TYPES)}"
            )
        values = item.get("values") or []
        out.append(
            Parameter(
                str(item["name"]), ptype, item.get("default"), "default" in item, list(values)
            )
        )
    return out


def coerce(param: Parameter, value: Any, where: str) -> Any:
    """Convert a bound value to the parameter's type, or a ConfigError naming it."""
    field_name = f"parameters.{param.name}"
    if param.type == "number":
        if isinstance(value, bool | list | dict):
            raise ConfigError(where, field_name, f"must be a number, got {value!r}")
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ConfigError(where, field_name, f"must be a number, got {value!r}") from None
        value = int(number) if number.is_integer() else number
    elif param.type == "boolean":
        if not isinstance(value, bool):
            text = str(value).strip().lower()
            if text not in ("true", "false"):
                raise ConfigError(where, field_name, f"must be true or false, got {value!r}")
            value = text == "true"
    elif param.type == "string":
        if isinstance(value, list | dict):
            raise ConfigError(where, field_name, f"must be a string, got {value!r}")
        value = to_text(value)
    elif param.type == "object" and isinstance(value, str):
        value = parse_value(value)  # given as YAML text, as in the run dialog
    elif param.type.endswith("List") and not isinstance(value, list):
        raise ConfigError(where, field_name, f"must be a list ({param.type}), got {value!r}")
    if param.values and to_text(value) not in [str(v) for v in param.values]:
        raise ConfigError(where, field_name, f"must be one of {param.values}, got {value!r}")
    return value


def bind_parameters(
    declared: list[Parameter], given: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """Given values over defaults, typed; an unknown or missing parameter is an error."""
    by_name = {p.name.casefold(): p for p in declared}
    for name in given:
        if name.casefold() not in by_name:
            known = ", ".join(p.name for p in declared) or "none"
            raise ConfigError(where, f"parameters.{name}", f"is not declared (declared: {known})")
    folded = {k.casefold(): v for k, v in given.items()}
    out: dict[str, Any] = {}
    for p in declared:
        if p.name.casefold() in folded:
            value = folded[p.name.casefold()]
        elif p.has_default:
            value = p.default
        else:
            raise ConfigError(where, f"parameters.{p.name}", "has no default and was not given")
        out[p.name] = coerce(p, value, where)
    return out


class Expander:
    """Expands one pipeline file and the templates it includes."""

    def __init__(self, repo_root: Path) -> None:
        self.repo_root = repo_root
        self.depth = 0
        self.files: list[Path] = []
        #: Named values every template sees besides its own ``parameters`` (root variables).
        self.globals: dict[str, Any] = {}

    # -- values ------------------------------------------------------------------------------

    def evaluate(self, text: str, ctx: Mapping[str, Any], where: Path) -> Any:
        """One ``${{ }}`` expression; an error names the file and line it comes from."""
        try:
            return Evaluator(ctx).evaluate(text)
        except ExpressionError as e:
            raise ConfigError(
                _line_of(where, text), "${{ " + text.strip() + " }}", e.detail
            ) from None

    def interpolate(self, text: str, ctx: Mapping[str, Any], where: Path) -> Any:
        """``${{ x }}`` alone gives the value itself (any type); inside text, its string form."""
        try:
            spans = find_expressions(text)
        except ExpressionError as e:
            raise ConfigError(_line_of(where, text), "expression", e.detail) from None
        if not spans:
            return text
        if (
            len(spans) == 1
            and text[: spans[0][0]].strip() == ""
            and not text[spans[0][1] :].strip()
        ):
            start, end = spans[0]
            return self.evaluate(text[start + 3 : end - 2], ctx, where)
        out, pos = [], 0
        for start, end in spans:
            out.append(text[pos:start])
            out.append(to_text(self.evaluate(text[start + 3 : end - 2], ctx, where)))
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def expand(self, node: Any, ctx: dict[str, Any], where: Path, key: str = "") -> Any:
        """Expand ``node`` found under ``key`` in file ``where``."""
        if isinstance(node, str):
            return self.interpolate(node, ctx, where)
        if isinstance(node, Mapping):
            return self._mapping(node, ctx, where)
        if isinstance(node, list):
            return self._sequence(node, ctx, where, key)
        return node

    # -- directives --------------------------------------------------------------------------

    def _directive(
        self, directive: str, chain: bool | None, ctx: dict[str, Any], where: Path
    ) -> tuple[list[dict[str, Any]], bool | None]:
        """The contexts in which a directive's body expands, and the new if/else chain state."""
        if m := _EACH.match(directive):
            var, expr = m.group(1), m.group(2)
            items = self.evaluate(expr, ctx, where)
            if isinstance(items, Mapping):
                items = [{"key": k, "value": v} for k, v in items.items()]
            if items is None:
                items = []
            if not isinstance(items, list):
                raise ConfigError(str(where), directive, f"needs a list or object, got {items!r}")
            return [{**ctx, var: item} for item in items], None
        if m := _IF.match(directive):
            if m.group(1) == "elseif":
                if chain is None:
                    raise ConfigError(str(where), directive, "has no ${{ if }} before it")
                if chain:
                    return [], True
            taken = truthy(self.evaluate(m.group(2), ctx, where))
            return ([ctx] if taken else []), taken
        if _ELSE.match(directive):
            if chain is None:
                raise ConfigError(str(where), directive, "has no ${{ if }} before it")
            return ([] if chain else [ctx]), None
        raise ConfigError(str(where), directive, "is not supported by the local runner")

    def _mapping(self, node: Mapping[str, Any], ctx: dict[str, Any], where: Path) -> Any:
        out: dict[str, Any] = {}
        chain: bool | None = None
        for raw_key, value in node.items():
            key = str(raw_key)
            if _INSERT.match(key):
                # ${{ insert }}: a mapping merged into the mapping that holds it (templates#insert)
                inserted = self.expand(value, ctx, where)
                if not isinstance(inserted, Mapping):
                    raise ConfigError(str(where), key, f"needs a mapping, got {inserted!r}")
                out.update({to_text(k): v for k, v in inserted.items()})
                chain = None
                continue
            if _DIRECTIVE.match(key):
                contexts, chain = self._directive(key, chain, ctx, where)
                for c in contexts:
                    body = self.expand(value, c, where)
                    if not isinstance(body, Mapping):
                        raise ConfigError(str(where), key, "must contain a mapping here")
                    out.update(body)
                continue
            chain = None
            new_key = self.interpolate(key, ctx, where)
            out[to_text(new_key)] = self.expand(value, ctx, where, to_text(new_key))
        return out

    def _sequence(self, node: list[Any], ctx: dict[str, Any], where: Path, key: str) -> list[Any]:
        out: list[Any] = []
        chain: bool | None = None
        for item in node:
            if isinstance(item, Mapping) and item and all(_DIRECTIVE.match(str(k)) for k in item):
                for directive, value in item.items():
                    contexts, chain = self._directive(str(directive), chain, ctx, where)
                    for c in contexts:
                        wrapped = value if isinstance(value, list) else [value]
                        out.extend(self._sequence(wrapped, c, where, key))
                continue
            chain = None
            value = copy.deepcopy(self.expand(item, ctx, where, key))
            if isinstance(item, str) and isinstance(value, list):
                # `- ${{ parameters.steps }}`: a list-valued expression as an item inserts its
                # items (a stepList/jobList/stageList parameter, templates#parameter-data-types)
                out.extend(value)
            elif key in LIST_KEYS and isinstance(value, Mapping) and "template" in value:
                out.extend(self.include(value, where, key))
            else:
                out.append(value)
        return out

    # -- templates ---------------------------------------------------------------------------

    def resolve(self, ref: str, where: Path) -> Path:
        """A template path: relative to the including file, or to the repository root with ``/``."""
        ref = ref.strip()
        if "@" in ref:
            raise ConfigError(
                str(where), f"template {ref}", "from another repository: not supported"
            )
        path = self.repo_root / ref.lstrip("/") if ref.startswith("/") else where.parent / ref
        return path.resolve()

    def include(self, ref: Mapping[str, Any], where: Path, key: str) -> list[Any]:
        """Expand ``- template: file`` with its ``parameters`` into the items of list ``key``."""
        extra = set(ref) - {"template", "parameters"}
        if extra:
            raise ConfigError(str(where), f"template {ref['template']}", f"unexpected {extra}")
        path = self.resolve(str(ref["template"]), where)
        if not path.is_file():
            raise ConfigError(str(where), f"template {ref['template']}", f"not found at {path}")
        if path not in self.files:
            self.files.append(path)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConfigError(str(path), "template", f"nesting deeper than {MAX_DEPTH}")
        try:
            doc = load_yaml(path) or {}
            if not isinstance(doc, Mapping):
                raise ConfigError(str(path), "", "must be a mapping")
            given = ref.get("parameters") or {}
            if not isinstance(given, Mapping):
                raise ConfigError(str(where), f"template {ref['template']}.parameters", "not a map")
            params = bind_parameters(
                declared_parameters(doc.get("parameters"), str(path)), given, str(path)
            )
            body = {k: v for k, v in doc.items() if k != "parameters"}
            if key not in body:
                raise ConfigError(
                    str(path), key, f"is missing: a template used in {key} must define {key}"
                )
            expanded = self.expand(body, {**self.globals, "parameters": params}, path)
            items = expanded[key]
            if key == "variables" and isinstance(items, Mapping):
                items = [{"name": k, "value": v} for k, v in items.items()]
            return list(items or [])
        finally:
            self.depth -= 1


@dataclass
class CompiledPipeline:
    """A pipeline after compile time: no templates or ``${{ }}`` left."""

    path: Path
    parameters: dict[str, Any]
    document: dict[str, Any]
    #: The pipeline file and every template it included, in first-use order.
    files: list[Path] = field(default_factory=list)

    @property
    def stages(self) -> list[dict[str, Any]]:
        return list(self.document.get("stages") or [])

    def locate(self, text: str) -> str:
        """``file:line`` of the first source line holding ``text`` (or ``key:`` for a bare key),
        for error messages; the pipeline file when no line matches."""
        first = next((line.strip() for line in str(text).splitlines() if line.strip()), "")
        wanted = [f"{first}:", f"{first[:80]}"] if first else []
        files = self.files or [self.path]
        for needle in wanted:
            for path in files:
                try:
                    lines = path.read_text(encoding="utf-8").splitlines()
                except OSError:
                    continue
                for i, line in enumerate(lines, 1):
                    if needle in line:
                        return f"{_shown(path)}:{i}"
        return _shown(self.path)


def _line_of(path: Path, text: str) -> str:
    """``file:line`` of the first line of ``path`` that holds ``text`` (else the file)."""
    needle = text.strip().splitlines()[0] if text.strip() else ""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return _shown(path)
    for i, line in enumerate(lines, 1):
        if needle and needle in line:
            return f"{_shown(path)}:{i}"
    return _shown(path)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def compile_pipeline(
    path: Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    repo_root: Path | None = None,
    ignore_unknown: tuple[str, ...] = (),
    predefined: Mapping[str, str] | None = None,
) -> CompiledPipeline:
    """Bind the root parameters (given values over defaults), expand, normalise to stages.

    ``${{ variables.x }}`` sees the pipeline's own ``variables`` (values known at compile time)
    over ``predefined`` (such as ``Build.SourceBranchName``); a name it does not know is null, as
    a dictionary miss is in Azure's expressions.
    """
    path = path.resolve()
    doc = load_yaml(path)
    if not isinstance(doc, Mapping):
        raise ConfigError(str(path), "", "must be a mapping (a pipeline)")
    if "extends" in doc:
        raise ConfigError(str(path), "extends", "is not supported by the local runner")
    declared = declared_parameters(doc.get("parameters"), str(path))
    names = {p.name.casefold() for p in declared}
    given = {
        k: v
        for k, v in (parameters or {}).items()
        if k.casefold() in names or k not in ignore_unknown
    }
    params = bind_parameters(declared, given, str(path))
    expander = Expander((repo_root or path.parent).resolve())
    expander.files.append(path)
    ctx: dict[str, Any] = {"parameters": params, "variables": dict(predefined or {})}
    if "variables" in doc:
        root_vars = expander.expand(doc["variables"], ctx, path, "variables")
        ctx["variables"] = {**ctx["variables"], **compile_time_values(root_vars)}
    expander.globals = {"variables": ctx["variables"]}
    body = {k: v for k, v in doc.items() if k != "parameters"}
    expanded = expander.expand(body, ctx, path)
    if "parameters" in doc:
        expanded = {"parameters": doc["parameters"], **expanded}
    return CompiledPipeline(path, params, normalise(expanded), list(expander.files))


def compile_time_values(variables: Any) -> dict[str, str]:
    """Name → value of a ``variables`` block, for ``${{ variables.x }}``: groups and ``$[ ]``
    values are only known at run time and are left out."""
    if isinstance(variables, Mapping):
        items = [(str(k), v) for k, v in variables.items()]
    elif isinstance(variables, list):
        items = [
            (str(v["name"]), v.get("value", ""))
            for v in variables
            if isinstance(v, Mapping) and "name" in v
        ]
    else:
        items = []
    return {
        k: to_text(v) for k, v in items if not re.fullmatch(r"\s*\$\[.*\]\s*", to_text(v), re.S)
    }


def normalise(doc: dict[str, Any]) -> dict[str, Any]:
    """A pipeline of ``jobs`` or ``steps`` only becomes one stage (and one job), as in Azure."""
    doc = dict(doc)
    if "stages" not in doc and "jobs" in doc:
        doc["stages"] = [{"stage": "__default", "jobs": doc.pop("jobs")}]
    elif "stages" not in doc and "steps" in doc:
        job = {"job": "__default", "steps": doc.pop("steps")}
        doc["stages"] = [{"stage": "__default", "jobs": [job]}]
    return doc


def stringify(node: Any) -> Any:
    """Every scalar as the string the service would see (for schema validation)."""
    if isinstance(node, Mapping):
        return {str(k): stringify(v) for k, v in node.items()}
    if isinstance(node, list):
        return [stringify(v) for v in node]
    if isinstance(node, bool):
        return "true" if node else "false"
    if node is None:
        return ""
    return to_text(node)
