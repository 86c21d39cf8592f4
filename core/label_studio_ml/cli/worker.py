"""``label-studio-ml worker``: run a model's training jobs and pre-annotation chunks from Redis."""

from __future__ import annotations

import argparse
import logging
import os
import threading
from pathlib import Path

from ..engine.loader import ModelClassError, load_model_class
from .console import Subcommands, add_subcommand, fail

logger = logging.getLogger(__name__)
HELP = """run training jobs and pre-annotation chunks from Redis (needs REDIS_URL)

Run the RQ worker for a model folder: training jobs, and chunks of `preannotate` jobs
(those need LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY).
"""


def run_worker(target: str | Path) -> int:
    """An RQ worker that keeps the model loaded between jobs: training jobs, and chunks of bulk
    pre-annotation jobs; meanwhile a thread requeues chunks whose worker died."""
    from rq import Queue, SimpleWorker

    from ..config import Settings
    from ..engine.queue import RedisTrainingQueue, _runtime, queue_name, watch_training
    from ..preannotate.redis_queue import preannotate_queue_name, watch_leases
    from ..server.logs import configure_logging
    from ..state.storage import RedisStore

    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.secrets)
    path = str(Path(target).resolve())
    os.environ["LSML_MODEL_PATH"] = path
    model_class = load_model_class(path)
    store = RedisStore(settings.redis_url)
    _runtime(path)  # load before taking jobs
    names = (queue_name(model_class), preannotate_queue_name(model_class))
    queues = [Queue(name, connection=store.client) for name in names]
    stop = threading.Event()
    watcher = threading.Thread(target=watch_leases, args=(store.client, set(names), stop), daemon=True)
    watcher.start()
    training = RedisTrainingQueue(settings, model_class)
    threading.Thread(target=watch_training, args=(training, stop), name="training-leases", daemon=True).start()
    logger.info("worker for %s listening on queues %s", model_class.__name__, ", ".join(names))
    try:
        SimpleWorker(queues, connection=store.client).work(with_scheduler=False)
    finally:
        stop.set()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    if not os.environ.get("REDIS_URL"):
        return fail("the worker needs REDIS_URL (e.g. redis://localhost:6379/0)")
    try:
        load_model_class(args.target)
    except ModelClassError as exc:
        return fail(str(exc))
    return run_worker(args.target)


def add_command(sub: Subcommands) -> None:
    add_subcommand(sub, "worker", cmd_worker, HELP).add_argument("target", metavar="TARGET")
