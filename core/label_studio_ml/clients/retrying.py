"""Retry with exponential backoff, bounded in tries and in total sleep: a flaky dependency gets a few
chances, a dead one stops the caller within a known time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    tries: int = 5  # calls in all, the first included
    delay: float = 1.0  # seconds before the second call; doubles after each failure
    max_delay: float = 30.0

    def delays(self) -> list[float]:
        return [min(self.max_delay, self.delay * 2**n) for n in range(max(0, self.tries - 1))]

    def call(
        self,
        fn: Callable[[], T],
        retry_on: tuple[type[BaseException], ...],
        what: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """``fn()``; on ``retry_on`` errors sleep and call again, at most ``tries`` times in all, then
        re-raise the last error."""
        for wait in [*self.delays(), None]:
            try:
                return fn()
            except retry_on as exc:
                if wait is None:
                    raise
                logger.info("%s failed (%s); trying again in %.1f s", what, exc, wait)
                sleep(wait)
        raise AssertionError("unreachable")  # the loop returns or raises
