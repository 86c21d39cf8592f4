"""status_page.py through the real app (TestClient): who gets the page and who keeps the JSON, basic
auth, and the page showing what the JSON endpoints serve. test_status_browser.py opens it in Chromium."""

from __future__ import annotations

import base64
import html
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import fakes
import pytest
from fakes import CONFIG
from prometheus_client.parser import text_string_to_metric_families

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.server.logs import RecentErrors
from label_studio_ml.server.metrics import Metrics
from label_studio_ml.server.status_page import Traffic, config_summary, wants_html
from label_studio_ml.testing.plugin import model_client, recorded

MODELS = Path(__file__).parent / "models"
CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,"
    "application/signed-exchange;v=b3;q=0.7"
)
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
BROWSER = {"Accept": CHROME}
HEALTH = {"status": "UP", "model_class": "Echo"}
USER, PASSWORD = "ml-user", "status-pass-4b1c"
GOOD = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


def field(page: str, name: str) -> str:
    """The text of the first element with ``data-field="name"``."""
    found = re.search(rf'data-field="{name}"[^>]*>(.*?)<', page, re.S)
    assert found, f"no data-field={name} on the page"
    return html.unescape(found.group(1)).strip()


def metric(client: Any, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics", headers=GOOD).text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def page_of(client: Any, **headers: str) -> str:
    reply = client.get("/", headers={**BROWSER, **headers})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/html")
    return reply.text


# --- who gets what -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "accept", [CHROME, FIREFOX, "text/html", "text/html, application/json;q=0.9", "TEXT/HTML;Q=1, */*;q=0.1"]
)
def test_browsers_prefer_html(accept: str) -> None:
    assert wants_html(accept)


@pytest.mark.parametrize(
    "accept",
    [
        "",
        "*/*",
        "application/json",
        "application/json, text/html",
        "text/html;q=0.5, application/json",
        "text/*",
        "text/html;q=0",
        "text/html;q=0.8, */*",
        "application/*, text/html;q=0.9",
        "text/html;q=bad",
        ",;,",
        "text/plain",
    ],
)
def test_everyone_else_gets_json(accept: str) -> None:
    assert not wants_html(accept)


def test_label_studio_keeps_todays_json_on_root_and_health(client: Any) -> None:
    """The headers LS 1.23.2 really sent (recorded), on /health and on /, get exactly today's JSON."""
    sent = recorded("/health")
    assert sent and {r["headers"]["Accept"] for r in sent} == {"*/*"}
    for path in ("/", "/health"):
        reply = client.get(path, headers=sent[0]["headers"])
        assert reply.status_code == 200 and reply.json() == HEALTH
        assert reply.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "headers", [{}, {"Accept": "*/*"}, {"Accept": "application/json"}, {"Accept": "application/json, text/plain, */*"}]
)
def test_scripts_and_curl_keep_the_json(client: Any, headers: dict[str, str]) -> None:
    reply = client.get("/", headers=headers)
    assert reply.status_code == 200 and reply.json() == HEALTH and "vary" not in reply.headers


def test_health_stays_json_for_a_browser(client: Any) -> None:
    reply = client.get("/health", headers=BROWSER)
    assert reply.status_code == 200 and reply.json() == HEALTH


def test_the_page_is_self_contained_and_not_cached(client: Any) -> None:
    reply = client.get("/", headers=BROWSER)
    assert reply.status_code == 200 and reply.headers["content-type"] == "text/html; charset=utf-8"
    assert reply.headers["cache-control"] == "no-store" and reply.headers["vary"] == "Accept"
    csp = reply.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    page = reply.text
    assert page.count(f'nonce="{nonce}"') == 2, "the one style and the one script carry the nonce"
    assert not re.search(r'(src|href)="(https?:)?//', page), "nothing is loaded from another host"
    assert "<script src" not in page and 'rel="stylesheet"' not in page
    assert '<meta name="viewport"' in page
    assert client.get("/", headers=BROWSER).headers["content-security-policy"] != csp, "a nonce per response"


