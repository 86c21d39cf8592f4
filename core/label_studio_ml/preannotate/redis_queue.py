"""Bulk pre-annotation on workers, through Redis and RQ.

A planner (the ``preannotate`` command, or the server for ``POST /jobs``) pages through the project,
puts the ids of tasks lacking the version into chunks and each chunk on the model's pre-annotation
RQ queue. ``label-studio-ml worker`` processes take chunks: a worker holds a lease on its chunk in
Redis and renews it while it works; a chunk whose lease expired without being done (its worker was
killed) is put on the queue again by whoever notices (the waiting command, or any worker). The
planner keeps each chunk's tasks (as it read them) in Redis, so the chunk's first worker predicts them
without asking LS again; a chunk started before (its worker died or gave up) re-reads which of its
tasks hold the version already, and a worker writes only while it still holds the lease: nothing is
written twice. All job state lives in Redis under
``lsml:pa:<job>``, so ``preannotate --status JOB`` and a second run see it.
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
from typing import Any

from ..clients.retrying import Backoff
from ..engine.queue import queue_name
from ..model import LabelStudioMLBase
from ..state.storage import Store
from ..training.jobs import save_record
from .bulk import JobStopped, Options, Preannotator, TaskReader, model_task
from .progress import MAX_FAILURES_KEPT, Counts, Reporter

logger = logging.getLogger(__name__)

PREFIX = "lsml:pa"
KEEP_S = 7 * 24 * 3600  # a finished job's state stays this long


def lease_seconds() -> float:
    return float(os.environ.get("LSML_PREANNOTATE_LEASE_S", "30"))


def max_attempts() -> int:
    return int(os.environ.get("LSML_PREANNOTATE_ATTEMPTS", "5"))


def max_writers() -> int:
    """Bulk writes into one project at once, from all workers together (0: no limit). LS 1.23.2 serves
    them one at a time anyway and recounts the whole project in each, so two at once only contend."""
    return int(os.environ.get("LSML_PREANNOTATE_WRITERS", "1"))


def preannotate_queue_name(model_class: type[LabelStudioMLBase]) -> str:
    return f"{queue_name(model_class)}-preannotate"


# KEYS: accounted hash (task -> outcome), counts hash. ARGV: outcome, task ids. A task counts once, under
# its best outcome so far (a chunk done again after a crash re-reads tasks its first worker wrote).
_ACCOUNT = """
local rank = {skipped = 1, failed = 2, done = 3}
local new = {}
for i = 2, #ARGV do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if not old or rank[ARGV[1]] > rank[old] then
    if old then redis.call('HINCRBY', KEYS[2], old, -1) end
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[1])
    redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
    table.insert(new, ARGV[i])
  end
end
return new
"""
# KEYS: pending set, counts hash, meta hash. ARGV: chunk, now. Returns 1 when this made the job done.
_CHUNK_DONE = """
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], 'chunks_done', 1)
if redis.call('HGET', KEYS[3], 'planned') == '1' and redis.call('SCARD', KEYS[1]) == 0
   and redis.call('HGET', KEYS[3], 'state') == 'running' then
  redis.call('HSET', KEYS[3], 'state', 'done', 'ended_at', ARGV[2])
  return 1
end
return 0
"""
# KEYS: pending set, meta hash. ARGV: now. Done when planned and nothing is pending.
_PLAN_DONE = """
redis.call('HSET', KEYS[2], 'planned', '1')
if redis.call('SCARD', KEYS[1]) == 0 and redis.call('HGET', KEYS[2], 'state') == 'running' then
  redis.call('HSET', KEYS[2], 'state', 'done', 'ended_at', ARGV[1])
  return 1
end
return 0
"""
# KEYS: meta hash, counts hash. ARGV: tasks that held the version at the start. Counted once per job (a
# planner resumed from the start counts them again otherwise).
_HELD = """
if redis.call('HSETNX', KEYS[1], 'held', ARGV[1]) == 1 then redis.call('HINCRBY', KEYS[2], 'skipped', ARGV[1]) end
"""
# KEYS: attempts hash. ARGV: chunk, the attempt seen. One requeuer wins per attempt.
_CLAIM = """
if tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') ~= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class LeaseLost(RuntimeError):
    pass


