"""Talking to Label Studio: token kinds (legacy and personal access token) and the export API."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import requests  # imported where used: it costs a third of the server's start-up time

logger = logging.getLogger(__name__)


def origin(url: str) -> tuple[str, str, int | None]:
    """scheme, host and port of a URL (default ports made explicit) for same-host checks."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _jwt_payload(token: str) -> dict[str, Any] | None:
    pieces = token.split(".")
    if len(pieces) != 3:
        return None
    try:
        header = json.loads(base64.urlsafe_b64decode(pieces[0] + "=" * (-len(pieces[0]) % 4)))
        payload = json.loads(base64.urlsafe_b64decode(pieces[1] + "=" * (-len(pieces[1]) % 4)))
    except ValueError:
        return None
    return payload if isinstance(header, dict) and isinstance(payload, dict) else None


def is_personal_access_token(token: str) -> bool:
    return _jwt_payload(token) is not None


class LabelStudioClient:
    """Authenticated requests to one LS host; the token never goes anywhere else."""

    def __init__(self, url: str, token: str, verify: bool = True, timeout: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("LABEL_STUDIO_URL must start with http:// or https://")
        self.url = url.rstrip("/")
        self.token = token
        self.verify = verify
        self.timeout = timeout
        import requests

        self.session = requests.Session()
        self.session.trust_env = False
        self._access: str | None = None
        self._access_exp = 0.0
        self._lock = threading.Lock()

    def owns(self, url: str) -> bool:
        return origin(url) == origin(self.url)

    def _refresh_access(self) -> str:
        reply = self.session.post(
            f"{self.url}/api/token/refresh/", json={"refresh": self.token}, timeout=self.timeout, verify=self.verify
        )
        if reply.status_code != 200:
            raise PermissionError(f"personal access token refresh failed with HTTP {reply.status_code}")
        access = reply.json()["access"]
        payload = _jwt_payload(access) or {}
        self._access = access
        self._access_exp = float(payload.get("exp", time.time() + 240))
        return access

    def auth_headers(self, force_refresh: bool = False) -> dict[str, str]:
        if not self.token:
            return {}
        if not is_personal_access_token(self.token):
            return {"Authorization": f"Token {self.token}"}
        with self._lock:
            if force_refresh or self._access is None or self._access_exp - time.time() < 30:
                self._refresh_access()
            return {"Authorization": f"Bearer {self._access}"}

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """A request to the LS host with auth; one refresh-and-retry on 401 for access tokens."""
        if not self.owns(url):
            raise ValueError("refusing to send Label Studio credentials to another host")
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("verify", self.verify)
        kwargs.setdefault("allow_redirects", False)
        reply = self.session.request(method, url, headers=self.auth_headers(), **kwargs)
        if reply.status_code == 401 and is_personal_access_token(self.token):
            reply.close()
            reply = self.session.request(method, url, headers=self.auth_headers(force_refresh=True), **kwargs)
        return reply

    def export_tasks(self, project_id: int | str) -> list[dict[str, Any]]:
        """All annotated tasks of a project (LS export API, JSON)."""
        url = f"{self.url}/api/projects/{int(project_id)}/export?exportType=JSON&download_all_tasks=false"
        reply = self.request("GET", url, timeout=max(self.timeout, 120))
        if reply.status_code != 200:
            raise RuntimeError(f"Label Studio export for project {project_id} failed: HTTP {reply.status_code}")
        tasks = reply.json()
        if not isinstance(tasks, list):
            raise RuntimeError("Label Studio export did not return a list of tasks")
        return tasks


def labeled_tasks(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks with their usable annotations only: not cancelled, with a non-empty result.

    Each returned task keeps its ``data`` and gets ``annotations`` filtered; tasks left with no
    annotation are dropped.
    """
    clean = []
    for task in tasks:
        good = [a for a in task.get("annotations") or [] if not a.get("was_cancelled") and a.get("result")]
        if good:
            clean.append({**task, "annotations": good})
    return clean
