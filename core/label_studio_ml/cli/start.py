"""``label-studio-ml start``: serve a model folder with uvicorn; and ``entry_point`` for ``_wsgi.py``."""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from typing import Any

from ..engine.loader import ModelClassError, load_model_class
from ..model import LabelStudioMLBase
from .console import Parser, Subcommands, add_basic_auth_options, add_subcommand, fail, port_free, where

HELP = """serve a model folder (model.py) on HTTP for Label Studio

Serve a model with uvicorn and print the URL to connect in Label Studio
(Project -> Settings -> Model -> Connect Model). The model loads in the background;
/health answers 503 until it is ready, and with the reason if loading failed.

examples:
  label-studio-ml start my_backend
  label-studio-ml start services/substring_matching -p 9091 --host 127.0.0.1
  label-studio-ml start my_models.py:SentimentModel --basic-auth-user ls --basic-auth-pass S3cret
"""


def cmd_start(args: argparse.Namespace) -> int:
    from ..config import Settings
    from ..server.serve import serve

    if args.workers < 1:
        return fail("--workers must be 1 or more")
    if args.basic_auth_user:
        os.environ["BASIC_AUTH_USER"] = args.basic_auth_user
    if args.basic_auth_pass:
        os.environ["BASIC_AUTH_PASS"] = args.basic_auth_pass
    settings = Settings.from_env()
    if bool(settings.basic_auth_user) != bool(settings.basic_auth_pass):  # half of it would serve without auth
        return fail(
            "basic auth needs a user and a password: pass --basic-auth-user and --basic-auth-pass "
            "(or set BASIC_AUTH_USER and BASIC_AUTH_PASS)"
        )
    try:
        model_class = load_model_class(args.target)
    except ModelClassError as exc:
        return fail(str(exc))
    except Exception as exc:  # an import error in the user's model file
        return fail(
            f"cannot import the model from {args.target}: {type(exc).__name__}: {exc}{where(exc)}; "
            f"install its requirements or fix the file"
        )
    if not port_free(args.host, args.port):
        return fail(f"port {args.port} on {args.host} is already in use; pick another with -p PORT")
    shown = "localhost" if args.host in ("0.0.0.0", "::") else args.host
    print(
        f"Serving {model_class.__name__} from {args.target}\n"
        f"Connect it in Label Studio (Settings -> Model -> Connect Model) with URL: http://{shown}:{args.port}",
        flush=True,
    )
    serve(
        args.target, host=args.host, port=args.port, workers=args.workers, reload=args.reload, log_level=args.log_level
    )
    return 0


def add_arguments(start: argparse.ArgumentParser) -> None:
    start.add_argument("target", metavar="TARGET", help="a folder holding model.py, a FILE.py, or FILE.py:Class")
    start.add_argument(
        "-p",
        "--port",
        type=int,
        default=int(os.environ.get("PORT", "9090")),
        help="port to listen on (default: $PORT or 9090)",
    )
    start.add_argument(
        "--host",
        default=os.environ.get("HOST", "0.0.0.0"),
        help="address to bind (default: $HOST or 0.0.0.0, all interfaces)",
    )
    add_basic_auth_options(start, "require HTTP basic auth with this user; give the same in the LS connection")
    start.add_argument(
        "--log-level",
        default=None,
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (default: $LOG_LEVEL or INFO)",
    )
    start.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WORKERS", "1")),
        metavar="N",
        help="server processes, each loading the model (default: $WORKERS or 1)",
    )
    start.add_argument("--reload", action="store_true", help="restart when the model's files change (development)")


def add_command(sub: Subcommands) -> None:
    add_arguments(add_subcommand(sub, "start", cmd_start, HELP))


def entry_point(model_class: type[LabelStudioMLBase], module_name: str) -> Any:
    """The one call of a generated ``_wsgi.py``: the ASGI app for ``uvicorn _wsgi:app``; when the file
    runs as a script (``python _wsgi.py -p 9090``), serves the class like ``label-studio-ml start``."""
    if module_name == "__main__":
        parser = Parser(prog=f"python {sys.argv[0]}", description="Serve this model like `label-studio-ml start`.")
        add_arguments(parser)
        target = f"{inspect.getfile(model_class)}:{model_class.__name__}"
        args = parser.parse_args([target, *sys.argv[1:]])
        sys.exit(cmd_start(args))
    from ..server.app import create_app

    return create_app(model_class, serving_process=True)
