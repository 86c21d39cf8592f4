"""Where bulk pre-annotation gets its predictions: the model in this process (a ``ModelRuntime``) or a
running backend over HTTP. Both answer one prediction per task, in order, stamped with the version
they serve; a task the model failed on carries an ``error`` (the runtime's one-by-one fallback)."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from ..clients.ls_client import origin
from ..clients.outbound import Deadline, guarded_session
from ..engine.protocol import PredictRequest, SetupRequest
from ..engine.runtime import ModelRuntime

logger = logging.getLogger(__name__)


class PredictorUnavailable(RuntimeError):
    """The backend did not answer (refused, timed out, 502/503/504): worth trying again later."""


class PredictError(RuntimeError):
    """The model failed on this request; another split of the tasks may succeed."""


class VersionChanged(RuntimeError):
    """The model version changed during the job (a training published one): the job's skip rule no
    longer holds, so the job stops and a new run starts over with the new version."""


class Predictor(Protocol):
    version: str

    def predict(self, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]: ...


def check_count(predictions: list[dict[str, Any]], tasks: int) -> None:
    """One prediction per task: a model may answer fewer (the server passes that on), a job cannot."""
    if len(predictions) != tasks:
        raise PredictError(f"the backend answered {len(predictions)} predictions for {tasks} tasks")


def check_versions(predictions: list[dict[str, Any]], version: str) -> None:
    for prediction in predictions:
        given = prediction.get("model_version")
        if given is not None and given != version:
            raise VersionChanged(f"the model version changed from {version} to {given} during the job")


class InProcessPredictor:
    """A loaded ``ModelRuntime`` predicting for one project, as its /predict would."""

    def __init__(self, runtime: ModelRuntime, project: str, label_config: str) -> None:
        self.runtime = runtime
        self.project = project
        self.label_config = label_config
        self.runtime.require_ready()
        self.version = runtime.setup(
            SetupRequest(project=project, schema=label_config, hostname=None, access_token=None, extra_params=None)
        )

    def predict(self, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        request = PredictRequest(
            tasks=tasks, project=self.project, label_config=self.label_config, context=None, params={}
        )
        try:
            predictions = self.runtime.predict(request)
        except Exception as exc:
            raise PredictError(f"{type(exc).__name__}: {exc}") from exc
        check_count(predictions, len(tasks))
        # the active version, not the predictions': a model may stamp its own on them
        active = self.runtime.versions.active(self.project)
        if active != self.version:
            raise VersionChanged(f"the model version changed from {self.version} to {active} during the job")
        return predictions


class HttpPredictor:
    """A running backend: its /setup for the version, its /predict for batches."""

    def __init__(
        self,
        url: str,
        project: str,
        label_config: str,
        auth: tuple[str, str] | None = None,
        timeout: float = 300.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.project = project
        self.label_config = label_config
        self.timeout = timeout
        self.session = guarded_session([origin(self.url)[1]])  # the operator named this host
        if auth is not None:
            self.session.auth = auth
        body = self._post("/setup", {"project": project, "schema": label_config}, timeout=30)
        version = body.get("model_version") if isinstance(body, dict) else None
        if not isinstance(version, str) or not version:
            raise PredictorUnavailable(f"the backend at {self.url} answered /setup without a model_version")
        self.version = version

    def _post(self, path: str, body: dict[str, Any], timeout: float) -> Any:
        import requests

        try:
            with Deadline(timeout) as deadline:  # the whole answer, not each socket read
                reply = self.session.post(self.url + path, json=body, timeout=timeout)
        except requests.RequestException as exc:
            why = f"no answer within {timeout:g} s" if deadline.expired else type(exc).__name__
            raise PredictorUnavailable(f"the backend at {self.url} did not answer: {why}") from None
        if reply.status_code == 200:
            return reply.json()
        try:
            reason = str(reply.json().get("error") or "")
        except (ValueError, AttributeError):
            reason = ""
        message = f"the backend answered {path} with HTTP {reply.status_code}{': ' + reason if reason else ''}"
        if reply.status_code in (401, 403):
            raise PermissionError(f"{message} (give its basic auth with --basic-auth-user/--basic-auth-pass)")
        if reply.status_code in (502, 503, 504):
            raise PredictorUnavailable(message)
        raise PredictError(message)

    def predict(self, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = self._post(
            "/predict",
            {"tasks": tasks, "project": self.project, "label_config": self.label_config},
            timeout=self.timeout,
        )
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise PredictError("the backend answered /predict without a 'results' list")
        check_count(results, len(tasks))
        check_versions(results, self.version)
        return results