def test_the_fragment_is_the_live_part_only(client: Any) -> None:
    reply = client.get("/?fragment=1", headers={"Accept": "text/html"})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    assert "<html" not in reply.text and "<script" not in reply.text
    assert field(reply.text, "status") == "UP"
    assert client.get("/?fragment=1").json() == HEALTH, "negotiation comes first"


# --- basic auth ----------------------------------------------------------------------------------------


@pytest.fixture
def auth_client(make_client: Any) -> Any:
    return make_client(fakes.Echo, basic_auth_user=USER, basic_auth_pass=PASSWORD)


def test_with_basic_auth_the_page_needs_credentials_and_probes_do_not(auth_client: Any) -> None:
    wrong = {"Authorization": "Basic " + base64.b64encode(f"{USER}:nope".encode()).decode()}
    for path in ("/", "/?fragment=1"):
        for headers in ({}, wrong):
            reply = auth_client.get(path, headers={**BROWSER, **headers})
            assert reply.status_code == 401 and reply.headers["WWW-Authenticate"].startswith("Basic realm=")
            assert reply.json()["status"] == 401 and "credentials" in reply.json()["error"]
            assert "Echo" not in reply.text
    for headers in ({}, {"Accept": "*/*"}, {"Accept": "application/json"}):
        reply = auth_client.get("/", headers=headers)
        assert reply.status_code == 200 and reply.json() == HEALTH, "open for container probes, as before"
    assert field(page_of(auth_client, **GOOD), "basic-auth") == "on"


# --- what the page shows ------------------------------------------------------------------------------------


@pytest.fixture
def trainable() -> Any:
    sys.path.insert(0, str(MODELS))
    from trainable import Trainable

    yield Trainable
    sys.path.remove(str(MODELS))


def predict(client: Any, texts: list[str], project: str = "3.1700000000") -> None:
    reply = client.post(
        "/predict",
        json={
            "tasks": [{"id": i, "data": {"text": t}} for i, t in enumerate(texts)],
            "project": project,
            "label_config": CONFIG,
        },
    )
    assert reply.status_code == 200, reply.text


def test_the_page_shows_what_the_json_endpoints_serve(make_client: Any, trainable: Any) -> None:
    client = make_client(trainable)
    assert client.post("/setup", json={"project": "3.1700000000", "schema": CONFIG}).status_code == 200
    predict(client, ["a", "b", "c"])
    predict(client, ["d"])
    job = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 3, "label_config": CONFIG}})
    assert client.runtime.trainer.wait_idle(30)
    page = page_of(client)
    jobs, versions = client.get("/jobs?project=3").json(), client.get("/versions").json()
    assert field(page, "model-class") == "Trainable" and field(page, "service") == "trainable"
    assert field(page, "status") == client.get("/health").json()["status"] == "UP"
    assert field(page, "load").startswith("loaded in ")
    assert field(page, "predictions") == f"{metric(client, 'lsml_predictions_total'):.0f}" == "4"
    assert field(page, "predict-requests") == "2"
    assert field(page, "dropped-regions") == f"{metric(client, 'lsml_dropped_regions_total'):.0f}"
    row = re.search(r'<tr data-project="3">(.*?)</tr>', page, re.S).group(1)
    assert field(row, "active-version") == jobs["model_version"] == versions["versions"][0]
    assert re.search(r"<b>Choices</b> label → text\s*<small>\(Text, 2 labels\)", row)
    shown = re.findall(r'<tr data-job="([0-9a-f]+)" data-state="(\w+)"', page)
    assert shown == [(j["id"], j["state"]) for j in jobs["jobs"]] == [(job.json()["job"], "done")]
    assert field(page, "job-version") == jobs["jobs"][0]["version"]
    assert re.findall(r"<li><code>(.*?)</code></li>", page) == versions["versions"]


