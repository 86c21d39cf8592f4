"""Webhooks that arrive while Redis is unreachable: kept on disk under MODEL_DIR, replayed when it returns.

LS sends each webhook once. One file per event (written atomically, fsynced), named so that a listing
is arrival order; a replica replays a file after renaming it to its own claim, so replicas sharing
MODEL_DIR replay each event once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import StateUnavailable
from ..state.storage import atomic_write
from ..training.jobs import process_alive

logger = logging.getLogger(__name__)

Replay = Callable[[dict[str, Any], bool], object]


class WebhookSpool:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def keep(self, body: dict[str, Any], authenticated: bool) -> str:
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
        atomic_write(self.folder / name, json.dumps({"body": body, "authenticated": authenticated}).encode())
        logger.warning("Redis is unreachable: webhook %s kept as %s until it returns", body.get("action"), name)
        return name

    def pending(self) -> list[Path]:
        return sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []

    def replay(self, handle: Replay) -> int:
        """``handle(body, authenticated)`` for each kept event, oldest first; stops at the first that finds
        Redis still away (that one and the rest stay). Returns how many were replayed."""
        done = 0
        for path in self.pending():
            claim = path.with_name(f"{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:6]}.claimed")
            try:
                os.rename(path, claim)
            except FileNotFoundError:
                continue  # another replica took it
            try:
                record = json.loads(claim.read_bytes())
                handle(record["body"], bool(record["authenticated"]))
            except StateUnavailable:
                os.rename(claim, path)
                break
            except Exception:
                logger.exception("kept webhook %s could not be replayed; left as %s", path.name, claim.name)
                continue
            claim.unlink()
            done += 1
        if done:
            logger.warning("replayed %d webhook(s) kept while Redis was unreachable", done)
        return done

    def reclaim(self) -> None:
        """Claims of a process that ended before replaying them go back to the queue."""
        for claim in self.folder.glob("*.claimed") if self.folder.is_dir() else []:
            pid = claim.name.split(".")[1]
            if pid.isdigit() and not process_alive(int(pid)):
                os.replace(claim, claim.with_name(claim.name.split(".", 1)[0] + ".json"))

    def run(self, handle: Replay, ready: Callable[[], bool], stop: threading.Event, every: float = 1.0) -> None:
        """Replay whenever ``ready()`` (Redis answers) and events are waiting, until ``stop`` is set."""
        self.reclaim()
        while not stop.wait(every):
            try:
                if self.pending() and ready():
                    self.replay(handle)
            except Exception:
                logger.exception("webhook replay failed; trying again")
