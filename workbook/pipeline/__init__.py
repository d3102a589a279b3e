"""The pipeline: ``azure-pipelines.yml`` run locally, stage by stage, as Azure Pipelines would.

``run_pipeline`` compiles the YAML (parameters, templates, ``${{ }}``) and runs its stages;
``register_cli`` adds ``workbook pipeline run``. Helpers the pipeline's own steps call:
``python -m workbook.pipeline.record_get KEY`` and ``python -m workbook.pipeline.summary RUN_DIR``.
"""

from workbook.pipeline.cli import register_cli
from workbook.pipeline.runner import (
    PipelineError,
    PipelineFailedError,
    PipelineResult,
    run_pipeline,
    stage_order,
)
from workbook.pipeline.template import compile_pipeline

__all__ = [
    "PipelineError",
    "PipelineFailedError",
    "PipelineResult",
    "compile_pipeline",
    "register_cli",
    "run_pipeline",
    "stage_order",
]
