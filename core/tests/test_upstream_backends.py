"""Backends written for the upstream ``label-studio-ml`` SDK (tests/upstream_backends/<name>/: model.py,
_wsgi.py, requirements, Dockerfile) served by core three ways: ``label-studio-ml start DIR``,
``python _wsgi.py`` and upstream's image command ``gunicorn --preload ... _wsgi:app``. Each must answer
/health, /setup, /predict and /webhook with upstream's status codes and body shapes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from label_studio_ml.testing.plugin import ServerProcess, free_port

BACKENDS = Path(__file__).parent / "upstream_backends"
WAYS = ("start", "wsgi_py", "gunicorn")
TIMEOUT = 10  # seconds for one request

NER = (
    '<View><Labels name="label" toName="text"><Label value="ORG"/><Label value="PER"/></Labels>'
    '<Text name="text" value="$text"/></View>'
)
SENTIMENT = (
    '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
    '<Choice value="Positive" predicted_values="pos"/><Choice value="Negative" predicted_values="neg"/>'
    "</Choices></View>"
)
LENGTH = (
    '<View><Text name="text" value="$text"/><Choices name="size" toName="text">'
    '<Choice value="Long"/><Choice value="Short"/></Choices></View>'
)
TEXTS = ["Apple makes phones; apple pie is not an Apple product.", "a good day", "a bad and awful day"]


def gunicorn_argv(port: int, workers: int = 1, preload: bool = True) -> list[str]:
    """Upstream's image command (its Dockerfile's CMD) on a loopback port."""
    binary = str(Path(sys.executable).with_name("gunicorn"))
    options = ["--preload"] if preload else []
    return [binary, *options, "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", "8"] + [
        "--timeout",
        "0",
        "_wsgi:app",
    ]


def serve(folder: Path, way: str, model_dir: Path, env: dict[str, str] | None = None, **kwargs: Any) -> ServerProcess:
    """A server for ``folder`` run ``way``; use it as a context manager (waits for /health 200, always stops)."""
    port = free_port()
    env = {"MODEL_DIR": str(model_dir), "PORT": str(port), **(env or {})}
    log_path = model_dir / f"{folder.name}-{way}.log"
    if way == "start":
        return ServerProcess(folder, env=env, log_path=log_path, port=port, **kwargs)
    argv = [sys.executable, "_wsgi.py", "-p", str(port)] if way == "wsgi_py" else gunicorn_argv(port)
    return ServerProcess(folder, env=env, log_path=log_path, port=port, argv=argv, cwd=folder, **kwargs)


def post(server: ServerProcess, path: str, body: Any, **kwargs: Any) -> requests.Response:
    return requests.post(server.url + path, json=body, timeout=TIMEOUT, **kwargs)


def predict_body(project: str, config: str, texts: list[str], context: dict[str, Any] | None = None) -> dict[str, Any]:
    """What LS 1.23.2 sends to /predict: project as ``<id>.<created timestamp>``, tasks with data."""
    tasks = [
        {"id": 100 + i, "data": {"text": text}, "annotations": [], "predictions": []} for i, text in enumerate(texts)
    ]
    return {
        "tasks": tasks,
        "project": project,
        "label_config": config,
        "params": {"login": None, "password": None, "context": context},
    }


def annotation_event(project_id: int, config: str, text: str, choice: str) -> dict[str, Any]:
    """LS's ANNOTATION_CREATED webhook payload (the parts a backend reads)."""
    result = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [choice]}}]
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": project_id, "label_config": config},
        "task": {"id": 900, "data": {"text": text}},
        "annotation": {"id": 901, "result": result, "was_cancelled": False},
    }


@dataclass
class Backend:
    folder: str
    model_class: str
    config: str
    setup_version: str | None  # what upstream's /setup answers: the version setup() stored
    check_predictions: Callable[[list[Any]], None]
    context: dict[str, Any] | None = None
    extra_checks: list[str] = field(default_factory=list)


def no_predictions(results: list[Any]) -> None:
    assert results == []  # upstream returns the empty ModelResponse as an empty list, status 200


def every_apple_labelled(results: list[Any]) -> None:
    assert len(results) == len(TEXTS)
    first = results[0]
    assert first["model_version"] == "matcher-v1"  # the version the model put on its ModelResponse
    spans = [(r["value"]["start"], r["value"]["end"]) for r in first["result"]]
    assert spans == [(0, 5), (20, 25), (40, 45)]
    assert all(r["value"]["labels"] == ["ORG"] and r["from_name"] == "label" for r in first["result"])
    assert results[1]["result"] == [] and results[2]["result"] == []


def mapped_sentiments(results: list[Any]) -> None:
    choices = [r["result"][0]["value"]["choices"] for r in results]
    assert choices[1:] == [["Positive"], ["Negative"]]  # model classes pos/neg through predicted_values
    assert all(r["model_version"] == "keywords-0" for r in results)
    assert all(r["result"][0]["from_name"] == "sentiment" for r in results)


