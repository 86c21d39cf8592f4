"""label-studio-sdk, the optional ``sdk`` extra: imported on first use, never at start-up.

Importing its ``label_interface`` costs ~0.6 s and ~40 MB (it pulls jsonschema, faker, smart_open),
so a service that never reads ``self.label_interface`` or ``ModelResponse`` never pays for it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MLBackendError

INSTALL_HINT = "pip install 'label-studio-ml[sdk]'"


class MissingExtra(MLBackendError, ImportError):
    """A feature needs an extra that is not installed (an ImportError, answered as a 500 with the hint)."""


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` from label-studio-sdk, or fail with one line naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "label_studio_sdk":
            raise  # the sdk is there but broken: its own error says more
        raise MissingExtra(f"{feature} needs label-studio-sdk: {INSTALL_HINT}") from None


def label_interface(config: str) -> object:
    """label-studio-sdk's ``LabelInterface`` of a label config."""
    return require("label_studio_sdk.label_interface", "label_interface").LabelInterface(config=config)
