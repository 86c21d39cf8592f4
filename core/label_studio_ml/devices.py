"""Which torch device a model runs on (for services that use torch; torch is imported lazily)."""

from __future__ import annotations

import os


def torch_device(preferred: str | None = None) -> str:
    """``preferred`` (else env ``DEVICE``) when set, otherwise ``cuda`` if available, then ``mps``, else ``cpu``."""
    preferred = preferred or os.environ.get("DEVICE", "")
    if preferred and preferred.lower() != "auto":
        return preferred
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"
