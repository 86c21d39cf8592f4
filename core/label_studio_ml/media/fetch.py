"""Fetching task media to local files (PROTOCOL.md §8): LS uploads, local files, cloud URIs, http(s)."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

from ..clients.ls_client import LabelStudioClient, origin
from ..clients.outbound import Deadline, guarded_session
from ..config import Settings
from ..errors import MediaError
from ..state.storage import atomic_write

if TYPE_CHECKING:
    import requests  # imported on first download: it costs a third of the server's start-up time

logger = logging.getLogger(__name__)

CLOUD_SCHEMES = ("s3://", "gs://", "azure-blob://")
LS_PREFIXES = ("/data/upload/", "upload/", "/data/local-files/", "/storage-data/", "/tasks/")
MAX_REDIRECTS = 5
ID = re.compile(r"[0-9]{1,19}")  # LS ids are 64-bit integers


def is_media_reference(value: object) -> bool:
    """True for values that name a file rather than hold content (used to resolve Text URLs)."""
    if not isinstance(value, str) or len(value) > 4096 or any(c.isspace() for c in value.strip()):
        return False
    value = value.strip()
    return value.startswith(("http://", "https://") + CLOUD_SCHEMES + LS_PREFIXES)


class MediaFetcher:
    def __init__(
        self,
        cache_dir: Path,
        ls_url: str = "",
        ls_token: str = "",
        verify: bool = True,
        document_root: str = "",
        max_bytes: int = 200 * 1024 * 1024,
        timeout: float = 30.0,
        allowed_hosts: tuple[str, ...] = (),
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.verify = verify
        self.document_root = Path(document_root).resolve() if document_root else None
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.allowed_hosts = allowed_hosts
        self._session: requests.Session | None = None
        self._clients: dict[tuple[str, str], LabelStudioClient] = {}
        self.ls_url, self.ls_token = ls_url.rstrip("/"), ls_token
        # while a prediction thread waits on a download it may hand its slot to another request (app.py)
        self.io_wait: Callable[[], AbstractContextManager[object]] = nullcontext

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = guarded_session(self.allowed_hosts)
        return self._session

    def _client(self, ls_url: str, ls_token: str) -> LabelStudioClient:
        key = (ls_url, ls_token)
        if key not in self._clients:
            self._clients[key] = LabelStudioClient(
                ls_url, ls_token, verify=self.verify, timeout=self.timeout, operator_url=ls_url == self.ls_url
            )
        return self._clients[key]

    def fetch(self, url: str, task_id: int | None = None, ls_url: str = "", ls_token: str = "") -> Path:
        """A local path holding the bytes ``url`` names. Raises MediaError with a reason.

        ``ls_url``/``ls_token``: the Label Studio that /setup named and the token that came with it. The
        operator's LABEL_STUDIO_URL wins over ``ls_url``; the operator's API key goes to that URL only.
        """
        if not isinstance(url, str) or not url.strip():
            raise MediaError("media URL is empty")
        url = url.strip()
        if self.ls_url:
            ls_url, ls_token = self.ls_url, self.ls_token or ls_token
        ls_url = ls_url.rstrip("/")
        local = self._local_file(url)
        if local is not None:
            return local
        target, via_ls = self._resolve(url, task_id, ls_url)
        # keyed by the full URL it comes from (host included), never by a presigned URL (those expire)
        cache_path = self._cache_path(target)
        if cache_path.exists():
            return cache_path
        client = self._client(ls_url, ls_token) if via_ls or (ls_url and origin(target) == origin(ls_url)) else None
        started = time.monotonic()
        with self.io_wait():
            data = self._download(target, client)
        atomic_write(cache_path, data)
        logger.info(
            "fetched media %s (%d bytes, %.0f ms)", _redact(url), len(data), 1000 * (time.monotonic() - started)
        )
        return cache_path

    def _cache_path(self, url: str) -> Path:
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        name = os.path.basename(urlsplit(url).path) or "file"
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:80]
        return self.cache_dir / f"{digest}__{name}"

    def _local_file(self, url: str) -> Path | None:
        if not url.startswith("/data/local-files/") or self.document_root is None:
            return None
        rel = parse_qs(urlsplit(url).query).get("d", [""])[0]
        rel = unquote(rel)
        if not rel or rel.startswith("/") or ".." in Path(rel).parts:
            raise MediaError("local file path escapes the document root")
        path = (self.document_root / rel).resolve()
        if not path.is_relative_to(self.document_root):
            raise MediaError("local file path escapes the document root")
        if path.is_file():
            return path
        return None

    def _resolve(self, url: str, task_id: int | None, ls_url: str) -> tuple[str, bool]:
        """The absolute URL to GET, and whether it is a Label Studio URL needing the token."""
        if url.startswith(CLOUD_SCHEMES):
            if task_id is None:
                raise MediaError("a cloud storage URI needs the task id to be presigned by Label Studio")
            if not ID.fullmatch(str(task_id)):
                raise MediaError(f"task id {str(task_id)[:40]!r} is not an id Label Studio gives")
            self._need_ls(ls_url, url)
            fileuri = base64.urlsafe_b64encode(url.encode()).decode()
            return f"{ls_url}/tasks/{task_id}/presign/?fileuri={fileuri}", True
        if url.startswith("upload/"):
            url = "/data/" + url
        if url.startswith("/"):
            self._need_ls(ls_url, url)
            # the token goes with this GET: it must name the LS path it says, not climb out of it
            if any(part in (".", "..") for part in unquote(urlsplit(url).path).replace("\\", "/").split("/")):
                raise MediaError(f"{_redact(url)} has '.' or '..' segments: refused")
            return ls_url + url, True
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise MediaError(f"media URL scheme {scheme or 'none'!r} is not allowed (only http and https)")
        return url, bool(ls_url) and origin(url) == origin(ls_url)

    @staticmethod
    def _need_ls(ls_url: str, url: str) -> None:
        if not ls_url:
            raise MediaError(f"{_redact(url)} is a Label Studio path: set LABEL_STUDIO_URL so it can be fetched")

    def _check_host(self, url: str, client: LabelStudioClient | None) -> None:
        if client is not None and client.owns(url):
            return
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise MediaError("redirect to a non-http(s) URL refused")
        host = (urlsplit(url).hostname or "").lower()
        if self.allowed_hosts and host not in self.allowed_hosts:
            raise MediaError(f"media host {host!r} is not in MEDIA_ALLOWED_HOSTS")

    def _download(self, url: str, client: LabelStudioClient | None) -> bytes:
        """GET ``url`` following redirects, all of it within ``timeout`` seconds of wall-clock time."""
        import requests

        late = MediaError(f"{_redact(url)} took longer than {self.timeout:g} s (MEDIA_TIMEOUT)")
        with Deadline(self.timeout) as deadline:
            try:
                data = self._follow(url, client, deadline)
            except requests.RequestException as exc:
                why = (
                    late
                    if deadline.expired or isinstance(exc, requests.Timeout)
                    else MediaError(f"cannot fetch {_redact(url)}: {type(exc).__name__}")
                )
                raise why from None
            except (PermissionError, ValueError) as exc:  # RefusedAddress, a token refresh refused
                raise MediaError(str(exc)) from None
        if deadline.expired:  # a body read until the server closes ends early, without an error
            raise late
        return data

    def _follow(self, url: str, client: LabelStudioClient | None, deadline: Deadline) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            self._check_host(url, client)
            timeout = max(0.001, deadline.remaining())
            if client is not None and client.owns(url):
                reply = client.request("GET", url, stream=True, timeout=timeout)
            else:
                reply = self.session.get(url, stream=True, timeout=timeout, verify=self.verify, allow_redirects=False)
            with reply:
                if reply.is_redirect:
                    url = urljoin(url, reply.headers["Location"])
                    continue
                if reply.status_code != 200:
                    raise MediaError(f"{_redact(url)} answered HTTP {reply.status_code}")
                declared = reply.headers.get("Content-Length")
                if (
                    declared
                    and declared.isascii()
                    and declared.isdigit()
                    and (len(declared) > 18 or int(declared) > self.max_bytes)
                ):
                    raise MediaError(f"{_redact(url)} is larger than {self.max_bytes} bytes")
                chunks, size = [], 0
                for chunk in reply.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise MediaError(f"{_redact(url)} is larger than {self.max_bytes} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        raise MediaError(f"too many redirects for {_redact(url)}")


def _redact(url: str) -> str:
    """A URL without its query string (presigned URLs carry credentials there)."""
    parts = urlsplit(url)
    if parts.query and not url.startswith("/data/local-files/"):
        return url.split("?", 1)[0] + "?…"
    return url


def fetcher_from_settings(settings: Settings, cache_dir: Path | None = None) -> MediaFetcher:
    """The fetcher a server (or a model built outside one) uses: caching in ``MODEL_DIR/.file-cache``."""
    return MediaFetcher(
        cache_dir if cache_dir is not None else settings.model_dir / ".file-cache",
        settings.label_studio_url,
        settings.label_studio_api_key,
        settings.verify_ssl,
        settings.local_files_document_root,
        settings.media_max_bytes,
        settings.media_timeout,
        settings.media_allowed_hosts,
    )