def test_any_job_record_in_the_jobs_list_is_shown(make_client: Any) -> None:
    """Records of other kinds (bulk pre-annotation) reach /jobs through the same store index: the page
    shows their kind, state, progress and other plain fields without knowing them."""
    key = "ls-key-3a2b1c0d9e"
    client = make_client(fakes.Echo, label_studio_api_key=key)
    client.post("/setup", json={"project": "5.1", "schema": CONFIG})
    store = client.runtime.store
    record = {
        "id": "pre0000000a1",
        "kind": "preannotate",
        "project": "5",
        "state": "running",
        "progress": 0.25,
        "created_at": time.time() - 30,
        "started_at": time.time() - 20,
        "tasks_done": 25,
        "tasks_total": 100,
        "nested": {"ignored": True},
    }
    failed = {
        "id": "pre0000000b2",
        "kind": "preannotate",
        "project": "5",
        "state": "failed",
        "created_at": time.time() - 90,
        "error": f"HTTPError: 401 with token {key}",
        "source": f"?t={key}",
    }
    store.set("5", "jobs", [record["id"], failed["id"]])
    for job in (record, failed):
        store.set("5", f"job-{job['id']}", job)
    assert client.get("/jobs?project=5").json()["jobs"] == [record, failed]
    page = page_of(client)
    assert key not in page and field(page, "job-error") == "HTTPError: 401 with token ***" and "source: ?t=***" in page
    row = re.search(r'<tr data-job="pre0000000a1" data-state="running">(.*?)</tr>', page, re.S).group(1)
    assert "preannotate" in row and field(row, "progress") == "25%" and 'value="0.25"' in row
    assert "tasks_done: 25" in row and "tasks_total: 100" in row and "nested" not in row
    assert "running for 20" in row


class Leaky(LabelStudioMLBase):
    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        key = self.settings.label_studio_api_key
        logging.getLogger("leaky").warning("LS refused key %s for <script>alert(1)</script>", key)
        if any(t["data"].get("fail") for t in tasks):
            raise RuntimeError(f"upstream refused {key}")
        return [{"result": []} for _ in tasks]


def test_recent_errors_are_redacted_escaped_and_newest_first(make_client: Any) -> None:
    key = "ls-key-9f8e7d6c5b"
    client = make_client(Leaky, label_studio_api_key=key)
    logging.getLogger("quiet").info("an INFO line is not an error")
    predict(client, ["x"])
    assert (
        client.post(
            "/predict", json={"tasks": [{"id": 1, "data": {"text": "y", "fail": True}}], "label_config": CONFIG}
        ).status_code
        == 500
    )
    page = page_of(client)
    assert key not in page and "<script>alert" not in page
    errors = page[page.index('data-field="errors"') :]
    messages = re.findall(r"<li class=\"(\w+)\">.*?<div>(.*?)</div>", errors, re.S)
    assert [level for level, _ in messages] == ["error", "warning", "warning"], "newest first"
    assert html.unescape(messages[1][1]) == "LS refused key *** for <script>alert(1)</script>"
    assert "RuntimeError: upstream refused ***" in html.unescape(errors)
    assert "an INFO line" not in page


def test_errors_are_collected_only_while_the_app_runs(tmp_path: Path) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    with model_client(fakes.Echo, tmp_path) as client:
        added = [h for h in root.handlers if h not in before]
        assert len(added) == 1 and isinstance(added[0], RecentErrors)
        logging.getLogger("x").error("seen")
        assert added[0].recent()[0]["message"] == "seen"
        assert "seen" in page_of(client)
    assert root.handlers == before, "the app's shutdown removes its handler"


def test_a_failed_load_is_on_the_page(make_client: Any) -> None:
    client = make_client(fakes.Broken)
    assert client.get("/").status_code == 503
    page = page_of(client)
    assert field(page, "status") == "FAILED"
    assert "FileNotFoundError: no weights at /models/x.bin" in field(page, "reason")
    assert field(page, "load").startswith("failed to load after ")
    assert "Broken failed to load" in page, "the logged exception is among the recent errors"


# --- pieces ------------------------------------------------------------------------------------------------


