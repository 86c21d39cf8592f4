"""``LabelStudioMLBase``: the class a service subclasses (API kept compatible with the seed SDK).

Contract, documented once here:

* ``load()`` (classmethod) loads heavy resources (weights) **once per process**, in the background
  at start-up; ``/health`` says UP only after it returned. Its return value is ``self.resources``
  on every per-project instance. Never load weights at import or in ``__init__``/``setup``.
* ``__init__``/``setup()`` run per project (cheap): read the label config, load small trained
  artifacts from ``self.version_dir``. An instance is cached per project and rebuilt when the
  project's label config or active model version changes.
* ``predict(tasks, context, **kwargs)`` returns one prediction per task, in order (a list of dicts
  or a ``ModelResponse``). It runs in a worker thread and may be called concurrently; a model
  measured to need well under a millisecond runs on the event loop instead, which saves the thread
  hand-off (see scheduling.py). ``inline_predict = False`` keeps it in threads always (a predict that
  is usually instant but sometimes blocks), ``True`` puts it on the loop always.
* ``fit(event, data, **kwargs)`` runs in the background. It writes whatever it trained into
  ``self.output_dir``; when it returns and that folder holds files, core publishes them
  atomically as a new model version. Report progress with ``self.report_progress(fraction)``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from .config import Settings
from .label_config import ControlPair, LabelConfig, parse_config
from .ls_client import LabelStudioClient, labeled_tasks
from .media import MediaFetcher, is_media_reference
from .response import ModelResponse
from .storage import FileStore, Store

logger = logging.getLogger(__name__)


class _MemoryStore:
    """State for an instance with no project: kept only as long as the instance."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], Any] = {}

    def get(self, project: str, key: str) -> Any:
        return self.data.get((project, key))

    def set(self, project: str, key: str, value: Any) -> None:
        self.data[(project, key)] = value

    def delete(self, project: str, key: str) -> None:
        self.data.pop((project, key), None)

    def ping(self) -> bool:
        return True


