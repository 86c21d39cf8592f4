"""``label_studio_ml.cache`` as the upstream SDK has it: a ``(project_id, key) -> str`` mapping.

``SqliteCache`` keeps upstream's file (``<path>/cache.db``) for code that opens one itself;
``StoreCache`` is the same mapping over this server's own per-project state (files under MODEL_DIR,
or Redis), which is what ``self.get``/``self.set`` read and write: ``label_studio_ml.model.CACHE``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from typing import Any

from .state.storage import Store


class BaseCache(ABC):
    def __init__(self, path: str) -> None:
        self.path = path

    @abstractmethod
    def __getitem__(self, project_id_key: tuple[str, str]) -> Any:
        """The value, or None when there is none."""

    @abstractmethod
    def __setitem__(self, project_id_key: tuple[str, str], value: Any) -> None: ...

    @abstractmethod
    def __contains__(self, project_id_key: object) -> bool: ...

    @abstractmethod
    def __delitem__(self, project_id_key: tuple[str, str]) -> None: ...


class SqliteCache(BaseCache):
    """String values in one SQLite table; a connection per call, so any thread may use it."""

    def __init__(self, path: str, db_name: str = "cache.db") -> None:
        super().__init__(path)
        os.makedirs(path, exist_ok=True)
        self.db_name = os.path.join(path, db_name)
        self.lock = threading.Lock()
        self._run("CREATE TABLE IF NOT EXISTS cache (project_id TEXT NOT NULL, key TEXT NOT NULL, "
                  "value TEXT NOT NULL, PRIMARY KEY (project_id, key))")  # fmt: skip

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        with self.lock, sqlite3.connect(self.db_name, timeout=10) as conn:
            return conn.execute(sql, params).fetchone()

    def __getitem__(self, project_id_key: tuple[str, str]) -> str | None:
        row = self._run("SELECT value FROM cache WHERE project_id = ? AND key = ?", tuple(map(str, project_id_key)))
        return None if row is None else row[0]

    def __setitem__(self, project_id_key: tuple[str, str], value: str) -> None:
        if not isinstance(value, str):
            raise ValueError("Value must be a string")
        project_id, key = map(str, project_id_key)
        self._run("REPLACE INTO cache (project_id, key, value) VALUES (?, ?, ?)", (project_id, key, value))

    def __delitem__(self, project_id_key: tuple[str, str]) -> None:
        self._run("DELETE FROM cache WHERE project_id = ? AND key = ?", tuple(map(str, project_id_key)))

    def __contains__(self, project_id_key: object) -> bool:
        project_id, key = project_id_key  # type: ignore[misc]
        return (
            self._run("SELECT 1 FROM cache WHERE project_id = ? AND key = ?", (str(project_id), str(key))) is not None
        )


class StoreCache(BaseCache):
    """The cache interface over a ``Store`` (JSON values; an empty project id is the project-less one)."""

    def __init__(self, store: Store, path: str = "") -> None:
        super().__init__(path)
        self.store = store

    @staticmethod
    def _split(project_id_key: Any) -> tuple[str, str]:
        project_id, key = project_id_key
        return str(project_id) if project_id not in (None, "") else "_", str(key)

    def __getitem__(self, project_id_key: tuple[str, str]) -> Any:
        return self.store.get(*self._split(project_id_key))

    def __setitem__(self, project_id_key: tuple[str, str], value: Any) -> None:
        self.store.set(*self._split(project_id_key), value)

    def __delitem__(self, project_id_key: tuple[str, str]) -> None:
        self.store.delete(*self._split(project_id_key))

    def __contains__(self, project_id_key: object) -> bool:
        return self.store.get(*self._split(project_id_key)) is not None


def create_cache(cache_type: str, path: str, **kwargs: Any) -> BaseCache:
    if cache_type == "sqlite":
        return SqliteCache(path, **kwargs)
    raise ValueError(f"Unsupported cache type: {cache_type}")
