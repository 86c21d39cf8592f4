"""A backend written for the upstream SDK, served as its image serves it (``gunicorn --preload ... _wsgi:app``)
and connected to a real Label Studio: LS stores its predictions, one per task, with the connection's version."""

from __future__ import annotations

import sys
from pathlib import Path

from ls_server import ROOT
from test_label_studio import assert_predictions, connection_version, prediction_of

from label_studio_ml.testing.plugin import ServerProcess, free_port

BACKEND = ROOT / "core" / "tests" / "upstream_backends" / "keyword_classifier"
SENTIMENT = (
    '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
    '<Choice value="Positive" predicted_values="pos"/><Choice value="Negative" predicted_values="neg"/>'
    "</Choices></View>"
)
TEXTS = {"a good and great day": "Positive", "a bad day": "Negative", "an awful, bad film": "Negative"}


def test_upstream_backend_under_gunicorn_gets_predictions_stored(label_studio, tmp_path: Path) -> None:
    ls = label_studio
    port = free_port()
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    argv = [gunicorn, "--preload", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "8", "_wsgi:app"]
    env = {"MODEL_DIR": str(tmp_path / "models"), "LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": ls.token}
    log = tmp_path / "gunicorn.log"
    with ServerProcess(BACKEND, env=env, log_path=log, port=port, argv=argv, cwd=BACKEND) as server:
        project = ls.create_project(SENTIMENT)
        ml = ls.connect(project, server.url)
        assert ml["state"] == "CO", ml
        ls.import_tasks(project, [{"text": text} for text in TEXTS])
        ls.retrieve_predictions(project)
        version = connection_version(ls, ml["id"])
        assert version == "keywords-0"  # the version the model's setup() stored, as /setup answered it
        tasks = assert_predictions(ls, project, SENTIMENT, version, expect_regions=True)
        assert len(tasks) == len(TEXTS)
        predicted = {t["data"]["text"]: prediction_of(t, version)["result"][0]["value"]["choices"] for t in tasks}
        assert predicted == {text: [label] for text, label in TEXTS.items()}
        assert "Traceback" not in server.log_tail(400)
