"""``label-studio-ml``: start, create, deploy, worker."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from . import __version__
from .loader import ModelClassError, load_model_class


def fail(message: str) -> int:
    """One line on stderr saying what went wrong and what to do; exit status 2."""
    print(f"label-studio-ml: error: {message}", file=sys.stderr)
    return 2


_fail = fail  # the name other commands used


def _where(exc: BaseException) -> str:
    """`` (file.py line N)`` of the innermost frame of a traceback, to find an import error fast."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" ({Path(frames[-1].filename).name} line {frames[-1].lineno})" if frames else ""


def cmd_start(args: argparse.Namespace) -> int:
    from .config import Settings
    from .server import port_free, serve

    if args.workers < 1:
        return fail("--workers must be 1 or more")
    if args.basic_auth_user:
        os.environ["BASIC_AUTH_USER"] = args.basic_auth_user
    if args.basic_auth_pass:
        os.environ["BASIC_AUTH_PASS"] = args.basic_auth_pass
    settings = Settings.from_env()
    if bool(settings.basic_auth_user) != bool(settings.basic_auth_pass):  # half of it would serve without auth
        return fail("basic auth needs a user and a password: pass --basic-auth-user and --basic-auth-pass "
                    "(or set BASIC_AUTH_USER and BASIC_AUTH_PASS)")
    try:
        model_class = load_model_class(args.target)
    except ModelClassError as exc:
        return fail(str(exc))
    except Exception as exc:  # an import error in the user's model file
        return fail(f"cannot import the model from {args.target}: {type(exc).__name__}: {exc}{_where(exc)}; "
                    f"install its requirements or fix the file")
    if not port_free(args.host, args.port):
        return fail(f"port {args.port} on {args.host} is already in use; pick another with -p PORT")
    shown = "localhost" if args.host in ("0.0.0.0", "::") else args.host
    print(f"Serving {model_class.__name__} from {args.target}\n"
          f"Connect it in Label Studio (Settings -> Model -> Connect Model) with URL: http://{shown}:{args.port}",
          flush=True)
    serve(args.target, host=args.host, port=args.port, workers=args.workers, reload=args.reload,
          log_level=args.log_level)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from .queue import run_worker

    if not os.environ.get("REDIS_URL"):
        return _fail("the training worker needs REDIS_URL (e.g. redis://localhost:6379/0)")
    try:
        load_model_class(args.target)
    except ModelClassError as exc:
        return _fail(str(exc))
    return run_worker(args.target)


class Parser(argparse.ArgumentParser):
    """Usage errors in one line that say where to look (subcommands inherit the class)."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):  # name the options only: a value may be a secret
            message = "unrecognized arguments: " + " ".join(a for a in message.split()[2:] if a.startswith("-"))
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="label-studio-ml", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve machine-learning models to Label Studio (LS) over its ML backend protocol.",
        epilog="a new backend in three steps:\n"
               "  label-studio-ml create my_backend      # model.py, Dockerfile, compose, tests\n"
               "  label-studio-ml start my_backend       # prints the URL to connect in LS\n"
               "  pytest my_backend/test_api.py\n"
               "`label-studio-ml COMMAND --help` tells more.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    start = sub.add_parser(
        "start", help="serve a model folder (model.py) on HTTP for Label Studio",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve a model with uvicorn and print the URL to connect in Label Studio\n"
                    "(Project -> Settings -> Model -> Connect Model). The model loads in the background;\n"
                    "/health answers 503 until it is ready, and with the reason if loading failed.",
        epilog="examples:\n"
               "  label-studio-ml start my_backend\n"
               "  label-studio-ml start services/substring_matching -p 9091 --host 127.0.0.1\n"
               "  label-studio-ml start my_models.py:SentimentModel --basic-auth-user ls --basic-auth-pass S3cret")
    start.add_argument("target", metavar="TARGET", help="a folder holding model.py, a FILE.py, or FILE.py:Class")
    start.add_argument("-p", "--port", type=int, default=int(os.environ.get("PORT", "9090")),
                       help="port to listen on (default: $PORT or 9090)")
    start.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"),
                       help="address to bind (default: $HOST or 0.0.0.0, all interfaces)")
    start.add_argument("--basic-auth-user", metavar="U", default=os.environ.get("ML_SERVER_BASIC_AUTH_USER"),
                       help="require HTTP basic auth with this user; give the same in the LS connection "
                            "(env: BASIC_AUTH_USER)")
    start.add_argument("--basic-auth-pass", metavar="P", default=os.environ.get("ML_SERVER_BASIC_AUTH_PASS"),
                       help="password for basic auth (env: BASIC_AUTH_PASS, which keeps it out of `ps`)")
    start.add_argument("--log-level", default=None, type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                       help="log level (default: $LOG_LEVEL or INFO)")
    start.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "1")), metavar="N",
                       help="server processes, each loading the model (default: $WORKERS or 1)")
    start.add_argument("--reload", action="store_true", help="restart when the model's files change (development)")
    start.set_defaults(func=cmd_start)

    worker = sub.add_parser("worker", help="run training jobs from Redis (needs REDIS_URL)",
                            description="Run the RQ training worker for a model folder.")
    worker.add_argument("target", metavar="TARGET")
    worker.set_defaults(func=cmd_worker)

    from .scaffold import add_commands

    add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
