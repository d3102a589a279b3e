"""The ``workbook`` command line (kept stable: checks, notebooks and the pipeline rely on it)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from workbook import apps, chart, operations
from workbook.canary import validate_weight
from workbook.errors import ConfigError, WorkbookError
from workbook.seam import Target
from workbook.settings import DEFAULT_REQUESTS, Settings
from workbook.targets import connect

#: Upper bounds of ``probe``: requests per call and concurrent connections.
MAX_PROBE_REQUESTS = 100_000
MAX_PROBE_CONCURRENCY = 64

#: Largest file ``apply -f`` reads; YAML nesting depth and node count (aliases expanded).
MAX_APPLY_BYTES = 1024 * 1024
MAX_YAML_DEPTH = 64
MAX_YAML_NODES = 100_000


def _settings(args: argparse.Namespace) -> Settings:
    over: dict[str, Any] = {"target": args.target}
    kernels = args.command in ("run", "walkthrough", "pipeline")  # they read the environment
    if args.state_dir:
        _check_text(args.state_dir, "--state-dir", "")
        state_dir = Path(args.state_dir)
        if state_dir.exists() and not state_dir.is_dir():
            raise ConfigError("--state-dir", args.state_dir, "is a file, not a folder")
        over["state_dir"] = state_dir.resolve()
        if kernels:
            os.environ["WORKBOOK_STATE_DIR"] = str(over["state_dir"])
    settings = Settings.from_env(**over)
    app = getattr(args, "app", None)
    if app:
        settings = settings.for_app(app)
        if kernels:
            os.environ["WORKBOOK_SCORING_APP"] = app
    return settings


def _target(args: argparse.Namespace, **options: Any) -> Target:
    return connect(_settings(args), **options)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def _release_line(rel: Any) -> str:
    return f"revision {rel.revision} {rel.status}: {rel.description}"


def cmd_up(args: argparse.Namespace) -> None:
    from workbook import faults

    target = _target(args, gateway_port=args.port)
    overrides = chart.parse_sets(args.set or [])
    if args.canary_fault:
        env = faults.chart_env(faults.parse(args.canary_fault))
        overrides = chart.merge_values(overrides, {"canary": {"env": env}})
    rel = operations.up(target, overrides)
    print(_release_line(rel))
    _print_status(target, as_json=False)


def cmd_upgrade(args: argparse.Namespace) -> None:
    rel = operations.upgrade(_target(args), chart.parse_sets(args.set or []))
    print(_release_line(rel))


def cmd_shift(args: argparse.Namespace) -> None:
    weight = validate_weight(args.weight, "shift", "WEIGHT")
    print(_release_line(operations.shift(_target(args), weight)))


def cmd_template(args: argparse.Namespace) -> None:
    """The manifests a release would apply for the current settings, without a cluster."""
    settings = _settings(args)
    docs = chart.template(
        settings.chart_values(),
        args.set or [],
        istio=args.istio,
        revision=args.istio_revision,
        release=settings.release,
        namespace=settings.namespace,
        chart_dir=settings.chart_dir,
    )
    print(yaml.safe_dump_all(docs, sort_keys=False), end="")


def cmd_probe(args: argparse.Namespace) -> None:
    from workbook import traffic

    headers = dict(traffic.parse_header(h) for h in args.header or [])
    if not 1 <= args.n <= MAX_PROBE_REQUESTS:
        raise ConfigError("probe", "-n", f"must be 1..{MAX_PROBE_REQUESTS}, got {args.n}")
    if not 1 <= args.c <= MAX_PROBE_CONCURRENCY:
        raise ConfigError("probe", "-c", f"must be 1..{MAX_PROBE_CONCURRENCY}, got {args.c}")
    target = _target(args)
    status = operations.status(target)
    host = target.traffic.host()
    result = traffic.probe(
        status.gateway_url + "/score",
        args.n,
        concurrency=args.c,
        headers={**({"host": host} if host else {}), **headers},
        payload=apps.probe_payload(target.settings.scoring_app),
        show_progress=None if not args.json else False,
    )
    if args.json:
        _print_json(result.to_dict())
        return
    print(f"{result.total} requests, {result.errors} errors, {result.rps:.0f} req/s")
    for version, count in sorted(result.counts.items()):
        print(f"  {version}: {count} ({100 * count / max(result.total, 1):.1f}%)")
    lat = result.latency_ms
    print(f"  latency p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms")


def _print_status(target: Target, as_json: bool) -> None:
    st = operations.status(target)
    from workbook.local.target import LocalTarget

    if isinstance(target, LocalTarget):
        st.extra = target.info()
    if as_json:
        _print_json(st.to_dict())
        return
    print(
        f"target {st.target}  namespace {st.namespace}  release {st.release}  "
        f"revision {st.revision}"
    )
    print(f"gateway {st.gateway_url}")
    print(f"  {'TRACK':8} {'VERSION':8} {'WEIGHT':>6} {'READY':>7}  IMAGE")
    for v in st.versions:
        print(f"  {v.track:8} {v.version:8} {v.weight:>5}% {v.ready:>3}/{v.replicas:<3}  {v.image}")


def cmd_status(args: argparse.Namespace) -> None:
    _print_status(_target(args), args.json)


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses nesting deeper than ``MAX_YAML_DEPTH`` (it composes
    recursively: deeper input would end in a RecursionError)."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                problem = f"nested deeper than {MAX_YAML_DEPTH} levels"
                raise yaml.composer.ComposerError(None, None, problem, mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _expanded_size(doc: Any, limit: int) -> int:
    """Nodes of ``doc`` with every alias expanded, counting stops past ``limit`` (aliases share
    objects, so an alias bomb is small in memory and huge once serialised)."""
    count, stack = 0, [doc]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


def load_objects(path: str) -> list[dict[str, Any]]:
    """Istio objects from a YAML file (``-`` for stdin); a syntax error names file and line.

    Bounded: at most ``MAX_APPLY_BYTES`` read, ``MAX_YAML_DEPTH`` levels, ``MAX_YAML_NODES``
    nodes with aliases expanded; the file must be UTF-8 and hold at least one object.
    """
    text = _read(path)
    try:
        docs = [d for d in yaml.load_all(text, Loader=_BoundedLoader) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(path, where, f"is not valid YAML: {problem}") from None
    if not docs:
        raise ConfigError(path, "", "holds no objects: nothing to apply")
    for i, d in enumerate(docs):
        if not isinstance(d, dict):
            raise ConfigError(path, f"document {i}", "must be a mapping (a Kubernetes object)")
        if _expanded_size(d, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise ConfigError(
                path,
                f"document {i}",
                f"expands to more than {MAX_YAML_NODES} nodes (through aliases?): refused",
            )
    return docs


def _read(path: str) -> str:
    """The file's text: at most ``MAX_APPLY_BYTES`` (``/dev/zero`` is refused at once), UTF-8."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_APPLY_BYTES + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_APPLY_BYTES + 1)
    except OSError as e:
        raise ConfigError(path, "", f"cannot be read: {e.strerror or e}") from None
    if len(data) > MAX_APPLY_BYTES:
        raise ConfigError(
            path, "", f"is larger than {MAX_APPLY_BYTES} bytes, the limit of apply -f: refused"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(path, f"byte {e.start}", "is not valid UTF-8") from None


def _check_text(value: str, obj: str, field: str, max_len: int = 4096) -> str:
    """A command-line value that is printable text of bounded length (bad bytes are refused)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(obj, field, "is not valid UTF-8") from None
    if len(value) > max_len or not value.isprintable():
        raise ConfigError(obj, field, f"must be printable text up to {max_len} characters")
    return value


def cmd_apply(args: argparse.Namespace) -> None:
    for line in _target(args).objects.apply(load_objects(args.file)):
        print(line)


def cmd_get(args: argparse.Namespace) -> None:
    _check_text(args.kind, "get", "KIND", 253)
    if args.name is not None:
        _check_text(args.name, "get", "NAME", 253)
    objs = _target(args).objects.get(args.kind, args.name)
    if args.output == "json":
        _print_json(objs if args.name is None else objs[0])
    else:
        print(yaml.safe_dump_all(objs, sort_keys=False), end="")


def cmd_rollback(args: argparse.Namespace) -> None:
    print(_release_line(operations.rollback(_target(args), args.revision)))


def cmd_promote(args: argparse.Namespace) -> None:
    rel = operations.promote(_target(args), require_traffic=not args.force)
    print(_release_line(rel))


def cmd_history(args: argparse.Namespace) -> None:
    hist = _target(args).releases.history()
    if args.json:
        _print_json([h.summary() for h in hist])
        return
    for h in hist:
        w = h.values.get("canary", {}).get("weight", 0)
        print(f"{h.revision:>4}  {h.status:10}  canary {w:>3}%  {h.updated}  {h.description}")


def cmd_down(args: argparse.Namespace) -> None:
    from workbook.local.target import LocalTarget

    target = _target(args)
    if isinstance(target, LocalTarget):
        print(target.down())  # what it really did; MeshError (history kept) if it could not
        return
    target.releases.uninstall()
    print("release uninstalled")


def _rollout(target: Target, args: argparse.Namespace, echo: Any) -> int:
    """The whole flow on ``target``; exit code 0 when promoted."""
    from workbook import rollout

    result = rollout.run(target, requests=args.n, echo=echo)
    if args.json:
        _print_json(result.to_dict())
    else:
        echo(f"\noutcome: {result.outcome}")
    return 0 if result.outcome == "promoted" else 1


def cmd_rollout(args: argparse.Namespace) -> int:
    """Package, deploy the canary at 0%, smoke-test, shift through the stage plan, promote or
    roll back."""
    target = _target(args)
    return _rollout(target, args, (lambda _: None) if args.json else print)


def cmd_demo(args: argparse.Namespace) -> int:
    """The local canary walkthrough from the command line: a fresh mesh, the whole flow, down."""
    from workbook.local.target import LocalTarget

    target = _target(args)
    if not isinstance(target, LocalTarget):
        raise ConfigError("demo", "--target", "runs on the local mesh only; use `workbook rollout`")
    target.down()
    echo = (lambda _: None) if args.json else print
    s = target.settings
    echo(f"canary {s.canary_version} next to stable {s.stable_version}")
    echo(f"stage plan: 0% → {' → '.join(f'{w}%' for w in s.stages)}, {args.n} requests per stage")
    code = _rollout(target, args, echo)
    if not args.json:
        _print_status(target, as_json=False)
    if not args.keep:
        target.down()
        echo("mesh stopped (use --keep to leave it running)")
    return code


def _param(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name.isidentifier():
        raise ConfigError("-p", text, "must be NAME=VALUE with NAME a notebook parameter")
    return name, yaml.safe_load(raw) if raw else ""


def cmd_run(args: argparse.Namespace) -> None:
    """One notebook through papermill into its own run folder; prints the one-line result."""
    from workbook import notebooks

    params = dict(_param(p) for p in args.param or [])
    params.setdefault("target", _settings(args).target)
    stem = notebooks.notebook_path(args.notebook).stem
    notebooks.check_parameters(stem, params)  # bad input: exit 2 before any folder is made
    run_dir = Path(args.run_dir) if args.run_dir else notebooks.run_folder(stem)
    try:
        out = notebooks.run_notebook(stem, params, run_dir=run_dir)
    except notebooks.NotebookError:
        if (run_dir / "records.json").is_file():
            print(notebooks.result_line(run_dir / f"{stem}.ipynb"))
        raise
    print(notebooks.result_line(out))
    print(f"executed notebook: {out}")


def cmd_walkthrough(args: argparse.Namespace) -> int:
    """The whole flow through the notebooks (``make demo``), from a fresh local mesh."""
    from workbook import notebooks

    run_dir = Path(args.run_dir or Path("runs") / notebooks.new_run_id())
    settings = _settings(args)
    if settings.target == "local":
        connect(settings).releases.uninstall()
    stages = " → ".join(f"{w}%" for w in settings.stages)
    print(f"walkthrough: package, deploy at 0%, header pins, {stages}, promote (or roll back)")
    result, outputs = notebooks.walkthrough(run_dir, target=settings.target, requests=args.n)
    print(f"\noutcome: {result.outcome}")
    print(f"executed notebooks ({len(outputs)}) and figures are under {run_dir}/:")
    for out in outputs:
        figures = sorted(p.name for p in out.parent.glob("*.png"))
        print(
            f"  {out.relative_to(run_dir)}"
            + (f"  figures: {', '.join(figures)}" if figures else "")
        )
    if settings.target == "local":
        if args.keep:
            print(
                "the local mesh keeps running: `workbook status`, `workbook probe`, `workbook down`"
            )
        else:
            connect(settings).releases.uninstall()
            print("local mesh stopped (use --keep to leave it running)")
    return 0 if result.outcome == "promoted" else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbook", description=__doc__)
    p.add_argument("--target", choices=["local", "k8s"], default=None, help="default: local")
    p.add_argument("--state-dir", default=None, help="local mesh state (default .workbook/)")
    p.add_argument("--app", choices=["dummy", "safe-driver"], default=None, help="scoring app")
    # the same options after the verb (`workbook up --target k8s`), winning over the global ones
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--target", choices=["local", "k8s"], default=argparse.SUPPRESS)
    common.add_argument("--state-dir", default=argparse.SUPPRESS)
    common.add_argument(
        "--app",
        choices=["dummy", "safe-driver"],
        default=argparse.SUPPRESS,
        help="the scoring app (default dummy, or WORKBOOK_SCORING_APP)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "up", parents=[common], help="deploy stable + canary (a new release revision)"
    )
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="chart value override")
    s.add_argument("--port", type=int, default=None, help="local gateway port (default: free)")
    s.add_argument(
        "--canary-fault",
        default="",
        metavar="SPEC",
        help="rehearse a bad canary: errors=0.05,errors-after=N,latency=200ms,crash-after=300,"
        "drift=0.3",
    )
    s.set_defaults(func=cmd_up)

    s = sub.add_parser(
        "template", parents=[common], help="the manifests a release would apply (no cluster)"
    )
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="chart value override")
    s.add_argument("--istio", choices=["addon", "upstream"], default=None, help="Istio flavour")
    s.add_argument("--istio-revision", default=None, metavar="asm-1-NN", help="istiod revision")
    s.set_defaults(func=cmd_template)

    s = sub.add_parser("upgrade", parents=[common], help="a new revision with changed chart values")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", required=True)
    s.set_defaults(func=cmd_upgrade)

    s = sub.add_parser(
        "shift", parents=[common], help="set the canary weight 0..100; returns when served"
    )
    s.add_argument("weight")
    s.set_defaults(func=cmd_shift)

    s = sub.add_parser("probe", parents=[common], help="send requests through the gateway")
    s.add_argument("-n", type=int, default=100)
    s.add_argument("-c", type=int, default=8)
    s.add_argument("-H", "--header", action="append", metavar="'NAME: VALUE'")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_probe)

    s = sub.add_parser("status", parents=[common], help="gateway URL, revision, versions")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser(
        "apply", parents=[common], help="apply Istio networking objects to the running mesh"
    )
    s.add_argument("-f", "--file", required=True)
    s.set_defaults(func=cmd_apply)

    s = sub.add_parser("get", parents=[common], help="live objects of a kind")
    s.add_argument("kind")
    s.add_argument("name", nargs="?")
    s.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    s.set_defaults(func=cmd_get)

    s = sub.add_parser(
        "rollback", parents=[common], help="return to a revision (default: the previous one)"
    )
    s.add_argument("revision", nargs="?", type=int)
    s.set_defaults(func=cmd_rollback)

    s = sub.add_parser(
        "promote", parents=[common], help="the canary becomes stable; canary weight back to 0"
    )
    s.add_argument(
        "--force", action="store_true", help="promote even a canary that never took traffic"
    )
    s.set_defaults(func=cmd_promote)

    s = sub.add_parser("history", parents=[common], help="release revisions")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_history)

    s = sub.add_parser(
        "down", parents=[common], help="stop the local mesh (or uninstall the release)"
    )
    s.set_defaults(func=cmd_down)

    s = sub.add_parser("run", parents=[common], help="execute one notebook with papermill")
    s.add_argument("notebook")
    s.add_argument("-p", "--param", action="append", metavar="NAME=VALUE")
    s.add_argument("--run-dir", default=None, help="default runs/<run-id>")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser(
        "walkthrough", parents=[common], help="the whole canary through the six notebooks"
    )
    s.add_argument("--keep", action="store_true", help="leave the local mesh running at the end")
    s.add_argument("-n", type=int, default=DEFAULT_REQUESTS, help="requests per stage")
    s.add_argument("--run-dir", default=None, help="default runs/<run-id>")
    s.set_defaults(func=cmd_walkthrough)

    s = sub.add_parser(
        "demo", parents=[common], help="the local canary walkthrough from the command line"
    )
    s.add_argument("-n", type=int, default=DEFAULT_REQUESTS, help="requests per stage")
    s.add_argument("--keep", action="store_true", help="leave the mesh running at the end")
    s.add_argument("--json", action="store_true", help="print the outcome as JSON")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser(
        "rollout", parents=[common], help="the whole canary flow: stages, gates, promote/rollback"
    )
    s.add_argument("-n", type=int, default=DEFAULT_REQUESTS, help="requests per stage")
    s.add_argument("--json", action="store_true", help="print the outcome as JSON")
    s.set_defaults(func=cmd_rollout)

    from workbook.pipeline import register_cli

    register_cli(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()
    except WorkbookError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `workbook get vs | head -1`: the reader left; nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command ended by a closed pipe
    except RecursionError:
        print("error: the input is nested too deeply", file=sys.stderr)
        return 2
    except OSError as e:  # the machine refused (disk full, permissions): say what, no traceback
        where = f" {e.filename}" if e.filename else ""
        print(f"error:{where} {e.strerror or e}", file=sys.stderr)
        return 1
    return int(code or 0)


def _one_line(text: str, limit: int = 600) -> str:
    """An error message on one line of bounded length (values from the user may be huge or
    carry newlines)."""
    text = " ".join(text.split("\n"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
