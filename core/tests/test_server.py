"""server/serve.py: ``label-studio-ml start`` in a real process (uvicorn), its log and its health."""

from __future__ import annotations

import textwrap
from pathlib import Path

import requests
from fakes import CONFIG

from label_studio_ml.testing.plugin import ServerProcess

MODEL = textwrap.dedent("""
    from label_studio_ml import LabelStudioMLBase


    class Served(LabelStudioMLBase):
        def predict(self, tasks, context=None, **kwargs):
            return [{"result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                 "value": {"choices": ["Positive"]}}], "score": 1.0} for _ in tasks]
""")


def test_served_process_logs_one_line_per_predict_and_no_access_log(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "model.py").write_text(MODEL)
    env = {"MODEL_DIR": str(tmp_path / "model_dir"), "LOG_LEVEL": "INFO", "BASIC_AUTH_USER": "", "BASIC_AUTH_PASS": ""}
    with ServerProcess(tmp_path / "svc", env=env, log_path=tmp_path / "server.log") as server:
        assert requests.get(server.url + "/health", timeout=5).json() == {"status": "UP", "model_class": "Served"}
        for _ in range(3):
            reply = requests.post(
                server.url + "/predict",
                timeout=5,
                json={"tasks": [{"id": 1, "data": {"text": "x"}}], "label_config": CONFIG, "project": "1.1"},
            )
            assert reply.status_code == 200 and reply.json()["results"][0]["model_version"] == "Served-0"
    log = (tmp_path / "server.log").read_text()
    assert log.count("predicted 1 task(s) for project 1") == 3
    assert '"POST /predict HTTP/1.1"' not in log, "uvicorn's access log stays off: one line per request, not two"
    assert "Served loaded in" in log