def lengths(results: list[Any]) -> None:
    assert [r["result"][0]["value"]["choices"] for r in results] == [["Long"], ["Short"], ["Short"]]
    assert all(0 <= r["score"] <= 1 for r in results)


APPLE_CONTEXT = {
    "result": [
        {
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "origin": "manual",
            "value": {"start": 0, "end": 5, "text": "Apple", "labels": ["ORG"]},
        }
    ]
}

BACKEND_CASES = {
    "default_template": Backend("default_template", "NewModel", SENTIMENT, "0.0.1", no_predictions),
    "interactive_matching": Backend(
        "interactive_matching", "SubstringMatcher", NER, "matcher-v1", every_apple_labelled, context=APPLE_CONTEXT
    ),
    "keyword_classifier": Backend(
        "keyword_classifier", "KeywordClassifier", SENTIMENT, "keywords-0", mapped_sentiments
    ),
    "sdk_predictions": Backend("sdk_predictions", "LengthClassifier", LENGTH, None, lengths),
}


def test_every_backend_folder_is_tested() -> None:
    folders = sorted(p.name for p in BACKENDS.iterdir() if (p / "model.py").exists())
    assert folders == sorted(BACKEND_CASES)
    for folder in folders:
        present = {p.name for p in (BACKENDS / folder).iterdir()}
        assert {"model.py", "_wsgi.py", "requirements.txt", "requirements-base.txt"} <= present
    # upstream's image file is the same in every backend folder: the default template's stands for all
    assert (BACKENDS / "default_template" / "Dockerfile").read_text().rstrip().endswith("_wsgi:app")


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("name", sorted(BACKEND_CASES))
def test_backend_answers_like_upstream(name: str, way: str, tmp_path: Path, clean_env: None) -> None:
    case = BACKEND_CASES[name]
    with serve(BACKENDS / case.folder, way, tmp_path) as server:
        health = requests.get(server.url + "/health", timeout=TIMEOUT)
        assert health.status_code == 200
        assert health.json()["status"] == "UP" and health.json()["model_class"] == case.model_class

        setup = post(server, "/setup", {"project": "7.1712000000", "schema": case.config, "extra_params": "{}"})
        assert setup.status_code == 200, setup.text
        version = setup.json()["model_version"]
        assert isinstance(version, str) and version
        if case.setup_version is not None:
            assert version == case.setup_version

        if case.context is not None:  # interactive: a batch without context gets nothing, as upstream
            batch = post(server, "/predict", predict_body("7.1712000000", case.config, TEXTS))
            assert batch.status_code == 200 and batch.json() == {"results": []}, batch.text
        predicted = post(server, "/predict", predict_body("7.1712000000", case.config, TEXTS, case.context))
        assert predicted.status_code == 200, predicted.text
        assert set(predicted.json()) >= {"results"}
        case.check_predictions(predicted.json()["results"])
        if case.setup_version is None:  # the version /setup answered is the predictions' version
            assert {r["model_version"] for r in predicted.json()["results"]} == {version}

        event = annotation_event(7, case.config, TEXTS[1], "Positive")
        hook = post(server, "/webhook", event)
        assert hook.status_code == 201, hook.text  # upstream answers a training event with 201
        other = post(server, "/webhook", {"action": "PROJECT_UPDATED", "project": {"id": 7}})
        assert other.status_code == 200, other.text  # and any other event with 200
    assert "Traceback" not in server.log_tail(1000)  # nor a logging error (gunicorn's formats need process ids)


def test_training_under_gunicorn_changes_predictions_and_version(tmp_path: Path, clean_env: None) -> None:
    """fit() (in the background on core) learns from the webhook's annotation; the model's own version
    reaches /setup and the predictions, as upstream's cache-kept model_version does."""
    case = BACKEND_CASES["keyword_classifier"]
    body = predict_body("7.1712000000", SENTIMENT, ["the soup was salty"])
    with serve(BACKENDS / case.folder, "gunicorn", tmp_path) as server:
        assert post(server, "/setup", {"project": "7.1712000000", "schema": SENTIMENT}).status_code == 200
        before = post(server, "/predict", body).json()["results"][0]
        assert before["model_version"] == "keywords-0"
        hook = post(server, "/webhook", annotation_event(7, SENTIMENT, "salty salty soup", "Negative"))
        assert hook.status_code == 201
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            after = post(server, "/predict", body).json()["results"][0]
            if after["model_version"] == "keywords-1":
                break
            time.sleep(0.1)
        assert after["model_version"] == "keywords-1", after
        assert after["result"][0]["value"]["choices"] == ["Negative"]
        setup = post(server, "/setup", {"project": "7.1712000000", "schema": SENTIMENT})
        assert setup.json()["model_version"] == "keywords-1"