class Lease:
    """A Redis key only its holder may renew or delete; a thread renews it every third of its ttl.
    When the holder dies the key expires and the work it guarded is free again."""

    def __init__(self, redis: Any, key: str, ttl: float, on_renew: Any = None) -> None:
        self.redis = redis
        self.key = key
        self.ttl_ms = int(ttl * 1000)
        self.token = f"{os.getpid()}-{uuid.uuid4().hex}"  # the holder's pid first: tests kill by it
        self.on_renew = on_renew
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        if not self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
            return False
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{self.key}", daemon=True)
        self._thread.start()
        return True

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self.redis.eval(_RENEW, 1, self.key, self.token, self.ttl_ms):
                    self.lost = True
                    return
                if self.on_renew is not None:
                    self.on_renew()
            except Exception:  # Redis unreachable: the lease may lapse; check() tells before a write
                logger.warning("could not renew lease %s", self.key, exc_info=True)

    def check(self) -> None:
        """Raise LeaseLost unless this holder still holds the key (called before each write)."""
        if self.lost or _text(self.redis.get(self.key) or b"") != self.token:
            self.lost = True
            raise LeaseLost(f"lease {self.key} expired; another worker has the work")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            self.redis.eval(_RELEASE, 1, self.key, self.token)
        except Exception:
            logger.warning("could not release lease %s (it expires by itself)", self.key, exc_info=True)


@contextmanager
def writer_slot(redis: Any, project: int | str, chunk_lease: Lease) -> Iterator[None]:
    """Hold one of the project's ``max_writers()`` write slots (waiting for one while the chunk's lease
    holds) and check the lease before the write; a holder that died frees its slot when it expires."""
    slots = max_writers()
    while slots > 0:
        for n in range(slots):
            slot = Lease(redis, f"{PREFIX}:writer:{project}:{n}", lease_seconds())
            if slot.acquire():
                try:
                    chunk_lease.check()
                    yield
                finally:
                    slot.release()
                return
        chunk_lease.check()  # stop waiting once another worker has the chunk
        time.sleep(0.05)
    chunk_lease.check()
    yield


