"""``label-studio-ml worker``: run a model's training jobs from the Redis queue."""

from __future__ import annotations

import argparse
import os

from .console import Subcommands, fail
from .loader import ModelClassError, load_model_class


def cmd_worker(args: argparse.Namespace) -> int:
    from .queue import run_worker

    if not os.environ.get("REDIS_URL"):
        return fail("the training worker needs REDIS_URL (e.g. redis://localhost:6379/0)")
    try:
        load_model_class(args.target)
    except ModelClassError as exc:
        return fail(str(exc))
    return run_worker(args.target)


def add_command(sub: Subcommands) -> None:
    worker = sub.add_parser(
        "worker",
        help="run training jobs from Redis (needs REDIS_URL)",
        description="Run the RQ training worker for a model folder.",
    )
    worker.add_argument("target", metavar="TARGET")
    worker.set_defaults(func=cmd_worker)
