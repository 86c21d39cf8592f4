"""Serve machine-learning models to Label Studio."""

import importlib
from typing import Any

from .model import LabelStudioMLBase

# ModelResponse and PredictionValue are attributes too (below), left out of * so that it never needs the sdk
__all__ = ["LabelStudioMLBase", "__version__", "package_name"]
__version__ = "2.1.0"
package_name = "label-studio-ml"


# Modules that moved into packages (issue 23): ``from label_studio_ml import regions`` keeps working.
_MOVED = {
    "app": ".server.app",
    "brush": ".results.brush",
    "console": ".cli.console",
    "deploy": ".cli.deploy",
    "examples": ".training.examples",
    "geometry": ".results.geometry",
    "images": ".media.images",
    "kubernetes": ".cli.kubernetes",
    "label_config": ".results.label_config",
    "loader": ".engine.loader",
    "logs": ".server.logs",
    "ls_client": ".clients.ls_client",
    "metrics": ".server.metrics",
    "ocr": ".results.ocr",
    "ocr_testing": ".testing.ocr",
    "openapi": ".server.openapi",
    "outbound": ".clients.outbound",
    "preannotate_command": ".cli.preannotate",
    "preannotate_jobs": ".preannotate.server_jobs",
    "preannotate_redis": ".preannotate.redis_queue",
    "predictors": ".preannotate.predictors",
    "progress": ".preannotate.progress",
    "protocol": ".engine.protocol",
    "queue": ".engine.queue",
    "regions": ".results.regions",
    "retrying": ".clients.retrying",
    "runtime": ".engine.runtime",
    "scaffold": ".cli.scaffold",
    "scheduling": ".engine.scheduling",
    "service_facts": ".cli.service_facts",
    "spool": ".server.spool",
    "start": ".cli.start",
    "status_page": ".server.status_page",
    "storage": ".state.storage",
    "versions": ".state.versions",
    "worker": ".cli.worker",
    "wsgi": ".server.wsgi",
}


def __getattr__(name: str) -> Any:
    # ModelResponse needs label-studio-sdk (~0.6 s to import): only when someone asks for it
    if name in ("ModelResponse", "PredictionValue"):
        from . import response

        return getattr(response, name)
    if name in _MOVED:  # a module that moved into a package (issue 23)
        return importlib.import_module(_MOVED[name], __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
