"""``LabelStudioMLBase``: the class a service subclasses (the upstream SDK's API, on this server).

Contract, documented once here:

* ``load()`` (classmethod) loads heavy resources (weights) **once per process**, in the background
  at start-up; ``/health`` says UP only after it returned. Its return value is ``self.resources``
  on every per-project instance. Never load weights at import or in ``__init__``/``setup``.
* ``__init__``/``setup()`` run per project (cheap): read the label config, load small trained
  artifacts from ``self.version_dir``. An instance is cached per project and rebuilt when the
  project's label config or active model version changes. ``/setup`` builds it the first time it
  sees a project, so a version that ``setup()`` stores (``self.set("model_version", ...)``) is the
  one ``/setup`` answers.
* ``predict(tasks, context, **kwargs)`` returns one prediction per task, in order (a list of dicts
  or a ``ModelResponse``). It runs in a worker thread and may be called concurrently; a model
  measured to need well under a millisecond runs on the event loop instead, which saves the thread
  hand-off (see scheduling.py). ``inline_predict = False`` keeps it in threads always (a predict that
  is usually instant but sometimes blocks), ``True`` puts it on the loop always.
* ``fit(event, data, **kwargs)`` runs in the background (through ``process_event``). It writes
  whatever it trained into ``self.output_dir``; when it returns and that folder holds files, core
  publishes them atomically as a new model version. Report progress with ``self.report_progress``.
* ``self.label_interface`` is label-studio-sdk's ``LabelInterface`` of the config (the ``sdk`` extra),
  built on first use: a service that never reads it never imports the sdk.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from . import sdk_extra
from .clients.ls_client import LabelStudioClient, labeled_tasks
from .config import Settings
from .errors import LabelConfigError
from .media.fetch import MediaFetcher, fetcher_from_settings, is_media_reference
from .results.label_config import ControlPair, LabelConfig, parse_config
from .state.storage import FileStore, Store, make_store
from .training.jobs import TRAIN_EVENTS
from .utils import fetcher_for, is_preload_needed

logger = logging.getLogger(__name__)

# functions registered with the upstream SDK's decorators, for a bare LabelStudioMLBase to call
_predict_fn: Callable[..., Any] | None = None
_update_fn: Callable[..., Any] | None = None


def predict_fn(f: Callable[..., Any]) -> Callable[..., Any]:
    """Register ``f(tasks, context, helper=model, **kwargs)`` as the predict of models that don't define one."""
    global _predict_fn
    _predict_fn = f
    logger.info('predict function "%s" registered', f.__name__)
    return f


def update_fn(f: Callable[..., Any]) -> Callable[..., Any]:
    """Register ``f(event, data, helper=model, **kwargs)`` as the fit of models that don't define one."""
    global _update_fn
    _update_fn = f
    logger.info('update function "%s" registered', f.__name__)
    return f


_cache: Any = None  # a cache.StoreCache, made on first use (sqlite3 and the cache module cost ~1 MB)


