"""Testing a backend: the pytest plugin (``plugin``, registered through the ``pytest11`` entry point:
``make_client``, ``assert_conformant``, the fake Label Studio, recorded LS requests in ``fixtures/``)
and OCR test pages (``ocr``: ``render_page``, ``cer``)."""

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    # projects generated before the plugin moved into testing/plugin.py import its names from here; loaded on
    # first use so that ``testing.ocr`` alone does not import the server
    plugin = importlib.import_module(f"{__name__}.plugin")  # not `from . import`: it would ask this hook
    try:
        return getattr(plugin, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
