"""Serve machine-learning models to Label Studio."""

from .model import LabelStudioMLBase
from .response import ModelResponse, PredictionValue

__all__ = ["LabelStudioMLBase", "ModelResponse", "PredictionValue", "__version__"]
__version__ = "2.1.0"
