"""engine/scheduling.py's WorkerThreads directly: the hand-off, the bound, lending and stopping."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from label_studio_ml.engine.scheduling import WorkerThreads


def _running(threads: WorkerThreads) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(threads.name + "-")]


def _wait_for(condition: object, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.fixture
def threads(request: pytest.FixtureRequest) -> object:
    pool = WorkerThreads(4, f"test-{request.node.name}", max_lent=2)
    yield pool
    pool.stop()
    _wait_for(lambda: not _running(pool))


def test_results_and_exceptions_come_back_to_the_caller(threads: WorkerThreads) -> None:
    def fail() -> None:
        raise KeyError("missing")

    async def main() -> None:
        assert await threads.run(lambda a, b: a + b, 2, 3) == 5
        with pytest.raises(KeyError, match="missing"):
            await threads.run(fail)

    asyncio.run(main())


def test_one_after_another_calls_reuse_the_thread_that_went_idle_last(threads: WorkerThreads) -> None:
    """A call wakes one idle thread, the warm one: with one queue shared by all, the threads took turns and
    every call woke a second thread too."""

    async def main() -> set[str]:
        names = set()
        await threads.run(time.sleep, 0)  # starts the threads
        for _ in range(50):
            while len(threads._idle) < threads.size:  # every thread waiting, the last one's call done
                await asyncio.sleep(0.001)
            names.add(await threads.run(lambda: threading.current_thread().name))
        return names

    assert len(asyncio.run(main())) == 1


def test_at_most_size_calls_run_at_once_and_the_rest_wait_their_turn(threads: WorkerThreads) -> None:
    """Threads are woken one at a time, each waking the next while calls are left: all of them get busy."""
    running, peak = [0], [0]
    lock = threading.Lock()

    def call(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return i

    async def main() -> list[int]:
        return list(await asyncio.gather(*(threads.run(call, i) for i in range(20))))

    assert asyncio.run(main()) == list(range(20))
    assert peak[0] == 4


def test_results_finished_together_wake_the_loop_once_and_each_reaches_its_caller(threads: WorkerThreads) -> None:
    """Results join their loop's list; only the first wakes the loop (one call_soon_threadsafe per list)."""
    release = threading.Event()
    wakeups = [0]

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        original = loop.call_soon_threadsafe

        def counting(*args: object) -> object:
            wakeups[0] += 1
            return original(*args)  # type: ignore[arg-type]

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        calls = [asyncio.ensure_future(threads.run(lambda i=i: release.wait(5) and i)) for i in range(4)]
        await asyncio.sleep(0.05)  # all four running and blocked
        release.set()
        time.sleep(0.1)  # the loop busy (not polling) while all four finish: their results pile up
        return list(await asyncio.gather(*calls))

    assert asyncio.run(main()) == [0, 1, 2, 3]
    assert wakeups[0] == 1


def test_a_cancelled_caller_or_a_closed_loop_leaves_the_threads_working(threads: WorkerThreads) -> None:
    release = threading.Event()

    async def cancelled() -> None:
        call = asyncio.ensure_future(threads.run(release.wait, 5))
        await asyncio.sleep(0.02)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    async def abandoned() -> None:
        asyncio.ensure_future(threads.run(release.wait, 5))
        await asyncio.sleep(0.02)  # asyncio.run closes this loop while the call still runs

    asyncio.run(cancelled())
    asyncio.run(abandoned())
    release.set()
    _wait_for(lambda: len(threads._idle) == threads.size)  # both calls ended in their threads
    assert not threads._finished  # nothing kept for the loops that went away

    async def again() -> int:
        return await threads.run(lambda: 7)

    assert asyncio.run(again()) == 7


def test_a_thread_waiting_on_the_network_lends_its_place_and_the_pool_shrinks_back(threads: WorkerThreads) -> None:
    release = threading.Event()

    def blocked() -> None:
        with threads.lending():
            release.wait(5)

    async def main() -> None:
        parked = [asyncio.ensure_future(threads.run(blocked)) for _ in range(4)]
        while threads.lent < 2:
            await asyncio.sleep(0.005)
        # every thread is parked, but two lent places take calls meanwhile (max_lent=2)
        assert await asyncio.wait_for(threads.run(lambda: "served"), 2) == "served"
        release.set()
        await asyncio.gather(*parked)

    asyncio.run(main())
    _wait_for(lambda: len(_running(threads)) == 4)
    assert threads.lent == 0


def test_lending_outside_a_worker_thread_changes_nothing(threads: WorkerThreads) -> None:
    with threads.lending():
        assert threads.lent == 0 and not _running(threads)


def test_stop_lets_running_calls_finish_then_every_thread_exits() -> None:
    pool = WorkerThreads(3, "test-stop")
    finished = []

    def slow(i: int) -> None:
        time.sleep(0.05)
        finished.append(i)

    async def main() -> None:
        calls = [asyncio.ensure_future(pool.run(slow, i)) for i in range(5)]
        await asyncio.sleep(0.01)
        pool.stop()
        await asyncio.gather(*calls)

    asyncio.run(main())
    assert sorted(finished) == list(range(5)), "queued calls still ran"
    _wait_for(lambda: not _running(pool))