class RedisJob:
    """One pre-annotation job's state in Redis."""

    def __init__(self, redis: Any, job_id: str) -> None:
        self.redis = redis
        self.id = job_id
        self.key = f"{PREFIX}:{job_id}"

    # --- creating and finding ------------------------------------------------------------------
    @classmethod
    def create(
        cls, redis: Any, project: int, version: str, queue: str, ls_url: str, label_config: str, options: Options
    ) -> RedisJob:
        job = cls(redis, uuid.uuid4().hex[:12])
        now = time.time()
        redis.hset(
            f"{job.key}:meta",
            mapping={
                "id": job.id,
                "project": str(project),
                "version": version,
                "queue": queue,
                "ls_url": ls_url,
                "label_config": label_config,
                "batch_size": options.batch_size,
                "page_size": options.page_size,
                "chunk_size": options.chunk_size,
                "state": "running",
                "planned": "0",
                "cursor": "0",
                "created_at": now,
                "started_at": now,
            },
        )
        redis.hset(f"{job.key}:counts", mapping={"done": 0, "skipped": 0, "failed": 0, "chunks_done": 0})
        redis.lpush(f"{PREFIX}:project:{project}", job.id)
        redis.ltrim(f"{PREFIX}:project:{project}", 0, 19)
        redis.sadd(f"{PREFIX}:active", job.id)
        return job

    @classmethod
    def open(cls, redis_or_url: Any, job_id: str) -> RedisJob | None:
        redis = redis_or_url
        if isinstance(redis_or_url, str):
            import redis as redis_lib

            redis = redis_lib.Redis.from_url(redis_or_url, socket_timeout=5, socket_connect_timeout=5)
        job = cls(redis, job_id)
        return job if redis.exists(f"{job.key}:meta") else None

    @classmethod
    def latest(cls, redis: Any, project: int) -> RedisJob | None:
        newest = redis.lindex(f"{PREFIX}:project:{project}", 0)
        return cls.open(redis, _text(newest)) if newest else None

    # --- reading -------------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in self.redis.hgetall(f"{self.key}:meta").items()}

    def counts(self) -> Counts:
        raw = {_text(k): int(v) for k, v in self.redis.hgetall(f"{self.key}:counts").items()}
        failures = [json.loads(f) for f in self.redis.lrange(f"{self.key}:failures", 0, MAX_FAILURES_KEPT - 1)]
        total = int(self.redis.hget(f"{self.key}:meta", "total") or 0)
        return Counts(raw.get("done", 0), raw.get("skipped", 0), raw.get("failed", 0), total, failures)

    def chunk_ids(self, chunk: int) -> list[int]:
        raw = self.redis.get(f"{self.key}:chunk:{chunk}")
        return [int(i) for i in json.loads(raw)] if raw else []

    def chunk_tasks(self, chunk: int) -> list[dict[str, Any]] | None:
        """The chunk's tasks as the planner read them; None once the chunk is done (or planned without)."""
        raw = self.redis.get(f"{self.key}:chunk:{chunk}:tasks")
        return list(json.loads(raw)) if raw else None

    def first_start(self, chunk: int) -> bool:
        """True for the first worker ever to start ``chunk``: no earlier attempt can have written any of
        it, so the tasks the planner read still lack the version."""
        return bool(self.redis.hsetnx(f"{self.key}:started", chunk, time.time()))

    def is_pending(self, chunk: int) -> bool:
        return bool(self.redis.sismember(f"{self.key}:pending", chunk))

    def public(self) -> dict[str, Any]:
        """The job record: ``GET /jobs``, ``--status`` and the status page show it."""
        meta, counts = self.meta(), self.counts()
        chunks = {_text(k): int(v) for k, v in self.redis.hgetall(f"{self.key}:counts").items()}
        state = meta.get("state", "unknown")
        total = counts.total
        return {
            "id": self.id,
            "kind": "preannotate",
            "project": meta.get("project"),
            "state": state,
            "version": meta.get("version"),
            "created_at": float(meta.get("created_at") or 0),
            "started_at": float(meta["started_at"]) if meta.get("started_at") else None,
            "ended_at": float(meta["ended_at"]) if meta.get("ended_at") else None,
            "progress": round(counts.handled / total, 4) if total else (1.0 if state == "done" else 0.0),
            "message": f"{counts.done} done, {counts.skipped} skipped, {counts.failed} failed of {total}",
            "error": meta.get("error") or None,
            "done": counts.done,
            "skipped": counts.skipped,
            "failed": counts.failed,
            "total": total,
            "chunks_total": int(meta.get("chunks_total") or 0),
            "chunks_done": chunks.get("chunks_done", 0),
            "planned": meta.get("planned") == "1",
            "redis": True,
            "failures": counts.failures,
        }

    def mirror(self, store: Store) -> None:
        """Copy the record into the project's job index (``GET /jobs`` reads it from there)."""
        record = self.public()
        save_record(store, str(record["project"]), record, new=False)

    # --- writing -------------------------------------------------------------------------------
    def add_chunk(self, tasks: list[dict[str, Any]]) -> int:
        """A new pending chunk of tasks lacking the version (ascending ids, above those of earlier
        chunks), kept as the model sees them; the planner's cursor moves past them, so a resumed planner
        never puts a task in two chunks."""
        ids = [int(t["id"]) for t in tasks]
        chunk = int(self.redis.hincrby(f"{self.key}:meta", "chunks_total", 1))
        pipe = self.redis.pipeline()
        pipe.set(f"{self.key}:chunk:{chunk}", json.dumps(ids))
        pipe.set(f"{self.key}:chunk:{chunk}:tasks", json.dumps([model_task(t) for t in tasks]))
        pipe.hset(f"{self.key}:meta", "cursor", max(ids))
        pipe.hset(f"{self.key}:attempts", chunk, 0)
        pipe.hset(f"{self.key}:touched", chunk, time.time())
        pipe.sadd(f"{self.key}:pending", chunk)
        pipe.execute()
        return chunk

    def account(self, outcome: str, task_ids: list[int]) -> list[int]:
        if not task_ids:
            return []
        new = self.redis.eval(
            _ACCOUNT, 2, f"{self.key}:accounted", f"{self.key}:counts", outcome, *[str(i) for i in task_ids]
        )
        return [int(_text(i)) for i in new]

    def held(self, count: int) -> None:
        self.redis.eval(_HELD, 2, f"{self.key}:meta", f"{self.key}:counts", count)

    def fail_task(self, task_id: int, reason: str) -> None:
        if self.account("failed", [task_id]):
            self.redis.rpush(f"{self.key}:failures", json.dumps({"task": task_id, "reason": reason}))
            self.redis.ltrim(f"{self.key}:failures", 0, MAX_FAILURES_KEPT - 1)

    def chunk_done(self, chunk: int) -> bool:
        done = self.redis.eval(
            _CHUNK_DONE, 3, f"{self.key}:pending", f"{self.key}:counts", f"{self.key}:meta", chunk, time.time()
        )
        if done:
            self._finished()
        return bool(done)

    def plan_done(self) -> bool:
        done = self.redis.eval(_PLAN_DONE, 2, f"{self.key}:pending", f"{self.key}:meta", time.time())
        if done:
            self._finished()
        return bool(done)

    def stop(self, reason: str) -> None:
        if self.meta().get("state") == "running":
            self.redis.hset(f"{self.key}:meta", mapping={"state": "stopped", "error": reason, "ended_at": time.time()})
            self._finished()

    def _finished(self) -> None:
        self.redis.srem(f"{PREFIX}:active", self.id)
        for suffix in ("meta", "counts", "failures", "accounted", "pending", "attempts", "touched", "started"):
            self.redis.expire(f"{self.key}:{suffix}", KEEP_S)
        for chunk in range(1, int(self.redis.hget(f"{self.key}:meta", "chunks_total") or 0) + 1):
            self.redis.expire(f"{self.key}:chunk:{chunk}", KEEP_S)
            self.redis.delete(f"{self.key}:chunk:{chunk}:tasks")  # the task data: not kept past the job

    # --- the queue -----------------------------------------------------------------------------
    def rq_id(self, chunk: int, attempt: int) -> str:
        return f"lsml-pa-{self.id}-{chunk}-{attempt}"

    def enqueue(self, queue: Any, chunk: int, attempt: int = 0) -> None:
        self.redis.hset(f"{self.key}:touched", chunk, time.time())
        queue.enqueue(
            run_chunk,
            self.id,
            chunk,
            job_id=self.rq_id(chunk, attempt),
            job_timeout=24 * 3600,
            result_ttl=600,
            failure_ttl=KEEP_S,
        )

    def touch(self, chunk: int) -> None:
        self.redis.hset(f"{self.key}:touched", chunk, time.time())

    def requeue_lost(self, queue: Any) -> int:
        """Put chunks back on the queue that are not done, not leased, not waiting on the queue, and
        untouched for a lease's time (their worker died, or gave up on LS); a chunk tried
        ``max_attempts`` times stops the job. Returns how many were requeued."""
        from rq.exceptions import NoSuchJobError
        from rq.job import Job

        if self.meta().get("state") != "running":
            return 0
        now, grace, requeued = time.time(), lease_seconds(), 0
        touched = {int(_text(k)): float(v) for k, v in self.redis.hgetall(f"{self.key}:touched").items()}
        for raw in self.redis.smembers(f"{self.key}:pending"):
            chunk = int(_text(raw))
            if now - touched.get(chunk, 0.0) < grace or self.redis.exists(f"{self.key}:lease:{chunk}"):
                continue
            attempt = int(self.redis.hget(f"{self.key}:attempts", chunk) or 0)
            try:
                status = Job.fetch(self.rq_id(chunk, attempt), connection=self.redis).get_status(refresh=True)
            except NoSuchJobError:
                status = None
            if status is not None and str(getattr(status, "value", status)) in ("queued", "deferred", "scheduled"):
                continue
            if not self.redis.eval(_CLAIM, 1, f"{self.key}:attempts", chunk, attempt):
                continue  # another requeuer got there first
            if attempt + 1 >= max_attempts():
                error = self.meta().get("last_error") or "its workers stopped"
                self.stop(f"chunk {chunk} failed {attempt + 1} times; last: {error}")
                return requeued
            logger.warning("pre-annotation job %s: chunk %d lost its worker; queued again", self.id, chunk)
            self.enqueue(queue, chunk, attempt + 1)
            requeued += 1
        return requeued


