import os

from label_studio_ml.api import init_app

from model import KeywordClassifier

# one app for both uses: gunicorn imports it, `python _wsgi.py` runs it
app = init_app(
    model_class=KeywordClassifier,
    basic_auth_user=os.environ.get("ML_SERVER_BASIC_AUTH_USER"),
    basic_auth_pass=os.environ.get("ML_SERVER_BASIC_AUTH_PASS"),
    model_dir=os.environ.get("MODEL_DIR", os.path.dirname(__file__)),
)

if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", 9090)))
