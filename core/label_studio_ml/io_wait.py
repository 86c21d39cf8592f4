"""Prediction threads waiting on the network hand their slot on, so slow media cannot take them all.

The app runs predictions in a worker pool of THREADS slots (an anyio CapacityLimiter). A task whose
media server is slow or hostile holds its thread for up to MEDIA_TIMEOUT; sixteen such tasks would
queue every other request behind them. While a thread waits on a download, the limiter gets one more
slot (up to ``max_lent`` at once), so the threads doing model work never exceed THREADS and the
threads parked on the network never block the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio.from_thread


class SlotLender:
    def __init__(self, limiter: Any, max_lent: int) -> None:
        self.limiter = limiter
        self.max_lent = max_lent
        self.lent = 0  # changed on the event loop only

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a blocking wait in a prediction thread; a no-op in any other thread."""
        try:
            lent = anyio.from_thread.run_sync(self._lend)
        except RuntimeError:  # not an anyio worker thread: a CLI run, a bulk job's own thread
            lent = False
        try:
            yield
        finally:
            if lent:
                anyio.from_thread.run_sync(self._take_back)

    def _lend(self) -> bool:
        if self.lent >= self.max_lent:
            return False
        self.lent += 1
        self.limiter.total_tokens += 1
        return True

    def _take_back(self) -> None:
        self.lent -= 1
        self.limiter.total_tokens -= 1
