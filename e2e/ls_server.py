"""A real Label Studio 1.23.2 on loopback: installed in its own virtualenv from a pinned set, started with a
throwaway data dir, a user and a legacy token created non-interactively, always stopped. Used by the e2e
fixtures and by benchmarks/preannotate.py."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from label_studio_ml.testing.plugin import free_port

LS_VERSION = "1.23.2"
LS_REQUIREMENTS = Path(__file__).parent / "label-studio-requirements.txt"  # label-studio==LS_VERSION, all pinned
ROOT = Path(__file__).resolve().parents[1]
LS_VENV = Path(os.environ.get("LSML_LS_VENV", ROOT / ".tox" / "label-studio"))
USER, PASSWORD = "admin@example.com", "e2e-password-123"


def ensure_label_studio() -> Path:
    exe = LS_VENV / "bin" / "label-studio"
    stamp = LS_VENV / ".requirements"
    if exe.exists() and stamp.exists() and stamp.read_text() == LS_REQUIREMENTS.read_text():
        return exe
    print(f"installing label-studio=={LS_VERSION} into {LS_VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(LS_VENV)], check=True)
    subprocess.run(
        [str(LS_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(LS_REQUIREMENTS)], check=True
    )
    stamp.write_text(LS_REQUIREMENTS.read_text())
    return exe


class LabelStudio:
    def __init__(self, url: str, token: str, log_path: Path) -> None:
        self.url = url
        self.token = token
        self.log_path = log_path
        self._personal_access_token: str | None = None
        self.http = requests.Session()
        self.http.headers.update({"Authorization": f"Token {token}"})

    def api(self, method: str, path: str, expect: int | tuple[int, ...] = (200, 201), **kwargs: Any) -> Any:
        reply = self.http.request(method, self.url + path, timeout=120, **kwargs)
        expected = (expect,) if isinstance(expect, int) else expect
        assert reply.status_code in expected, f"{method} {path} -> {reply.status_code}: {reply.text[:500]}"
        return (
            reply.json()
            if reply.content and reply.headers.get("content-type", "").startswith("application/json")
            else None
        )

    def create_project(self, label_config: str, title: str = "e2e") -> int:
        return self.api("POST", "/api/projects/", json={"title": title, "label_config": label_config})["id"]

    def connect(self, project: int, backend_url: str, interactive: bool = False, **extra: Any) -> dict[str, Any]:
        return self.api(
            "POST",
            "/api/ml",
            json={"url": backend_url, "project": project, "title": "backend", "is_interactive": interactive, **extra},
        )

    def import_tasks(self, project: int, tasks: list[dict[str, Any]]) -> None:
        self.api("POST", f"/api/projects/{project}/import", json=tasks)

    def upload_files(self, project: int, files: dict[str, bytes]) -> None:
        self.api("POST", f"/api/projects/{project}/import", files={name: (name, data) for name, data in files.items()})

    def retrieve_predictions(self, project: int) -> None:
        self.api(
            "POST",
            f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
            json={"selectedItems": {"all": True, "excluded": []}},
        )

    def tasks(self, project: int, page_size: int = 1000) -> list[dict[str, Any]]:
        """Every task of the project with its predictions and annotations in full, page by page."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            path = f"/api/tasks/?project={project}&fields=all&page={page}&page_size={page_size}"
            reply = self.http.get(self.url + path, timeout=120)
            if reply.status_code == 404 and found:  # LS answers 404 past the last page
                return found
            assert reply.status_code == 200, f"GET {path} -> {reply.status_code}: {reply.text[:500]}"
            body = reply.json()
            tasks = body["tasks"] if isinstance(body, dict) else body
            found += tasks
            if len(tasks) < page_size:
                return found
            page += 1

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def personal_access_token(self) -> str:
        """The user's personal access token (a JWT): created once by logging in with a session and enabling
        token kinds; LS 1.23.2 refuses a second one (409) while the first is valid, so later calls reuse it."""
        if self._personal_access_token is None:
            self._personal_access_token = self._create_personal_access_token()
        return self._personal_access_token

    def _create_personal_access_token(self) -> str:
        web = requests.Session()
        web.get(self.url + "/user/login/", timeout=30)
        csrf = web.cookies.get("csrftoken", "")
        web.post(
            self.url + "/user/login/",
            data={"email": USER, "password": PASSWORD, "csrfmiddlewaretoken": csrf},
            headers={"Referer": self.url + "/user/login/"},
            timeout=30,
            allow_redirects=False,
        )
        headers = {"X-CSRFToken": web.cookies.get("csrftoken", csrf), "Referer": self.url + "/"}
        web.post(
            self.url + "/api/jwt/settings",
            json={"api_tokens_enabled": True, "legacy_api_tokens_enabled": True},
            headers=headers,
            timeout=30,
        )
        reply = web.post(self.url + "/api/token/", headers=headers, timeout=30)
        assert reply.status_code in (200, 201), reply.text[:300]
        return reply.json()["token"]


@contextmanager
def run_label_studio(data: Path) -> Iterator[LabelStudio]:
    """Label Studio serving ``data`` on a free loopback port until the block ends."""
    exe = ensure_label_studio()
    port = free_port()
    token = secrets.token_hex(20)
    log_path = data / "label-studio.log"
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "LABEL_STUDIO_USERNAME": USER,
        "LABEL_STUDIO_PASSWORD": PASSWORD,
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "PYTHONUNBUFFERED": "1",
    }
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(exe),
                "start",
                "--no-browser",
                "--internal-host",
                "127.0.0.1",
                "--host",
                f"http://127.0.0.1:{port}",
                "--port",
                str(port),
                "--data-dir",
                str(data),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ls = LabelStudio(f"http://127.0.0.1:{port}", token, log_path)
    try:
        while True:
            try:
                if requests.get(ls.url + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() - started > 300:
                raise RuntimeError(f"Label Studio did not start:\n{ls.log_tail()}")
            time.sleep(1)
        print(f"\nLabel Studio {LS_VERSION} healthy after {time.monotonic() - started:.0f} s at {ls.url}")
        ls.api("GET", "/api/current-user/whoami")
        yield ls
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
