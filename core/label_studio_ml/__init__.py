"""Serve machine-learning models to Label Studio."""

from typing import Any

from .model import LabelStudioMLBase

# ModelResponse and PredictionValue are attributes too (below), left out of * so that it never needs the sdk
__all__ = ["LabelStudioMLBase", "__version__", "package_name"]
__version__ = "2.1.0"
package_name = "label-studio-ml"


def __getattr__(name: str) -> Any:
    # ModelResponse needs label-studio-sdk (~0.6 s to import): only when someone asks for it
    if name in ("ModelResponse", "PredictionValue"):
        from . import response

        return getattr(response, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
