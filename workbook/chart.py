"""The scoring-canary Helm chart through helm-python-sdk (Helm's own Go SDK): values, lint, render.

Thin I/O: Helm merges values with the chart defaults, validates them against
``values.schema.json`` and renders; this module turns Helm's errors into ``ConfigError`` (bad
values, named by dotted field) or ``ChartError`` (the chart itself), and the output into manifests.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from workbook.errors import ChartError, ConfigError
from workbook.settings import CHART_NAME, project_root, validate_weight

#: The chart in this checkout; every function takes ``chart_dir`` to use another one.
CHART_DIR: Path = project_root() / "charts" / CHART_NAME

#: Order of kinds in ``render``: what a reader (and ``kubectl apply``) wants first; others follow.
KIND_ORDER = (
    "Namespace",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "Gateway",
    "DestinationRule",
    "VirtualService",
)

_LINT_SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
# libyaml when present: the same safe loading, ten times faster than pure Python on a render.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_MISSING = object()


# --- values -------------------------------------------------------------------------------------


def default_values(chart_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The chart's ``values.yaml`` as a dict."""
    return _chart(chart_dir).values


def merge_values(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep merge: mappings merge key by key, anything else (lists too) is replaced.

    Pure: neither argument is changed. A ``None`` override is kept, because Helm reads it as
    "delete this default" when it merges with the chart.
    """
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_values(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_sets(entries: Iterable[str]) -> dict[str, Any]:
    """Values from ``--set key=value`` entries, parsed by Helm's own parser as one expression.

    Helm parses every ``--set`` into the same map, so ``env[0].name=A`` and ``env[0].value=b``
    build one list item; later entries win for the same key.
    """
    entries = list(entries)
    for entry in entries:
        key, eq, _ = entry.partition("=")
        if not eq or not key.strip(".").strip():
            raise ConfigError("--set", entry, "must be KEY=VALUE, e.g. canary.weight=30")
        try:
            helm.parse_set_string(entry)
        except helm.HelmError as exc:
            raise ConfigError("--set", entry, f"is not a valid --set expression: {exc}") from exc
    if not entries:
        return {}
    try:
        return dict(helm.parse_set_string(",".join(entries)))
    except helm.HelmError as exc:
        raise ConfigError("--set", " ".join(entries), f"do not combine: {exc}") from exc


def validate_values(
    values: Mapping[str, Any], chart_dir: str | os.PathLike[str] | None = None
) -> None:
    """Check values (merged with the defaults by Helm) against the chart schema.

    Raises ``ConfigError("values", "<dotted.field>", ...)``. Rules only the templates know
    (e.g. stable and canary versions must differ) surface from ``render`` as ``ChartError``.
    """
    chart = _chart(chart_dir)
    _validate(chart, _prepared(values))


# --- render and lint ----------------------------------------------------------------------------


def render(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "scoring",
    namespace: str = "canary-demo",
    chart_dir: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """The manifests of a release, parsed, in ``KIND_ORDER`` (templates keep their own order)."""
    rendered = _render(values, release, namespace, chart_dir)
    docs: list[tuple[tuple[int, str, str, int], dict[str, Any]]] = []
    for template, text in rendered.items():
        if template.endswith("NOTES.txt"):
            continue
        try:
            parsed = list(yaml.load_all(text, Loader=_Loader))
        except yaml.YAMLError as exc:
            raise ChartError(f"Chart template {template} rendered invalid YAML: {exc}") from exc
        for index, doc in enumerate(d for d in parsed if d):
            kind = str(doc.get("kind", ""))
            rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
            docs.append(((rank, kind if rank == len(KIND_ORDER) else "", template, index), doc))
    return [doc for _, doc in sorted(docs, key=lambda item: item[0])]


def render_manifest(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "scoring",
    namespace: str = "canary-demo",
    chart_dir: str | os.PathLike[str] | None = None,
) -> str:
    """``render`` as one multi-document YAML string."""
    docs = render(values, release=release, namespace=namespace, chart_dir=chart_dir)
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, explicit_start=True)


def notes(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "scoring",
    namespace: str = "canary-demo",
    chart_dir: str | os.PathLike[str] | None = None,
) -> str:
    """The rendered ``NOTES.txt``: what Helm prints after an install or upgrade."""
    rendered = _render(values, release, namespace, chart_dir)
    return next((text for name, text in rendered.items() if name.endswith("NOTES.txt")), "")


def template(
    settings_values: Mapping[str, Any] | None = None,
    sets: Iterable[str] = (),
    *,
    istio: str | None = None,
    revision: str | None = None,
    release: str = "scoring",
    namespace: str = "canary-demo",
    chart_dir: str | os.PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """The manifests a release would apply, without a cluster (``helm template`` with our
    settings): chart defaults, then ``settings_values``, then the Istio flavour (``addon`` or
    ``upstream``, with ``revision``), then ``--set`` entries, which win.

    ``istio=None`` keeps what the values say (the local gateway by default). The add-on needs a
    revision; ConfigError names ``istio.revision`` otherwise.
    """
    from workbook.kube.istio_flavour import FlavourOverrides, defaults_for

    values = dict(settings_values or {})
    if istio is not None or revision:
        if istio is not None and istio not in ("addon", "upstream", "local"):
            raise ConfigError("template", "istio", f"must be addon or upstream, got {istio!r}")
        flavour = istio or str(
            (merge_values(default_values(chart_dir), values).get("istio") or {}).get("flavour")
        )
        if flavour == "addon" and not revision:
            raise ConfigError(
                "template",
                "istio.revision",
                "is required with --istio addon (the add-on injects by revision, e.g. asm-1-26)",
            )
        if flavour == "local":
            overlay: dict[str, Any] = {"istio": {"flavour": "local", "revision": revision or ""}}
        else:
            overlay = defaults_for(FlavourOverrides(flavour, revision or "")).chart_values()
            overlay.pop("gateway", None)  # the chart derives the flavour's usual selector
        values = merge_values(values, overlay)
    values = merge_values(values, parse_sets(sets))
    return render(values, release=release, namespace=namespace, chart_dir=chart_dir)


def request_host(docs: list[dict[str, Any]]) -> str:
    """The Host header a caller outside sends to reach the release through the ingress: the
    first VirtualService host bound to a gateway other than ``mesh``, "" when that is ``*``
    (any Host matches) or there is no such VirtualService."""
    for doc in docs:
        if doc.get("kind") != "VirtualService":
            continue
        spec = doc.get("spec") or {}
        if not [g for g in spec.get("gateways") or [] if g != "mesh"]:
            continue
        hosts = [str(h) for h in spec.get("hosts") or []]
        return "" if not hosts or "*" in hosts else hosts[0]
    return ""


def lint(
    values: Mapping[str, Any] | None = None,
    chart_dir: str | os.PathLike[str] | None = None,
    strict: bool = True,
) -> list[str]:
    """``helm lint`` findings as ``"[SEVERITY] path: message"``; a clean chart has only INFO."""
    path = _chart_path(chart_dir)
    try:
        report = helm.lint(path, None if values is None else dict(values), strict=strict)
    except helm.HelmError as exc:
        raise ChartError(f"Chart {path}: lint failed: {exc}") from exc
    out = [
        f"[{_LINT_SEVERITY.get(m.get('severity', 0), 'UNKNOWN')}] {m.get('path', '')}: "
        + " ".join(str(m.get("error", "")).split())
        for m in report.get("messages", [])
    ]
    shown = " ".join(out)
    errors = (" ".join(str(e).split()) for e in report.get("errors", []))
    return out + [f"[ERROR] {e}" for e in errors if e not in shown]


# --- internals ----------------------------------------------------------------------------------


def _render(
    values: Mapping[str, Any] | None,
    release: str,
    namespace: str,
    chart_dir: str | os.PathLike[str] | None,
) -> dict[str, str]:
    chart = _chart(chart_dir)
    prepared = _prepared(values or {})
    try:
        rendered = chart.render(prepared, name=release, namespace=namespace)  # validates, too
    except helm.HelmValuesError as exc:
        raise _config_error(str(exc), prepared, chart.schema) from exc
    except TypeError as exc:
        raise _not_data(exc) from exc
    except helm.HelmError as exc:
        raise ChartError(f"Chart {chart.name}: {_render_message(str(exc))}") from exc
    _check_weight(prepared)
    return rendered


def _prepared(values: Mapping[str, Any]) -> dict[str, Any]:
    """Values with ``canary.weight`` as an int when ``validate_weight`` accepts it ("30", 30.0)."""
    canary = values.get("canary")
    weight = canary.get("weight", _MISSING) if isinstance(canary, Mapping) else _MISSING
    if weight is _MISSING or weight is None or type(weight) is int:
        return dict(values)
    try:
        number = validate_weight(weight, "values", "canary.weight")
    except ConfigError:
        return dict(values)  # the schema reports it, or the check after it
    return merge_values(values, {"canary": {"weight": number}})


def _validate(chart: helm.Chart, values: dict[str, Any]) -> None:
    """Schema errors as ``ConfigError``; then the weight, even if a chart has no schema for it."""
    try:
        chart.validate_schema(values)
    except helm.HelmValuesError as exc:
        raise _config_error(str(exc), values, chart.schema) from exc
    except TypeError as exc:
        raise _not_data(exc) from exc
    _check_weight(values)


def _check_weight(values: Mapping[str, Any]) -> None:
    """The weight rule holds even for a chart whose schema does not state it."""
    canary = values.get("canary")
    if isinstance(canary, Mapping) and canary.get("weight") is not None:
        validate_weight(canary["weight"], "values", "canary.weight")


def _not_data(exc: TypeError) -> ConfigError:
    """json.dumps refused a value (a Path, a set...): Helm could never read it."""
    return ConfigError("values", "", f"must be plain YAML/JSON data: {exc}")


_SCHEMA_LINE = re.compile(r"^- at '(?P<ptr>[^']*)': (?P<msg>.*)$", re.MULTILINE)
_BOUND = re.compile(r"^(?P<kw>\w+): got (?P<got>\S+), want (?P<want>\S+)$")
_TYPE = re.compile(r"^got (?P<got>\w+), want (?P<want>\w+)$")
_PATTERN = re.compile(r"^(?P<value>'.*') does not match pattern '(?P<pattern>.*)'$")
_NAMES = re.compile(r"'([^']*)'")
_BOUND_TEXT = {
    "maximum": "must be <= {want}, got {got}",
    "minimum": "must be >= {want}, got {got}",
    "exclusiveMaximum": "must be < {want}, got {got}",
    "exclusiveMinimum": "must be > {want}, got {got}",
    "minLength": "must be at least {want} characters long, got {got}",
    "maxLength": "must be at most {want} characters long, got {got}",
    "minItems": "must have at least {want} items, got {got}",
    "maxItems": "must have at most {want} items, got {got}",
}
_ARTICLE = {"integer": "an integer", "object": "a mapping", "array": "a list"}


def _config_error(
    text: str, values: Mapping[str, Any], schema: dict[str, Any] | None
) -> ConfigError:
    """Helm's schema error text (``- at '/canary/weight': maximum: got 150, want 100``) as one
    ``ConfigError`` naming the first field; further problems follow in its message."""
    problems: list[tuple[str, str]] = []
    for match in _SCHEMA_LINE.finditer(text):
        parts = [p.replace("~1", "/").replace("~0", "~") for p in match["ptr"].split("/")[1:]]
        problems += _translate(parts, match["msg"].strip(), values, schema or {})
    if not problems:
        return ConfigError("values", "", text.strip())
    problems.sort()  # Helm lists them in no fixed order
    (field, message), rest = problems[0], problems[1:]
    if rest:
        message += "; also " + "; ".join(f"{f} {m}" for f, m in rest)
    return ConfigError("values", field, message)


def _translate(
    parts: list[str], msg: str, values: Mapping[str, Any], schema: dict[str, Any]
) -> list[tuple[str, str]]:
    """One schema error line as ``[(dotted field, message)]``; unknown forms keep Helm's text."""
    field = _dotted(parts)
    got = _lookup(values, parts)
    if m := _BOUND.match(msg):
        template = _BOUND_TEXT.get(m["kw"])
        if template:
            if m["kw"] == "minLength" and m["want"] == "1" and m["got"] == "0":
                return [(field, "must not be empty")]
            return [(field, template.format(want=m["want"], got=m["got"]))]
    if m := _TYPE.match(msg):
        shown = m["got"] if got is _MISSING else repr(got)
        return [(field, f"must be {_ARTICLE.get(m['want'], 'a ' + m['want'])}, got {shown}")]
    if m := _PATTERN.match(msg):
        return [(field, f"must match {m['pattern']}, got {m['value']}")]
    if msg.startswith("missing propert"):
        return [(_dotted([*parts, name]), "is required") for name in _NAMES.findall(msg)]
    if msg.startswith("additional propert") and msg.endswith("not allowed"):
        known = sorted(_subschema(schema, parts).get("properties", {}))
        out = []
        for name in _NAMES.findall(msg):
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
            out.append((_dotted([*parts, name]), f"is not a value of this chart{hint}"))
        return out
    if msg.startswith("value must be one of"):
        shown = "" if got is _MISSING else f", got {got!r}"
        return [(field, msg.removeprefix("value ") + shown)]
    return [(field, msg)]


def _dotted(parts: list[str]) -> str:
    """``["env", "0", "name"]`` → ``env[0].name``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out.lstrip(".")


def _lookup(values: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(values, Mapping) and part in values:
            values = values[part]
        elif isinstance(values, list) and part.isdigit() and int(part) < len(values):
            values = values[int(part)]
        else:
            return _MISSING
    return values


def _subschema(schema: dict[str, Any], parts: list[str]) -> dict[str, Any]:
    for part in parts:
        props = schema.get("properties", {})
        schema = props[part] if part in props else schema.get("items", {})
    return schema


_EXECUTION = re.compile(r"execution error at \((?P<where>[^)]*)\): (?P<msg>.*)", re.DOTALL)


def _render_message(text: str) -> str:
    """``execution error at (chart/templates/x.yaml:1:4): msg`` → ``templates/x.yaml:1:4: msg``."""
    if m := _EXECUTION.search(text):
        return f"{m['where'].split('/', 1)[-1]}: {m['msg'].strip()}"
    return text.strip()


# --- loading, with a cache ----------------------------------------------------------------------
# Loading costs about as much as a render. A loaded Chart is immutable and thread-safe (the SDK
# says so), so one per chart directory is shared, and reloaded when any file in it changes. A
# replaced Chart is not closed here (another thread may still render with it): the SDK's
# finalizer frees its handle once it is unreferenced.

_cache: dict[Path, tuple[tuple[tuple[str, int, int], ...], helm.Chart]] = {}
_cache_lock = threading.Lock()


def _chart_path(chart_dir: str | os.PathLike[str] | None) -> Path:
    return Path(chart_dir if chart_dir is not None else CHART_DIR).resolve()


def _fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    out = []
    for root, _dirs, files in os.walk(path):
        for name in files:
            st = os.stat(os.path.join(root, name))
            out.append((os.path.join(root, name), st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


def _chart(chart_dir: str | os.PathLike[str] | None) -> helm.Chart:
    """The loaded chart for a directory, from the cache while its files are unchanged."""
    path = _chart_path(chart_dir)
    fingerprint = _fingerprint(path)
    with _cache_lock:
        hit = _cache.get(path)
        if hit and hit[0] == fingerprint:
            return hit[1]
        try:
            chart = helm.Chart.load(path)
        except helm.HelmError as exc:
            raise ChartError(f"Chart {path} could not be loaded: {exc}") from exc
        _cache[path] = (fingerprint, chart)
        return chart
