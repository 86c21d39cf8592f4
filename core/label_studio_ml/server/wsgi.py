"""Core's ASGI app served by a WSGI server (gunicorn ``_wsgi:app``): a2wsgi carries each request onto an
event loop; this module runs the app's lifespan there, which WSGI has no notion of, once in every
process that serves.

When the lifespan starts matters: it starts the model's background load, and a thread started in a
process that forks afterwards does not exist in the children. So it starts

* at once in a gunicorn worker that imports the app itself (no ``--preload``);
* right after the fork in each worker, when gunicorn's master imported the app (``--preload``): the
  master never loads the model, each worker loads it once;
* elsewhere (another WSGI server, a plain import), on the first request the process serves.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import sys
import threading
from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'label-studio-ml[wsgi]'"
STARTUP_TIMEOUT_S = 60.0  # the lifespan only starts the load (in the background): seconds are plenty
SHUTDOWN_TIMEOUT_S = 5.0


def gunicorn_role() -> str | None:
    """``"arbiter"`` when gunicorn's master is importing the app (``--preload``), ``"worker"`` when a
    worker is, else None. Read from the call stack: gunicorn offers the app no other way to know."""
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        path = code.co_filename.replace("\\", "/")
        if "/gunicorn/" in path:
            if code.co_name == "load_wsgi":
                return "worker"
            if path.endswith("/arbiter.py") and code.co_name == "setup":
                return "arbiter"
        frame = frame.f_back  # type: ignore[assignment]
    return None


def bridge() -> Any:
    """a2wsgi's ``ASGIMiddleware``, or an ImportError naming the extra that installs it."""
    try:
        from a2wsgi import ASGIMiddleware
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "a2wsgi":
            raise
        raise ModuleNotFoundError(f"serving under a WSGI server needs a2wsgi: {INSTALL_HINT}", name="a2wsgi") from None
    return ASGIMiddleware


class WSGIBridge:
    """A WSGI callable serving a Starlette app built by ``create_app``."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._pid = 0
        self._middleware: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._lifespan: concurrent.futures.Future[None] | None = None
        role = gunicorn_role()
        if role is not None:
            bridge()  # under gunicorn a missing extra stops the boot with its one line, before any request
        if role == "worker":
            self.start()
        elif role == "arbiter":
            os.register_at_fork(after_in_child=self._start_in_child)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        middleware = self._middleware if self._pid == os.getpid() else self.start()
        return middleware(environ, start_response)

    @property
    def started(self) -> bool:
        return self._pid == os.getpid()

    def start(self) -> Any:
        """Start this process's event loop and the app's lifespan (once); returns the a2wsgi middleware."""
        with self._lock:
            if self._pid != os.getpid():
                self._middleware = self._serve()
                self._pid = os.getpid()
        return self._middleware

    def _start_in_child(self) -> None:
        self._lock = threading.Lock()  # another thread of the parent may have held it at the fork
        try:
            self.start()
        except Exception:  # a hook must not raise into the forking server; the first request retries
            logger.exception("starting the app after the fork failed")

    def _serve(self) -> Any:
        middleware_class = bridge()
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="asgi-loop", daemon=True).start()
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._loop = loop
        self._lifespan = asyncio.run_coroutine_threadsafe(self._run_lifespan(started), loop)
        started.result(timeout=STARTUP_TIMEOUT_S)
        atexit.register(self.close)
        return middleware_class(self.app, loop=loop)

    async def _run_lifespan(self, started: concurrent.futures.Future[None]) -> None:
        self._stop = asyncio.Event()
        try:
            async with self.app.router.lifespan_context(self.app):
                started.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise

    def close(self) -> None:
        """Run the lifespan's shutdown (at interpreter exit); bounded, never raises."""
        loop, stop, lifespan = self._loop, self._stop, self._lifespan
        if self._pid != os.getpid() or loop is None or stop is None or lifespan is None:
            return
        self._pid = 0
        loop.call_soon_threadsafe(stop.set)
        try:
            lifespan.result(timeout=SHUTDOWN_TIMEOUT_S)
        except Exception:
            logger.warning("the app's shutdown did not finish in %.0f s", SHUTDOWN_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
