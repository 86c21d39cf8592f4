"""The status page in a real browser: Debian's Chromium, driven by Playwright, opens the page of a running
``label-studio-ml start`` process, finds there what the JSON endpoints say, and watches a training job
progress without reloading. Screenshots go to .ci/reports/ (CI keeps that folder)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from label_studio_ml.testing.plugin import ServerProcess

MODELS = Path(__file__).parent / "models"
REPORTS = Path(__file__).resolve().parents[2] / ".ci" / "reports"
CHROMIUM = os.environ.get("LSML_CHROMIUM", "/usr/bin/chromium")
# the network is closed: no Google services, updates or first-run fetches
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
    '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>'
)
USER, PASSWORD = "ml", "browser-pass-83d2"
AUTH = (USER, PASSWORD)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        raise RuntimeError(f"{CHROMIUM} not found: apt-get install chromium (listed in core/apt-test.txt)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {
        "MODEL_DIR": str(tmp_path / "model_dir"),
        "BASIC_AUTH_USER": USER,
        "BASIC_AUTH_PASS": PASSWORD,
        "TRAINABLE_FIT_SECONDS": "6",
    }
    with ServerProcess(MODELS / "trainable.py", env=env, log_path=tmp_path / "server.log") as running:
        yield running


def get(server: ServerProcess, path: str) -> Any:
    reply = requests.get(server.url + path, auth=AUTH, timeout=5)
    assert reply.status_code == 200, reply.text
    return reply.json()


def metric(server: ServerProcess, name: str) -> float:
    text = requests.get(server.url + "/metrics", auth=AUTH, timeout=5).text
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def post(server: ServerProcess, path: str, body: dict[str, Any]) -> Any:
    reply = requests.post(server.url + path, json=body, auth=AUTH, timeout=5)
    assert reply.status_code == (201 if path == "/webhook" else 200), reply.text  # a scheduled job: 201, as upstream
    return reply.json()


def predict(server: ServerProcess, count: int) -> None:
    post(server, "/predict", {"tasks": [{"id": i, "data": {"text": "t"}} for i in range(count)], "project": "7.1"})


def train(server: ServerProcess, **extra: Any) -> str:
    return str(
        post(server, "/webhook", {"action": "START_TRAINING", "project": {"id": 7, "label_config": CONFIG}, **extra})[
            "job"
        ]
    )


def test_status_page_in_chromium(browser: Any, server: ServerProcess) -> None:
    post(server, "/setup", {"project": "7.1", "schema": CONFIG})
    for count in (3, 1, 2):
        predict(server, count)
    context = browser.new_context(
        http_credentials={"username": USER, "password": PASSWORD}, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    urls: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    def text(selector: str) -> str:
        return str(page.locator(selector).first.inner_text()).strip()

    try:
        assert page.goto(server.url + "/").status == 200
        assert text('[data-field="model-class"]') == "Trainable" and text('[data-field="service"]') == "trainable"
        assert text('[data-field="status"]') == get(server, "/health")["status"] == "UP"
        assert text('[data-field="basic-auth"]') == "on"
        assert text('[data-field="predictions"]') == f"{metric(server, 'lsml_predictions_total'):.0f}" == "6"
        initial = get(server, "/jobs?project=7")["model_version"]
        project = 'tr[data-project="7"]'
        assert text(f'{project} [data-field="active-version"]') == initial == get(server, "/versions")["versions"][0]
        assert "Choices" in text(f'{project} [data-field="controls"]')
        page.evaluate("window.notReloaded = true")

        job = train(server)
        row = f'tr[data-job="{job}"]'
        seen: list[tuple[str, int]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if page.locator(row).count():
                state = str(page.locator(row).get_attribute("data-state"))
                progress = int(text(f'{row} [data-field="progress"]').rstrip("%"))
                if not seen or seen[-1] != (state, progress):
                    seen.append((state, progress))
                if state == "done":
                    break
            predict(server, 1)
            page.wait_for_timeout(200)
        running = [p for state, p in seen if state == "running"]
        assert seen[-1] == ("done", 100), seen
        assert len(set(running)) >= 2 and running == sorted(running), f"progress seen moving: {seen}"
        assert page.evaluate("window.notReloaded === true"), "the page updated in place"
        jobs = get(server, "/jobs?project=7")
        trained = jobs["jobs"][0]["version"]
        assert trained and trained != initial and trained == jobs["model_version"]
        page.wait_for_timeout(2500)  # one more refresh: the project row follows the new version
        assert text(f'{row} [data-field="job-version"]') == trained
        assert text(f'{project} [data-field="active-version"]') == trained == get(server, "/versions")["versions"][0]

        failed = train(server, fail=True)
        page.locator(f'tr[data-job="{failed}"][data-state="failed"]').wait_for(timeout=15000)
        assert "asked to fail" in text(f'tr[data-job="{failed}"] [data-field="job-error"]')
        assert "ValueError: asked to fail" in text('[data-field="errors"]')
        assert page.locator('svg[data-field="chart"] rect.bar').count() >= 2, "predictions/s over time"
        assert text('[data-field="predictions"]') == f"{metric(server, 'lsml_predictions_total'):.0f}"
        REPORTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(REPORTS / "status-page.png"), full_page=True)

        page.set_viewport_size({"width": 390, "height": 844})  # a phone
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scroll"
        page.screenshot(path=str(REPORTS / "status-page-phone.png"), full_page=True)
    finally:
        context.close()
    assert problems == []
    assert urls and all(url.startswith(server.url + "/") for url in urls), "nothing loaded from elsewhere"
    assert any("fragment=1" in url for url in urls)

    from playwright.sync_api import Error

    anonymous = browser.new_context()
    try:  # without credentials Chromium is challenged (a person gets the login prompt), probes are not
        with pytest.raises(Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
            anonymous.new_page().goto(server.url + "/")
        refused = anonymous.request.get(server.url + "/", headers={"Accept": "text/html"})
        assert refused.status == 401 and refused.headers["www-authenticate"].startswith("Basic realm=")
        probe = anonymous.request.get(server.url + "/", headers={"Accept": "*/*"})
        assert probe.status == 200 and probe.json() == {"status": "UP", "model_class": "Trainable"}
    finally:
        anonymous.close()
