"""Progress of a bulk job: a tqdm bar (tasks/s, ETA) on a terminal, one JSON line per interval
otherwise, and a summary at the end either way. Counts come in as a ``Counts``; the reporter only
shows them."""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Protocol

MAX_FAILURES_KEPT = 100  # failures (task id and reason) a job record keeps; the log has them all


@dataclass
class Counts:
    done: int = 0  # predictions written
    skipped: int = 0  # tasks that held a prediction of the version already
    failed: int = 0  # tasks the model failed on, or LS refused the prediction of
    total: int = 0  # tasks in the project when the job started
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return self.done + self.skipped + self.failed

    @property
    def worked(self) -> int:
        """Tasks the model ran on: a rate counts these, not skipped ones (those cost a page read)."""
        return self.done + self.failed

    def fail(self, task: int, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append({"task": task, "reason": reason})

    def public(self) -> dict[str, Any]:
        return asdict(self)


class Reporter(Protocol):
    def update(self, counts: Counts, force: bool = False) -> None: ...
    def failure(self, task: int, reason: str) -> None: ...
    def finish(self, counts: Counts, state: str, **extra: Any) -> None: ...


class Rate:
    """Tasks per second over the last ``window`` seconds, and the ETA for what is left."""

    def __init__(self, window: float = 30.0) -> None:
        self.window = window
        self.points: deque[tuple[float, int]] = deque()

    def add(self, handled: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.points.append((now, handled))
        while len(self.points) > 2 and now - self.points[0][0] > self.window:
            self.points.popleft()

    def per_second(self) -> float:
        if len(self.points) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self.points[0], self.points[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def eta(self, left: int) -> float | None:
        rate = self.per_second()
        return round(left / rate, 1) if rate > 0 else None


class JsonLines:
    """``{"event": "progress", ...}`` at most once per ``interval`` seconds, a line per failed task,
    and ``{"event": "summary", ...}`` at the end, on ``out`` (stdout)."""

    def __init__(self, out: IO[str] | None = None, interval: float = 2.0, **fields: Any) -> None:
        self.out = out or sys.stdout
        self.interval = interval
        self.fields = fields  # e.g. the job id and model version, in every line
        self.started = time.monotonic()
        self.last = 0.0
        self.rate = Rate()
        self.rate.add(0, self.started)  # the first line's rate is measured from the start, not 0.0
        self.shown: tuple[int, ...] | None = None

    def _emit(self, record: dict[str, Any]) -> None:
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    def update(self, counts: Counts, force: bool = False) -> None:
        now = time.monotonic()
        self.rate.add(counts.worked, now)
        shown = (counts.done, counts.skipped, counts.failed, counts.total)
        if (not force and now - self.last < self.interval) or shown == self.shown:
            return  # a forced last line equal to the one just printed is not printed again
        self.last, self.shown = now, shown
        self._emit(
            {
                "event": "progress",
                **self.fields,
                "done": counts.done,
                "skipped": counts.skipped,
                "failed": counts.failed,
                "total": counts.total,
                "tasks_per_s": round(self.rate.per_second(), 1),
                "eta_s": self.rate.eta(max(0, counts.total - counts.handled)),
            }
        )

    def failure(self, task: int, reason: str) -> None:
        self._emit({"event": "failed", **self.fields, "task": task, "reason": reason})

    def finish(self, counts: Counts, state: str, **extra: Any) -> None:
        elapsed = time.monotonic() - self.started
        self._emit(summary(counts, state, elapsed, **self.fields, **extra))


class TerminalBar:
    """A tqdm bar on stderr; failures print above it; the summary is one line on stdout."""

    def __init__(self, out: IO[str] | None = None, **fields: Any) -> None:
        from tqdm import tqdm

        self.out = out or sys.stdout
        self.fields = fields
        self.started = time.monotonic()
        self.bar = tqdm(total=0, unit="task", dynamic_ncols=True, desc=str(fields.get("model_version") or ""))

    def update(self, counts: Counts, force: bool = False) -> None:
        if self.bar.total != counts.total:
            self.bar.total = counts.total
        self.bar.set_postfix(done=counts.done, skipped=counts.skipped, failed=counts.failed, refresh=False)
        self.bar.update(counts.handled - self.bar.n)

    def failure(self, task: int, reason: str) -> None:
        self.bar.write(f"task {task} failed: {reason}", file=sys.stderr)

    def finish(self, counts: Counts, state: str, **extra: Any) -> None:
        self.bar.close()
        record = summary(counts, state, time.monotonic() - self.started, **self.fields, **extra)
        self.out.write(
            f"{state}: {record['done']} done, {record['skipped']} skipped, {record['failed']} failed "
            f"of {record['total']} in {record['elapsed_s']} s ({record['tasks_per_s']} tasks/s)\n"
        )
        self.out.flush()


def summary(counts: Counts, state: str, elapsed: float, **fields: Any) -> dict[str, Any]:
    return {
        "event": "summary",
        "state": state,
        **fields,
        "done": counts.done,
        "skipped": counts.skipped,
        "failed": counts.failed,
        "total": counts.total,
        "elapsed_s": round(elapsed, 2),
        "tasks_per_s": round(counts.worked / elapsed, 1) if elapsed > 0 else 0.0,
        "failures": counts.failures[:20],
    }


def make_reporter(json_lines: bool, interval: float = 2.0, **fields: Any) -> Reporter:
    """JSON lines when asked or when stdout is not a terminal; else the bar."""
    if json_lines or not sys.stdout.isatty():
        return JsonLines(interval=interval, **fields)
    return TerminalBar(**fields)
