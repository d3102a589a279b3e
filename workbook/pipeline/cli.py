"""``workbook pipeline run|expand``: the Azure pipeline on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from workbook.errors import ConfigError
from workbook.settings import TARGETS

DEFAULT_PIPELINE = "azure-pipelines.yml"
#: Parameters the command line fills in when the pipeline declares them and ``-p`` does not.
STAGES_PARAMETER = "canaryWeights"


def parse_parameters(items: list[str]) -> dict[str, Any]:
    """``-p name=value`` pairs; values in YAML flow syntax (``-p canaryWeights=[10,100]``)."""
    from workbook.pipeline.template import parse_value

    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError("pipeline", "-p", f"must read name=value, got {item!r}")
        out[name.strip()] = parse_value(value)
    return out


def pipeline_parameters(items: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``-p`` values, with ``canaryWeights`` defaulting to the stage plan of the settings
    (``WORKBOOK_STAGES``), so the stages a local run stamps out are the plan the notebooks read."""
    from workbook.settings import Settings

    params = parse_parameters(items)
    if not any(k.casefold() == STAGES_PARAMETER.casefold() for k in params):
        params[STAGES_PARAMETER] = list(Settings.from_env(env).stages)
    return params


def _target(args: argparse.Namespace) -> str:
    return str(args.pipeline_target or getattr(args, "target", None) or "local")


def _paths(args: argparse.Namespace) -> tuple[Path, Path]:
    path = Path(args.file).resolve()
    workdir = Path(args.workdir).resolve() if args.workdir else path.parent
    return path, workdir


def cmd_run(args: argparse.Namespace) -> None:
    """Run the pipeline; a failed stage makes the command fail (exit 1) after the whole run."""
    from workbook.pipeline.runner import PipelineFailedError, run_pipeline

    path, workdir = _paths(args)
    result = run_pipeline(
        path,
        target=_target(args),
        run_id=args.run_id,
        parameters=pipeline_parameters(args.parameter),
        workdir=workdir,
        verbose=args.verbose,
    )
    if not result.ok:
        raise PipelineFailedError(result)


def cmd_expand(args: argparse.Namespace) -> None:
    """Print the pipeline after compile time (templates and ``${{ }}`` expanded)."""
    import yaml

    from workbook.pipeline.runner import compile_time_variables
    from workbook.pipeline.template import compile_pipeline

    path, workdir = _paths(args)
    params = {"target": _target(args), **pipeline_parameters(args.parameter)}
    compiled = compile_pipeline(
        path,
        params,
        repo_root=workdir,
        ignore_unknown=("target", STAGES_PARAMETER),
        predefined=compile_time_variables(workdir),
    )
    print(yaml.safe_dump(compiled.document, sort_keys=False, width=100), end="")


def register_cli(subparsers: Any) -> None:
    """Add ``pipeline run`` and ``pipeline expand`` to the ``workbook`` command line."""
    p = subparsers.add_parser("pipeline", help="run azure-pipelines.yml locally")
    sub = p.add_subparsers(dest="pipeline_command", required=True)
    for name, func, text in (
        ("run", cmd_run, "run every stage here; writes runs/<run-id>/pipeline.json"),
        ("expand", cmd_expand, "print the pipeline with templates and ${{ }} expanded"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("file", nargs="?", default=DEFAULT_PIPELINE)
        s.add_argument(
            "--target",
            dest="pipeline_target",
            choices=TARGETS,
            default=None,
            help="the pipeline's target parameter (default: local)",
        )
        s.add_argument(
            "-p",
            "--parameter",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a pipeline parameter, e.g. -p requests=500 or -p canaryWeights=[10,100]",
        )
        s.add_argument(
            "--workdir", default=None, help="repository root (default: the file's directory)"
        )
        if name == "run":
            s.add_argument("--run-id", default=None, help="default: a timestamp")
            s.add_argument("-v", "--verbose", action="store_true", help="stream step output")
        s.set_defaults(func=func)
