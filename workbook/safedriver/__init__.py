"""The safe-driver model: synthetic Porto Seguro data, LightGBM versions, registration.

``schema`` (the input columns, shared with the image's score.py), ``data`` (the synthetic data
set), ``train`` (versions, metrics, model files) and ``publish`` (registry and request payloads).
"""

from workbook.safedriver.publish import MODEL_NAME, register_models, sample_payload
from workbook.safedriver.train import VERSIONS, train_versions

__all__ = ["MODEL_NAME", "VERSIONS", "register_models", "sample_payload", "train_versions"]
