import argparse
import logging
import os

from label_studio_ml.api import init_app

from model import SubstringMatcher

logging.basicConfig(level=os.getenv("LOG_LEVEL", "INFO"))

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Label studio")
    parser.add_argument("-p", "--port", type=int, default=9090)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("-d", "--debug", action="store_true")
    args = parser.parse_args()
    app = init_app(model_class=SubstringMatcher)
    app.run(host=args.host, port=args.port, debug=args.debug)
else:
    app = init_app(model_class=SubstringMatcher)
