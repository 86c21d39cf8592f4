"""``label-studio-ml``: start, create, deploy, worker."""

from __future__ import annotations

import argparse
import os
import sys

from .loader import ModelClassError, load_model_class


def _fail(message: str) -> int:
    print(f"label-studio-ml: error: {message}", file=sys.stderr)
    return 2


def cmd_start(args: argparse.Namespace) -> int:
    from .server import port_free, serve

    if args.basic_auth_user:
        os.environ["BASIC_AUTH_USER"] = args.basic_auth_user
    if args.basic_auth_pass:
        os.environ["BASIC_AUTH_PASS"] = args.basic_auth_pass
    try:
        model_class = load_model_class(args.target)
    except ModelClassError as exc:
        return _fail(str(exc))
    except Exception as exc:  # an import error in the user's model file
        return _fail(f"cannot import the model from {args.target}: {type(exc).__name__}: {exc}")
    if not port_free(args.host, args.port):
        return _fail(f"port {args.port} on {args.host} is already in use; pick another with -p PORT")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="label-studio-ml",
                                     description="Serve machine-learning models to Label Studio.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    start = sub.add_parser("start", help="serve a model folder (model.py) on HTTP for Label Studio",
                           description="Serve a model with uvicorn. TARGET is a folder holding model.py, "
                                       "a FILE.py, or FILE.py:Class.")
    start.add_argument("target", metavar="TARGET")
    start.add_argument("-p", "--port", type=int, default=int(os.environ.get("PORT", "9090")),
                       help="port to listen on (default: $PORT or 9090)")
    start.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"),
                       help="address to bind (default: 0.0.0.0)")
    start.add_argument("--basic-auth-user", default=os.environ.get("ML_SERVER_BASIC_AUTH_USER"),
                       help="require HTTP basic auth with this user (env BASIC_AUTH_USER)")
    start.add_argument("--basic-auth-pass", default=os.environ.get("ML_SERVER_BASIC_AUTH_PASS"),
                       help="password for basic auth (env BASIC_AUTH_PASS)")
    start.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                       help="log level (default: $LOG_LEVEL or INFO)")
    start.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "1")),
                       help="server processes; >1 loads the model once per process (default: 1)")
    start.add_argument("--reload", action="store_true", help="restart on code changes (development)")
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
