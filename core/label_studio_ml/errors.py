"""Typed errors, each carrying the HTTP status the app answers with.

Read it as a table: each kind states its status in its class line (``status=`` sets ``status_code``)
and what it means in its docstring. A subclass elsewhere may also set ``status_code`` itself.
"""

from __future__ import annotations

from typing import Any


class MLBackendError(Exception):
    """A failure the app answers with ``status_code`` and a JSON reason (500 unless a kind says otherwise)."""

    status_code = 500

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __init_subclass__(cls, status: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status_code = status


class InvalidInput(MLBackendError, status=400):
    """Malformed JSON or a request the protocol does not allow."""


class InvalidShape(MLBackendError, status=422):
    """Well-formed JSON of the wrong shape (missing keys, wrong types)."""


class LabelConfigError(MLBackendError, status=422):
    """The label config is not XML, or lacks the tags a model needs."""


class Unauthorized(MLBackendError, status=401):
    """Missing or wrong credentials: the backend's basic auth, or the webhook secret."""


class PayloadTooLarge(MLBackendError, status=413):
    """The request body is larger than MAX_REQUEST_BYTES."""


class ModelNotReady(MLBackendError, status=503):
    """The model is still loading, or failed to load."""


class StateUnavailable(MLBackendError, status=503):
    """The shared state store (e.g. Redis) cannot be reached."""


class MediaError(MLBackendError, status=422):
    """A task's media could not be fetched or read; only that task fails."""


class NotFound(MLBackendError, status=404):
    """What the request names (e.g. a pre-annotation job) does not exist."""


class BadGateway(MLBackendError, status=502):
    """Label Studio refused, or did not answer, a call the backend made for the request."""
