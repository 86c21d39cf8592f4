"""Per-project key/value state (JSON values): files under MODEL_DIR, or Redis when REDIS_URL is set."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

from ..errors import StateUnavailable

logger = logging.getLogger(__name__)
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
    def projects(self) -> list[str]: ...


class FileStore:
    """One JSON file per key: safe across processes on one host (atomic rename).

    Every /predict reads the active version, so reads are cached: a cached value keeps its file
    open, and it is still current while the path names that same inode (writers never change a
    file in place, they rename a new one over it; the open file keeps its inode from being reused).
    A stat is a fifth of the cost of open-read-close.
    """

    MAX_OPEN = 128  # cached values hold a file descriptor each

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "state"
        self._files: dict[tuple[str, str], str] = {}
        self._read: dict[str, tuple[int, int, bytes]] = {}  # path -> (inode, open fd, content)
        self._lock = threading.Lock()

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
        path = self._file(project, key)
        try:
            inode = os.stat(path).st_ino
            cached = self._read.get(path)
            if cached is not None and cached[0] == inode:
                return json.loads(cached[2])
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            content = fh.read()
        self._remember(path, os.fstat(fd).st_ino, fd, content)
        return json.loads(content)

    def _remember(self, path: str, inode: int, fd: int, content: bytes) -> None:
        with self._lock:
            old = self._read.pop(path, None)
            if len(self._read) >= self.MAX_OPEN:
                old_path = next(iter(self._read))
                os.close(self._read.pop(old_path)[1])
            self._read[path] = (inode, fd, content)
        if old is not None:
            os.close(old[1])

    def __del__(self) -> None:
        for _, fd, _ in getattr(self, "_read", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass

    def set(self, project: str, key: str, value: Any) -> None:
        atomic_write(self._path(project, key), json.dumps(value).encode())

    def delete(self, project: str, key: str) -> None:
        self._path(project, key).unlink(missing_ok=True)

    def ping(self) -> bool:
        return True

    def projects(self) -> list[str]:
        """Projects that have state here, sorted."""
        return sorted(p.name for p in self.root.glob("*") if p.is_dir()) if self.root.exists() else []


class RedisStore:
    """Shared state for several replicas. Every read goes to Redis, so no replica serves stale state while
    Redis answers. While it does not, reads answer the last value this process read (predictions keep
    flowing from the loaded model); writes fail with StateUnavailable."""

    KNOWN_KEYS = 4096
    RETRY_AFTER = 1.0  # seconds between tries while Redis is down: a blackholed host costs its timeout once

    def __init__(self, url: str, prefix: str = "lsml") -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = prefix
        self._known: OrderedDict[str, Any] = OrderedDict()
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._lock = threading.Lock()

    def _key(self, project: str, key: str) -> str:
        return f"{self.prefix}:{project}:{key}"

    def _call(self, fn: Any, *args: Any) -> Any:
        import redis

        try:
            return fn(*args)
        except redis.RedisError as exc:
            raise StateUnavailable(f"state store unreachable: {type(exc).__name__}") from None

    def get(self, project: str, key: str) -> Any:
        name = self._key(project, key)
        raw = self._read(name, self.client.get)
        return None if raw is None else json.loads(raw)

    def _read(self, name: str, fetch: Any) -> Any:
        """``fetch(name)`` from Redis, remembered; the remembered value while Redis is unreachable."""
        import redis

        if self._down_since is None or time.monotonic() >= self._retry_at:
            try:
                raw = fetch(name)
            except redis.RedisError as exc:
                self._went_down(exc)
            else:
                self._came_back()
                with self._lock:
                    self._known[name] = raw
                    self._known.move_to_end(name)
                    if len(self._known) > self.KNOWN_KEYS:
                        self._known.popitem(last=False)
                return raw
        with self._lock:
            if name in self._known:
                return self._known[name]
        raise StateUnavailable("state store unreachable and this value was never read before")

    def _went_down(self, exc: Exception) -> None:
        now = time.monotonic()
        self._retry_at = now + self.RETRY_AFTER
        if self._down_since is None:
            self._down_since = now
            logger.error("Redis unreachable (%s): serving the last state read; writes fail", type(exc).__name__)

    def _came_back(self) -> None:
        if self._down_since is not None:
            logger.warning("Redis reachable again after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None

    def set(self, project: str, key: str, value: Any) -> None:
        # the set of projects lets every replica list them without a KEYS scan
        pipe = self.client.pipeline()
        pipe.set(self._key(project, key), json.dumps(value))
        pipe.sadd(f"{self.prefix}:projects", project)
        self._call(pipe.execute)

    def delete(self, project: str, key: str) -> None:
        self._call(self.client.delete, self._key(project, key))

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:
            return False

    def projects(self) -> list[str]:
        """Projects any replica has stored state for, sorted."""
        members = self._read(f"{self.prefix}:projects", self.client.smembers)
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)


def make_store(model_dir: Path, redis_url: str = "") -> Store:
    return RedisStore(redis_url) if redis_url else FileStore(model_dir)
