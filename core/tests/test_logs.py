"""logs.py: secrets never reach the log output, whatever path they take."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fakes import CONFIG

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.config import Settings
from label_studio_ml.server.logs import configure_logging
from label_studio_ml.testing.plugin import FakeLabelStudio

PASSWORD = "basic-pass-7f3a9"
API_KEY = "ls-api-key-0c1d2e3f4a5b"
HOOK_SECRET = "hook-secret-91ab"
SETUP_TOKEN = "setup-token-55e6f7"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_redact_secrets_filter(capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    configure_logging("DEBUG", [PASSWORD, API_KEY, ""])
    log = logging.getLogger("label_studio_ml.test")
    log.info("password is %s", PASSWORD)
    log.warning(f"key {API_KEY} in an f-string")
    try:
        raise RuntimeError(f"failed with {API_KEY}")
    except RuntimeError:
        log.exception("boom")
    err = capsys.readouterr().err
    assert PASSWORD not in err and API_KEY not in err
    assert err.count("***") == 3 and "RuntimeError: failed with ***" in err and "Traceback" in err


def test_settings_repr_hides_secrets() -> None:
    settings = Settings.from_env(
        {
            "BASIC_AUTH_USER": "u",
            "BASIC_AUTH_PASS": PASSWORD,
            "LABEL_STUDIO_API_KEY": API_KEY,
            "WEBHOOK_SECRET": HOOK_SECRET,
            "REDIS_URL": "redis://:pw-123456@r:6379/0",
        }
    )
    text = repr(settings)
    assert all(s not in text for s in (PASSWORD, API_KEY, HOOK_SECRET, "pw-123456"))
    assert set(settings.secrets) == {PASSWORD, API_KEY, HOOK_SECRET}


class Leaky(LabelStudioMLBase):
    """Fetches media with the LS token, and fails with secrets in its error messages."""

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        out = []
        for task in tasks:
            self.get_local_path(task["data"]["image"], task_id=task["id"])
            if task["data"].get("fail"):
                raise RuntimeError(f"upstream refused key {API_KEY} and password {PASSWORD}")
            out.append({"result": []})
        return out


def test_no_secret_in_logs_across_requests(
    make_client: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, restore_logging: None
) -> None:
    with FakeLabelStudio(files={"/data/upload/1/a.png": b"png"}, legacy_token=API_KEY) as fake:
        settings = {
            "basic_auth_user": "ml",
            "basic_auth_pass": PASSWORD,
            "label_studio_url": fake.url,
            "label_studio_api_key": API_KEY,
            "webhook_secret": HOOK_SECRET,
            "log_level": "DEBUG",
        }
        configure_logging("DEBUG", Settings.from_dict({**settings, "model_dir": "."}).secrets)
        caplog.set_level(logging.DEBUG)
        client = make_client(Leaky, **settings)
        good = {"Authorization": "Basic " + base64.b64encode(f"ml:{PASSWORD}".encode()).decode()}
        bad = {"Authorization": "Basic " + base64.b64encode(f"ml:{PASSWORD}x".encode()).decode()}
        config = CONFIG.replace('<Text name="text" value="$text"/>', '<Image name="text" value="$image"/>')
        client.post(
            "/setup",
            json={"project": "1.1", "schema": config, "access_token": SETUP_TOKEN, "hostname": fake.url},
            headers=good,
        )
        client.post("/predict", json={"tasks": [{"id": 1, "data": {"image": "/data/upload/1/a.png"}}]}, headers=bad)
        ok = client.post(
            "/predict",
            json={"tasks": [{"id": 1, "data": {"image": "/data/upload/1/a.png"}}], "project": "1.1"},
            headers=good,
        )
        assert ok.status_code == 200
        failed = client.post(
            "/predict",
            json={"tasks": [{"id": 1, "data": {"image": "/data/upload/1/a.png", "fail": True}}], "project": "1.1"},
            headers=good,
        )
        assert failed.status_code == 500 and API_KEY not in failed.text
        client.post(
            "/webhook",
            json={"action": "ANNOTATION_CREATED", "project": {"id": 1, "token": "proj-token"}},
            headers={"X-Webhook-Secret": HOOK_SECRET},
        )
        assert any(r["headers"].get("Authorization") == f"Token {API_KEY}" for r in fake.requests), (
            "the token was really used"
        )
    output = capsys.readouterr().err + caplog.text
    assert "upstream refused key" in output and "Traceback" in output, "the failure itself is logged"
    secrets = [
        PASSWORD,
        API_KEY,
        HOOK_SECRET,
        SETUP_TOKEN,
        "proj-token",
        good["Authorization"].split()[1],
        bad["Authorization"].split()[1],
    ]
    leaked = [s for s in secrets if s in output]
    assert leaked == []


def test_request_log_logs_human_paced_requests_and_counts_a_flood(caplog: Any, monkeypatch: Any) -> None:
    from label_studio_ml.server import logs

    clock = [100.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: clock[0])
    log = logs.RequestLog(logging.getLogger("lsml.test.requests"), per_second=3)
    with caplog.at_level(logging.INFO, logger="lsml.test.requests"):
        for n in range(50):  # one second's flood
            log.info("request %d", n)
        clock[0] += 1.5
        log.info("request %d", 50)
        clock[0] += 5
        log.info("request %d", 51)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "request 0",
        "request 1",
        "request 2",
        "... 47 more request(s) like these, not logged one by one",
        "request 50",
        "request 51",
    ]


def test_recent_errors_keep_the_last_warnings_redacted() -> None:
    from label_studio_ml.server.logs import RecentErrors

    recent = RecentErrors([API_KEY], size=3)
    log = logging.getLogger("lsml.test.recent")
    log.addHandler(recent)
    try:
        log.info("not kept")
        for n in range(4):
            log.warning("warning %d with %s", n, API_KEY)
        try:
            raise RuntimeError(f"failed with {API_KEY}")
        except RuntimeError:
            log.exception("boom")
    finally:
        log.removeHandler(recent)
    records = recent.recent()
    assert [r["message"] for r in records] == ["boom", "warning 3 with ***", "warning 2 with ***"]
    assert records[0]["level"] == "ERROR" and records[0]["exception"] == "RuntimeError: failed with ***"
    assert API_KEY not in repr(records)
