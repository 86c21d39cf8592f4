"""``label-studio-ml``: the entry module. Each subcommand lives in its own module (``start``,
``worker``, ``preannotate``, ``scaffold`` for create, ``deploy``) and hangs
off this parser through its ``add_command``; their shared helpers are in ``console``. Nothing
imports this module."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .. import __version__
from . import deploy, scaffold, start, worker
from . import preannotate as preannotate_command
from .console import Parser

SUBCOMMANDS = (start, worker, preannotate_command, scaffold, deploy)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="label-studio-ml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve machine-learning models to Label Studio (LS) over its ML backend protocol.",
        epilog="a new backend in three steps:\n"
        "  label-studio-ml create my_backend      # model.py, Dockerfile, compose, tests\n"
        "  label-studio-ml start my_backend       # prints the URL to connect in LS\n"
        "  pytest my_backend/test_api.py\n"
        "`label-studio-ml COMMAND --help` tells more.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    target = getattr(args, "target", None)
    if args.command in ("start", "worker", "preannotate") and target and not os.environ.get("MODEL_DIR"):
        # one default for the server, its worker and preannotate (and `make run`): a trained version is
        # then served and bulk-predicted alike, and state stays out of the checkout (model_dir/ is ignored)
        os.environ["MODEL_DIR"] = str(Path("model_dir") / service_name(target))
    return int(args.func(args) or 0)


def service_name(target: str) -> str:
    """``services/spacy`` -> ``spacy``; ``my_backend/model.py:Model`` -> ``my_backend``."""
    path = Path(target.split(":", 1)[0]).resolve()
    return (path.parent if path.suffix == ".py" else path).name


if __name__ == "__main__":
    sys.exit(main())