def __getattr__(name: str) -> Any:
    """Upstream's module attributes, made or imported on first use: ``CACHE`` (the per-project state
    ``get``/``set`` use, here MODEL_DIR's store or Redis), ``LabelStudio`` (the sdk's client class), and
    the names upstream's module imports, which user code takes from it."""
    global _cache
    if name == "CACHE":
        if _cache is None:
            from .cache import StoreCache

            settings = Settings.from_env()
            _cache = StoreCache(make_store(settings.model_dir, settings.redis_url), str(settings.model_dir))
        return _cache
    if name == "LabelStudio":
        return sdk_extra.require("label_studio_sdk.client", "the Label Studio SDK client").LabelStudio
    if name == "LabelInterface":
        return sdk_extra.require("label_studio_sdk.label_interface", "LabelInterface").LabelInterface
    if name == "ModelResponse":  # upstream's model.py imports it, and user code takes it from there
        from .response import ModelResponse

        return ModelResponse
    if name in ("create_cache", "get_local_path"):
        from . import cache, utils

        return getattr(cache if name == "create_cache" else utils, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        return cls(settings=settings, store=store, fetcher=fetcher_from_settings(settings))


class LabelStudioMLBase:
    #: prefix of model versions (``<service_name>-<n>-<hash>``); defaults to the class name
    service_name: ClassVar[str] = ""
    #: where predict runs: None (measured: the event loop once it has proven sub-millisecond, else a worker
    #: thread), True (always the event loop: sub-millisecond, I/O-free models), False (always a thread)
    inline_predict: ClassVar[bool | None] = None
    #: tasks per predict call in bulk pre-annotation (``label-studio-ml preannotate``; its --batch-size
    #: overrides): the size at which the model's batch speed pays off without holding too much memory
    predict_batch_size: ClassVar[int] = 16
    #: the version served before any training (or before ``setup()`` stores one); defaults to ``<service_name>-0``
    INITIAL_MODEL_VERSION: ClassVar[str | None] = None
    #: webhook events that start a training job (``process_event`` calls ``fit`` for these); narrow it
    #: on a subclass to train on fewer. Upstream's four, plus LS's bulk annotation events.
    TRAIN_EVENTS: ClassVar[tuple[str, ...]] = (
        "ANNOTATION_CREATED",
        "ANNOTATION_UPDATED",
        "ANNOTATION_DELETED",
        "START_TRAINING",
        *sorted(TRAIN_EVENTS - {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_DELETED", "START_TRAINING"}),
    )

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
        if label_config is None and self.project_id is not None:
            label_config = self.get("label_config")  # as upstream: the config /setup stored for the project
        self._set_label_config(label_config or "")
        self.setup()

    def _bind(self, ctx: ModelContext) -> None:
        self._ctx = ctx

    # --- hooks a service overrides -------------------------------------------------------------
    def setup(self) -> None:
        """Per-project set-up after the label config is known (cheap; no weights)."""

    def predict(self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """One prediction per task, in order: dicts ``{result, score}`` or a ``ModelResponse``."""
        if _predict_fn is not None:
            return _predict_fn(tasks, context, helper=self, **kwargs)
        return []

    def fit(self, event: str, data: dict[str, Any], **kwargs: Any) -> Any:
        """Train on an LS event; write artifacts into ``self.output_dir``."""
        if _update_fn is not None:
            return _update_fn(event, data, helper=self, **kwargs)
        return None

    def process_event(
        self, event: str, data: dict[str, Any], job_id: str | None, additional_params: dict[str, Any]
    ) -> Any:
        """What a training job runs: ``fit`` for events in ``TRAIN_EVENTS``, nothing for others."""
        if event not in self.TRAIN_EVENTS:
            logger.debug("job %s: event %s is not a training event of %s", job_id, event, type(self).__name__)
            return None
        return self.fit(event, data, job_id=job_id, **additional_params)

    # --- label config --------------------------------------------------------------------------
    def _set_label_config(self, label_config: str) -> None:
        self.label_config = label_config
        self.parsed_label_config = parse_config(label_config)
        for derived in ("config", "label_interface"):  # cached views of the previous config
            self.__dict__.pop(derived, None)

    def use_label_config(self, label_config: str) -> None:
        """Switch to another label config, and store it as the project's when it changed."""
        self._set_label_config(label_config)
        if self.project_id is not None and self.get("label_config") != label_config:
            self.set("label_config", label_config)

    @cached_property
    def config(self) -> LabelConfig:
        return LabelConfig(self.label_config)

    @cached_property
    def label_interface(self) -> Any:
        """label-studio-sdk's ``LabelInterface`` of the label config (needs ``label-studio-ml[sdk]``)."""
        return sdk_extra.label_interface(self.label_config)

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
        """``(from_name, to_name, data_key)`` of the first control of ``control_type`` on an object of
        ``object_type`` (as label-studio-sdk matches: types case-insensitively, filters get lower-cased
        names); ValueError when there is none."""
        controls = {control_type.lower()} if isinstance(control_type, str) else {t.lower() for t in control_type}
        objects = {object_type.lower()} if isinstance(object_type, str) else {t.lower() for t in object_type}
        for name, info in self.parsed_label_config.items():
            if info["type"].lower() not in controls or (name_filter and not name_filter(name.lower())):
                continue
            for to_name, obj in zip(info["to_name"], info["inputs"]):
                if obj["type"].lower() in objects and (to_name_filter is None or to_name_filter(to_name.lower())):
                    return name, to_name, obj.get("value", "")
        raise ValueError(
            f"No control tag of type {control_type} and object tag of type {object_type} found in label config"
        )

    def build_label_map(self, tag_name: str, names: list[str]) -> dict[str, str]:
        """Map a model's class names onto the labels of control ``tag_name``: a label's
        ``predicted_values`` first, else its own name, exactly or case-insensitively (the key is then
        the lower-cased label). Model names that match nothing are left out."""
        control = self.config.controls.get(tag_name)
        if control is None:
            raise LabelConfigError(f"label config has no control named {tag_name!r}")
        model_names = list(names)
        lowered = {name.lower() for name in model_names}
        label_map: dict[str, str] = {}
        for label, attrs in control["labels_attrs"].items():
            matched = False
            for value in (v.strip() for v in attrs.get("predicted_values", "").split(",")):
                if value and value in model_names:
                    label_map[value] = label
                    matched = True
            if matched:
                continue
            if label in model_names:
                label_map[label] = label
            elif label.lower() in lowered:
                label_map[label.lower()] = label
        logger.debug("model labels -> Label Studio labels for %s: %s", tag_name, label_map)
        return label_map

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
        """Move to a new, persisted version: ``X.Y.Z`` -> ``X.(Y+1).0`` (a minor bump, as upstream
        means it), ``name-N`` -> ``name-(N+1)``, anything else gets ``-1`` appended."""
        current = str(self.model_version)
        parts = current.split(".")
        head, _, tail = current.rpartition("-")
        if len(parts) == 3 and all(p.isascii() and p.isdigit() for p in parts):
            new = f"{parts[0]}.{int(parts[1]) + 1}.0"
        elif head and tail.isascii() and tail.isdigit():
            new = f"{head}-{int(tail) + 1}"
        else:
            new = f"{current}-1"
        self.model_version = new
        return new

    @property
    def extra_params(self) -> dict[str, Any]:
        params = self.get("extra_params")
        if isinstance(params, str):  # upstream stores a JSON string
            params = json.loads(params) if params else None
        return params or {}

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

    # --- Label Studio --------------------------------------------------------------------------
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
        return labeled_tasks(self._ls_api_client(url, token).export_tasks(self.project_id))

    def _ls_api_client(self, host: str, token: str) -> LabelStudioClient:
        """Core's LS client for ``ls_credentials()``, kept per instance while they stay the same: it holds
        the short-lived access token a personal access token is exchanged for."""
        client = self.__dict__.get("_core_ls_client")
        if client is None or client.url != host.rstrip("/") or client.token != token:
            client = self.__dict__["_core_ls_client"] = LabelStudioClient(
                host, token, verify=self.settings.verify_ssl, operator_url=host == self.settings.label_studio_url
            )
        return client

    def get_label_studio_access_token(self) -> str | None:
        """A token for LS's API: a personal access token is exchanged for a fresh access token (the
        sdk's client does the same), a legacy token comes as it is; None when none is configured."""
        host, token = self.ls_credentials()
        if not host:  # nowhere to send it: the configured key, as upstream's fallback to the environment
            return token or self.settings.label_studio_api_key or None
        if not token:
            return None
        try:
            return self._ls_api_client(host, token).auth_headers()["Authorization"].split(" ", 1)[1]
        except Exception as exc:  # LS unreachable: the configured token is the best there is
            logger.warning("could not refresh the Label Studio access token: %s: %s", type(exc).__name__, exc)
            return token

    def _get_label_studio_client(self) -> Any:
        """label-studio-sdk's ``LabelStudio`` client for this backend's LS (made once per instance), or
        None when there is no LS URL or the client cannot be made (that is remembered too)."""
        client = self.__dict__.get("_label_studio_client")
        if client is not None:
            return client or None
        host, token = self.ls_credentials()
        if not host:
            return None
        try:
            client = sys.modules[__name__].LabelStudio(base_url=host, **({"api_key": token} if token else {}))
        except Exception as exc:
            logger.warning("cannot make a Label Studio SDK client for %s: %s: %s", host, type(exc).__name__, exc)
            client = False
        self.__dict__["_label_studio_client"] = client
        return client or None

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
        """A local file path for a task's media URL (LS uploads, local files, cloud URIs, http), cached
        under MODEL_DIR/.file-cache. An ``ls_host`` given wins over the configured one (as upstream's),
        with ``ls_access_token`` (the operator's key goes to the operator's URL only); ``project_dir`` and
        upstream's other keywords (``cache_dir``) change nothing."""
        if ls_host:
            return str(fetcher_for(self.settings, ls_host, ls_access_token).fetch(url, task_id=task_id))
        host, token = self.ls_credentials()
        return str(self._ctx.fetcher.fetch(url, task_id=task_id, ls_url=host, ls_token=ls_access_token or token))

    def preload_task_data(self, task: dict[str, Any], value: Any = None, read_file: bool = True) -> Any:
        """``value`` (``task["data"]`` when None) with every string that names a file (LS upload or
        local file, cloud URI, URL, existing path) replaced by the file's text, or by its local path
        when ``read_file`` is False; dicts and lists are walked. The task itself is left unchanged."""
        return self._preload(task, task.get("data") if value is None else value, read_file)

    def _preload(self, task: dict[str, Any], value: Any, read_file: bool) -> Any:
        if isinstance(value, dict):
            return {key: self._preload(task, item, read_file) for key, item in value.items()}
        if isinstance(value, list):
            return [self._preload(task, item, read_file) for item in value]
        if isinstance(value, str) and is_preload_needed(value):
            path = self.get_local_path(url=value, task_id=task.get("id"))
            if not read_file:
                return path
            with open(path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        return value

    def read_text(self, task: dict[str, Any], key: str) -> str:
        """A task's text value; a URL or LS path is fetched and decoded as UTF-8."""
        value = (task.get("data") or {}).get(key)
        if value is None:
            raise KeyError(f"task {task.get('id')} has no data key {key!r}")
        if is_media_reference(value):
            path = self.get_local_path(value, task_id=task.get("id"))
            return Path(path).read_text(encoding="utf-8", errors="replace")
        return value if isinstance(value, str) else str(value)


def get_all_classes_inherited_LabelStudioMLBase(script_file: str) -> list[str]:  # noqa: N802  (upstream's name)
    """Names of the ``LabelStudioMLBase`` subclasses a Python file defines."""
    path = Path(script_file).resolve()
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {script_file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(path.stem, module)
    spec.loader.exec_module(module)
    return sorted(
        name
        for name, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, LabelStudioMLBase) and obj is not LabelStudioMLBase
    )
