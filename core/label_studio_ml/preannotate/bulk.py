"""Bulk pre-annotation: predict a whole LS project in batches and write the predictions back in bulk,
resumable at any point.

Label Studio is the only source of truth: a task is done when it holds a prediction of the version
being served. LS lists only the tasks lacking the version (or, where its filter cannot tell versions
apart, each page with its predictions' versions), those are predicted in batches and written in a
few large bulk calls. A rerun (or a resume after a crash) reads the same pages and does only what is
left; a write that failed midway is re-checked before it is tried again, so nothing is written twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..clients.ls_client import (
    TASK_FIELDS,
    LabelStudioAuthError,
    LabelStudioClient,
    LabelStudioError,
    LabelStudioNotFound,
    LabelStudioUnavailable,
    prediction_versions,
)
from ..clients.retrying import Backoff
from .predictors import PredictError, Predictor, PredictorUnavailable, VersionChanged
from .progress import Counts, Reporter

logger = logging.getLogger(__name__)

DROPPED = "Label Studio did not store the prediction (its label config check rejected it; see the LS log)"


class JobStopped(RuntimeError):
    """The job cannot go on now: one line saying why; what was written stays, a rerun resumes.
    ``retryable``: a dependency was unreachable (trying later may work), not a wrong token, a deleted
    project or a changed model version."""

    def __init__(self, reason: str, retryable: bool = False) -> None:
        super().__init__(reason)
        self.retryable = retryable


@dataclass(frozen=True)
class Options:
    batch_size: int = 16  # tasks per predict call
    # measured on LS 1.23.2 at 10,000 tasks (benchmarks/preannotate.py): each bulk call recounts the whole
    # project, so the import alone took 114 s in calls of 1,000, 78 s in calls of 2,000, 32 s in calls of 5,000
    page_size: int = 5000  # tasks per LS page read
    write_size: int = 5000  # predictions per bulk write
    chunk_size: int = 5000  # tasks per chunk a Redis worker takes (written in one call)
    flush_after_s: float = 30.0  # write what is predicted at least this often (a slow model loses less on a crash)
    backoff: Backoff = field(default_factory=Backoff)


class Tally(Protocol):
    """Where outcomes go: counts and a reporter in this process, or a job's state in Redis."""

    def skipped(self, task_ids: list[int]) -> None: ...
    def held(self, count: int) -> None: ...  # tasks holding the version at the start that LS counted, not listed
    def done(self, task_ids: list[int]) -> None: ...
    def failed(self, task_id: int, reason: str) -> None: ...


class LocalTally:
    """Counts in this process, from the predicting thread and the one talking to LS (hence the lock)."""

    def __init__(self, counts: Counts, reporter: Reporter | None = None) -> None:
        self.counts = counts
        self.reporter = reporter
        self.lock = threading.Lock()

    def skipped(self, task_ids: list[int]) -> None:
        self.held(len(task_ids))

    def held(self, count: int) -> None:
        with self.lock:
            self.counts.skipped += count

    def done(self, task_ids: list[int]) -> None:
        with self.lock:
            self.counts.done += len(task_ids)

    def failed(self, task_id: int, reason: str) -> None:
        with self.lock:
            self.counts.fail(task_id, reason)
            if self.reporter is not None:
                self.reporter.failure(task_id, reason)
            else:
                logger.warning("task %s failed: %s", task_id, reason)


def model_task(task: dict[str, Any]) -> dict[str, Any]:
    """What the model sees of a task (LS's list adds columns that /predict never carries)."""
    return {key: task[key] for key in TASK_FIELDS if key in task}


IDS_PER_READ = 100  # task ids per list query: they travel in the URL, which servers cap at a few KB


@dataclass
class Page:
    """One page of the project in id order: what to predict, what holds the version already, the last
    id LS looked at (the next page starts above it) and whether more may follow."""

    lacking: list[dict[str, Any]]
    holding: list[dict[str, Any]]
    last_id: int
    more: bool
    matched: int  # tasks above ``after`` LS matched: all of them, or with filtered pages those lacking the version


