"""Where a /predict runs: on the event loop or in a worker thread.

Handing a request to a worker thread and back costs about 200 us of CPU on a small machine: more
than a trivial model's whole predict, and it halves such a backend's throughput. Running predict on
the event loop saves that, but a slow predict there would stall /health and every other request.

So by default core measures: a model's first predicts run in worker threads, timed. Once the
fastest of them took under a millisecond of wall-clock time, and the model's CPU time for the batch
at hand (the fastest call, or the fastest per-task cost times the batch size) is also under a
millisecond, later batches run on the loop (interactive calls always run in threads: see
ModelRuntime.inline_instance). CPU time, because in a thread the wall-clock time of a busy server
is mostly waiting for the GIL; wall-clock time too, because a model that waits on I/O uses no CPU.
One inline predict that takes long moves the model back to threads for good. A model may decide
for itself with ``inline_predict = True`` (always on the loop) or ``False`` (always threads).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: predicts timed in worker threads before a model may run on the event loop
WARMUP_CALLS = 20
#: a batch runs on the loop only when the model's measured time for it stays below this
INLINE_BUDGET_S = 0.001
#: an inline predict slower than this sends the model back to worker threads for good. Not lower: an
#: inline call may wait several GIL switch intervals (5 ms each) for worker threads still finishing
#: earlier requests, and that says nothing about the model
DEMOTE_AFTER_S = 0.05


class InlinePolicy:
    def __init__(self, declared: bool | None, allowed: bool = True) -> None:
        """``declared``: the model's ``inline_predict``; ``allowed``: False when predict does
        blocking I/O core knows of (state in Redis), so that only a declared True runs inline."""
        self.declared = declared
        self.allowed = allowed
        self.calls = 0
        self.fastest_wall = float("inf")
        self.fastest_cpu = float("inf")
        self.fastest_cpu_per_task = float("inf")
        self.demoted = False
        self.announced = False
        self._lock = threading.Lock()

    @property
    def measuring(self) -> bool:
        """Whether ``record`` uses what it is given: not for a model that decided for itself."""
        return self.declared is None

    def inline(self, tasks: int) -> bool:
        if self.declared is not None:
            return self.declared
        expected_cpu = max(self.fastest_cpu, self.fastest_cpu_per_task * max(tasks, 1))
        inline = (
            self.allowed
            and not self.demoted
            and self.calls >= WARMUP_CALLS
            and self.fastest_wall < INLINE_BUDGET_S
            and expected_cpu < INLINE_BUDGET_S
        )
        if inline and not self.announced:
            self.announced = True
            logger.info(
                "predict measured at %.2f ms: batches run on the event loop from now on (see inline_predict)",
                1000 * max(self.fastest_wall, expected_cpu),
            )
        return inline

    def record(self, wall: float, cpu: float, tasks: int, inline: bool) -> None:
        """Wall-clock and thread CPU seconds of one predict of ``tasks`` tasks, run inline or not."""
        if self.declared is not None:
            return
        with self._lock:
            self.calls += 1
            self.fastest_wall = min(self.fastest_wall, wall)
            self.fastest_cpu = min(self.fastest_cpu, cpu)
            self.fastest_cpu_per_task = min(self.fastest_cpu_per_task, cpu / max(tasks, 1))
            if inline and wall > DEMOTE_AFTER_S and not self.demoted:
                self.demoted = True
                logger.info(
                    "predict took %.1f ms on the event loop: it runs in worker threads from now on", 1000 * wall
                )


class WorkerThreads:
    """A fixed set of daemon threads that run blocking calls for the event loop.

    The cheapest hand-off measured for /predict: a call goes on a backlog and one idle thread is woken
    through its own ``queue.SimpleQueue`` (in C; it wakes on a futex), the one that went idle last.
    Results go back in batches: a finished call joins its loop's list of results, and only the one that
    starts a list wakes the loop (``call_soon_threadsafe``), which settles the whole list. With 16
    requests in flight that woke the loop once per 2-3 calls and took a fifth off the CPU per request
    (291 -> 229 us, one 1-task /predict at a time per connection); with one request in flight it is
    the same one wake-up as before. A thread drains the backlog before it waits
    again, and wakes the next idle one while calls are left, so threads join one at a time as work piles
    up. Not one SimpleQueue shared by all threads: with several waiting on it, each call woke two (the one
    that took it passes the queue's lock on to the next waiter): 12 futex calls per /predict at one
    request in flight where this takes 4. Nor one queue per thread, each call waking an idle thread at
    once: with 16 requests in flight the woken threads queued for the GIL, 2-3 context switches per call
    where this takes 0.5. ``anyio.to_thread.run_sync`` and ``run_in_executor`` took more CPU per call
    (a ``queue.Queue`` with its Condition, a cancel scope and a capacity limiter; a shared SimpleQueue
    and a second future). ``size`` threads bound how many calls run at once, as a limiter would; a
    thread waiting on the network lends its place (``lending``). A cancelled caller stops waiting; its
    call still runs to the end.
    """

    def __init__(self, size: int, name: str, max_lent: int = 0) -> None:
        self.size = max(1, size)
        self.name = name
        self.max_lent = max_lent
        self.lent = 0
        self._idle: list[queue.SimpleQueue[None]] = []  # the waiting threads' wake-up queues, the last idle last
        self._waking = False  # an idle thread was woken and has not looked at the backlog yet
        self._backlog: deque[tuple[Any, ...] | None] = deque()  # calls no thread has taken yet
        self._started = False
        self._alive = 0
        self._leaving = 0  # exit markers handed out and not taken yet
        self._lock = threading.Lock()
        self._local = threading.local()
        #: per event loop, the results its pending callback will settle: (future, setter, value)
        self._finished: dict[asyncio.AbstractEventLoop, list[tuple[Any, ...]]] = {}

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        if not self._started:
            self._start(self.size)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._hand_over((loop, future, contextvars.copy_context(), func, args))
        return await future

    @contextmanager
    def lending(self) -> Iterator[None]:
        """Around a blocking wait in one of these threads (a media download): one more thread takes
        calls meanwhile, up to ``max_lent`` at once, so that threads parked on a slow or hostile server
        never hold up the rest. A no-op in any other thread (the event loop, a CLI run, a bulk job)."""
        lend = False
        if getattr(self._local, "worker", False):
            with self._lock:
                lend = self.lent < self.max_lent
                self.lent += lend
        if lend:
            self._start(1)
        try:
            yield
        finally:
            if lend:
                with self._lock:
                    self.lent -= 1
                    self._leaving += 1
                self._hand_over(None)  # one thread, whichever takes it next, exits: back to ``size``

    def _hand_over(self, job: tuple[Any, ...] | None) -> None:
        """A call (or an exit marker, None) to the backlog, and an idle thread woken for it unless one is
        being woken already."""
        with self._lock:
            self._backlog.append(job)
            inbox = self._wake_one()
        if inbox is not None:
            inbox.put(None)

    def _wake_one(self) -> queue.SimpleQueue[None] | None:
        """Under the lock: the queue of an idle thread to wake, if any and if none is being woken. One at a
        time: each woken thread wakes the next while calls are left (waking every idle one at once had
        them queue for the GIL: twice the context switches with 16 requests in flight)."""
        if self._waking or not self._idle:
            return None
        self._waking = True
        return self._idle.pop()

    def _next(self, inbox: queue.SimpleQueue[None]) -> tuple[Any, ...] | None:
        woken = False
        while True:
            with self._lock:
                if woken:
                    self._waking = False
                if self._backlog:
                    job = self._backlog.popleft()
                    other = self._wake_one() if self._backlog else None
                    break
                self._idle.append(inbox)
            inbox.get()
            woken = True
        if other is not None:
            other.put(None)
        return job

    def _start(self, count: int) -> None:
        with self._lock:
            self._started = True
            for _ in range(count):
                self._alive += 1
                threading.Thread(target=self._work, name=f"{self.name}-{self._alive}", daemon=True).start()

    def _work(self) -> None:
        self._local.worker = True
        inbox: queue.SimpleQueue[None] = queue.SimpleQueue()
        while (job := self._next(inbox)) is not None:
            loop, future, context, func, args = job
            try:
                outcome = (future.set_result, context.run(func, *args))
            except BaseException as exc:  # handed to the awaiting request, which raises it there
                outcome = (future.set_exception, exc)
            del job, func, args
            self._finish(loop, (future, *outcome))
        with self._lock:
            self._alive -= 1
            self._leaving -= 1

    def _finish(self, loop: asyncio.AbstractEventLoop, result: tuple[Any, ...]) -> None:
        """Hand a result back to its loop: onto the loop's list, waking the loop only for a new list."""
        with self._lock:
            waiting = self._finished.get(loop)
            if waiting is not None:
                waiting.append(result)
                return
            self._finished[loop] = [result]
        try:
            loop.call_soon_threadsafe(self._settle_finished, loop)
        except RuntimeError:  # the loop closed while the call ran: nobody waits any more
            with self._lock:
                self._finished.pop(loop, None)

    def _settle_finished(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            results = self._finished.pop(loop, ())
        for future, setter, value in results:
            if not future.done():  # done: the request was cancelled (e.g. the client went away)
                setter(value)

    def stop(self) -> None:
        """Let the threads finish their current call and exit."""
        with self._lock:
            staying, self._started = self._alive - self._leaving, False
            self._leaving += staying
        for _ in range(staying):
            self._hand_over(None)
