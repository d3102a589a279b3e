"""Schema validation of rendered manifests, before anything reaches a cluster.

Core kinds are checked against the Kubernetes OpenAPI schemas of ``kubernetes-validate`` in strict
mode (unknown fields are errors). Istio networking kinds are checked against the
``cloudcoil-models-istio`` models, plus an unknown-field check, because pydantic drops unknown
fields silently; then by ``istio.problems``, the one Istio validation the local gateway runs too
(every subset a route names exists, weights, durations, ...), with the same wording.

Messages name the object and the field:
``VirtualService canary-demo/scoring: spec.http[2].route[1].weight must not be negative, got -5``.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from workbook import istio, kinds

#: Union members pydantic puts into an error's location: ``HeadersModel1``, ``function-after[...]``.
_UNION_TAG = re.compile(r"^[A-Z]\w*Model\d*$|^[a-z-]+\[")


def _ref(doc: Mapping[str, Any], default_namespace: str | None = None) -> str:
    meta = doc.get("metadata") or {}
    ns = meta.get("namespace") or default_namespace
    name = meta.get("name") or "<unnamed>"
    return f"{doc.get('kind') or '<no kind>'} {ns}/{name}" if ns else f"{doc.get('kind')} {name}"


def _path(parts: Iterable[Any]) -> str:
    """``("spec", "http", 1, "route")`` → ``spec.http[1].route``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out.lstrip(".")


# ---- core kinds: kubernetes-validate ----------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _core_validator(kind: str, api_version: str, k8s_version: str) -> Any:
    """A strict Draft 2020-12 validator for one kind, with the definitions loaded once."""
    import jsonschema
    from kubernetes_validate import utils as kv
    from referencing import Registry, Resource

    wanted = kv.major_minor(k8s_version.lstrip("v"))
    versions = [v for v in kv.all_versions() if _vkey(kv.major_minor(v)) <= _vkey(wanted)]
    if not versions:
        raise kv.VersionNotSupportedError(version=wanted)
    version = versions[-1]
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    try:
        schema = kv.schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", version)
    except FileNotFoundError:
        return None
    definitions = _definitions(folder, version)
    registry = Resource.from_contents(schema) @ (definitions @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


@functools.lru_cache(maxsize=4)
def _definitions(folder: str, version: str) -> Any:
    from kubernetes_validate import utils as kv
    from referencing import Resource

    return Resource.from_contents(kv.schema_contents(f"{folder}/_definitions.json", version))


def _vkey(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def _core_errors(doc: Mapping[str, Any], ref: str, k8s_version: str) -> list[str]:
    validator = _core_validator(str(doc["kind"]), str(doc["apiVersion"]), k8s_version)
    if validator is None:
        return [
            f"{ref}: no Kubernetes {k8s_version} schema for kind {doc['kind']} "
            f"apiVersion {doc['apiVersion']}"
        ]
    out = []
    for err in sorted(validator.iter_errors(dict(doc)), key=lambda e: list(map(str, e.path))):
        where = _path(err.path)
        out.append(f"{ref}: {where + ': ' if where else ''}{err.message}")
    return out


# ---- Istio kinds: cloudcoil models + unknown fields -------------------------------------------


def _istio_model(api_version: str, kind: str) -> Any:
    version = api_version.partition("/")[2]
    try:
        module = importlib.import_module(f"cloudcoil.models.istio.networking.{version}")
    except ImportError:
        return None
    return getattr(module, kind, None)


def unknown_fields(source: Any, dumped: Any, path: str = "") -> Iterator[str]:
    """Paths present in ``source`` but missing from the model's dump: fields pydantic dropped."""
    if isinstance(source, Mapping):
        for key, value in source.items():
            here = f"{path}.{key}" if path else str(key)
            if not isinstance(dumped, Mapping) or key not in dumped:
                yield here
            else:
                yield from unknown_fields(value, dumped[key], here)
    elif isinstance(source, list) and isinstance(dumped, list):
        for i, (a, b) in enumerate(zip(source, dumped, strict=False)):
            yield from unknown_fields(a, b, f"{path}[{i}]")


def _istio_errors(doc: Mapping[str, Any], ref: str) -> list[str]:
    import pydantic

    model = _istio_model(str(doc["apiVersion"]), str(doc["kind"]))
    if model is None:
        return [f"{ref}: no Istio schema for kind {doc['kind']} apiVersion {doc['apiVersion']}"]
    try:
        obj = model.model_validate(dict(doc))
    except pydantic.ValidationError as exc:
        seen: list[str] = []
        for err in exc.errors():
            # Union members appear in loc as model names; keep the field path only.
            loc = [p for p in err["loc"] if isinstance(p, int) or not _UNION_TAG.match(str(p))]
            line = f"{ref}: {_path(loc)}: {err['msg']}"
            if line not in seen:
                seen.append(line)
        return seen
    dumped = obj.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return [f"{ref}: {p}: unknown field" for p in unknown_fields(dict(doc), dumped)]


# ---- entry point ------------------------------------------------------------------------------


def validate_manifests(
    docs: Iterable[Mapping[str, Any] | None],
    k8s_version: str = "1.32.0",
    *,
    known: Iterable[Mapping[str, Any]] = (),
    default_namespace: str | None = None,
) -> list[str]:
    """Every error in ``docs`` as ``"<Kind> <ns>/<name>: <field> <message>"``; [] when clean.

    Istio objects get the schema check and then ``istio.problems`` (the same rules and wording
    as the local gateway), less what only the local gateway cannot serve and less istiod's
    warnings (``manifest_warnings`` has those). ``known`` are live objects (e.g. DestinationRules
    already in the cluster) that subset references may point at besides those in ``docs``.
    """
    items = [dict(d) for d in docs if d]
    out: list[str] = []
    schema_failed: set[int] = set()
    for i, doc in enumerate(items):
        if istio.is_istio(doc) or kinds.is_istio_kind(doc.get("kind")):
            shape = istio.shape_problem(doc, i)
            if shape is not None:
                out.append(str(shape))
                schema_failed.add(i)
                continue
            found = _istio_errors(doc, istio.ref(doc, default_namespace))
            if found:
                schema_failed.add(i)
            out += found
            continue
        ref = _ref(doc, default_namespace)
        missing = [f for f in ("apiVersion", "kind") if not doc.get(f)]
        if not (doc.get("metadata") or {}).get("name"):
            missing.append("metadata.name")
        if missing:
            out.append(f"{ref}: {', '.join(missing)} is required")
            continue
        out += _core_errors(doc, ref, k8s_version)
    checked = [d for i, d in enumerate(items) if i not in schema_failed]
    out += [str(p) for p in _istio_problems(checked, known, default_namespace) if not p.warning]
    return out


def manifest_warnings(
    docs: Iterable[Mapping[str, Any] | None],
    *,
    known: Iterable[Mapping[str, Any]] = (),
    default_namespace: str | None = None,
) -> list[str]:
    """istiod's warnings for the Istio objects of ``docs`` (it accepts them): to print."""
    items = [dict(d) for d in docs if d]
    return [str(p) for p in _istio_problems(items, known, default_namespace) if p.warning]


def _istio_problems(
    docs: list[dict[str, Any]], known: Iterable[Mapping[str, Any]], default_namespace: str | None
) -> list[istio.Problem]:
    found = istio.problems(
        docs, namespace=default_namespace or istio.DEFAULT_NAMESPACE, known=list(known)
    )
    # The k8s target serves every Istio field; the schema check has already refused unknown ones.
    return [p for p in found if not p.unsupported]
