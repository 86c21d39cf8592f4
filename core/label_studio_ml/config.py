"""Settings read from the environment in one place, buildable from a dict in tests."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def _first(env: Mapping[str, str], *names: str, default: str = "") -> str:
    for name in names:
        value = env.get(name)
        if value not in (None, ""):
            return str(value)
    return default


@dataclass(frozen=True)
class Settings:
    model_dir: Path = Path(".")
    log_level: str = "INFO"
    basic_auth_user: str = ""
    basic_auth_pass: str = field(default="", repr=False)
    threads: int = 8
    label_studio_url: str = ""
    label_studio_api_key: str = field(default="", repr=False)
    local_files_document_root: str = ""
    verify_ssl: bool = True
    redis_url: str = field(default="", repr=False)
    max_request_bytes: int = 100 * 1024 * 1024
    media_max_bytes: int = 200 * 1024 * 1024
    media_timeout: float = 30.0
    media_allowed_hosts: tuple[str, ...] = ()
    webhook_secret: str = field(default="", repr=False)
    root_path: str = ""
    train_on_annotation: bool = True
    keep_versions: int = 5
    worker_lease_seconds: float = 30.0  # a Redis worker silent this long is dead: its training job is re-run

    @property
    def basic_auth_enabled(self) -> bool:
        return bool(self.basic_auth_user and self.basic_auth_pass)

    @property
    def secrets(self) -> list[str]:
        values = [self.basic_auth_pass, self.label_studio_api_key, self.webhook_secret]
        return [v for v in values if v and len(v) >= 4]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        hosts = _first(env, "MEDIA_ALLOWED_HOSTS")
        return cls(
            model_dir=Path(_first(env, "MODEL_DIR", default=".")),
            log_level=_first(env, "LOG_LEVEL", default="INFO").upper(),
            basic_auth_user=_first(env, "BASIC_AUTH_USER", "ML_SERVER_BASIC_AUTH_USER"),
            basic_auth_pass=_first(env, "BASIC_AUTH_PASS", "ML_SERVER_BASIC_AUTH_PASS"),
            threads=int(_first(env, "THREADS", default="8")),
            label_studio_url=_first(env, "LABEL_STUDIO_URL", "LABEL_STUDIO_HOST").rstrip("/"),
            label_studio_api_key=_first(env, "LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ACCESS_TOKEN"),
            local_files_document_root=_first(env, "LOCAL_FILES_DOCUMENT_ROOT"),
            verify_ssl=_first(env, "VERIFY_SSL", default="true").lower() in _TRUE,
            redis_url=_first(env, "REDIS_URL"),
            max_request_bytes=int(_first(env, "MAX_REQUEST_BYTES", default=str(cls.max_request_bytes))),
            media_max_bytes=int(_first(env, "MEDIA_MAX_BYTES", default=str(cls.media_max_bytes))),
            media_timeout=float(_first(env, "MEDIA_TIMEOUT", default=str(cls.media_timeout))),
            media_allowed_hosts=tuple(h.strip().lower() for h in hosts.split(",") if h.strip()),
            webhook_secret=_first(env, "WEBHOOK_SECRET"),
            root_path=_first(env, "ROOT_PATH").rstrip("/"),
            train_on_annotation=_first(env, "TRAIN_ON_ANNOTATION", default="true").lower() in _TRUE,
            keep_versions=int(_first(env, "KEEP_VERSIONS", default="5")),
            worker_lease_seconds=float(_first(env, "WORKER_LEASE_SECONDS", default=str(cls.worker_lease_seconds))),
        )

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> Settings:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        kwargs = dict(values)
        if "model_dir" in kwargs:
            kwargs["model_dir"] = Path(str(kwargs["model_dir"]))
        return cls(**kwargs)  # type: ignore[arg-type]
