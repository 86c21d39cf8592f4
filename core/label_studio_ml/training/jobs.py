"""Background training jobs: per project one running and at most one queued; bursts coalesce."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..state.storage import Store

logger = logging.getLogger(__name__)

TRAIN_EVENTS = {
    "START_TRAINING",
    "ANNOTATION_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_CREATED",
    "ANNOTATIONS_DELETED",
    "ANNOTATION_DELETED",
}
KEEP_JOBS = 20
PROCESS_TOKEN = uuid.uuid4().hex  # tells this process's jobs from a previous one with the same pid


@dataclass
class Job:
    project: str
    event: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    state: str = "queued"  # queued -> running -> done | failed
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    progress: float = 0.0
    message: str = ""
    error: str | None = None
    version: str | None = None
    events: int = 1
    pid: int = field(default_factory=os.getpid)
    owner: str = PROCESS_TOKEN
    retry_of: str | None = None  # the interrupted job this one trains again (re-run once, not again)
    payloads: list[tuple[str, dict[str, Any]]] = field(default_factory=list, repr=False)

    def public(self) -> dict[str, Any]:
        record = asdict(self)
        record.pop("payloads")
        return {"kind": "train", **record}


def save_job(store: Store, job: Job, new: bool = False) -> None:
    save_record(store, job.project, job.public(), new)


def save_record(store: Store, project: str, record: dict[str, Any], new: bool = False) -> None:
    """A job record (training, pre-annotation: its ``kind`` says) under the project's job index. One key
    per job (an atomic write, no read-modify-write race between a webhook thread and the training
    thread); the per-project index of job ids changes only when a job is created."""
    store.set(project, f"job-{record['id']}", record)
    if new:
        index = [record["id"]] + [i for i in store.get(project, "jobs") or [] if i != record["id"]]
        store.set(project, "jobs", index[:KEEP_JOBS])
        for old in index[KEEP_JOBS:]:
            store.delete(project, f"job-{old}")


def load_jobs(store: Store, project: str) -> list[dict[str, Any]]:
    """Job records of a project, newest first."""
    records = (store.get(project, f"job-{job_id}") for job_id in store.get(project, "jobs") or [])
    return [r for r in records if r]


Runner = Callable[[Job, Callable[[float, str], None]], "str | None"]


class TrainingManager:
    """Runs ``runner(job, progress)`` in background threads, one job at a time per project."""

    def __init__(self, runner: Runner, store: Store, on_finish: Callable[[Job], None] | None = None) -> None:
        self.runner = runner
        self.store = store
        self.on_finish = on_finish
        self._lock = threading.Lock()
        self._queued: dict[str, Job] = {}
        self._running: dict[str, Job] = {}
        self._threads: dict[str, threading.Thread] = {}

    def submit(self, project: str, event: str, data: dict[str, Any]) -> Job:
        with self._lock:
            job = self._queued.get(project)
            if job is not None:
                job.event = event
                job.events += 1
                job.payloads.append((event, data))
                return job
            job = Job(project=project, event=event, payloads=[(event, data)])
            self._queued[project] = job
            self._save(job, new=True)
            if project not in self._threads:
                thread = threading.Thread(target=self._loop, args=(project,), name=f"train-{project}", daemon=True)
                self._threads[project] = thread
                thread.start()
            return job

    def _loop(self, project: str) -> None:
        while True:
            with self._lock:
                job = self._queued.pop(project, None)
                if job is None:
                    self._threads.pop(project, None)
                    self._running.pop(project, None)
                    return
                self._running[project] = job
            self._run(job)

    def _run(self, job: Job) -> None:
        job.state, job.started_at = "running", time.time()
        self._save(job)
        logger.info(
            "training job %s for project %s started (%d event(s), last %s)", job.id, job.project, job.events, job.event
        )
        last_saved = [0.0]

        def progress(fraction: float, message: str = "") -> None:
            job.progress, job.message = fraction, message
            now = time.monotonic()
            if now - last_saved[0] >= 1.0 or fraction >= 1.0:
                last_saved[0] = now
                logger.info("training job %s: %.0f%% %s", job.id, 100 * fraction, message)
                self._save(job)

        try:
            job.version = self.runner(job, progress)
            job.state, job.progress = "done", 1.0
            job.message = f"new version {job.version}" if job.version else "no change: version kept"
        except Exception as exc:  # the job fails, the server and the served version stay
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
            logger.exception(
                "training job %s for project %s failed; previous version keeps serving", job.id, job.project
            )
        job.ended_at = time.time()
        job.payloads = []
        if self.on_finish is not None:  # before the record says "ended": whoever reads it ended finds it counted
            try:
                self.on_finish(job)
            except Exception:
                logger.warning("finish callback of job %s failed", job.id, exc_info=True)
        self._save(job)
        logger.info(
            "training job %s %s in %.2f s: %s",
            job.id,
            job.state,
            job.ended_at - (job.started_at or job.ended_at),
            job.message or job.error,
        )

    def _save(self, job: Job, new: bool = False) -> None:
        try:
            save_job(self.store, job, new)
        except Exception:
            logger.warning("could not persist job %s", job.id, exc_info=True)

    def jobs(self, project: str) -> list[dict[str, Any]]:
        """Stored job records, with this process's live jobs (fresh progress) laid over them."""
        records = load_jobs(self.store, project)
        with self._lock:
            live = {job.id: job.public() for job in (self._running.get(project), self._queued.get(project)) if job}
        return [live.get(r.get("id"), r) for r in records]

    def active_count(self) -> int:
        with self._lock:
            return len(self._running) + len(self._queued)

    def recover(self, projects: list[str], resubmit: Callable[[str, str], Job]) -> None:
        """Jobs left queued/running by a dead process are marked failed and trained again, once: a re-run
        that is interrupted too (a fit that kills the process, say) is not run a third time."""
        for project in projects:
            lost = [
                r for r in load_jobs(self.store, project) if r.get("state") in ("queued", "running") and not _alive(r)
            ]
            for record in lost:
                again = "" if record.get("retry_of") is None else " (a re-run: not run again)"
                record.update(
                    state="failed", error=f"interrupted: the process ended during the job{again}", ended_at=time.time()
                )
                self.store.set(project, f"job-{record['id']}", record)
            first_runs = [r for r in lost if r.get("retry_of") is None]
            if lost:
                logger.warning(
                    "project %s: %d training job(s) were interrupted%s",
                    project,
                    len(lost),
                    "; training again" if first_runs else "",
                )
            if first_runs:
                job = resubmit(project, first_runs[0].get("event") or "START_TRAINING")
                job.retry_of = first_runs[0]["id"]
                self._save(job)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.active_count() == 0:
                return True
            time.sleep(0.02)
        return False


def _alive(record: dict[str, Any]) -> bool:
    pid = record.get("pid")
    if record.get("owner") == PROCESS_TOKEN:
        return True
    return isinstance(pid, int) and process_alive(pid)


def process_alive(pid: int) -> bool:
    """Another live process has ``pid`` (ours counts as not: a previous process with our pid, as
    containers restart as pid 1, is dead)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