class RedisTally:
    """Outcomes counted once per task in Redis; failures logged and kept with the job."""

    def __init__(self, job: RedisJob) -> None:
        self.job = job

    def skipped(self, task_ids: list[int]) -> None:
        self.job.account("skipped", task_ids)

    def held(self, count: int) -> None:
        self.job.held(count)

    def done(self, task_ids: list[int]) -> None:
        self.job.account("done", task_ids)

    def failed(self, task_id: int, reason: str) -> None:
        logger.warning("pre-annotation job %s: task %s failed: %s", self.job.id, task_id, reason)
        self.job.fail_task(task_id, reason)


# --- planning ----------------------------------------------------------------------------------
def plan(job: RedisJob, client: Any, queue: Any, backoff: Backoff, reporter: Reporter | None = None) -> bool:
    """Page through the project from the job's cursor, put tasks lacking the version into chunks on
    the queue. Returns False when another live planner holds the job's planning lease."""
    meta = job.meta()
    if meta.get("planned") == "1":
        return True
    lease = Lease(job.redis, f"{job.key}:planner", lease_seconds())
    if not lease.acquire():
        return False
    try:
        reader = TaskReader(client, int(meta["project"]), meta["version"], backoff)
        page_size, chunk_size = int(meta["page_size"]), int(meta["chunk_size"])
        after = int(job.meta().get("cursor") or 0)
        waiting: list[dict[str, Any]] = []
        while True:
            page = reader.next_page(after, page_size)
            if after == 0:
                total, held = reader.counted(page)
                job.redis.hset(f"{job.key}:meta", "total", total)
                job.held(held)
            job.account("skipped", [int(t["id"]) for t in page.holding])  # done before the job: in no chunk
            waiting += page.lacking
            last = not page.more
            while len(waiting) >= chunk_size or (waiting and last):
                job.enqueue(queue, job.add_chunk(waiting[:chunk_size]))
                del waiting[:chunk_size]
            if last:
                break
            after = page.last_id
            if reporter is not None:
                reporter.update(job.counts())
        job.plan_done()
        return True
    finally:
        lease.release()


