"""A real Label Studio 1.23.2 for end-to-end tests: installed in its own virtualenv, started on
loopback with a throwaway data dir, a user and legacy token created non-interactively, always stopped.

On a failing test the LS log tail and the backend log tails are printed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ls_server import ROOT, LabelStudio, run_label_studio

from label_studio_ml.testing.plugin import ServerProcess

BACKENDS: list[ServerProcess] = []


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    with run_label_studio(tmp_path_factory.mktemp("ls-data")) as ls:
        yield ls


@pytest.fixture
def backend(label_studio: LabelStudio, tmp_path: Path) -> Iterator[Any]:
    """``backend(service, **env)`` starts services/<service> (or a backend folder given as a Path) on a
    free port, connected to this LS."""
    started: list[ServerProcess] = []

    def start(service: str | Path, api_key: str | None = None, python: str | None = None, **env: str) -> ServerProcess:
        folder = service if isinstance(service, Path) else ROOT / "services" / service
        server = ServerProcess(
            folder,
            env={
                "MODEL_DIR": str(tmp_path / f"{folder.name}-models"),
                "LABEL_STUDIO_URL": label_studio.url,
                "LABEL_STUDIO_API_KEY": api_key or label_studio.token,
                "HF_HUB_OFFLINE": "1",
                **env,
            },
            log_path=tmp_path / f"{folder.name}.log",
            python=python,
        )
        server.start()
        started.append(server)
        BACKENDS.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        BACKENDS.remove(server)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        ls = item.funcargs.get("label_studio")
        sections = []
        if isinstance(ls, LabelStudio):
            sections.append(("Label Studio log tail", ls.log_tail()))
        for server in BACKENDS:
            sections.append((f"backend log tail ({server.args[3]})", server.log_tail()))
        for title, text in sections:
            report.sections.append((title, text))
