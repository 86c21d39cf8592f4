"""Logging set-up: one format, and secrets redacted from every record."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            redacted = message
            for secret in self.secrets:
                redacted = redacted.replace(secret, "***")
            if redacted != message:
                record.msg, record.args = redacted, None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                for secret in self.secrets:
                    record.exc_text = record.exc_text.replace(secret, "***")
        return True


def configure_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactSecrets(secrets))
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