def test_config_summary() -> None:
    xml = (
        '<View><Image name="img" value="$image"/><Text name="txt" value="$text"/>'
        '<RectangleLabels name="box" toName="img"><Label value="Car"/><Label value="Person"/></RectangleLabels>'
        '<TextArea name="note" toName="img,txt"/></View>'
    )
    assert config_summary(xml) == [
        {"name": "box", "type": "RectangleLabels", "to": ["img"], "objects": ["Image"], "labels": 2},
        {"name": "note", "type": "TextArea", "to": ["img", "txt"], "objects": ["Image", "Text"], "labels": 0},
    ]
    assert config_summary(None) == []
    assert "not valid XML" in config_summary("<View>")[0]["error"]


def test_traffic_series_from_the_metrics() -> None:
    metrics = Metrics()
    traffic = Traffic(metrics, interval=2.0, points=5)
    latency = metrics.latency.labels("/predict")
    traffic.sample(now=100.0)
    for seconds in (0.010, 0.030):
        latency.observe(seconds)
    metrics.predictions.inc(8)
    traffic.sample(now=102.0)
    traffic.sample(now=104.0)  # an idle interval
    metrics.predictions.inc(2)
    latency.observe(0.005)
    traffic.sample(now=106.0)
    series = traffic.series()
    assert [p["rate"] for p in series] == [4.0, 0.0, 1.0]
    assert [p["mean_ms"] and round(p["mean_ms"], 3) for p in series] == [20.0, None, 5.0]
    chart = traffic.chart()
    assert len(chart["bars"]) == 2 and chart["max_rate"] == 4.0 and chart["max_ms"] == pytest.approx(20.0)
    assert len(chart["lines"]) == 2 and len(chart["dots"]) == 2, "the idle interval splits the line"
    tallest = max(chart["bars"], key=lambda b: b["h"])
    assert tallest["h"] == chart["height"] and tallest["y"] == 0
    for _ in range(10):
        traffic.sample(now=200.0)
    assert len(traffic.series()) == 5, "only the last `points` intervals are kept"


def test_metrics_summary_counts_what_metrics_renders(make_client: Any) -> None:
    client = make_client(fakes.InvalidRegions)
    for _ in range(3):
        predict(client, ["good", "bad"])
    assert client.post("/predict", content=b"{bad").status_code == 400
    summary = client.app.state.metrics.summary()
    row = summary["paths"]["/predict"]
    assert row["requests"] == 4 == metric(client, "lsml_request_seconds_count", path="/predict") and row["errors"] == 1
    assert summary["predictions"] == 6 == metric(client, "lsml_predictions_total")
    assert summary["dropped_regions"] == 3 == metric(client, "lsml_dropped_regions_total")
    assert 0 < row["mean_seconds"] <= row["p95_seconds"] and row["p95_seconds"] in (0.001, 0.005, 0.01, 0.05, 0.1)


class ReadsImages(LabelStudioMLBase):
    """No fit: it cannot train. Its module has the name loader.py gives a second import of a model file."""

    service_name = "reads_images"

    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        from label_studio_ml.errors import MediaError

        logging.getLogger(type(self).__module__).warning("image of task %s answered HTTP 404", tasks[0]["id"])
        raise MediaError("/data/upload/1/gone.png answered HTTP 404")


ReadsImages.__module__ = "_lsml_1817990303396736468"


def test_the_page_tells_an_untrainable_service_its_errors_and_failed_tasks(make_client: Any, trainable: Any) -> None:
    """Issue 21 #10: "training: on annotations and Start Training" for a model without fit; an error credited
    to a generated logger name; a task whose image answered 404 shown as an error while "failed tasks" said 0."""
    client = make_client(ReadsImages)
    reply = client.post("/predict", json={"tasks": [{"id": 7, "data": {"text": "x"}}], "label_config": CONFIG})
    assert reply.status_code == 422
    page = page_of(client)
    assert field(page, "training") == "none: this model does not train"
    assert field(page, "failed-tasks") == "1"
    errors = page[page.index('data-field="errors"') :]
    assert "_lsml_" not in errors and "reads_images" in errors
    assert field(page_of(make_client(trainable)), "training") == "on annotations and Start Training"