@dataclass
class ModelContext:
    """What core hands an instance: settings, state, media access, resources, version folders."""

    settings: Settings
    store: Store
    fetcher: MediaFetcher
    resources: Any = None
    initial_version: str = "0"
    version_dir: Path | None = None
    output_dir: Path | None = None
    progress: Callable[[float, str], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def standalone(cls, settings: Settings | None = None, project_id: str | None = None) -> ModelContext:
        settings = settings or Settings.from_env()
        store: Store = FileStore(settings.model_dir) if project_id else _MemoryStore()
        fetcher = MediaFetcher(
            settings.model_dir / ".file-cache",
            settings.label_studio_url,
            settings.label_studio_api_key,
            settings.verify_ssl,
            settings.local_files_document_root,
            settings.media_max_bytes,
            settings.media_timeout,
            settings.media_allowed_hosts,
        )
        return cls(settings=settings, store=store, fetcher=fetcher)


class LabelStudioMLBase:
    #: prefix of model versions (``<service_name>-<n>-<hash>``); defaults to the class name
    service_name: ClassVar[str] = ""
    #: where predict runs: None (measured: the event loop once it has proven sub-millisecond, else a worker
    #: thread), True (always the event loop: sub-millisecond, I/O-free models), False (always a thread)
    inline_predict: ClassVar[bool | None] = None
    #: tasks per predict call in bulk pre-annotation (``label-studio-ml preannotate``; its --batch-size
    #: overrides): the size at which the model's batch speed pays off without holding too much memory
    predict_batch_size: ClassVar[int] = 16
    #: the version served before any training; defaults to ``<service_name>-0``
    INITIAL_MODEL_VERSION: ClassVar[str | None] = None

    _ctx: ModelContext

    @classmethod
    def load(cls) -> Any:
        """Load heavy resources once per process; the result becomes ``self.resources``."""
        return None

    @classmethod
    def version_prefix(cls) -> str:
        return cls.service_name or cls.__name__

    @classmethod
    def initial_version(cls) -> str:
        return cls.INITIAL_MODEL_VERSION or f"{cls.version_prefix()}-0"

    def __init__(self, project_id: str | None = None, label_config: str | None = None, **kwargs: Any) -> None:
        if not hasattr(self, "_ctx"):
            self._ctx = ModelContext.standalone(project_id=project_id)
            self._ctx.initial_version = self.initial_version()
        self.project_id = str(project_id) if project_id not in (None, "") else None
        self.label_config = label_config or ""
        self.parsed_label_config = parse_config(self.label_config)
        self.setup()

    def _bind(self, ctx: ModelContext) -> None:
        self._ctx = ctx

    # --- hooks a service overrides -------------------------------------------------------------
    def setup(self) -> None:
        """Per-project set-up after the label config is known (cheap; no weights)."""

    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> ModelResponse | list[Any]:
        return ModelResponse(predictions=[])

    def fit(self, event: str, data: dict[str, Any], **kwargs: Any) -> Any:
        """Train on an LS event; write artifacts into ``self.output_dir``."""
        return None

    # --- label config --------------------------------------------------------------------------
    @cached_property
    def config(self) -> LabelConfig:
        return LabelConfig(self.label_config)

    def find_control(
        self,
        control_types: str | list[str],
        object_types: str | list[str] | None = None,
        name_filter: str | None = None,
    ) -> ControlPair:
        return self.config.find(control_types, object_types, name_filter)  # type: ignore[return-value]

    def get_first_tag_occurence(
        self,
        control_type: str | tuple[str, ...],
        object_type: str | tuple[str, ...],
        name_filter: Callable[[str], bool] | None = None,
        to_name_filter: Callable[[str], bool] | None = None,
    ) -> tuple[str, str, str]:
        """Seed-compatible lookup: ``(from_name, to_name, data_key)`` of the first matching pair."""
        controls = [control_type] if isinstance(control_type, str) else list(control_type)
        objects = [object_type] if isinstance(object_type, str) else list(object_type)
        for name, info in self.parsed_label_config.items():
            if info["type"] not in controls or (name_filter and not name_filter(name)):
                continue
            for to_name, obj in zip(info["to_name"], info["inputs"]):
                if obj["type"] in objects and (to_name_filter is None or to_name_filter(to_name)):
                    return name, to_name, obj.get("value", "")
        raise ValueError(f"no {controls} control on {objects} in the label config")

    # --- state ---------------------------------------------------------------------------------
    @property
    def _state_key(self) -> str:
        return self.project_id or "_"

    def get(self, key: str) -> Any:
        return self._ctx.store.get(self._state_key, key)

    def set(self, key: str, value: Any) -> None:
        self._ctx.store.set(self._state_key, key, value)

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    @property
    def model_version(self) -> str:
        return self.get("model_version") or self._ctx.initial_version

    @model_version.setter
    def model_version(self, value: str) -> None:
        self.set("model_version", str(value))

    def bump_model_version(self) -> str:
        """Seed compatibility: move to a new, persisted version string."""
        current = self.model_version
        head, _, tail = current.rpartition("-")
        new = f"{head}-{int(tail) + 1}" if head and tail.isascii() and tail.isdigit() else f"{current}-1"
        self.model_version = new
        return new

    @property
    def extra_params(self) -> dict[str, Any]:
        return self.get("extra_params") or {}

    def set_extra_params(self, extra_params: dict[str, Any]) -> None:
        self.set("extra_params", extra_params)

    @property
    def resources(self) -> Any:
        return self._ctx.resources

    @property
    def settings(self) -> Settings:
        return self._ctx.settings

    # --- versions and training -----------------------------------------------------------------
    @property
    def version_dir(self) -> Path | None:
        """The folder of the active trained version, or None before any training."""
        return self._ctx.version_dir

    @property
    def output_dir(self) -> Path:
        """Where ``fit`` writes a new version (a fresh, empty folder per training job)."""
        if self._ctx.output_dir is None:
            self._ctx.output_dir = Path(tempfile.mkdtemp(prefix="lsml-fit-"))
        return self._ctx.output_dir

    def report_progress(self, fraction: float, message: str = "") -> None:
        if self._ctx.progress is not None:
            self._ctx.progress(max(0.0, min(1.0, float(fraction))), message)
        else:
            logger.info("training progress %.0f%% %s", 100 * fraction, message)

    def ls_credentials(self) -> tuple[str, str]:
        """Label Studio's URL and the token that may go there: the operator's LABEL_STUDIO_URL and API key,
        else the /setup hostname with the token that came with it (the operator's key only when an
        authenticated caller named that hostname)."""
        if self.settings.label_studio_url:
            return self.settings.label_studio_url, self.settings.label_studio_api_key or self.get("access_token") or ""
        host, token = self.get("hostname") or "", self.get("access_token") or ""
        if not token and self.get("hostname_trusted"):
            token = self.settings.label_studio_api_key
        return host, token

    def fetch_labeled_tasks(self) -> list[dict[str, Any]]:
        """The project's annotated tasks from LS's export API, cancelled and empty annotations removed."""
        url, token = self.ls_credentials()
        if not url or self.project_id is None:
            raise RuntimeError("fetching training data needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY")
        client = LabelStudioClient(
            url, token, verify=self.settings.verify_ssl, operator_url=bool(self.settings.label_studio_url)
        )
        return labeled_tasks(client.export_tasks(self.project_id))

    # --- media ---------------------------------------------------------------------------------
    def get_local_path(
        self,
        url: str,
        project_dir: str | None = None,
        ls_host: str | None = None,
        ls_access_token: str | None = None,
        task_id: int | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> str:
        """A local file path for a task's media URL (LS uploads, local files, cloud URIs, http)."""
        host, token = (ls_host, ls_access_token or "") if ls_host else self.ls_credentials()
        return str(self._ctx.fetcher.fetch(url, task_id=task_id, ls_url=host, ls_token=token))

    def read_text(self, task: dict[str, Any], key: str) -> str:
        """A task's text value; a URL or LS path is fetched and decoded as UTF-8."""
        value = (task.get("data") or {}).get(key)
        if value is None:
            raise KeyError(f"task {task.get('id')} has no data key {key!r}")
        if is_media_reference(value):
            path = self.get_local_path(value, task_id=task.get("id"))
            return Path(path).read_text(encoding="utf-8", errors="replace")
        return value if isinstance(value, str) else str(value)

    preload_task_data = read_text
