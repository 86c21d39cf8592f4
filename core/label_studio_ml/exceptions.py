"""``label_studio_ml.exceptions`` as the upstream SDK has it: ``answer``, ``AnswerException`` and the
``exception_handler`` decorator, on this server's error handling (a JSON reason, never a traceback:
that goes to the log)."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from starlette.responses import JSONResponse

from .errors import MLBackendError

logger = logging.getLogger(__name__)


def answer(status: int = 0, msg: str = "", result: Any = None) -> JSONResponse:
    """A JSON reply ``{"status", "detail"[, "result"]}`` with ``status`` as its HTTP status."""
    if status == 0 and not msg and result is None:
        status, msg = -1000, "nothing happened"
    if status == 200 and not msg:
        msg = "ok"
    body: dict[str, Any] = {"status": status, "detail": msg}
    if result is not None:
        body["result"] = result
    # -1000 is upstream's "nothing happened" marker, not an HTTP status: sent as 500
    return JSONResponse(body, status_code=status if 100 <= status <= 599 else 500)


class AnswerException(MLBackendError):
    """Raise anywhere in a request to answer ``status`` with ``msg`` (and ``result``)."""

    def __init__(self, status: int, msg: str = "", result: Any = None) -> None:
        reason = msg or (HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error")
        super().__init__(reason)
        self.status, self.msg, self.result = status, msg, result
        self.status_code = status if 100 <= status <= 599 else 500

    @property
    def answer(self) -> JSONResponse:
        return answer(self.status, self.msg, self.result)


def exception_handler(f: Callable[..., Any]) -> Callable[..., Any]:
    """Turn what ``f`` raises into an ``answer``: its own status for an ``AnswerException``, else 500."""

    def on_error(exc: Exception) -> JSONResponse:
        if isinstance(exc, AnswerException):
            logger.error("%s answered %d: %s", f.__name__, exc.status, exc.msg)
            return answer(exc.status, exc.msg, exc.result)
        logger.exception("%s failed", f.__name__)
        return answer(500, f"{type(exc).__name__} (see the backend log)")

    if inspect.iscoroutinefunction(f):

        @functools.wraps(f)
        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await f(*args, **kwargs)
            except Exception as exc:
                return on_error(exc)

        return wrapped_async

    @functools.wraps(f)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except Exception as exc:
            return on_error(exc)

    return wrapped
