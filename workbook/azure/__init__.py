"""Azure ML (azureml-core, SDK v1) behind small interfaces: workspace, model registry, packaging.

azureml-core is imported lazily inside functions, so ``import workbook.azure`` works without it;
the first call that needs it raises ``MissingDependencyError`` with the pip command.
"""

from workbook.azure.workspace import (
    AzureMLWorkspace,
    MLWorkspace,
    RegisteredModel,
    call_with_timeout,
    connect_workspace,
)

__all__ = [
    "AzureMLWorkspace",
    "MLWorkspace",
    "RegisteredModel",
    "call_with_timeout",
    "connect_workspace",
]
