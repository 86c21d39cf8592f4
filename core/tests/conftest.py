from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def client(make_client: Any) -> Any:
    """The Echo model served through the real app (TestClient), resources loaded."""
    return make_client(fakes.Echo)


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: `make test` installs it (core/apt-test.txt)")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("redis-server did not start")


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A real redis-server on a free loopback port with its own temp dir; always stopped."""
    folder = tmp_path / "redis"
    folder.mkdir()
    proc, url = start_redis(folder)
    try:
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
