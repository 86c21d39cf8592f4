"""Logging set-up: one format, and secrets redacted from every record."""

from __future__ import annotations

import logging
import time
import traceback
from collections import deque
from collections.abc import Iterable
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            redacted = self.redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self.redact(record.exc_text)
        return True


class RecentErrors(logging.Handler):
    """The last ``size`` WARNING-or-worse records, redacted like the log output, for the status page."""

    def __init__(self, secrets: Iterable[str], size: int = 50) -> None:
        super().__init__(logging.WARNING)
        self.redaction = RedactSecrets(secrets)
        self.addFilter(self.redaction)
        self._records: deque[dict[str, Any]] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        exception = ""
        if record.exc_text:  # set and redacted by the filter when there are secrets
            exception = record.exc_text.strip().splitlines()[-1]
        elif record.exc_info and record.exc_info[1] is not None:
            exception = self.redaction.redact(traceback.format_exception_only(record.exc_info[1])[-1].strip())
        self._records.append(
            {
                "time": record.created,
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
                "exception": exception,
            }
        )

    def recent(self) -> list[dict[str, Any]]:
        """Newest first."""
        return list(reversed(self._records))


def configure_logging(level: str = "INFO", secrets: Iterable[str] = (), lean_records: bool = True) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactSecrets(secrets))
    if lean_records:  # not under another server (gunicorn), whose own formats print process ids
        # FORMAT uses none of these; skipping them makes each record (one per /predict) cheaper. No
        # _srcfile: records skip the stack walk that finds the caller's file and line (logging HOWTO,
        # "Optimization")
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
        logging._srcfile = None  # type: ignore[attr-defined]
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel("WARNING")


class RequestLog:
    """One INFO line per request while requests come at a human pace; above ``per_second`` lines in a
    second the rest are counted, and the next line says how many went unlogged (a log line costs
    as much CPU as a fast model's whole request)."""

    def __init__(self, logger: logging.Logger, per_second: int = 10) -> None:
        self.logger = logger
        self.per_second = per_second
        self.window_started = 0.0
        self.logged = 0
        self.unlogged = 0

    def info(self, message: str, *args: Any) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        now = time.monotonic()
        if now - self.window_started >= 1.0:
            if self.unlogged:
                self.logger.info("... %d more request(s) like these, not logged one by one", self.unlogged)
            self.window_started, self.logged, self.unlogged = now, 0, 0
        if self.logged < self.per_second:
            self.logged += 1
            self.logger.info(message, *args)
        else:
            self.unlogged += 1
