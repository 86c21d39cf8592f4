"""Per-project key/value state (JSON values): files under MODEL_DIR, or Redis when REDIS_URL is set."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Protocol

from .errors import StateUnavailable

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe_name(value: str) -> str:
    cleaned = _SAFE.sub("_", value)
    if cleaned in {"", ".", ".."}:
        raise ValueError(f"unusable name {value!r}")
    return cleaned


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Store(Protocol):
    def get(self, project: str, key: str) -> Any: ...
    def set(self, project: str, key: str, value: Any) -> None: ...
    def delete(self, project: str, key: str) -> None: ...
    def ping(self) -> bool: ...


class FileStore:
    """One JSON file per key: safe across processes on one host (atomic rename, no shared cache)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "state"
        self._files: dict[tuple[str, str], str] = {}

    def _path(self, project: str, key: str) -> Path:
        return self.root / safe_name(project) / f"{safe_name(key)}.json"

    def _file(self, project: str, key: str) -> str:
        # memoised: every /predict reads the active version, and pathlib is slow on that hot path
        found = self._files.get((project, key))
        if found is None:
            if len(self._files) > 4096:
                self._files.clear()
            found = self._files[(project, key)] = str(self._path(project, key))
        return found

    def get(self, project: str, key: str) -> Any:
        try:
            with open(self._file(project, key), "rb") as fh:
                return json.loads(fh.read())
        except FileNotFoundError:
            return None

    def set(self, project: str, key: str, value: Any) -> None:
        atomic_write(self._path(project, key), json.dumps(value).encode())

    def delete(self, project: str, key: str) -> None:
        self._path(project, key).unlink(missing_ok=True)

    def ping(self) -> bool:
        return True


class RedisStore:
    """Shared state for several replicas. Every read goes to Redis, so no replica serves stale state."""

    def __init__(self, url: str, prefix: str = "lsml") -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = prefix

    def _key(self, project: str, key: str) -> str:
        return f"{self.prefix}:{project}:{key}"

    def _call(self, fn: Any, *args: Any) -> Any:
        import redis

        try:
            return fn(*args)
        except redis.RedisError as exc:
            raise StateUnavailable(f"state store unreachable: {type(exc).__name__}") from None

    def get(self, project: str, key: str) -> Any:
        raw = self._call(self.client.get, self._key(project, key))
        return None if raw is None else json.loads(raw)

    def set(self, project: str, key: str, value: Any) -> None:
        self._call(self.client.set, self._key(project, key), json.dumps(value))

    def delete(self, project: str, key: str) -> None:
        self._call(self.client.delete, self._key(project, key))

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:
            return False


def make_store(model_dir: Path, redis_url: str = "") -> Store:
    return RedisStore(redis_url) if redis_url else FileStore(model_dir)
