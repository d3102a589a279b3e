"""Schema validation of rendered manifests, before anything reaches a cluster.

Core kinds are checked against the Kubernetes OpenAPI schemas of ``kubernetes-validate`` in strict
mode (unknown fields are errors). Istio networking kinds are checked against the
``cloudcoil-models-istio`` models, plus an unknown-field check, because pydantic drops unknown
fields silently. Then the canary rules no schema holds: weights of a route sum to 100, every
subset a route names exists in a DestinationRule for its host, and no route follows a route that
matches every request (pin routes come before the weighted route).

Messages name the object and the field:
``VirtualService canary-demo/scoring: http[2].route weights must sum to 100, got 90+30=120``.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

ISTIO_GROUP = "networking.istio.io"
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


# ---- canary rules -----------------------------------------------------------------------------


def _fqdn(host: str, namespace: str) -> str:
    from workbook.istio import normalize_host

    return str(normalize_host(host, namespace))


def _subsets_by_host(
    rules: Iterable[Mapping[str, Any]], default_ns: str
) -> dict[str, tuple[str, list[str]]]:
    """FQDN host → (DestinationRule ref, subset names)."""
    out: dict[str, tuple[str, list[str]]] = {}
    for dr in rules:
        if dr.get("kind") != "DestinationRule":
            continue
        meta, spec = dr.get("metadata") or {}, dr.get("spec") or {}
        ns = meta.get("namespace") or default_ns
        host = spec.get("host")
        if not isinstance(host, str):
            continue
        names = [s.get("name") for s in spec.get("subsets") or [] if isinstance(s, Mapping)]
        out[_fqdn(host, ns)] = (f"{ns}/{meta.get('name')}", [str(n) for n in names if n])
    return out


def _label(i: int, route: Mapping[str, Any]) -> str:
    name = route.get("name")
    return f"http[{i}] ({name})" if name else f"http[{i}]"


def _vs_rule_errors(
    vs: Mapping[str, Any], ref: str, subsets: Mapping[str, tuple[str, list[str]]], ns: str
) -> list[str]:
    out: list[str] = []
    spec = vs.get("spec") or {}
    http = [h for h in spec.get("http") or [] if isinstance(h, Mapping)]
    catch_all: int | None = None
    for i, route in enumerate(http):
        if catch_all is not None:
            out.append(
                f"{ref}: {_label(i, route)} is unreachable: {_label(catch_all, http[catch_all])} "
                "before it matches every request; put pin (header) routes before the weighted route"
            )
        elif not route.get("match"):
            catch_all = i
        dests = [d for d in route.get("route") or [] if isinstance(d, Mapping)]
        weights = [d.get("weight", 0) for d in dests]
        if all(isinstance(w, int) and not isinstance(w, bool) for w in weights):
            for j, w in enumerate(weights):
                if not 0 <= w <= 100:
                    out.append(f"{ref}: http[{i}].route[{j}].weight must be 0..100, got {w}")
            if len(dests) > 1 and sum(weights) != 100:
                shown = "+".join(str(w) for w in weights)
                out.append(
                    f"{ref}: http[{i}].route weights must sum to 100, got {shown}={sum(weights)}"
                )
        named = [(f"http[{i}].route[{j}]", d.get("destination") or {}) for j, d in enumerate(dests)]
        if isinstance(route.get("mirror"), Mapping):
            named.append((f"http[{i}].mirror", route["mirror"]))
        for where, dest in named:
            subset, host = dest.get("subset"), dest.get("host")
            if not subset or not isinstance(host, str):
                continue
            fqdn = _fqdn(host, ns)
            if fqdn not in subsets:
                out.append(
                    f"{ref}: {where}.destination.subset {subset!r}: no DestinationRule for host "
                    f"{fqdn}"
                )
            elif subset not in subsets[fqdn][1]:
                dr, names = subsets[fqdn]
                out.append(
                    f"{ref}: {where}.destination.subset {subset!r} is not a subset of "
                    f"DestinationRule {dr} (has: {', '.join(names) or 'none'})"
                )
    return out


# ---- entry point ------------------------------------------------------------------------------


def validate_manifests(
    docs: Iterable[Mapping[str, Any] | None],
    k8s_version: str = "1.32.0",
    *,
    known: Iterable[Mapping[str, Any]] = (),
    default_namespace: str | None = None,
) -> list[str]:
    """Every problem in ``docs`` as ``"<Kind> <ns>/<name>: <field>: <message>"``; [] when clean.

    ``known`` are live objects (e.g. DestinationRules already in the cluster) that subset
    references may point at besides those in ``docs``.
    """
    items = [dict(d) for d in docs if d]
    problems: list[str] = []
    for doc in items:
        ref = _ref(doc, default_namespace)
        missing = [f for f in ("apiVersion", "kind") if not doc.get(f)]
        if not (doc.get("metadata") or {}).get("name"):
            missing.append("metadata.name")
        if missing:
            problems.append(f"{ref}: {', '.join(missing)} is required")
            continue
        if str(doc["apiVersion"]).startswith(ISTIO_GROUP + "/"):
            problems += _istio_errors(doc, ref)
        else:
            problems += _core_errors(doc, ref, k8s_version)
    fallback_ns = default_namespace or "default"
    subsets = _subsets_by_host([*known, *items], fallback_ns)
    for doc in items:
        if doc.get("kind") == "VirtualService" and isinstance(doc.get("spec"), Mapping):
            ns = (doc.get("metadata") or {}).get("namespace") or fallback_ns
            problems += _vs_rule_errors(doc, _ref(doc, default_namespace), subsets, ns)
    return problems
