"""``label-studio-ml preannotate``: predict a whole LS project, with the model in this process
(``SERVICE_DIR``), a running backend (``--backend URL``), or workers taking chunks from Redis
(``SERVICE_DIR`` with ``REDIS_URL``). Exit 0 when every task was handled, 1 when the job stopped
(rerun to resume), 2 on a usage, token or project error (before anything was predicted)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

from ..model import LabelStudioMLBase
from .console import Subcommands, add_basic_auth_options, add_subcommand, fail, where

STOPPED = 1
logger = logging.getLogger(__name__)
HELP = """predict a whole LS project in batches and write the predictions back (resumable)

Pre-annotate every task of a Label Studio project that lacks a prediction of the model
version being served: in this process (SERVICE_DIR), through a running backend (--backend),
or on `label-studio-ml worker` processes when REDIS_URL is set. Reads LABEL_STUDIO_URL and
LABEL_STUDIO_API_KEY. Rerun to resume: tasks already done are skipped.

examples:
  label-studio-ml preannotate services/spacy --project 12
  label-studio-ml preannotate --backend http://localhost:9090 --project 12 --json
  REDIS_URL=redis://localhost:6379/0 label-studio-ml preannotate services/spacy --project 12
  REDIS_URL=redis://localhost:6379/0 label-studio-ml preannotate --status 3f2a9c1b7d4e
"""


def stopped(reason: str, done: int | None = None) -> int:
    """The one line a stopped job prints (stderr), and its exit status."""
    so_far = f"; {done} written so far" if done is not None else ""
    print(f"label-studio-ml: stopped: {reason}{so_far}; run the same command again to resume", file=sys.stderr)
    return STOPPED


def cmd_preannotate(args: argparse.Namespace) -> int:
    from ..config import Settings
    from ..server.logs import configure_logging

    settings = Settings.from_env()
    configure_logging(os.environ.get("LOG_LEVEL", "WARNING").upper(), settings.secrets)
    # a failed task is reported once, by the job (with its id and reason), not also by the runtime
    logging.getLogger("label_studio_ml.engine.runtime.failures").setLevel(logging.CRITICAL)
    if args.status:
        return show_status(args.status, settings.redis_url)
    if (args.target is None) == (args.backend is None):
        return fail("give a model folder (SERVICE_DIR) or --backend URL, not both nor neither")
    if args.project is None:
        return fail("--project ID is required")
    for name in ("batch_size", "page_size", "chunk_size", "retries"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return fail(f"--{name.replace('_', '-')} must be 1 or more")
    if not settings.label_studio_url or not settings.label_studio_api_key:
        return fail("set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (a legacy token or a personal access token)")
    return run(args, settings)


@dataclass
class Setup:
    """What ``run`` settled before predicting anything: the job runs here or on the workers from it."""

    args: argparse.Namespace
    settings: Any
    client: Any
    model_class: type[LabelStudioMLBase]
    label_config: str
    options: Any


def run(args: argparse.Namespace, settings: Any) -> int:
    from ..clients.ls_client import LabelStudioAuthError, LabelStudioClient, LabelStudioNotFound
    from ..clients.retrying import Backoff
    from ..engine.loader import ModelClassError, load_model_class
    from ..preannotate.bulk import JobStopped, Options, check_access

    backoff = Backoff(tries=args.retries, delay=args.retry_delay)
    try:
        client = LabelStudioClient(settings.label_studio_url, settings.label_studio_api_key, settings.verify_ssl)
        project = check_access(client, args.project, backoff)
    except ValueError as exc:
        return fail(str(exc))
    except (LabelStudioAuthError, LabelStudioNotFound) as exc:
        return fail(str(exc))
    except JobStopped as exc:
        return stopped(str(exc))
    label_config = str(project.get("label_config") or "")
    model_class: type[LabelStudioMLBase] = LabelStudioMLBase
    if args.target is not None:
        try:
            model_class = load_model_class(args.target)
        except ModelClassError as exc:
            return fail(str(exc))
        except Exception as exc:  # an import error in the user's model file
            return fail(f"cannot import the model from {args.target}: {type(exc).__name__}: {exc}{where(exc)}")
    page_size = args.page_size or Options.page_size
    options = Options(
        batch_size=args.batch_size or model_class.predict_batch_size,
        page_size=page_size,
        write_size=page_size,
        chunk_size=args.chunk_size or Options.chunk_size,
        backoff=backoff,
    )
    setup = Setup(args, settings, client, model_class, label_config, options)
    return run_distributed(setup) if args.target is not None and settings.redis_url else run_here(setup)


def run_here(setup: Setup) -> int:
    """Pages, predicts and writes in this process, with a loaded model or a backend over HTTP."""
    from ..engine.runtime import ModelRuntime
    from ..preannotate.bulk import JobStopped, LocalTally, Preannotator
    from ..preannotate.predictors import HttpPredictor, InProcessPredictor, Predictor, PredictorUnavailable
    from ..preannotate.progress import Counts, make_reporter

    args, options = setup.args, setup.options
    project = str(args.project)
    predictor: Predictor
    try:
        if args.backend is not None:
            auth = (args.basic_auth_user, args.basic_auth_pass) if args.basic_auth_user else None
            predictor = options.backoff.call(
                lambda: HttpPredictor(args.backend, project, setup.label_config, auth=auth),
                (PredictorUnavailable,),
                "asking the backend for its model version",
            )
        else:
            runtime = ModelRuntime(setup.model_class, setup.settings)
            runtime.load()
            if runtime.state != "ready":
                return fail(runtime.error or "the model did not load")
            predictor = InProcessPredictor(runtime, project, setup.label_config)
    except PredictorUnavailable as exc:
        return stopped(f"{exc}; gave up after {options.backoff.tries} tries")
    except PermissionError as exc:
        return fail(str(exc))
    counts = Counts()
    reporter = make_reporter(args.json, args.progress_interval, project=args.project, model_version=predictor.version)
    job = Preannotator(setup.client, args.project, predictor, LocalTally(counts, reporter), options)
    try:
        job.run(counts, reporter)
    except JobStopped as exc:
        reporter.finish(counts, "stopped", reason=str(exc))
        return stopped(str(exc), counts.done)
    except KeyboardInterrupt:
        reporter.finish(counts, "stopped", reason="interrupted")
        return stopped("interrupted", counts.done)
    reporter.finish(counts, "done")
    return 0


def run_distributed(setup: Setup) -> int:
    """``preannotate SERVICE_DIR`` with REDIS_URL: plan (or resume) the job, then wait for the workers,
    showing progress and requeueing chunks of dead workers."""
    from ..engine.runtime import ModelRuntime
    from ..preannotate.bulk import JobStopped
    from ..preannotate.progress import make_reporter
    from ..preannotate.redis_queue import plan, start_job

    args = setup.args
    runtime = ModelRuntime(setup.model_class, setup.settings)  # no load: planning needs the version only
    job, resumed, queue = start_job(runtime, setup.client, args.project, setup.label_config, setup.options)
    meta = job.meta()
    reporter = make_reporter(
        args.json, args.progress_interval, job=job.id, project=args.project, model_version=meta["version"]
    )
    if resumed:
        logger.warning("resuming pre-annotation job %s (see it with --status %s)", job.id, job.id)
    try:
        if not plan(job, setup.client, queue, setup.options.backoff, reporter):
            logger.warning("another process is planning job %s; waiting for the workers", job.id)
        return wait(job, queue, runtime.store, reporter)
    except JobStopped as exc:
        job.stop(str(exc))
        reporter.finish(job.counts(), "stopped", reason=str(exc))
        return stopped(f"{exc} (job {job.id})")
    except KeyboardInterrupt:
        reporter.finish(job.counts(), "stopped", reason="interrupted")
        return stopped(f"interrupted; the workers go on with job {job.id}")


def wait(job: Any, queue: Any, store: Any, reporter: Any) -> int:
    """Until the job is done (0) or stopped (1): progress from Redis; chunks of dead workers requeued."""
    import time

    from rq import Worker

    from ..preannotate.redis_queue import lease_seconds

    last_scan, hinted = 0.0, False
    while True:
        meta = job.meta()
        counts = job.counts()
        reporter.update(counts)
        if meta.get("state") == "done":
            job.mirror(store)
            reporter.finish(counts, "done")
            return 0
        if meta.get("state") != "running":
            reason = meta.get("error") or meta.get("state", "stopped")
            reporter.finish(counts, "stopped", reason=reason)
            return stopped(f"{reason} (job {job.id})", counts.done)
        if time.monotonic() - last_scan > lease_seconds() / 2:
            last_scan = time.monotonic()
            job.requeue_lost(queue)
            if not hinted and not Worker.all(queue=queue):
                hinted = True
                logger.warning("no worker listens on %s yet: start `label-studio-ml worker SERVICE_DIR`", queue.name)
        time.sleep(0.5)


def show_status(job_id: str, redis_url: str) -> int:
    """``--status JOB``: the job's state from Redis as one JSON object."""
    if not redis_url:
        return fail("--status reads the job from Redis: set REDIS_URL")
    from ..preannotate.redis_queue import RedisJob

    record = RedisJob.open(redis_url, job_id)
    if record is None:
        return fail(f"no pre-annotation job {job_id!r} in Redis")
    print(json.dumps(record.public()))
    return 0


