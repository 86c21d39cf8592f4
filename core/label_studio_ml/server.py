"""Serving a model class with uvicorn (``label-studio-ml start`` and container entry points)."""

from __future__ import annotations

import inspect
import os
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn

from .app import create_app
from .config import Settings
from .loader import load_model_class
from .logs import configure_logging
from .model import LabelStudioMLBase

APP_DIR_ENV = "LSML_MODEL_PATH"


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def app_factory():  # type: ignore[no-untyped-def]
    """Import string target for uvicorn workers/reload: builds the app from LSML_MODEL_PATH."""
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.secrets)
    return create_app(load_model_class(os.environ[APP_DIR_ENV]), settings)


def serve(target: str | Path, host: str = "0.0.0.0", port: int = 9090, workers: int = 1,
          reload: bool = False, log_level: str | None = None) -> None:
    settings = Settings.from_env()
    configure_logging(log_level or settings.log_level, settings.secrets)
    os.environ[APP_DIR_ENV] = str(Path(target).resolve()) if ":" not in str(target) else str(target)
    common = dict(host=host, port=port, log_level=(log_level or settings.log_level).lower(),
                  root_path=settings.root_path, log_config=None, timeout_graceful_shutdown=5)
    if workers > 1 or reload:
        path = Path(str(target).rsplit(":", 1)[0] if ":" in str(target) and not Path(target).exists() else target)
        uvicorn.run("label_studio_ml.server:app_factory", factory=True, workers=workers, reload=reload,
                    reload_dirs=[str(path.resolve().parent if path.is_file() else path)]
                    if reload else None, **common)  # type: ignore[arg-type]
    else:
        uvicorn.run(create_app(load_model_class(target), settings), **common)  # type: ignore[arg-type]


def entry_point(model_class: type[LabelStudioMLBase], module_name: str) -> Any:
    """The one call of a generated ``_wsgi.py``: the ASGI app for ``uvicorn _wsgi:app``; when the file
    runs as a script (``python _wsgi.py -p 9090``), serves the class like ``label-studio-ml start``."""
    if module_name == "__main__":
        from .cli import main

        sys.exit(main(["start", f"{inspect.getfile(model_class)}:{model_class.__name__}", *sys.argv[1:]]))
    return create_app(model_class)
