"""The process-wide model runtime: loads resources once, caches per-project instances, predicts, trains."""

from __future__ import annotations

import gc
import logging
import shutil
import threading
import time
from collections import OrderedDict
from functools import lru_cache
from typing import Any

from ..config import Settings
from ..errors import LabelConfigError, ModelNotReady
from ..media.fetch import fetcher_from_settings
from ..model import LabelStudioMLBase, ModelContext
from ..predictions import normalize_predictions, unpack_response
from ..results.label_config import LabelConfig
from ..results.regions import RegionValidator
from ..state.storage import FileStore, Store, make_store
from ..state.versions import Versions
from ..training.jobs import Job, TrainingManager
from .protocol import PredictRequest, SetupRequest, WebhookEvent
from .scheduling import InlinePolicy

logger = logging.getLogger(__name__)
# a failing batch and its failed tasks: a bulk job reports those itself, with task ids, and quiets this one
failures_logger = logging.getLogger(__name__ + ".failures")

MAX_CACHED_PROJECTS = 64


def settle_heap() -> None:
    """Take the garbage collector's pauses off the request path of a serving process, once its model
    is loaded: every object alive now (modules, the model, its resources) is moved out of the
    collector's reach, so a full collection no longer walks them (with ~100k such objects each full
    collection of a small server took ~10 ms: the p99 of a 100-task /predict was 8x its p50), and the
    youngest generation is collected every GC_GEN0 container allocations instead of 700 (a 100-task
    request allocates more than 700 and so triggered one or more collections each). Objects freed by
    reference counting are freed as before; only reference cycles wait longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0, *gc.get_threshold()[1:])


#: the youngest generation's threshold in a serving process (see settle_heap)
GC_GEN0 = 10_000


@lru_cache(maxsize=MAX_CACHED_PROJECTS)
def _validator(label_config: str) -> RegionValidator:
    """The validator of a label config, built once per config (raises for a config that is not XML)."""
    return RegionValidator(LabelConfig(label_config))


class PredictionCountError(RuntimeError):
    pass


class ModelRuntime:
    def __init__(
        self, model_class: type[LabelStudioMLBase], settings: Settings | None = None, store: Store | None = None
    ) -> None:
        self.model_class = model_class
        self.settings = settings or Settings.from_env()
        self.store = store or make_store(self.settings.model_dir, self.settings.redis_url)
        self.fetcher = fetcher_from_settings(self.settings)
        self.versions = Versions(
            self.store,
            self.settings.model_dir,
            model_class.version_prefix(),
            model_class.initial_version(),
            self.settings.keep_versions,
        )
        self.state = "loading"
        self.error: str | None = None
        self.started_at = time.time()
        self.load_seconds: float | None = None
        self.resources: Any = None
        self.loads = 0
        self.instances_built = 0
        self.stats: dict[str, int] = {"predictions": 0, "dropped_regions": 0, "failed_tasks": 0, "short_answers": 0}
        self._warned_short: set[str | None] = set()
        self._instances: OrderedDict[str, tuple[str, str, LabelStudioMLBase]] = OrderedDict()
        self._lock = threading.Lock()
        self.trainer = TrainingManager(self._train, self.store)
        self.queue: Any = None  # an RQ-backed queue replaces in-process training when REDIS_URL is set
        # state in Redis means a network read per predict: never on the event loop unless declared
        self.scheduling = InlinePolicy(model_class.inline_predict, allowed=not self.settings.redis_url)

    # --- life cycle ----------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model class's resources; called once per process (in the background)."""
        started = time.monotonic()
        try:
            self.resources = self.model_class.load()
            self.loads += 1
        except Exception as exc:
            self.load_seconds = time.monotonic() - started
            self.state, self.error = "failed", f"model failed to load: {type(exc).__name__}: {exc}"
            logger.exception("%s failed to load", self.model_class.__name__)
            return
        self.load_seconds = time.monotonic() - started
        self.state = "ready"
        logger.info("%s loaded in %.2f s", self.model_class.__name__, self.load_seconds)
        if isinstance(self.store, FileStore):
            self.versions.clean_staging()
            self.trainer.recover(self.projects(), lambda project, event: self.trainer.submit(project, event, {}))

    def projects(self) -> list[str]:
        """Projects with stored state (in the file store, or in Redis for every replica), sorted."""
        return self.store.projects()

    def require_ready(self) -> None:
        if self.state == "loading":
            raise ModelNotReady(f"{self.model_class.__name__} is still loading")
        if self.state == "failed":
            raise ModelNotReady(self.error or "model failed to load")

    # --- instances -----------------------------------------------------------------------------
    def _context(self, project: str | None) -> ModelContext:
        store = self.store if project is not None else ModelContext.standalone(self.settings).store
        return ModelContext(
            settings=self.settings,
            store=store,
            fetcher=self.fetcher,
            resources=self.resources,
            initial_version=self.versions.initial,
            version_dir=self.versions.active_dir(project),
        )

    def _build(self, project: str | None, label_config: str, ctx: ModelContext) -> LabelStudioMLBase:
        model = self.model_class.__new__(self.model_class)
        model._bind(ctx)
        model.__init__(project_id=project, label_config=label_config)  # type: ignore[misc]
        self.instances_built += 1
        return model

    def inline_instance(self, request: PredictRequest) -> LabelStudioMLBase | None:
        """The instance to predict with on the event loop, or None where this request runs in a worker
        thread. Inline only: a batch (interactive calls often do the slow work a batch skips, and one
        person waits for them anyway), the policy allows it, and the project's instance is built
        already (building one runs the model's own set-up code)."""
        if (
            request.context
            or request.project is None
            or not request.label_config
            or not self.scheduling.inline(len(request.tasks))
        ):
            return None
        model = self._cached_instance(request.project, *self._instance_key(request.project, request.label_config))
        if model is not None:
            try:  # recently used, as instance() marks it; not under the lock a slow build may hold
                self._instances.move_to_end(request.project)
            except KeyError:  # evicted meanwhile by another thread: this request still has it
                pass
        return model

    def _instance_key(self, project: str, label_config: str) -> tuple[str, str]:
        """What a project's cached instance must match: its label config and active version. The config
        itself, not a hash of it: comparing two equal strings costs less than hashing one."""
        return label_config, self.versions.active(project)

    def _cached_instance(self, project: str, config_key: str, version: str) -> LabelStudioMLBase | None:
        cached = self._instances.get(project)
        return cached[2] if cached and cached[0] == config_key and cached[1] == version else None

    def instance(self, project: str | None, label_config: str) -> LabelStudioMLBase:
        """The cached instance for a project, rebuilt when its config or active version changes."""
        self.require_ready()
        if project is None:
            return self._build(None, label_config, self._context(None))
        config_key, version = self._instance_key(project, label_config)
        with self._lock:
            cached = self._cached_instance(project, config_key, version)
            if cached is not None:
                self._instances.move_to_end(project)
                return cached
            model = self._build(project, label_config, self._context(project))
            # keyed by the version after set-up: a setup() that stores one must not make the next call rebuild
            self._instances[project] = (config_key, self.versions.active(project), model)
            while len(self._instances) > MAX_CACHED_PROJECTS:
                self._instances.popitem(last=False)
            return model

    # --- protocol operations -------------------------------------------------------------------
    def setup(self, request: SetupRequest) -> str:
        """Store per-project settings and answer the project's model version. The first time a loaded
        model sees a project (or a new config), its instance is built, so that the version its
        ``setup()`` stores is the one answered (as upstream's /setup does)."""
        if request.project is None:
            return self.versions.initial
        project = request.project
        if request.schema is not None:
            LabelConfig(request.schema)  # reject non-XML configs with a reason
            if self.store.get(project, "label_config") != request.schema:
                self.store.set(project, "label_config", request.schema)
        if request.extra_params is not None and self.store.get(project, "extra_params") != request.extra_params:
            self.store.set(project, "extra_params", request.extra_params)
        self._store_ls_credentials(project, request)
        label_config = request.schema or self.store.get(project, "label_config")
        if self.state == "ready" and label_config:
            try:
                self.instance(project, label_config)
            except Exception as exc:  # /predict reports it with its reason; connecting LS should not fail
                logger.warning(
                    "project %s: %s set-up failed: %s: %s", project, self.model_class.__name__, type(exc).__name__, exc
                )
        return self.versions.active(project)

    def _store_ls_credentials(self, project: str, request: SetupRequest) -> None:
        """LS's hostname and token from /setup. A token goes only to the host it came with; a hostname
        named without a token (by anyone, since without basic auth nobody is authenticated) never
        receives one, and the operator's API key goes to a /setup hostname only when an authenticated
        caller named it (see model.ls_credentials)."""
        if request.hostname is None and request.access_token is None:
            return
        if not request.authenticated and (request.hostname is None or request.access_token is None):
            logger.warning(
                "/setup for project %s: %s without %s from an unauthenticated caller: ignored",
                project,
                *(("hostname", "access_token") if request.access_token is None else ("access_token", "hostname")),
            )
            return
        writes: list[tuple[str, Any]] = []  # in this order: a predict in between never pairs a token and a host
        if request.hostname is not None:
            if self.store.get(project, "hostname") != request.hostname:
                writes.append(("access_token", None))  # the previous host's token does not follow it
            writes += [("hostname", request.hostname), ("hostname_trusted", request.authenticated)]
        if request.access_token is not None:
            writes.append(("access_token", request.access_token))
        for key, value in writes:
            if self.store.get(project, key) != value:
                self.store.set(project, key, value)

    def label_config_for(self, project: str | None, given: str | None) -> str:
        if given:
            return given
        stored = self.store.get(project, "label_config") if project is not None else None
        if not stored:
            raise LabelConfigError("no label_config in the request and none stored by /setup for this project")
        return stored

    def predict(self, request: PredictRequest, inline: LabelStudioMLBase | None = None) -> list[dict[str, Any]]:
        """Predict, validate and stamp the version; ``inline``: the instance from ``inline_instance``,
        when called on the event loop."""
        # the thread CPU clock is a system call (two per request on a hot path), read only in a worker thread
        # while the policy measures: on the loop the wall-clock time stands for the CPU time (nothing else
        # runs on the loop meanwhile), and a model that declared inline_predict is not measured at all
        timed = inline is None and self.scheduling.measuring
        started, started_cpu = time.perf_counter(), time.thread_time() if timed else 0.0
        label_config = self.label_config_for(request.project, request.label_config)
        validator = _validator(label_config)
        model = inline if inline is not None else self.instance(request.project, label_config)
        version = model.model_version
        try:
            predictions = self._run_predict(model, request.tasks, request.context, request.params, request.project)
        except Exception as exc:
            if len(request.tasks) == 1 or isinstance(exc, (LabelConfigError, PredictionCountError)):
                if not isinstance(exc, LabelConfigError):  # a task failed (its media, the model), not the request
                    self.stats["failed_tasks"] += len(request.tasks)
                raise
            failures_logger.warning(
                "batch predict failed (%s: %s); predicting %d tasks one by one",
                type(exc).__name__,
                exc,
                len(request.tasks),
            )
            predictions = self._predict_one_by_one(model, request)
        dropped_regions = 0
        for task, prediction in zip(request.tasks, predictions):  # new dicts (normalize_predictions): changed in place
            kept, dropped = validator.validate(prediction["result"], task)
            if dropped:
                for reason in dropped:
                    logger.warning("task %s: dropped a region: %s", task.get("id"), reason)
                dropped_regions += len(dropped)
            # a score rates the regions given: none left, nothing to rate (LS would rank an empty task first)
            score = prediction["score"] if kept or not dropped else None
            prediction["result"] = kept
            prediction["score"] = float(score) if score is not None else None
            prediction["model_version"] = str(prediction.get("model_version") or version)  # the model's own, if set
        self.stats["dropped_regions"] += dropped_regions
        self.stats["predictions"] += len(predictions)
        wall = time.perf_counter() - started
        cpu = time.thread_time() - started_cpu if timed else wall
        self.scheduling.record(wall, cpu, len(predictions), inline is not None)
        return predictions

    def _run_predict(
        self,
        model: LabelStudioMLBase,
        tasks: list[dict[str, Any]],
        context: dict[str, Any] | None,
        params: dict[str, Any],
        project: str | None = None,
    ) -> list[dict[str, Any]]:
        """The model's predictions as dicts, each with the version the model gave it (if any). Fewer
        than the tasks are answered as they are, as upstream does (LS pairs them with the first tasks)."""
        items, response_version = unpack_response(model.predict(tasks, context=context, **params))
        if len(items) > len(tasks):
            raise PredictionCountError(
                f"{type(model).__name__}.predict returned {len(items)} predictions for {len(tasks)} tasks"
            )
        if len(items) < len(tasks):
            self._short_answer(model, len(items), len(tasks), project)
        predictions = normalize_predictions(items)
        if response_version:
            for prediction in predictions:
                prediction["model_version"] = prediction.get("model_version") or response_version
        return predictions

    def _short_answer(self, model: LabelStudioMLBase, given: int, tasks: int, project: str | None) -> None:
        self.stats["short_answers"] += 1
        # a warning (on the status page too) once per project; a model that does it on purpose
        # (an interactive-only one answering [] without a context) would fill the page otherwise
        level = logging.INFO if project in self._warned_short else logging.WARNING
        self._warned_short.add(project)
        logger.log(
            level,
            "project %s: %s.predict returned %d prediction(s) for %d task(s); answering them as they are",
            project,
            type(model).__name__,
            given,
            tasks,
        )

    def _predict_one_by_one(self, model: LabelStudioMLBase, request: PredictRequest) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        failed = 0
        for task in request.tasks:
            try:
                # a task the model gave nothing for keeps its place with an empty result
                out.extend(
                    self._run_predict(model, [task], request.context, request.params, request.project)[:1]
                    or [{"result": [], "score": None}]
                )
            except Exception as exc:
                failed += 1
                failures_logger.error(
                    "task %s: prediction failed, answering an empty result: %s: %s",
                    task.get("id"),
                    type(exc).__name__,
                    exc,
                )
                # LS reads result/score/model_version only; bulk pre-annotation reads the error and
                # writes nothing for the task, so a later run tries it again
                out.append({"result": [], "score": None, "error": f"{type(exc).__name__}: {exc}"})
        self.stats["failed_tasks"] += failed
        if failed == len(request.tasks):
            raise RuntimeError(f"prediction failed for all {failed} tasks; see the server log")
        return out

    # --- training ------------------------------------------------------------------------------
    def webhook(self, event: WebhookEvent) -> dict[str, Any]:
        if event.action not in self.model_class.TRAIN_EVENTS:
            return {"status": "ignored", "action": event.action}
        if event.project is None:
            return {"status": "ignored", "reason": "event has no project"}
        if event.action != "START_TRAINING" and not self.settings.train_on_annotation:
            return {"status": "ignored", "reason": "TRAIN_ON_ANNOTATION is off"}
        if event.label_config and self.store.get(event.project, "label_config") != event.label_config:
            self.store.set(event.project, "label_config", event.label_config)
        if self.queue is not None:
            job_id = self.queue.submit(event.project, event.action, event.data)
            return {"status": "ok", "job": job_id}
        job = self.trainer.submit(event.project, event.action, event.data)
        return {"status": "ok", "job": job.id}

    def _train(self, job: Job, progress: Any) -> str | None:
        """Run ``fit`` for a job into a staging folder and publish it as a new version."""
        self.require_ready()
        project = job.project
        label_config = self.store.get(project, "label_config") or ""
        staging = self.versions.staging_dir(project, job.id)
        ctx = self._context(project)
        ctx.output_dir, ctx.progress = staging, progress
        try:
            model = self._build(project, label_config, ctx)
            event, data = job.payloads[-1] if job.payloads else (job.event, {})
            model.process_event(event, data, job.id, {"events": list(job.payloads)})
            return self.versions.publish(project, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def health(self) -> dict[str, Any]:
        return {
            "status": "UP" if self.state == "ready" else self.state.upper(),
            "model_class": self.model_class.__name__,
        }
