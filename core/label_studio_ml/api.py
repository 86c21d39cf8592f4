"""``label_studio_ml.api``: what an upstream backend's ``_wsgi.py`` imports, served by core's own app.

``init_app(ModelClass)`` returns a :class:`LabelStudioMLApp`, usable the two ways ``_wsgi.py`` uses it:
``app.run(host=..., port=..., debug=...)`` (``python _wsgi.py``: uvicorn, as ``label-studio-ml start``)
and as the WSGI callable of ``gunicorn --preload ... _wsgi:app`` (the upstream image's command), through
the a2wsgi bridge (see ``wsgi.py``). ``app.asgi`` is the same app for ASGI servers.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .app import create_app
from .config import Settings
from .logs import RedactSecrets, configure_logging
from .model import LabelStudioMLBase
from .training import TRAIN_EVENTS
from .wsgi import WSGIBridge

__all__ = ["TRAIN_EVENTS", "LabelStudioMLApp", "init_app"]

logger = logging.getLogger(__name__)

# what upstream's generated _wsgi.py passes and core reads elsewhere: REDIS_URL replaces the Redis trio,
# the per-project instance replaces model kwargs
IGNORED_KWARGS = ("redis_queue", "redis_host", "redis_port")


class LabelStudioMLApp:
    """Core's app for one model class: a WSGI callable with ``run()``, as upstream's Flask app is used."""

    def __init__(self, model_class: type[LabelStudioMLBase], settings: Settings) -> None:
        self.model_class = model_class
        self.settings = settings
        self.asgi = create_app(model_class, settings)
        self.wsgi = WSGIBridge(self.asgi)
        self.config: dict[str, Any] = {}  # Flask's app.config: upstream tests set TESTING in it

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        return self.wsgi(environ, start_response)

    def run(self, host: str = "0.0.0.0", port: int = 9090, debug: bool = False, **_flask_options: Any) -> None:
        """Serve with uvicorn until stopped (Flask's ``app.run`` signature; ``debug`` logs at DEBUG)."""
        import uvicorn

        from .console import port_free
        from .server import uvicorn_options

        if self.wsgi.started:
            raise RuntimeError("this app already serves WSGI requests in this process; run() would load it twice")
        if not port_free(host, port):
            raise SystemExit(f"label-studio-ml: error: port {port} on {host} is already in use; pick another with -p")
        level = "DEBUG" if debug else None
        if debug:
            logging.getLogger().setLevel(logging.DEBUG)
        shown = "localhost" if host in ("0.0.0.0", "::") else host
        logger.info("serving %s on http://%s:%d", self.model_class.__name__, shown, port)
        uvicorn.run(self.asgi, **uvicorn_options(self.settings, host, port, level))  # type: ignore[arg-type]


def init_app(
    model_class: type[LabelStudioMLBase],
    basic_auth_user: str | None = None,
    basic_auth_pass: str | None = None,
    **kwargs: Any,
) -> LabelStudioMLApp:
    """Upstream's entry point. Basic auth: the arguments, else ``BASIC_AUTH_USER``/``BASIC_AUTH_PASS``,
    else ``ML_SERVER_BASIC_AUTH_USER``/``ML_SERVER_BASIC_AUTH_PASS``; half of it raises instead of
    serving without auth. ``model_dir`` overrides ``MODEL_DIR``; upstream's Redis keywords are ignored
    (core reads ``REDIS_URL``)."""
    if not (isinstance(model_class, type) and issubclass(model_class, LabelStudioMLBase)):
        raise ValueError(f"init_app needs a subclass of LabelStudioMLBase, got {model_class!r}")
    settings = Settings.from_env()
    user = basic_auth_user or settings.basic_auth_user
    password = basic_auth_pass or settings.basic_auth_pass
    if bool(user) != bool(password):
        raise ValueError(
            "basic auth needs a user and a password: set both ML_SERVER_BASIC_AUTH_USER and "
            "ML_SERVER_BASIC_AUTH_PASS (or BASIC_AUTH_USER and BASIC_AUTH_PASS), or neither"
        )
    changes: dict[str, Any] = {"basic_auth_user": user or "", "basic_auth_pass": password or ""}
    if kwargs.get("model_dir"):
        changes["model_dir"] = Path(str(kwargs.pop("model_dir")))
    unknown = sorted(set(kwargs) - set(IGNORED_KWARGS) - {"model_dir"})
    if unknown:
        logger.warning("init_app ignores %s: core builds one model instance per project", ", ".join(unknown))
    settings = dataclasses.replace(settings, **changes)
    adopt_logging(settings)
    return LabelStudioMLApp(model_class, settings)


def adopt_logging(settings: Settings) -> None:
    """Keep the logging a ``_wsgi.py`` configured (its format, its level) and redact secrets from it;
    configure core's own when there is none."""
    root = logging.getLogger()
    if not root.handlers:
        configure_logging(os.environ.get("LOG_LEVEL", settings.log_level).upper(), settings.secrets)
        return
    for handler in root.handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets(settings.secrets))
