"""Serving a model class with uvicorn (``label-studio-ml start`` and container entry points)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import uvicorn

from ..config import Settings
from ..engine.loader import load_model_class
from .app import create_app
from .logs import configure_logging

APP_DIR_ENV = "LSML_MODEL_PATH"


def app_factory():  # type: ignore[no-untyped-def]
    """Import string target for uvicorn workers/reload: builds the app from LSML_MODEL_PATH."""
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.secrets)
    return create_app(load_model_class(os.environ[APP_DIR_ENV]), settings, serving_process=True)


def uvicorn_options(settings: Settings, host: str, port: int, log_level: str | None = None) -> dict[str, Any]:
    """What every uvicorn start of core shares; logging stays as configured (``log_config=None``)."""
    return dict(
        host=host,
        port=port,
        log_level=(log_level or settings.log_level).lower(),
        root_path=settings.root_path,
        log_config=None,
        timeout_graceful_shutdown=5,
        access_log=False,
    )  # uvicorn would re-enable its access log at log_level; /predict logs its own line


def serve(
    target: str | Path,
    host: str = "0.0.0.0",
    port: int = 9090,
    workers: int = 1,
    reload: bool = False,
    log_level: str | None = None,
) -> None:
    settings = Settings.from_env()
    configure_logging(log_level or settings.log_level, settings.secrets)
    os.environ[APP_DIR_ENV] = str(Path(target).resolve()) if ":" not in str(target) else str(target)
    common = uvicorn_options(settings, host, port, log_level)
    if workers > 1 or reload:
        path = Path(str(target).rsplit(":", 1)[0] if ":" in str(target) and not Path(target).exists() else target)
        uvicorn.run(
            "label_studio_ml.server.serve:app_factory",
            factory=True,
            workers=workers,
            reload=reload,
            reload_dirs=[str(path.resolve().parent if path.is_file() else path)] if reload else None,
            **common,
        )  # type: ignore[arg-type]
    else:
        uvicorn.run(create_app(load_model_class(target), settings, serving_process=True), **common)  # type: ignore[arg-type]
