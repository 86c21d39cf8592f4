"""``label-studio-ml``: the entry module. Each subcommand lives in its own module (``start``,
``worker``, ``preannotate_command`` for preannotate, ``scaffold`` for create, ``deploy``) and hangs
off this parser through its ``add_command``; their shared helpers are in ``console``. Nothing
imports this module."""

from __future__ import annotations

import argparse
import sys

from . import __version__, deploy, preannotate_command, scaffold, start, worker
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
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
