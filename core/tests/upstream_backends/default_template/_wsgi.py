import argparse
import json
import logging
import logging.config
import os

# the log level of the whole process: LOG_LEVEL, INFO by default
log_level = os.getenv("LOG_LEVEL", "INFO")

logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"standard": {"format": "[%(asctime)s] [%(levelname)s] [%(name)s] %(message)s"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "level": log_level,
                "stream": "ext://sys.stdout",
                "formatter": "standard",
            }
        },
        "root": {"level": log_level, "handlers": ["console"], "propagate": True},
    }
)

from label_studio_ml.api import init_app  # noqa: E402

from model import NewModel  # noqa: E402

_DEFAULT_CONFIG_PATH = os.path.join(os.path.dirname(__file__), "config.json")


def get_kwargs_from_config(config_path=_DEFAULT_CONFIG_PATH):
    if not os.path.exists(config_path):
        return {}
    with open(config_path) as f:
        config = json.load(f)
    assert isinstance(config, dict)
    return config


def typed(text):
    """KEY=VAL values: int, bool, float, else str."""
    if text.isdigit():
        return int(text)
    if text in ("True", "true", "False", "false"):
        return text in ("True", "true")
    try:
        return float(text)
    except ValueError:
        return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Label studio")
    parser.add_argument("-p", "--port", dest="port", type=int, default=9090, help="Server port")
    parser.add_argument("--host", dest="host", type=str, default="0.0.0.0", help="Server host")
    parser.add_argument(
        "--kwargs",
        "--with",
        dest="kwargs",
        metavar="KEY=VAL",
        nargs="+",
        type=lambda kv: kv.split("="),
        help="Additional LabelStudioMLBase model initialization kwargs",
    )
    parser.add_argument("-d", "--debug", dest="debug", action="store_true", help="Switch debug mode")
    parser.add_argument(
        "--log-level", dest="log_level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default=log_level
    )
    parser.add_argument("--model-dir", dest="model_dir", default=os.path.dirname(__file__))
    parser.add_argument("--check", dest="check", action="store_true", help="Validate model instance first")
    parser.add_argument("--basic-auth-user", default=os.environ.get("ML_SERVER_BASIC_AUTH_USER", None))
    parser.add_argument("--basic-auth-pass", default=os.environ.get("ML_SERVER_BASIC_AUTH_PASS", None))
    args = parser.parse_args()

    if args.log_level:
        logging.root.setLevel(args.log_level)

    kwargs = get_kwargs_from_config()
    if args.kwargs:
        kwargs.update({key: typed(value) for key, value in args.kwargs})

    if args.check:
        print('Check "' + NewModel.__name__ + '" instance creation..')
        model = NewModel(**kwargs)

    app = init_app(model_class=NewModel, basic_auth_user=args.basic_auth_user, basic_auth_pass=args.basic_auth_pass)
    app.run(host=args.host, port=args.port, debug=args.debug)

else:
    # for uWSGI use
    app = init_app(model_class=NewModel)