def add_command(sub: Subcommands) -> None:
    cmd = add_subcommand(sub, "preannotate", cmd_preannotate, HELP)
    cmd.add_argument("target", metavar="SERVICE_DIR", nargs="?", help="a folder holding model.py, or FILE.py[:Class]")
    cmd.add_argument("--backend", metavar="URL", help="a running backend to call instead of loading the model")
    cmd.add_argument("--project", type=int, metavar="ID", help="the Label Studio project id")
    cmd.add_argument(
        "--batch-size", type=int, metavar="N", help="tasks per predict call (default: the model's predict_batch_size)"
    )
    # defaults in preannotate.Options (not imported here: `label-studio-ml start` would pay for it)
    cmd.add_argument(
        "--page-size", type=int, metavar="N", help="tasks per LS page read and per bulk write (default 5000)"
    )
    cmd.add_argument("--chunk-size", type=int, metavar="N", help="tasks per Redis chunk a worker takes (default 5000)")
    cmd.add_argument("--status", metavar="JOB", help="print a Redis job's state as JSON and exit")
    cmd.add_argument("--json", action="store_true", help="JSON lines even on a terminal")
    cmd.add_argument(
        "--progress-interval", type=float, default=2.0, metavar="S", help="seconds between JSON progress lines"
    )
    cmd.add_argument("--retries", type=int, default=5, metavar="N", help="tries per LS or backend call (default 5)")
    cmd.add_argument(
        "--retry-delay", type=float, default=1.0, metavar="S", help="first wait between tries, doubling (default 1)"
    )
    add_basic_auth_options(cmd, "the backend's basic auth user, with --backend")
