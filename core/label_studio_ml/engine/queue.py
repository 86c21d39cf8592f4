"""Training through Redis and RQ: several server replicas enqueue, a worker process trains.

Coalescing works as in-process: per project at most one queued job; events arriving while it waits
are appended to it (atomically, by Lua scripts, so a worker starting the job never loses one).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from ..config import Settings
from ..model import LabelStudioMLBase
from ..state.storage import RedisStore
from ..training.jobs import Job, load_jobs, save_job

logger = logging.getLogger(__name__)

# KEYS: queued marker, payload list prefix. ARGV: new job id, payload. Returns the job id that got it
# and 1 when a new job was created.
_SUBMIT = """
local current = redis.call('GET', KEYS[1])
if current then
  redis.call('RPUSH', KEYS[2] .. current, ARGV[2])
  return {current, 0}
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2] .. ARGV[1], ARGV[2])
return {ARGV[1], 1}
"""
# KEYS: queued marker, payload list, taken list. ARGV: job id. Takes the job out of "queued" and its
# payloads; they stay in the taken list until the job ends, so a job whose worker died is re-run with them.
_START = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[3]) end
return redis.call('LRANGE', KEYS[3], 0, -1)
"""


def queue_name(model_class: type[LabelStudioMLBase]) -> str:
    return f"lsml-{model_class.version_prefix()}"


class RedisTrainingQueue:
    def __init__(self, settings: Settings, model_class: type[LabelStudioMLBase]) -> None:
        from rq import Queue

        self.settings = settings
        self.store = RedisStore(settings.redis_url)
        self.redis = self.store.client
        self.model_class = model_class
        self.queue = Queue(queue_name(model_class), connection=self.redis)
        self._submit = self.redis.register_script(_SUBMIT)
        self._healthy, self._pinged_at = True, 0.0

    def ping(self) -> bool:
        """Redis reachable? Cached for a second so /health stays cheap under probes."""
        now = time.monotonic()
        if now - self._pinged_at > 1.0:
            self._healthy, self._pinged_at = self.store.ping(), now
        return self._healthy

    def submit(self, project: str, event: str, data: dict[str, Any]) -> str:
        job = Job(project=project, event=event)
        payload = json.dumps([event, data])
        prefix = self.store.prefix
        job_id, created = self.store._call(
            self._submit, [f"{prefix}:{project}:queued", f"{prefix}:payloads:"], [job.id, payload]
        )
        job_id = job_id.decode() if isinstance(job_id, bytes) else job_id
        if created:
            save_job(self.store, job, new=True)
            _enqueue(self, project, job_id, f"lsml-{job_id}")
            logger.info("training job %s for project %s queued in Redis (%s)", job_id, project, event)
        return job_id


_runtime_cache: dict[str, Any] = {}


def _runtime(model_path: str | None = None) -> Any:
    """One runtime per worker process: the model's resources load once, not per job."""
    model_path = model_path or os.environ["LSML_MODEL_PATH"]
    if model_path not in _runtime_cache:
        from .loader import load_model_class
        from .runtime import ModelRuntime

        runtime = ModelRuntime(load_model_class(model_path), Settings.from_env())
        runtime.load()
        _runtime_cache[model_path] = runtime
    return _runtime_cache[model_path]


@contextmanager
def _lease(store: RedisStore, project: str, job_id: str, seconds: float) -> Iterator[Any]:
    """The project's training lock, held while this worker lives: a key that expires ``seconds`` after the
    worker's last heartbeat (a SIGKILLed worker stops beating), and the job's own liveness key."""
    client, prefix = store.client, store.prefix
    alive_key = f"{prefix}:{project}:alive:{job_id}"
    lock = client.lock(f"{prefix}:{project}:train-lock", timeout=seconds, thread_local=False)
    stop, held = threading.Event(), threading.Event()

    def beat() -> None:
        while True:
            try:
                client.set(alive_key, os.getpid(), ex=max(1, round(seconds)))
                if held.is_set():
                    lock.extend(seconds, replace_ttl=True)
            except Exception:
                logger.warning("training job %s: lease heartbeat failed", job_id, exc_info=True)
            if stop.wait(seconds / 3):
                return

    beater = threading.Thread(target=beat, name=f"lease-{job_id}", daemon=True)
    beater.start()
    try:
        lock.acquire(blocking=True)
        held.set()
        try:
            yield lock
        finally:
            held.clear()
            lock.release()
    finally:
        stop.set()
        beater.join()
        client.delete(alive_key)


