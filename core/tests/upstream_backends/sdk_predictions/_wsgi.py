import sys

from label_studio_ml.api import init_app

from model import LengthClassifier

app = init_app(LengthClassifier)

if __name__ == "__main__":
    port = int(sys.argv[sys.argv.index("-p") + 1]) if "-p" in sys.argv else 9090
    app.run(host="127.0.0.1", port=port)
