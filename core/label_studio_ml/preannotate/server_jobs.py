"""Pre-annotation jobs the server starts itself (``POST /jobs``): in a background thread with the
model it serves, or, with REDIS_URL, planned onto the workers' queue. Their records join the training
jobs in the project's job index, so ``GET /jobs`` and the status page show both (``kind`` tells)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from ..clients.ls_client import LabelStudioAuthError, LabelStudioClient, LabelStudioNotFound
from ..clients.retrying import Backoff
from ..engine.runtime import ModelRuntime
from ..errors import BadGateway, InvalidInput, NotFound
from ..training.jobs import save_record
from .bulk import JobStopped, LocalTally, Options, Preannotator, check_access
from .predictors import InProcessPredictor
from .progress import Counts

logger = logging.getLogger(__name__)

SAVE_EVERY_S = 1.0


def record_of(job_id: str, project: str, counts: Counts, **fields: Any) -> dict[str, Any]:
    """A pre-annotation job record, in the shape ``RedisJob.public`` gives too."""
    total = counts.total
    return {
        "id": job_id,
        "kind": "preannotate",
        "project": project,
        **fields,
        "progress": round(counts.handled / total, 4) if total else 0.0,
        "message": f"{counts.done} done, {counts.skipped} skipped, {counts.failed} failed of {total}",
        "done": counts.done,
        "skipped": counts.skipped,
        "failed": counts.failed,
        "total": total,
        "failures": counts.failures,
    }


class RecordReporter:
    """Progress into the job record in the store, at most once a second (a reporter for Preannotator)."""

    def __init__(self, runtime: ModelRuntime, record: dict[str, Any]) -> None:
        self.runtime = runtime
        self.record = record
        self.saved_at = 0.0

    def save(self, counts: Counts, **fields: Any) -> None:
        self.record.update(record_of(self.record["id"], self.record["project"], counts), **fields)
        try:
            save_record(self.runtime.store, self.record["project"], dict(self.record))
        except Exception:
            logger.warning("could not save pre-annotation job %s", self.record["id"], exc_info=True)
        self.saved_at = time.monotonic()

    def update(self, counts: Counts, force: bool = False) -> None:
        if force or time.monotonic() - self.saved_at >= SAVE_EVERY_S:
            self.save(counts)

    def failure(self, task: int, reason: str) -> None:
        logger.warning("pre-annotation job %s: task %s failed: %s", self.record["id"], task, reason)

    def finish(self, counts: Counts, state: str, **extra: Any) -> None:
        self.save(counts, state=state, ended_at=time.time(), error=extra.get("reason"))


class PreannotateJobs:
    def __init__(self, runtime: ModelRuntime) -> None:
        self.runtime = runtime
        self._lock = threading.Lock()
        self._running: dict[str, dict[str, Any]] = {}  # project -> record of its live job

    def start(self, project: str, batch_size: int | None = None) -> tuple[dict[str, Any], bool]:
        """(the job's record, True when this call started it; False: the project's job was running)."""
        settings = self.runtime.settings
        if not settings.label_studio_url or not settings.label_studio_api_key:
            raise InvalidInput("pre-annotation needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY set on the backend")
        with self._lock:
            if project in self._running:
                return dict(self._running[project]), False
        client = LabelStudioClient(settings.label_studio_url, settings.label_studio_api_key, settings.verify_ssl)
        backoff = Backoff(tries=3, delay=0.5)
        try:
            label_config = str(check_access(client, int(project), backoff).get("label_config") or "")
        except LabelStudioNotFound as exc:
            raise NotFound(str(exc)) from None
        except (LabelStudioAuthError, JobStopped) as exc:
            raise BadGateway(str(exc)) from None
        options = Options(batch_size=batch_size or self.runtime.model_class.predict_batch_size)
        if self.runtime.queue is not None:
            return self._plan_on_redis(client, project, label_config, options)
        now = time.time()
        record = record_of(uuid.uuid4().hex[:12], project, Counts(), state="queued", created_at=now, version=None)
        with self._lock:
            if project in self._running:
                return dict(self._running[project]), False
            self._running[project] = record
        save_record(self.runtime.store, project, dict(record), new=True)
        threading.Thread(
            target=self._run, args=(client, record, label_config, options), name=f"preannotate-{project}", daemon=True
        ).start()
        return dict(record), True

    def _run(self, client: LabelStudioClient, record: dict[str, Any], label_config: str, options: Options) -> None:
        project = record["project"]
        reporter = RecordReporter(self.runtime, record)
        counts = Counts()
        try:
            while self.runtime.state == "loading":
                time.sleep(0.2)
            predictor = InProcessPredictor(self.runtime, project, label_config)
            reporter.save(counts, state="running", started_at=time.time(), version=predictor.version)
            Preannotator(client, int(project), predictor, LocalTally(counts, reporter), options).run(counts, reporter)
            reporter.finish(counts, "done")
            logger.info("pre-annotation job %s for project %s: %s", record["id"], project, record["message"])
        except JobStopped as exc:
            reporter.finish(counts, "stopped", reason=str(exc))
            logger.error("pre-annotation job %s stopped: %s", record["id"], exc)
        except Exception as exc:
            reporter.finish(counts, "failed", reason=f"{type(exc).__name__}: {exc}")
            logger.exception("pre-annotation job %s failed", record["id"])
        finally:
            with self._lock:
                self._running.pop(project, None)

    def _plan_on_redis(
        self, client: LabelStudioClient, project: str, label_config: str, options: Options
    ) -> tuple[dict[str, Any], bool]:
        from .redis_queue import plan, start_job

        job, resumed, queue = start_job(self.runtime, client, int(project), label_config, options)

        def planner() -> None:
            try:
                plan(job, client, queue, options.backoff)
            except JobStopped as exc:
                job.stop(str(exc))
                logger.error("pre-annotation job %s stopped while planning: %s", job.id, exc)
            except Exception as exc:
                job.stop(f"planning failed: {type(exc).__name__}: {exc}")
                logger.exception("pre-annotation job %s: planning failed", job.id)
            job.mirror(self.runtime.store)

        threading.Thread(target=planner, name=f"preannotate-plan-{project}", daemon=True).start()
        return job.public(), not resumed

    def active_count(self) -> int:
        with self._lock:
            return len(self._running)