def run_job(project: str, job_id: str) -> str | None:
    """RQ entry point: train one coalesced job in the worker process (its model: LSML_MODEL_PATH)."""
    runtime = _runtime()
    store: RedisStore = runtime.store
    prefix = store.prefix
    start = store.client.register_script(_START)
    with _lease(store, project, job_id, runtime.settings.worker_lease_seconds):
        raw = start(
            keys=[f"{prefix}:{project}:queued", f"{prefix}:payloads:{job_id}", f"{prefix}:taken:{job_id}"],
            args=[job_id],
        )
        payloads = [tuple(json.loads(item)) for item in raw]
        record = store.get(project, f"job-{job_id}") or {}
        job = Job(
            project=project,
            event=payloads[-1][0] if payloads else record.get("event", "START_TRAINING"),
            id=job_id,
            created_at=record.get("created_at", time.time()),
            events=len(payloads),
            payloads=payloads,
            retry_of=record.get("retry_of"),
        )  # type: ignore[arg-type]
        job.state, job.started_at = "running", time.time()
        save_job(store, job)
        last = [0.0]

        def progress(fraction: float, message: str = "") -> None:
            job.progress, job.message = fraction, message
            if time.monotonic() - last[0] >= 1.0:
                last[0] = time.monotonic()
                logger.info("training job %s: %.0f%% %s", job_id, 100 * fraction, message)
                save_job(store, job)

        try:
            job.version = runtime._train(job, progress)
            job.state, job.progress = "done", 1.0
            job.message = f"new version {job.version}" if job.version else "no change: version kept"
        except Exception as exc:
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
            logger.exception("training job %s failed; previous version keeps serving", job_id)
        job.ended_at, job.payloads = time.time(), []
        save_job(store, job)
        store.client.delete(f"{prefix}:taken:{job_id}")
        logger.info("training job %s %s: %s", job_id, job.state, job.message or job.error)
        if job.state == "failed":
            raise RuntimeError(job.error)
        return job.version


def recover_lost_jobs(queue: RedisTrainingQueue, suspects: dict[str, float] | None = None) -> int:
    """Training jobs a dead worker held (its liveness key expired), recovered once by whichever worker
    notices first: one left ``running`` is marked failed and its events are trained on again, once (a
    re-run that dies too is not re-run); one still ``queued`` whose RQ job a worker took but never ran
    goes back on the queue. ``suspects``: when each queued job was first seen lost (it must stay so for
    half a lease: a worker takes an RQ job a moment before it sets the liveness key). Returns how many."""
    store, prefix, lost = queue.store, queue.store.prefix, 0
    suspects = {} if suspects is None else suspects
    for project in store.projects():
        for record in load_jobs(store, project):
            job_id, state = record.get("id"), record.get("state")
            if record.get("kind") != "train" or state not in ("running", "queued"):
                continue
            if store._call(store.client.exists, f"{prefix}:{project}:alive:{job_id}"):
                continue
            if state == "queued" and not _taken_and_dropped(queue, job_id, suspects):
                continue
            # one replica or worker recovers it, however many notice (a queued job each time it is lost)
            claim = partial(
                store.client.set,
                f"{prefix}:{project}:recovered:{job_id}:{state}",
                1,
                nx=True,
                ex=86400 if state == "running" else max(1, round(queue.settings.worker_lease_seconds)),
            )
            if not store._call(claim):
                continue
            lost += 1
            if state == "queued":
                suspects.pop(job_id, None)
                _enqueue(queue, project, job_id, f"lsml-{job_id}-{uuid.uuid4().hex[:6]}")
                logger.warning(
                    "project %s: training job %s was taken by a worker that died; queued again", project, job_id
                )
            else:
                _train_again(queue, project, record)
    return lost


def _taken_and_dropped(queue: RedisTrainingQueue, job_id: str, suspects: dict[str, float]) -> bool:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job as RQJob

    rq_id = queue.store._call(queue.redis.get, f"{queue.store.prefix}:rq:{job_id}")
    try:
        status = RQJob.fetch(rq_id.decode() if rq_id else f"lsml-{job_id}", connection=queue.redis).get_status()
    except NoSuchJobError:
        status = None
    if status in ("queued", "deferred", "scheduled"):
        suspects.pop(job_id, None)
        return False
    first_seen = suspects.setdefault(job_id, time.monotonic())
    return time.monotonic() - first_seen >= queue.settings.worker_lease_seconds / 2


def _enqueue(queue: RedisTrainingQueue, project: str, job_id: str, rq_id: str) -> None:
    queue.store._call(lambda: queue.queue.enqueue(run_job, project, job_id, job_id=rq_id, job_timeout=24 * 3600))
    queue.store._call(queue.redis.set, f"{queue.store.prefix}:rq:{job_id}", rq_id, 7 * 86400)


def _train_again(queue: RedisTrainingQueue, project: str, record: dict[str, Any]) -> None:
    store, job_id = queue.store, record["id"]
    rerun = not record.get("retry_of")
    record.update(
        state="failed",
        ended_at=time.time(),
        error="interrupted: the worker ended during the job" + ("" if rerun else " (a re-run: not run again)"),
    )
    store.set(project, f"job-{job_id}", record)
    taken = f"{store.prefix}:taken:{job_id}"
    payloads = [json.loads(item) for item in store._call(store.client.lrange, taken, 0, -1)]
    logger.warning(
        "project %s: training job %s was interrupted (its worker died)%s",
        project,
        job_id,
        "; training again" if rerun else "",
    )
    if rerun:
        new_id = ""
        for event, data in payloads or [[record.get("event") or "START_TRAINING", {}]]:
            new_id = queue.submit(project, event, data)
        retry = store.get(project, f"job-{new_id}") or {}
        store.set(project, f"job-{new_id}", {**retry, "retry_of": job_id})
    store._call(store.client.delete, taken)


def watch_training(queue: RedisTrainingQueue, stop: threading.Event) -> None:
    """A worker's background loop: recover jobs of dead workers within a lease period."""
    suspects: dict[str, float] = {}
    while True:
        try:
            recover_lost_jobs(queue, suspects)
        except Exception:
            logger.warning("training lease watch failed; trying again", exc_info=True)
        if stop.wait(queue.settings.worker_lease_seconds / 2):
            return
