"""``label_studio_ml.api.init_app`` in-process: its arguments and environment, and the WSGI bridge
(``wsgi.py``) called as a WSGI server calls it. The served processes are in test_upstream_backends.py."""

from __future__ import annotations

import base64
import io
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import fakes
import pytest

from label_studio_ml.api import TRAIN_EVENTS, init_app
from label_studio_ml.server.logs import RedactSecrets
from label_studio_ml.server.wsgi import gunicorn_role


def wsgi_call(app: Any, method: str, path: str, body: Any = None, auth: str | None = None) -> tuple[int, Any]:
    """One request as a WSGI server makes it (the Flask-style client, not waiting for the load)."""
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else None
    reply = app.test_client().open(path, method, json=body, headers=headers)
    return reply.status_code, reply.json


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None) -> Path:
    monkeypatch.setenv("MODEL_DIR", str(tmp_path))
    for name in ("ML_SERVER_BASIC_AUTH_USER", "ML_SERVER_BASIC_AUTH_PASS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_init_app_wants_a_model_class(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="subclass of LabelStudioMLBase"):
        init_app(dict)  # type: ignore[arg-type]


def test_basic_auth_from_arguments_or_upstream_environment(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not init_app(fakes.Echo).settings.basic_auth_enabled
    assert init_app(fakes.Echo, basic_auth_user="u", basic_auth_pass="p").settings.basic_auth_enabled
    monkeypatch.setenv("ML_SERVER_BASIC_AUTH_USER", "ls")
    with pytest.raises(ValueError, match="user and a password"):  # half of it would serve without auth
        init_app(fakes.Echo)
    monkeypatch.setenv("ML_SERVER_BASIC_AUTH_PASS", "s3cret-pass")
    settings = init_app(fakes.Echo).settings
    assert (settings.basic_auth_user, settings.basic_auth_pass) == ("ls", "s3cret-pass")


def test_keywords_of_upstream_templates(model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    elsewhere = tmp_path / "models"
    with caplog.at_level(logging.WARNING, logger="label_studio_ml.api"):
        app = init_app(fakes.Echo, model_dir=str(elsewhere), redis_queue="default", redis_host="localhost")
    assert app.settings.model_dir == elsewhere and not app.settings.redis_url  # the Redis trio never enables Redis
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="label_studio_ml.api"):
        init_app(fakes.Echo, hostname="x", access_token="y")
    assert "ignores access_token, hostname" in caplog.text
    assert app.config == {} and TRAIN_EVENTS >= {"ANNOTATION_CREATED", "START_TRAINING"}


def test_wsgi_calls_start_the_app_once_and_health_tells_the_truth(model_dir: Path) -> None:
    app = init_app(fakes.Echo)
    assert gunicorn_role() is None and not app.wsgi.started  # no WSGI server here: nothing runs until a request
    status, body = wsgi_call(app, "GET", "/health")
    assert app.wsgi.started and body["model_class"] == "Echo"
    assert (status, body["status"]) in ((200, "UP"), (503, "LOADING"))
    deadline = time.monotonic() + 10
    while status != 200 and time.monotonic() < deadline:
        time.sleep(0.02)
        status, body = wsgi_call(app, "GET", "/health")
    assert (status, body["status"]) == (200, "UP")
    request = {"tasks": [{"id": 1, "data": {"text": "good"}}], "project": "3.1", "label_config": fakes.CONFIG}
    status, body = wsgi_call(app, "POST", "/predict", request)
    assert status == 200 and body["results"][0]["result"][0]["value"]["choices"] == ["Positive"]
    assert fakes.calls["load"] == 1  # the lifespan started once for all those calls
    with pytest.raises(RuntimeError, match="load it twice"):
        app.run(port=0)
    app.wsgi.close()
    assert not app.wsgi.started


def test_wsgi_requests_need_basic_auth_when_set(model_dir: Path) -> None:
    app = init_app(fakes.Echo, basic_auth_user="ls", basic_auth_pass="s3cret-pass")
    request = {"tasks": [{"id": 1, "data": {"text": "x"}}], "project": "3.1", "label_config": fakes.CONFIG}
    assert wsgi_call(app, "POST", "/predict", request)[0] == 401
    assert wsgi_call(app, "POST", "/predict", request, auth="ls:wrong")[0] == 401
    assert wsgi_call(app, "POST", "/predict", request, auth="ls:s3cret-pass")[0] in (200, 503)
    app.wsgi.close()


def test_the_logging_of_a_wsgi_file_is_kept_and_redacted(model_dir: Path) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    saved = root.handlers[:]
    root.handlers[:] = [handler]
    try:
        init_app(fakes.Echo, basic_auth_user="ls", basic_auth_pass="s3cret-pass")
        assert root.handlers == [handler]  # the _wsgi.py's own handler and format stay
        assert any(isinstance(f, RedactSecrets) for f in handler.filters)
        root.warning("password is s3cret-pass")
        assert "s3cret-pass" not in handler.stream.getvalue() and "***" in handler.stream.getvalue()
    finally:
        root.handlers[:] = saved


def test_flask_style_test_client_of_upstream_tests(model_dir: Path) -> None:
    """What upstream's generated test_api.py does: config['TESTING'], test_client() as a context manager,
    post(data=json.dumps(...), content_type=...), then status_code and json.loads(response.data)."""
    app = init_app(model_class=fakes.Echo)
    app.config["TESTING"] = True
    request = {"tasks": [{"id": 1, "data": {"text": "good"}}], "project": "3.1", "label_config": fakes.CONFIG}
    with app.test_client() as client:  # entered once the model loaded: the first predict is served
        response = client.post("/predict", data=json.dumps(request), content_type="application/json")
        assert response.status_code == 200
        assert json.loads(response.data)["results"][0]["result"][0]["value"]["choices"] == ["Positive"]
        assert response.get_json() == response.json and response.headers["content-type"] == "application/json"
        health = client.get("/health")
        assert health.status_code == 200 and health.json["status"] == "UP"
        assert client.get("/versions?project=3").json["model_class"] == "Echo"
        assert client.post("/predict", data="{not json", content_type="application/json").status_code == 400
    app.wsgi.close()


def test_a_missing_wsgi_extra_is_named(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "a2wsgi", None)  # as if not installed
    app = init_app(fakes.Echo)  # python _wsgi.py (app.run on uvicorn) does not need it
    with pytest.raises(ModuleNotFoundError, match=r"label-studio-ml\[wsgi\]"):
        wsgi_call(app, "GET", "/health")
