from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from label_studio_ml.testing.plugin import free_port, start_redis, stop_process

sys.path.insert(0, str(Path(__file__).parent))  # `import fakes`, `import configs`

import fakes  # noqa: E402

collect_ignore = ["upstream_backends"]  # backends with their own tests, run in their folder (test_upstream_backends)


@pytest.fixture(autouse=True)
def _reset_model_records() -> Iterator[None]:
    fakes.calls.clear()
    fakes.seen.clear()
    fakes.GatedLoad.gate.clear()
    fakes.GatedLoad.fail = False
    fakes.Slow.started.clear()
    fakes.Slow.running = fakes.Slow.peak = 0
    yield
    fakes.GatedLoad.gate.set()  # never leave a load thread waiting


@pytest.fixture
def client(make_client: Any) -> Any:
    """The Echo model served through the real app (TestClient), resources loaded."""
    return make_client(fakes.Echo)


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A real redis-server on a free loopback port with its own temp dir; always stopped."""
    folder = tmp_path / "redis"
    folder.mkdir()
    try:
        proc, url = start_redis(folder)
    except RuntimeError as exc:  # a missing redis-server fails the test, never skips it
        pytest.fail(f"{exc}: `make test` installs it (core/apt-test.txt)")
    try:
        yield proc, url
    finally:
        stop_process(proc, timeout=5)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("LABEL_STUDIO_", "BASIC_AUTH_", "REDIS_", "MEDIA_", "WEBHOOK_")):
            monkeypatch.delenv(name)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient`")


class LiveServer:
    """The app served by uvicorn on a free loopback port in a thread (a real HTTP server)."""

    def __init__(self, app: Any, **config: Any) -> None:
        import threading

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, lifespan="on", **config)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)
