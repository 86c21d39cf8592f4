"""What every ``label-studio-ml`` subcommand shares: one-line failures, a parser whose usage errors
are one line, the parser of a subcommand built from its help text, and the free-port check.
Subcommand modules import this; it imports none of them."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn


def fail(message: str) -> int:
    """One line on stderr saying what went wrong and what to do; exit status 2."""
    print(f"label-studio-ml: error: {message}", file=sys.stderr)
    return 2


def where(exc: BaseException) -> str:
    """`` (file.py line N)`` of the innermost frame of a traceback, to find an import error fast."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" ({Path(frames[-1].filename).name} line {frames[-1].lineno})" if frames else ""


def add_basic_auth_options(parser: argparse.ArgumentParser, user_help: str) -> None:
    """``--basic-auth-user``/``--basic-auth-pass``, defaulting to ML_SERVER_BASIC_AUTH_USER/_PASS as the
    server reads them: ``start`` requires them of callers, ``preannotate --backend`` sends them."""
    parser.add_argument(
        "--basic-auth-user",
        metavar="U",
        default=os.environ.get("ML_SERVER_BASIC_AUTH_USER"),
        help=f"{user_help} (env: ML_SERVER_BASIC_AUTH_USER)",
    )
    parser.add_argument(
        "--basic-auth-pass",
        metavar="P",
        default=os.environ.get("ML_SERVER_BASIC_AUTH_PASS"),
        help="its password (env: ML_SERVER_BASIC_AUTH_PASS, which keeps it out of `ps`)",
    )


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class Parser(argparse.ArgumentParser):
    """Usage errors in one line that say where to look (subcommands inherit the class)."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):  # name the options only: a value may be a secret
            message = "unrecognized arguments: " + " ".join(a for a in message.split()[2:] if a.startswith("-"))
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


Subcommands = argparse._SubParsersAction  # what ``add_command(sub)`` of each subcommand module receives
Handler = Callable[[argparse.Namespace], int]


def add_subcommand(sub: Subcommands, name: str, handler: Handler, texts: str) -> argparse.ArgumentParser:
    """The parser of ``label-studio-ml ... NAME``, which runs ``handler``. ``texts`` is its help laid
    out as ``--help`` shows it: a first line for the parent's list of commands, then paragraphs of
    description, and a last paragraph that starts with ``example`` for the epilog. (A string, not the
    handler's docstring: ``python -OO`` drops docstrings.)"""
    summary, *paragraphs = texts.strip().split("\n\n")
    examples = paragraphs.pop() if paragraphs and paragraphs[-1].startswith("example") else None
    parser = sub.add_parser(
        name,
        help=summary,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="\n\n".join(paragraphs) or None,
        epilog=examples,
    )
    parser.set_defaults(func=handler)
    return parser