class TaskReader:
    """Reads one project's tasks and tells which hold ``version``. Every call is retried with
    ``backoff``; LS still unreachable after it, or the token or project gone, raises JobStopped."""

    def __init__(self, client: LabelStudioClient, project: int, version: str, backoff: Backoff) -> None:
        self.client = client
        self.project = int(project)
        self.version = version
        self.backoff = backoff
        self.filtered: bool | None = None  # pages filtered by LS (decided by the first page)
        self.held_before = True  # some task may hold the version already (False: LS said none does)

    def filter_is_exact(self) -> bool:
        """Whether LS's "versions do not contain" filter tells the version apart: it matches substrings
        (case-blind on SQLite), so no other version of the project may contain ours."""
        try:
            versions = self.call(lambda: self.client.model_versions(self.project), "reading the model versions")
        except LabelStudioError as exc:  # an LS without the endpoint: read the versions column instead
            logger.info("no model versions from Label Studio (%s); reading each page's versions", exc)
            return False
        self.held_before = versions.get(self.version, 0) > 0
        ours = self.version.lower()
        return not any(ours in other.lower() for other in versions if other != self.version)

    def next_page(self, after: int, size: int) -> Page:
        """The tasks with an id above ``after``, at most ``size`` of them listed. LS leaves out those
        holding the version where its filter is exact (measured on LS 1.23.2: a rerun's page of 5,000
        reads in 0.08 s instead of 1.6-2.3 s); elsewhere each page brings its versions column."""
        if self.filtered is None:
            self.filtered = self.filter_is_exact()
        lacking_version = self.version if self.filtered else None
        tasks, matched = self.call(
            lambda: self.client.task_page(self.project, after=after, size=size, lacking=lacking_version),
            "reading tasks",
        )
        holding, lacking = ([], tasks) if self.filtered else self.split(tasks)
        last = max((int(t["id"]) for t in tasks), default=after)
        return Page(lacking, holding, last, len(tasks) >= size, matched)  # a short page is the last

    def counted(self, first: Page) -> tuple[int, int]:
        """(the project's task count, how many of them held the version and no page lists) from the
        first page: with filtered pages, the tasks LS leaves out are counted, not listed."""
        if not self.filtered or not self.held_before:  # LS listed every task
            return first.matched, 0
        total = self.call(lambda: self.client.task_count(self.project), "counting tasks")
        return total, max(0, total - first.matched)

    def call(self, fn: Callable[[], Any], what: str) -> Any:
        try:
            return self.backoff.call(fn, (LabelStudioUnavailable,), what)
        except LabelStudioUnavailable as exc:
            raise JobStopped(f"{exc}; gave up after {self.backoff.tries} tries", retryable=True) from None
        except (LabelStudioAuthError, LabelStudioNotFound) as exc:
            raise JobStopped(str(exc)) from None

    def tasks(self, ids: list[int]) -> list[dict[str, Any]]:
        """The tasks ``ids`` (those still in the project), in id order."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), IDS_PER_READ):
            part = ids[start : start + IDS_PER_READ]
            found += self.call(
                lambda part=part: self.client.task_page(self.project, ids=part, size=len(part))[0], "reading tasks"
            )
        return sorted(found, key=lambda t: int(t["id"]))

    def split(self, tasks: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(tasks holding a prediction of the version, the others), exact even where the page's
        versions column was cut."""
        holding, lacking, unsure = [], [], []
        for task in tasks:
            versions = prediction_versions(task)
            if versions is None:
                unsure.append(task)
            else:
                (holding if self.version in versions else lacking).append(task)
        if unsure:
            full = self.call(
                lambda: self.client.tasks_with_predictions(self.project, [t["id"] for t in unsure]), "reading tasks"
            )
            have = {t["id"] for t in full if self.version in (prediction_versions(t) or set())}
            for task in unsure:
                (holding if task["id"] in have else lacking).append(task)
        return holding, lacking

    def ids_holding_version(self, ids: list[int]) -> set[int]:
        return {t["id"] for t in self.split(self.tasks(ids))[0]}


