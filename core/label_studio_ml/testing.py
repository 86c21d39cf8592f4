"""Test kit for services: a pytest plugin with an app client fixture, recorded LS requests, and a
conformance check every service runs.

Registered as a pytest plugin by the package (entry point ``pytest11``); imports stay light so that
loading the plugin costs nothing for suites that do not use it.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from .config import Settings
from .label_config import LabelConfig
from .model import LabelStudioMLBase
from .regions import RegionValidator

FIXTURES = Path(__file__).parent / "fixtures"


def recorded_requests(name: str = "ls-1.23.2-text-choices.jsonl",
                      path: str | None = None) -> list[dict[str, Any]]:
    """Requests a real LS sent to a backend, one dict each (``method``, ``path``, ``headers``, ``body``)."""
    target = FIXTURES / name if path is None else Path(path) / name
    return [json.loads(line) for line in target.read_text().splitlines() if line.strip()]


def recorded(path: str, name: str = "ls-1.23.2-text-choices.jsonl") -> list[dict[str, Any]]:
    return [r for r in recorded_requests(name) if r["path"] == path]


@contextmanager
def model_client(model_class: type[LabelStudioMLBase], model_dir: Path,
                 **settings: Any) -> Iterator[Any]:
    """A Starlette TestClient for ``model_class``; resources loaded before the first request."""
    from starlette.testclient import TestClient

    from .app import create_app

    app = create_app(model_class, Settings.from_dict({"model_dir": model_dir, **settings}),
                     background_load=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.runtime = app.state.runtime  # type: ignore[attr-defined]
        yield client


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``make_client(ModelClass, **settings)`` -> TestClient, closed after the test."""
    stack: list[Any] = []

    def factory(model_class: type[LabelStudioMLBase], **settings: Any) -> Any:
        ctx = model_client(model_class, settings.pop("model_dir", tmp_path / "model_dir"), **settings)
        client = ctx.__enter__()
        stack.append(ctx)
        return client

    yield factory
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


def assert_conformant(client: Any, label_config: str, tasks: list[dict[str, Any]],
                      context: dict[str, Any] | None = None, project: str = "1.1700000000",
                      expect_regions: bool | None = None) -> list[dict[str, Any]]:
    """Drive ``/health``, ``/setup`` and ``/predict`` as LS does and check the protocol's promises.

    Returns the predictions so a test can assert on content too.
    """
    health = client.get("/health")
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "UP"
    setup = client.post("/setup", json={"project": project, "schema": label_config,
                                        "hostname": "http://localhost:8080", "extra_params": None})
    assert setup.status_code == 200, setup.text
    version = setup.json()["model_version"]
    assert isinstance(version, str) and version
    dropped_before = client.runtime.stats["dropped_regions"]
    reply = client.post("/predict", json={"tasks": tasks, "project": project, "label_config": label_config,
                                          "params": {"login": None, "password": None, "context": context}})
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert len(results) == len(tasks), "one prediction per task, in order"
    validator = RegionValidator(LabelConfig(label_config))
    for task, prediction in zip(tasks, results):
        assert set(prediction) >= {"result", "score", "model_version"}
        assert prediction["model_version"] == version
        kept, dropped = validator.validate(prediction["result"], task)
        assert not dropped, dropped
    assert client.runtime.stats["dropped_regions"] == dropped_before, "the model emitted invalid regions"
    if expect_regions is not None:
        assert any(p["result"] for p in results) == expect_regions
    return results


@pytest.fixture
def ls_requests() -> Callable[..., list[dict[str, Any]]]:
    return recorded_requests
