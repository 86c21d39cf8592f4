"""Typed errors, each carrying the HTTP status the app answers with."""

from __future__ import annotations


class MLBackendError(Exception):
    status_code = 500

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidInput(MLBackendError):
    """Malformed JSON or a request the protocol does not allow."""

    status_code = 400


class InvalidShape(MLBackendError):
    """Well-formed JSON of the wrong shape (missing keys, wrong types)."""

    status_code = 422


class LabelConfigError(MLBackendError):
    """The label config is not XML, or lacks the tags a model needs."""

    status_code = 422


class Unauthorized(MLBackendError):
    status_code = 401


class PayloadTooLarge(MLBackendError):
    status_code = 413


class ModelNotReady(MLBackendError):
    status_code = 503


class StateUnavailable(MLBackendError):
    """The shared state store (e.g. Redis) cannot be reached."""

    status_code = 503


class MediaError(MLBackendError):
    """A task's media could not be fetched or read; only that task fails."""

    status_code = 422


class NotFound(MLBackendError):
    status_code = 404


class BadGateway(MLBackendError):
    """Label Studio refused, or did not answer, a call the backend made for the request."""

    status_code = 502