class Preannotator:
    """Predicts and writes one project's tasks with one predictor; ``process`` takes tasks as a task
    list page gives them (with their versions), ``flush`` writes what is left."""

    def __init__(
        self,
        client: LabelStudioClient,
        project: int,
        predictor: Predictor,
        tally: Tally,
        options: Options | None = None,
        write_guard: Callable[[], AbstractContextManager[object]] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.client = client
        self.project = int(project)
        self.predictor = predictor
        self.version = predictor.version
        self.tally = tally
        self.options = options or Options()
        # entered around each bulk write: e.g. wait for the project's writer slot, raise when a Redis lease was lost
        self.write_guard = write_guard or nullcontext
        self.stop = stop or threading.Event()
        self.pending: list[dict[str, Any]] = []
        self.flushed_at = time.monotonic()
        self.reader = TaskReader(client, self.project, self.version, self.options.backoff)
        self.ls: ThreadPoolExecutor | None = None  # during run(): the one thread that calls LS
        self.writing: Future[None] | None = None  # the bulk write handed to it last

    # --- predicting ----------------------------------------------------------------------------
    def process(self, tasks: list[dict[str, Any]]) -> None:
        holding, lacking = self.reader.split(tasks)
        if holding:
            self.tally.skipped([t["id"] for t in holding])
        self.predict(lacking)

    def predict(self, lacking: list[dict[str, Any]]) -> None:
        """Predict tasks known to lack the version (no check here), writing as ``write_size`` fills."""
        for start in range(0, len(lacking), self.options.batch_size):
            if self.stop.is_set():
                raise JobStopped("stopped on request")
            batch = [model_task(t) for t in lacking[start : start + self.options.batch_size]]
            for task, outcome in zip(batch, self.predict_isolated(batch)):
                if isinstance(outcome, str):
                    self.tally.failed(task["id"], outcome)
                else:
                    self.pending.append(
                        {
                            "task": task["id"],
                            "result": outcome.get("result") or [],
                            "score": outcome.get("score"),
                            "model_version": self.version,
                        }
                    )
            if len(self.pending) >= self.options.write_size or (
                self.pending and time.monotonic() - self.flushed_at >= self.options.flush_after_s
            ):
                self.flush()

    def predict_isolated(self, batch: list[dict[str, Any]]) -> list[dict[str, Any] | str]:
        """One prediction or failure reason per task: the batch, and when it fails each task alone, so
        a task the model cannot handle fails by itself."""
        try:
            predictions = self.options.backoff.call(
                lambda: self.predictor.predict(batch), (PredictorUnavailable,), f"predicting {len(batch)} tasks"
            )
        except PredictorUnavailable as exc:
            raise JobStopped(f"{exc}; gave up after {self.options.backoff.tries} tries", retryable=True) from None
        except VersionChanged as exc:
            raise JobStopped(f"{exc}; run again to pre-annotate with the new version") from None
        except Exception as exc:
            if len(batch) == 1:
                return [str(exc) if isinstance(exc, PredictError) else f"{type(exc).__name__}: {exc}"]
            logger.info("a batch of %d failed (%s); predicting its tasks one by one", len(batch), exc)
            return [self.predict_isolated([task])[0] for task in batch]
        return [str(p["error"]) if p.get("error") else p for p in predictions]

    # --- writing -------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write the predictions made so far, in bulk calls of at most ``write_size``."""
        self.flushed_at = time.monotonic()
        while self.pending:
            chunk = self.pending[: self.options.write_size]
            self.write(chunk)
            del self.pending[: len(chunk)]

    def write(self, predictions: list[dict[str, Any]]) -> None:
        """Write now, or during run() hand the write to the LS thread once the one before is done (so
        at most one waits: a model faster than LS is held back, not its predictions piled up)."""
        if self.ls is None:
            self.write_guarded(predictions)
            return
        self.settle()
        self.writing = self.ls.submit(self.write_guarded, predictions)

    def settle(self) -> None:
        """Wait for the write handed to the LS thread, raising what stopped it."""
        writing, self.writing = self.writing, None
        if writing is not None:
            writing.result()

    def write_guarded(self, predictions: list[dict[str, Any]]) -> None:
        with self.write_guard():
            self.write_now(predictions)

    def write_now(self, predictions: list[dict[str, Any]]) -> None:
        ids = [p["task"] for p in predictions]
        left = list(predictions)
        tried = [False]

        def send() -> int:
            if tried[0]:  # a failed call may have been stored before it failed: never write twice
                stored = self.reader.ids_holding_version([p["task"] for p in left])
                left[:] = [p for p in left if p["task"] not in stored]
            tried[0] = True
            return self.client.import_predictions(self.project, left) if left else 0

        try:
            created = self.reader.call(send, f"writing {len(predictions)} predictions")
        except LabelStudioError as exc:  # the whole call refused (e.g. a task deleted meanwhile): one by one
            logger.warning("bulk write refused (%s); writing %d predictions one by one", exc, len(left))
            self.write_one_by_one(left)
            written = [p["task"] for p in predictions if p not in left]
            if written:
                self.tally.done(written)
            return
        if created >= len(left):
            self.tally.done(ids)
            return
        stored = self.reader.ids_holding_version(ids)  # LS dropped some silently: find which
        self.tally.done([i for i in ids if i in stored])
        for task_id in ids:
            if task_id not in stored:
                self.tally.failed(task_id, DROPPED)

    def write_one_by_one(self, predictions: Iterable[dict[str, Any]]) -> None:
        for prediction in predictions:
            try:
                self.reader.call(lambda p=prediction: self.client.create_prediction(p), "writing a prediction")
            except LabelStudioError as exc:
                self.tally.failed(prediction["task"], str(exc))
            else:
                self.tally.done([prediction["task"]])

    # --- the whole project ---------------------------------------------------------------------
    def run(self, counts: Counts, reporter: Reporter | None = None) -> None:
        """Every task of the project, page by page in id order; ``counts.total`` from the first page.

        One thread asks LS for everything (the pages, then the writes, one call at a time: LS 1.23.2
        serves one well, and a read beside a write slowed both), while this one predicts: the next page
        is read, and the last one written, while the model works on the current one."""
        with ThreadPoolExecutor(1, thread_name_prefix="preannotate-ls") as ls:
            self.ls = ls
            try:
                self.run_pages(ls, counts, reporter)
                self.flush()
                self.settle()
            except BaseException:
                ls.shutdown(cancel_futures=True)  # what is queued is dropped, what was written stays
                raise
            finally:
                self.ls = None
        if reporter is not None:
            reporter.update(counts, force=True)

    def run_pages(self, ls: ThreadPoolExecutor, counts: Counts, reporter: Reporter | None) -> None:
        size = self.options.page_size
        upcoming = ls.submit(self.reader.next_page, 0, size)
        totals: Future[tuple[int, int]] | None = None
        while True:
            if self.stop.is_set():
                raise JobStopped("stopped on request")
            page = upcoming.result()
            first, totals = totals is None, totals or ls.submit(self.reader.counted, page)
            if page.more:  # a short page is the last: one more read would find nothing
                upcoming = ls.submit(self.reader.next_page, page.last_id, size)
            if page.holding:
                self.tally.skipped([t["id"] for t in page.holding])
            self.predict(page.lacking)
            if first:
                counts.total, held = totals.result()
                self.tally.held(held)
            if reporter is not None:
                reporter.update(counts)
            if not page.more:
                return


def check_access(client: LabelStudioClient, project: int, backoff: Backoff) -> dict[str, Any]:
    """The project, read before anything is predicted: a bad token (LabelStudioAuthError) or project
    id (LabelStudioNotFound) fails at once; LS down is tried again, then JobStopped."""
    try:
        return backoff.call(lambda: client.get_project(project), (LabelStudioUnavailable,), "reading the project")
    except LabelStudioUnavailable as exc:
        raise JobStopped(f"{exc}; gave up after {backoff.tries} tries", retryable=True) from None