@pytest.mark.parametrize("way", ["wsgi_py", "gunicorn"])
def test_ml_server_basic_auth_env_is_enforced(way: str, tmp_path: Path, clean_env: None) -> None:
    """Upstream's _wsgi.py reads ML_SERVER_BASIC_AUTH_USER/PASS; under gunicorn it passes nothing to
    init_app, which must still require them (a server meant to be private must not run open)."""
    env = {"ML_SERVER_BASIC_AUTH_USER": "ls", "ML_SERVER_BASIC_AUTH_PASS": "s3cret-pass"}
    with serve(BACKENDS / "default_template", way, tmp_path, env=env) as server:
        body = predict_body("7.1712000000", SENTIMENT, TEXTS[:1])
        refused = post(server, "/predict", body)
        assert refused.status_code == 401 and "WWW-Authenticate" in refused.headers
        assert post(server, "/predict", body, auth=("ls", "wrong")).status_code == 401
        assert post(server, "/predict", body, auth=("ls", "s3cret-pass")).status_code == 200
        assert requests.get(server.url + "/health", timeout=TIMEOUT).status_code == 200  # probes stay open


GATED_MODEL = """
import os, pathlib, time
from label_studio_ml.model import LabelStudioMLBase


class Gated(LabelStudioMLBase):
    @classmethod
    def load(cls):
        folder = pathlib.Path(os.environ["MODEL_DIR"])
        (folder / f"loaded-{os.getpid()}").touch()
        while not (folder / "open").exists():
            time.sleep(0.02)
        (folder / f"ready-{os.getpid()}").touch()
        return "weights"

    def predict(self, tasks, context=None, **kwargs):
        return [{"result": [], "score": 1.0 if self.resources == "weights" else 0.0} for _ in tasks]
"""
GATED_WSGI = "from label_studio_ml.api import init_app\nfrom model import Gated\n\napp = init_app(model_class=Gated)\n"


@pytest.mark.parametrize("preload", [True, False], ids=["preload", "no-preload"])
def test_gunicorn_loads_once_per_worker_never_in_the_master(preload: bool, tmp_path: Path, clean_env: None) -> None:
    """With --preload the master imports _wsgi.py and forks: each worker must load the model itself
    (a thread started before the fork would not exist in it), and /health must say LOADING until then.
    Without it each worker imports _wsgi.py and loads at once, before its first request."""
    folder, model_dir = tmp_path / "gated", tmp_path / "model_dir"
    folder.mkdir()
    model_dir.mkdir()
    (folder / "model.py").write_text(GATED_MODEL)
    (folder / "_wsgi.py").write_text(GATED_WSGI)
    port = free_port()
    argv = gunicorn_argv(port, workers=2, preload=preload)
    env = {"MODEL_DIR": str(model_dir)}
    with ServerProcess(folder, env=env, port=port, argv=argv, cwd=folder, wait_healthy=False) as server:
        deadline = time.monotonic() + 30
        while len(list(model_dir.glob("loaded-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        loaders = {int(p.name.split("-")[1]) for p in model_dir.glob("loaded-*")}
        assert len(loaders) == 2, server.log_tail()
        assert server.proc.pid not in loaders  # the master only imports and forks
        loading = requests.get(server.url + "/health", timeout=TIMEOUT)
        assert loading.status_code == 503 and loading.json()["status"] == "LOADING"
        assert post(server, "/predict", predict_body("1", NER, ["x"])).status_code == 503
        (model_dir / "open").touch()
        deadline = time.monotonic() + 20
        while len(list(model_dir.glob("ready-*"))) < 2:  # both workers: either may answer the next request
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.05)
        streak = 0  # load() returned in both; each runtime marks itself ready right after
        while streak < 10:
            streak = streak + 1 if requests.get(server.url + "/health", timeout=TIMEOUT).status_code == 200 else 0
            assert time.monotonic() < deadline, server.log_tail()
        answered = post(server, "/predict", predict_body("1", NER, ["x"]))
        assert answered.status_code == 200 and answered.json()["results"][0]["score"] == 1.0  # load()'s resources
        assert {int(p.name.split("-")[1]) for p in model_dir.glob("loaded-*")} == loaders  # no second load


def test_run_refuses_a_taken_port(tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from label_studio_ml.api import init_app
    from label_studio_ml.engine.loader import load_model_class

    monkeypatch.setenv("MODEL_DIR", str(tmp_path))
    model_class = load_model_class(BACKENDS / "sdk_predictions")  # another test's `model` may be imported
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(SystemExit, match="already in use"):
            init_app(model_class).run(host="127.0.0.1", port=taken.getsockname()[1])


def test_a_backends_own_flask_style_tests_run_unchanged(tmp_path: Path) -> None:
    """upstream's generated test_api.py: init_app(...).test_client(), post(data=..., content_type=...)."""
    folder = BACKENDS / "default_template"
    env = {**os.environ, "MODEL_DIR": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_api.py"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    assert "2 passed" in ran.stdout