# --- the worker side ---------------------------------------------------------------------------
def run_chunk(job_id: str, chunk: int) -> str:
    """RQ entry point: pre-annotate one chunk in the worker process (model: LSML_MODEL_PATH)."""
    from rq import Queue

    from ..clients.ls_client import LabelStudioClient
    from ..engine.queue import _runtime
    from .predictors import InProcessPredictor

    runtime = _runtime()
    redis = runtime.store.client
    job = RedisJob(redis, job_id)
    meta = job.meta()
    if meta.get("state") != "running" or not job.is_pending(chunk):
        return "nothing to do"
    lease = Lease(redis, f"{job.key}:lease:{chunk}", lease_seconds(), on_renew=lambda: job.touch(chunk))
    if not lease.acquire():
        return "another worker has the chunk"
    queue = Queue(meta["queue"], connection=redis)
    try:
        settings = runtime.settings
        if not settings.label_studio_url or not settings.label_studio_api_key:
            job.stop("a worker has no LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY")
            return "stopped"
        client = LabelStudioClient(settings.label_studio_url, settings.label_studio_api_key, settings.verify_ssl)
        predictor = InProcessPredictor(runtime, meta["project"], meta["label_config"])
        if predictor.version != meta["version"]:
            job.stop(f"a worker serves model version {predictor.version}, the job {meta['version']}; run again")
            return "stopped"
        options = Options(batch_size=int(meta["batch_size"]), write_size=int(meta["chunk_size"]))  # one write a chunk
        work = Preannotator(
            client,
            int(meta["project"]),
            predictor,
            RedisTally(job),
            options,
            write_guard=lambda: writer_slot(redis, meta["project"], lease),
        )
        started = time.monotonic()
        planned = job.chunk_tasks(chunk)
        if planned is not None and job.first_start(chunk):
            work.predict(planned)  # as the planner read them: nothing of this chunk can be written yet
        else:  # an earlier attempt may have written some: read which still lack the version
            work.process(work.reader.tasks(job.chunk_ids(chunk)))
        work.flush()
        lease.check()
        finished = job.chunk_done(chunk)
        redis.delete(f"{job.key}:chunk:{chunk}:tasks")
        logger.info(
            "pre-annotation job %s: chunk %d done in %.1f s%s",
            job_id,
            chunk,
            time.monotonic() - started,
            "; job done" if finished else "",
        )
    except LeaseLost:
        logger.warning(
            "pre-annotation job %s: chunk %d: lease lost; leaving it to the worker that has it", job_id, chunk
        )
        return "lease lost"
    except JobStopped as exc:
        if not exc.retryable:
            job.stop(str(exc))
            return "stopped"
        redis.hset(f"{job.key}:meta", "last_error", str(exc))
        raise  # RQ records the failure; the chunk is requeued until max_attempts
    finally:
        lease.release()
        try:
            job.mirror(runtime.store)
        except Exception:
            logger.warning("could not copy job %s into the job index", job_id, exc_info=True)
    job.requeue_lost(queue)
    return "done"


