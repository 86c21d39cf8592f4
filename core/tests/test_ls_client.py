"""ls_client.py: token kinds, same-host rule, the export API (against FakeLabelStudio) and labeled_tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.clients.ls_client import LabelStudioClient, is_personal_access_token, labeled_tasks, origin
from label_studio_ml.config import Settings
from label_studio_ml.model import ModelContext
from label_studio_ml.testing.plugin import FakeLabelStudio

RESULT = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}]
EXPORT = [
    {"id": 1, "data": {"text": "good"}, "annotations": [{"id": 10, "result": RESULT, "was_cancelled": False}]},
    {"id": 2, "data": {"text": "skipped"}, "annotations": [{"id": 11, "result": RESULT, "was_cancelled": True}]},
    {"id": 3, "data": {"text": "empty"}, "annotations": [{"id": 12, "result": []}]},
    {"id": 4, "data": {"text": "none"}, "annotations": []},
    {"id": 5, "data": {"text": "null"}, "annotations": None},
    {
        "id": 6,
        "data": {"text": "mixed"},
        "annotations": [{"id": 13, "result": RESULT, "was_cancelled": True}, {"id": 14, "result": RESULT}],
    },
]


def test_labeled_tasks_skips_cancelled_and_empty() -> None:
    clean = labeled_tasks(EXPORT)
    assert [t["id"] for t in clean] == [1, 6]
    assert [a["id"] for a in clean[1]["annotations"]] == [14]
    assert clean[0]["data"] == {"text": "good"}
    assert EXPORT[5]["annotations"][0]["id"] == 13, "the input is not modified"


def test_origin_and_token_kinds(tmp_path: Path) -> None:
    assert origin("http://LS:80/x") == origin("http://ls/y") == ("http", "ls", 80)
    assert origin("https://ls/x") == ("https", "ls", 443) != origin("http://ls:443/x")
    with FakeLabelStudio() as fake:
        assert is_personal_access_token(fake.pat) and is_personal_access_token(fake.access)
        assert not is_personal_access_token(fake.legacy_token)
    assert not is_personal_access_token("0123456789abcdef0123456789abcdef01234567")
    assert not is_personal_access_token("a.b.c") and not is_personal_access_token("e30.e30")


@pytest.mark.parametrize("kind", ["legacy", "pat"])
def test_export_tasks(kind: str) -> None:
    with FakeLabelStudio(tasks={3: EXPORT}) as fake:
        client = LabelStudioClient(fake.url + "/", fake.legacy_token if kind == "legacy" else fake.pat)
        assert client.export_tasks(3) == EXPORT
        assert client.export_tasks("3") == EXPORT
        export = [r for r in fake.requests if r["path"].startswith("/api/projects/3/export")]
        assert "exportType=JSON" in export[0]["path"]
        expected = f"Token {fake.legacy_token}" if kind == "legacy" else f"Bearer {fake.access}"
        assert {r["headers"]["Authorization"] for r in export} == {expected}
        assert LabelStudioClient(fake.url, fake.legacy_token).export_tasks(99) == []
        with pytest.raises(RuntimeError, match="HTTP 401"):
            LabelStudioClient(fake.url, "wrong").export_tasks(3)
        fake.fail_status = 500
        with pytest.raises(RuntimeError, match="HTTP 500"):
            client.export_tasks(3)


def test_client_refuses_other_hosts_and_bad_urls() -> None:
    with FakeLabelStudio() as fake:
        client = LabelStudioClient(fake.url, fake.legacy_token)
        port = int(fake.url.rsplit(":", 1)[1])
        with pytest.raises(ValueError, match="another host"):
            client.request("GET", f"http://127.0.0.1:{port + 1}/api/x")
        with pytest.raises(ValueError, match="another host"):
            client.request("GET", f"http://localhost:{port}/api/x")
        assert client.request("GET", f"{fake.url}/api/current-user/whoami").json() == {"id": 1}
    with pytest.raises(ValueError, match="http"):
        LabelStudioClient("localhost:8080", "t")


def _model(tmp_path: Path, **settings: Any) -> LabelStudioMLBase:
    model = LabelStudioMLBase.__new__(LabelStudioMLBase)
    model._bind(ModelContext.standalone(Settings.from_dict({"model_dir": tmp_path, **settings}), project_id="3"))
    model.__init__(project_id="3", label_config="")
    return model


def test_model_fetch_labeled_tasks(tmp_path: Path) -> None:
    with FakeLabelStudio(tasks={3: EXPORT}) as fake:
        model = _model(tmp_path, label_studio_url=fake.url, label_studio_api_key=fake.pat)
        assert [t["id"] for t in model.fetch_labeled_tasks()] == [1, 6]
        # falls back to the hostname/token stored by /setup
        fallback = _model(tmp_path / "b")
        fallback.set("hostname", fake.url)
        fallback.set("access_token", fake.legacy_token)
        assert [t["id"] for t in fallback.fetch_labeled_tasks()] == [1, 6]
    with pytest.raises(RuntimeError, match="LABEL_STUDIO_URL"):
        _model(tmp_path / "c").fetch_labeled_tasks()