def watch_leases(redis: Any, queue_names: set[str], stop: threading.Event) -> None:
    """A worker's background loop: requeue lost chunks of active jobs on its queues even while the
    queue is empty (the worker that had them was killed)."""
    from rq import Queue

    while not stop.wait(lease_seconds() / 2):
        try:
            for raw in redis.smembers(f"{PREFIX}:active"):
                job = RedisJob(redis, _text(raw))
                meta = job.meta()
                if not meta or meta.get("state") != "running":
                    redis.srem(f"{PREFIX}:active", _text(raw))
                elif meta.get("queue") in queue_names:
                    job.requeue_lost(Queue(meta["queue"], connection=redis))
        except Exception:
            logger.warning("lease watch failed; trying again", exc_info=True)


# --- the command side --------------------------------------------------------------------------
def start_job(
    runtime: Any, client: Any, project: int, label_config: str, options: Options
) -> tuple[RedisJob, bool, Any]:
    """(the job, True when it is an unfinished one of the same version resumed, its RQ queue)."""
    from rq import Queue

    from ..engine.protocol import SetupRequest

    version = runtime.setup(
        SetupRequest(project=str(project), schema=label_config, hostname=None, access_token=None, extra_params=None)
    )
    redis = runtime.store.client
    queue = Queue(preannotate_queue_name(runtime.model_class), connection=redis)
    latest = RedisJob.latest(redis, project)
    if latest is not None:
        meta = latest.meta()
        if meta.get("state") == "running" and meta.get("version") == version:
            return latest, True, queue
    job = RedisJob.create(redis, project, version, queue.name, client.url, label_config, options)
    save_record(runtime.store, str(project), job.public(), new=True)
    return job, False, queue
