"""app.py through Starlette's TestClient and a real uvicorn server: every endpoint, errors, auth, webhook rules,
health truthfulness, the model API contract (load once, per-project instances, seed-era return types)."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import fakes
import pytest
import requests
from conftest import LiveServer
from fakes import CONFIG
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from label_studio_ml.config import Settings
from label_studio_ml.engine.scheduling import DEMOTE_AFTER_S, INLINE_BUDGET_S, WARMUP_CALLS
from label_studio_ml.server.app import create_app
from label_studio_ml.testing.plugin import recorded_requests

TASKS = [{"id": 1, "data": {"text": "good film"}}, {"id": 2, "data": {"text": "bad film"}}]


def predict_body(
    tasks: list[dict[str, Any]] = TASKS,
    project: str | None = "1.1700000000",
    config: str | None = CONFIG,
    **params: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"tasks": tasks, "params": {"login": None, "password": None, "context": None, **params}}
    if project is not None:
        body["project"] = project
    if config is not None:
        body["label_config"] = config
    return body


def labels(reply: Any) -> list[list[str]]:
    return [[r["value"]["choices"][0] for r in p["result"]] for p in reply.json()["results"]]


def assert_json_error(reply: Any, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert body["status"] == status and isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in reply.text and 'File "' not in reply.text
    return body


def metric(client: Any, name: str, **labels: str) -> float:
    reply = client.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


# --- endpoints ---------------------------------------------------------------------------------------


def test_health_and_root(client: Any) -> None:
    for path in ("/", "/health"):
        reply = client.get(path)
        assert reply.status_code == 200
        assert reply.json() == {"status": "UP", "model_class": "Echo"}


def test_setup_predict_round_trip(client: Any) -> None:
    setup = client.post(
        "/setup",
        json={
            "project": "1.1700000000",
            "schema": CONFIG,
            "hostname": "http://localhost:8080",
            "access_token": "abc",
            "extra_params": {"threshold": 0.3},
        },
    )
    assert setup.status_code == 200 and setup.json() == {"model_version": "Echo-0"}
    reply = client.post("/predict", json=predict_body())
    assert reply.status_code == 200
    results = reply.json()["results"]
    assert labels(reply) == [["Positive"], ["Negative"]]
    assert all(r["model_version"] == "Echo-0" and r["score"] == 0.9 for r in results)
    assert fakes.seen[-1]["extra_params"] == {"threshold": 0.3}


def test_versions_jobs_openapi(client: Any) -> None:
    assert client.get("/versions").json() == {"versions": ["Echo-0"], "model_class": "Echo"}
    client.post("/setup", json={"project": "4.1", "schema": CONFIG})
    assert client.get("/versions", params={"project": "4.1"}).json()["versions"] == ["Echo-0"]
    jobs = client.get("/jobs", params={"project": "4"})
    assert jobs.status_code == 200 and jobs.json() == {"project": "4", "model_version": "Echo-0", "jobs": []}
    assert_json_error(client.get("/jobs"), 422)
    assert_json_error(client.get("/jobs", params={"project": "³"}), 400)
    # found by the fuzz run: a project id with nothing before the dot reached the store (500)
    for path in ("/jobs", "/versions"):
        assert_json_error(client.get(path, params={"project": ".\u00a1o"}), 400)
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/setup", "/webhook", "/health"} <= set(spec["paths"])


def test_unknown_paths_and_methods_are_json(client: Any) -> None:
    assert_json_error(client.get("/nope"), 404)
    assert_json_error(client.get("/predict"), 405)
    assert_json_error(client.delete("/setup"), 405)


def test_metrics_counters_move(make_client: Any) -> None:
    client = make_client(fakes.InvalidRegions)
    before = metric(client, "lsml_requests_total", path="/predict", status="200")
    assert metric(client, "lsml_predictions_total") == 0
    for _ in range(3):
        assert client.post("/predict", json=predict_body()).status_code == 200
    client.post("/predict", content=b"{bad")
    assert metric(client, "lsml_requests_total", path="/predict", status="200") == before + 3
    assert metric(client, "lsml_requests_total", path="/predict", status="400") == 1
    assert metric(client, "lsml_predictions_total") == 6
    assert metric(client, "lsml_dropped_regions_total") == 3, "one invalid region per request"
    assert metric(client, "lsml_request_seconds_count", path="/predict") >= 4
    client.get("/does-not-exist")
    assert metric(client, "lsml_requests_total", path="other", status="404") == 1


def test_request_body_limit(make_client: Any) -> None:
    client = make_client(fakes.Echo, max_request_bytes=2000)
    small = predict_body([{"id": 1, "data": {"text": "x" * 100}}])
    assert client.post("/predict", json=small).status_code == 200
    big = predict_body([{"id": 1, "data": {"text": "x" * 5000}}])
    assert_json_error(client.post("/predict", json=big), 413)

    def chunks() -> Any:  # no Content-Length: the limit holds on the streamed size too
        for _ in range(10):
            yield b" " * 500
        yield b"{}"

    assert_json_error(client.post("/setup", content=chunks(), headers={"Content-Type": "application/json"}), 413)
    whole = json.dumps(small).encode()
    pieces = iter([whole[:7], whole[7:100], whole[100:]])  # streamed in three messages: joined, then parsed
    streamed = client.post("/predict", content=pieces, headers={"Content-Type": "application/json"})
    assert streamed.status_code == 200 and streamed.json() == client.post("/predict", json=small).json()
    assert_json_error(client.post("/webhook", content=b" " * 2001 + b"{}"), 413)
    odd = client.post("/setup", content=b"{}", headers={"Content-Length": "²".encode("latin-1")})
    assert odd.status_code != 500


# --- model contract --------------------------------------------------------------------------------


def test_load_once_and_one_instance_per_project(client: Any) -> None:
    for i in range(100):
        project = f"{i % 3 + 1}.1700000000"
        if i % 10 == 0:
            assert client.post("/setup", json={"project": project, "schema": CONFIG}).status_code == 200
        reply = client.post("/predict", json=predict_body(project=project))
        assert reply.status_code == 200
    assert fakes.calls["load"] == 1, "resources load once per process"
    assert fakes.calls["setup"] == 3 and client.runtime.instances_built == 3, "one instance per project"
    assert len({id(s["resources"]) for s in fakes.seen}) == 1, "every instance shares the loaded resources"
    changed = CONFIG.replace('<Choice value="Negative"/>', '<Choice value="Negative"/><Choice value="Meh"/>')
    assert client.post("/predict", json=predict_body(project="2.1700000000", config=changed)).status_code == 200
    assert fakes.calls["setup"] == 4 and fakes.seen[-1]["label_config"] == changed
    for project in ("1.1700000000", "3.1700000000", "2.1700000000"):
        client.post("/predict", json=predict_body(project=project, config=changed if project[0] == "2" else CONFIG))
    assert fakes.calls["setup"] == 4 and fakes.calls["load"] == 1


def test_setup_builds_each_project_once_and_never_loads_or_predicts(client: Any) -> None:
    for _ in range(2):
        for i in range(20):
            reply = client.post("/setup", json={"project": f"{i}.1", "schema": CONFIG, "extra_params": {"i": i}})
            assert reply.status_code == 200
    # set-up runs when /setup first sees a project (so the version it stores is answered), then is cached
    assert (fakes.calls["load"], fakes.calls["setup"], fakes.calls["predict"]) == (1, 20, 0)
    client.post("/predict", json=predict_body(project="3.1"))
    assert fakes.calls["setup"] == 20


def test_params_reach_predict_as_kwargs_and_context_is_passed(client: Any) -> None:
    client.post("/predict", json=predict_body(hostname="http://ls:8080", custom={"k": 1}))
    assert fakes.seen[-1]["kwargs"] == {
        "login": None,
        "password": None,
        "hostname": "http://ls:8080",
        "custom": {"k": 1},
    }
    assert fakes.seen[-1]["context"] is None
    context = {"result": [{"type": "labels", "value": {"start": 0, "end": 4, "text": "good"}}], "user_id": 1}
    body = predict_body(TASKS[:1])
    body["params"]["context"] = context
    client.post("/predict", json=body)
    assert fakes.seen[-1]["context"] == context and "context" not in fakes.seen[-1]["kwargs"]
    client.post("/predict", json={"tasks": TASKS, "label_config": CONFIG, "params": None})
    assert fakes.seen[-1]["kwargs"] == {} and fakes.seen[-1]["project"] is None


def test_predict_runs_in_a_worker_thread_unless_inline(make_client: Any) -> None:
    threaded = make_client(fakes.Threaded)
    for _ in range(WARMUP_CALLS + 5):
        assert threaded.post("/predict", json=predict_body()).status_code == 200
        assert fakes.seen[-1]["on_loop"] is False
    inline = make_client(fakes.Inline)
    for _ in range(3):
        reply = inline.post("/predict", json=predict_body())
        assert reply.status_code == 200 and labels(reply) == [["Positive"], ["Negative"]]
    assert [s["on_loop"] for s in fakes.seen[-3:]] == [False, True, True], "after the instance is built: the loop"


def test_a_fast_model_moves_onto_the_event_loop_after_its_first_predicts(make_client: Any) -> None:
    client = make_client(fakes.Echo)
    for _ in range(WARMUP_CALLS + 3):
        assert client.post("/predict", json=predict_body()).status_code == 200
    on_loop = [s["on_loop"] for s in fakes.seen[-(WARMUP_CALLS + 3) :]]
    assert on_loop == [False] * WARMUP_CALLS + [True] * 3
    interactive = predict_body(TASKS[:1], context={"result": []})
    assert client.post("/predict", json=interactive).status_code == 200
    assert fakes.seen[-1]["on_loop"] is False, "interactive calls stay in threads"
    assert client.post("/predict", json=predict_body(project="9.1")).status_code == 200
    assert fakes.seen[-1]["on_loop"] is False, "a new project's instance is built in a thread"


def test_a_model_that_turns_slow_on_the_loop_goes_back_to_threads(make_client: Any) -> None:
    client = make_client(fakes.Echo)
    for _ in range(WARMUP_CALLS + 1):
        client.post("/predict", json=predict_body())
    assert fakes.seen[-1]["on_loop"] is True
    fakes.Echo.pause = DEMOTE_AFTER_S * 2
    try:
        client.post("/predict", json=predict_body())
        assert fakes.seen[-1]["on_loop"] is True
    finally:
        fakes.Echo.pause = 0.0
    for _ in range(WARMUP_CALLS + 1):
        client.post("/predict", json=predict_body())
        assert fakes.seen[-1]["on_loop"] is False


def test_a_model_slower_than_the_budget_never_runs_on_the_loop(make_client: Any) -> None:
    fakes.Echo.pause = INLINE_BUDGET_S * 1.5
    try:
        client = make_client(fakes.Echo)
        for _ in range(WARMUP_CALLS + 5):
            client.post("/predict", json=predict_body(TASKS[:1]))
            assert fakes.seen[-1]["on_loop"] is False
    finally:
        fakes.Echo.pause = 0.0


def test_missing_label_config_uses_the_stored_one(client: Any) -> None:
    assert_json_error(client.post("/predict", json=predict_body(project="7.1", config=None)), 422)
    client.post("/setup", json={"project": "7.1", "schema": CONFIG})
    reply = client.post("/predict", json=predict_body(project="7.1", config=None))
    assert reply.status_code == 200 and fakes.seen[-1]["label_config"] == CONFIG
    # the project can also come from the tasks
    tasks = [{**t, "project": 7} for t in TASKS]
    assert client.post("/predict", json={"tasks": tasks}).status_code == 200
    assert_json_error(client.post("/predict", json={"tasks": TASKS}), 422)


def test_one_failing_task_gets_an_empty_result(make_client: Any) -> None:
    client = make_client(fakes.BoomOnSome)
    tasks = [
        {"id": 1, "data": {"text": "good"}},
        {"id": 2, "data": {"text": "boom"}},
        {"id": 3, "data": {"text": "bad"}},
    ]
    reply = client.post("/predict", json=predict_body(tasks))
    assert reply.status_code == 200
    results = reply.json()["results"]
    assert [r["result"] for r in results][1] == [] and results[1]["score"] is None
    assert labels(reply) == [["Positive"], [], ["Negative"]]
    assert all(r["model_version"] == "BoomOnSome-0" for r in results)
    assert metric(client, "lsml_failed_tasks_total") == 1
    body = assert_json_error(client.post("/predict", json=predict_body(tasks[1:2] * 2)), 500)
    assert "cannot handle" not in body["error"], "internal errors stay in the log"
    assert_json_error(client.post("/predict", json=predict_body(tasks[1:2])), 500)


class NumpyValues(fakes.Echo):
    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        import numpy as np

        out = super().predict(tasks, context, **kwargs)
        for prediction in out:
            prediction["score"] = np.float32(0.5)
            prediction["result"][0]["meta"] = {"logits": np.array([0.25, 0.75]), 3: "int key"}
        return out


def test_numpy_values_and_int_keys_serialize(make_client: Any) -> None:
    reply = make_client(NumpyValues).post("/predict", json=predict_body())
    assert reply.status_code == 200
    first = reply.json()["results"][0]
    assert first["score"] == 0.5 and first["result"][0]["meta"] == {"logits": [0.25, 0.75], "3": "int key"}


def test_more_predictions_than_tasks_is_a_500(make_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(fakes.TooMany)
    assert_json_error(client.post("/predict", json=predict_body()), 500)
    assert "returned 3 predictions for 2 tasks" in caplog.text


@pytest.mark.parametrize(
    "model_class, label, score",
    [
        (fakes.SeedModelResponse, "Negative", 0.25),
        (fakes.SeedDicts, "Positive", None),
        (fakes.SeedResultLists, "Positive", None),
    ],
)
def test_seed_api_models_run_unchanged(make_client: Any, model_class: type, label: str, score: float | None) -> None:
    client = make_client(model_class)
    client.post("/setup", json={"project": "3.1", "schema": CONFIG})
    reply = client.post("/predict", json=predict_body(TASKS + TASKS, project="3.1"))
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert labels(reply) == [[label]] * 4
    if model_class is fakes.SeedResultLists:
        assert [r["score"] for r in results] == [None, 0.5, None, 0.5]
    else:
        assert all(r["score"] == score for r in results)
    version = client.post("/setup", json={"project": "3.1", "schema": CONFIG}).json()["model_version"]
    assert {r["model_version"] for r in results} == {version}, "/setup and predictions agree"


# --- health truthfulness -----------------------------------------------------------------------------


def _wait_health(client: Any, predicate: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        reply = client.get("/health")
        if predicate(reply) or time.monotonic() > deadline:
            return reply
        time.sleep(0.02)


def test_health_503_while_loading_then_up(tmp_path: Path) -> None:
    app = create_app(fakes.GatedLoad, Settings.from_dict({"model_dir": tmp_path}))
    with TestClient(app, raise_server_exceptions=False) as client:
        body = assert_json_error_free(client.get("/health"), 503)
        assert body["status"] == "LOADING" and body["reason"] == "model is loading"
        assert client.post("/setup", json={"project": "1.1", "schema": CONFIG}).status_code == 200
        assert_json_error(client.post("/predict", json=predict_body()), 503)
        fakes.GatedLoad.gate.set()
        reply = _wait_health(client, lambda r: r.status_code == 200)
        assert reply.json() == {"status": "UP", "model_class": "GatedLoad"}
        assert client.post("/predict", json=predict_body()).status_code == 200


def assert_json_error_free(reply: Any, status: int) -> dict[str, Any]:
    assert reply.status_code == status and reply.headers["content-type"].startswith("application/json")
    return reply.json()


def test_health_503_after_a_failed_load(tmp_path: Path) -> None:
    fakes.GatedLoad.fail = True
    app = create_app(fakes.GatedLoad, Settings.from_dict({"model_dir": tmp_path}))
    with TestClient(app, raise_server_exceptions=False) as client:
        fakes.GatedLoad.gate.set()
        reply = _wait_health(client, lambda r: r.json()["status"] != "LOADING")
        body = assert_json_error_free(reply, 503)
        assert body["status"] == "FAILED" and "RuntimeError: weights file is corrupt" in body["reason"]
        error = assert_json_error(client.post("/predict", json=predict_body()), 503)
        assert "weights file is corrupt" in error["error"]
        assert client.post("/setup", json={"project": "1.1", "schema": CONFIG}).status_code == 200


def test_health_503_after_a_failed_blocking_load(make_client: Any) -> None:
    client = make_client(fakes.Broken)
    body = assert_json_error_free(client.get("/health"), 503)
    assert "FileNotFoundError: no weights at /models/x.bin" in body["reason"]


def test_health_stays_fast_during_a_slow_predict(tmp_path: Path) -> None:
    app = create_app(fakes.Slow, Settings.from_dict({"model_dir": tmp_path, "threads": 2}), background_load=False)
    with LiveServer(app) as server, requests.Session() as http:
        replies: list[Any] = []
        worker = threading.Thread(
            target=lambda: replies.append(requests.post(server.url + "/predict", json=predict_body(), timeout=10))
        )
        worker.start()
        assert fakes.Slow.started.wait(5)
        timings = []
        for _ in range(10):
            started = time.perf_counter()
            assert http.get(server.url + "/health", timeout=5).status_code == 200
            assert (
                http.post(server.url + "/setup", json={"project": "2.1", "schema": CONFIG}, timeout=5).status_code
                == 200
            )
            timings.append(time.perf_counter() - started)
        assert worker.is_alive(), "predict was still running while /health answered"
        assert max(timings) < 1.0, timings
        worker.join(10)
        assert replies[0].status_code == 200


def test_threads_limit_bounds_concurrent_predicts(tmp_path: Path) -> None:
    fakes.Slow.delay = 0.3
    try:
        app = create_app(fakes.Slow, Settings.from_dict({"model_dir": tmp_path, "threads": 2}), background_load=False)
        with LiveServer(app) as server:

            def call() -> None:
                assert requests.post(server.url + "/predict", json=predict_body(), timeout=10).status_code == 200

            workers = [threading.Thread(target=call) for _ in range(5)]
            for w in workers:
                w.start()
            for w in workers:
                w.join(10)
        assert fakes.Slow.peak == 2, "THREADS=2: at most two predicts run at once"
    finally:
        fakes.Slow.delay = 1.5


# --- auth ----------------------------------------------------------------------------------------------

USER, PASSWORD = "ml-user", "pa:ss:wörd"


def basic(raw: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


GOOD = basic(f"{USER}:{PASSWORD}".encode())


@pytest.fixture
def auth_client(make_client: Any) -> Any:
    return make_client(fakes.Echo, basic_auth_user=USER, basic_auth_pass=PASSWORD)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(f"{USER}:wrong".encode()),
        basic(f"other:{PASSWORD}".encode()),
        basic(USER.encode()),
        basic(f"{USER}:pa".encode()),
        basic(b"ml-user:\xff\xfe"),
        {"Authorization": "Basic !!!notbase64"},
        {"Authorization": "Basic"},
        {"Authorization": "Bearer " + base64.b64encode(b"ml-user:x").decode()},
        {"Authorization": GOOD["Authorization"].replace("Basic ", "Digest ")},
    ],
)
def test_basic_auth_refusals(auth_client: Any, headers: dict[str, str]) -> None:
    for method, path in (
        ("POST", "/predict"),
        ("POST", "/setup"),
        ("GET", "/versions"),
        ("GET", "/metrics"),
        ("GET", "/jobs"),
    ):
        reply = auth_client.request(method, path, json=predict_body(), headers=headers)
        assert_json_error(reply, 401)
        assert reply.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert fakes.calls["predict"] == 0


def test_basic_auth_accepts_passwords_with_colons(auth_client: Any) -> None:
    assert auth_client.post("/predict", json=predict_body(), headers=GOOD).status_code == 200
    lower = {"Authorization": GOOD["Authorization"].replace("Basic", "basic")}
    assert auth_client.get("/versions", headers=lower).status_code == 200
    for path in ("/", "/health", "/openapi.json"):
        assert auth_client.get(path).status_code == 200, "open for container probes"


def test_auth_needs_both_user_and_password(make_client: Any) -> None:
    client = make_client(fakes.Echo, basic_auth_user=USER)
    assert client.post("/predict", json=predict_body()).status_code == 200


# --- webhook ---------------------------------------------------------------------------------------------


def event(action: str, project: int = 2, **extra: Any) -> dict[str, Any]:
    return {"action": action, "project": {"id": project, "label_config": CONFIG, "token": "project-secret"}, **extra}


ANNOTATION = {
    "annotation": {
        "id": 1,
        "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}],
    },
    "task": {"id": 1, "data": {"text": "good"}},
}


def test_webhook_without_auth_accepts_every_event(client: Any) -> None:
    for action in ("TASKS_CREATED", "PROJECT_UPDATED", "SOMETHING_NEW"):
        reply = client.post("/webhook", json=event(action))
        assert reply.status_code == 200 and reply.json()["status"] == "ignored"
    for action in (
        "START_TRAINING",
        "ANNOTATION_CREATED",
        "ANNOTATION_UPDATED",
        "ANNOTATIONS_CREATED",
        "ANNOTATIONS_DELETED",
    ):
        reply = client.post("/webhook", json=event(action, **ANNOTATION))
        assert reply.status_code == 201 and reply.json()["status"] == "ok" and reply.json()["job"]
    assert client.runtime.trainer.wait_idle(10)
    assert_json_error(client.post("/webhook", json={"project": {"id": 2}}), 422)


def test_webhook_rules_with_auth_on(auth_client: Any) -> None:
    # unauthenticated events: only for projects known from /setup, and they only schedule work
    reply = auth_client.post("/webhook", json=event("ANNOTATION_CREATED", **ANNOTATION))
    assert reply.status_code == 200 and reply.json() == {"status": "ignored", "reason": "unknown project"}
    assert auth_client.post("/setup", json={"project": "2.1", "schema": CONFIG}, headers=GOOD).status_code == 200
    reply = auth_client.post("/webhook", json=event("ANNOTATION_CREATED", **ANNOTATION))
    assert reply.status_code == 201 and reply.json()["status"] == "ok"
    assert auth_client.post("/webhook", json=event("TASKS_CREATED")).json()["status"] == "ignored"
    # START_TRAINING comes from LS's connector, which sends the credentials
    refused = auth_client.post("/webhook", json=event("START_TRAINING"))
    assert_json_error(refused, 401)
    assert refused.headers["WWW-Authenticate"].startswith("Basic")
    assert auth_client.post("/webhook", json=event("START_TRAINING"), headers=GOOD).json()["status"] == "ok"
    assert auth_client.post("/train", json={"project": "2.1", "annotations": []}).status_code == 401
    assert auth_client.runtime.trainer.wait_idle(10)


def test_webhook_secret_with_auth_on(make_client: Any) -> None:
    client = make_client(fakes.Echo, basic_auth_user=USER, basic_auth_pass=PASSWORD, webhook_secret="hook-s3cret")
    client.post("/setup", json={"project": "2.1", "schema": CONFIG}, headers=GOOD)
    assert_json_error(client.post("/webhook", json=event("ANNOTATION_CREATED", **ANNOTATION)), 401)
    assert_json_error(
        client.post("/webhook", json=event("ANNOTATION_CREATED", **ANNOTATION), headers={"X-Webhook-Secret": "wrong"}),
        401,
    )
    reply = client.post(
        "/webhook", json=event("ANNOTATION_CREATED", **ANNOTATION), headers={"X-Webhook-Secret": "hook-s3cret"}
    )
    assert reply.json()["status"] == "ok"
    assert client.post("/webhook", json=event("START_TRAINING"), headers=GOOD).json()["status"] == "ok"
    assert client.runtime.trainer.wait_idle(10)


def test_webhook_secret_applies_without_basic_auth(make_client: Any) -> None:
    client = make_client(fakes.Echo, webhook_secret="hook-s3cret")
    assert_json_error(client.post("/webhook", json=event("ANNOTATION_CREATED", **ANNOTATION)), 401)
    assert (
        client.post("/webhook", json=event("TASKS_CREATED"), headers={"X-Webhook-Secret": "hook-s3cret"}).status_code
        == 200
    )
    # START_TRAINING from LS's connector cannot carry the header; with auth off it stays accepted
    assert client.post("/webhook", json=event("START_TRAINING")).json()["status"] == "ok"
    assert client.runtime.trainer.wait_idle(10)


def test_legacy_train_endpoint(client: Any) -> None:
    reply = client.post("/train", json={"project": "2.1", "label_config": CONFIG, "annotations": []})
    assert reply.status_code == 200 and reply.json()["status"] == "ok"
    assert_json_error(client.post("/train", json={"annotations": []}), 422)
    assert_json_error(client.post("/train", json=[1]), 422)
    assert client.runtime.trainer.wait_idle(10)


# --- recorded LS traffic -----------------------------------------------------------------------------


def test_recorded_ls_requests_replay(client: Any) -> None:
    recorded = recorded_requests()
    assert len(recorded) > 20
    paths = set()
    for request in recorded:
        headers = {k: v for k, v in request["headers"].items() if k.lower() not in ("host", "content-length")}
        reply = client.request(request["method"], request["path"], json=request["body"], headers=headers)
        assert 200 <= reply.status_code < 300, (request["path"], reply.text)
        body = reply.json()
        assert isinstance(body, dict)
        paths.add(request["path"])
        if request["path"] == "/predict":
            assert len(body["results"]) == len(request["body"]["tasks"])
            assert all(p["model_version"] == "Echo-0" and p["result"] for p in body["results"])
        if request["path"] == "/setup":
            assert body == {"model_version": "Echo-0"}
    assert paths == {"/health", "/setup", "/predict", "/webhook", "/versions"}
    assert client.runtime.trainer.wait_idle(10)
    assert fakes.calls["load"] == 1


HUGE_ID = "9" * 4301  # past Python's int() limit of 4,300 digits


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", f"/versions?project={HUGE_ID}", None),
        ("GET", f"/jobs?project={HUGE_ID}", None),
        ("POST", "/jobs", {"project": HUGE_ID}),
        ("POST", "/setup", {"project": f"{HUGE_ID}.1700000000", "schema": "<View/>"}),
        ("POST", "/predict", {"project": HUGE_ID, "tasks": [{"data": {"text": "x"}}]}),
        ("POST", "/predict", {"tasks": [{"project": HUGE_ID, "data": {"text": "x"}}]}),
        ("POST", "/webhook", {"action": "ANNOTATION_CREATED", "project": {"id": HUGE_ID}}),
        ("POST", "/webhook", {"action": "ANNOTATION_CREATED", "project": {"id": 2**64}}),
        ("GET", "/versions?project=9223372036854775808", None),
    ],
)
def test_out_of_range_ids_are_400_with_a_reason(client: Any, method: str, path: str, body: Any) -> None:
    """Issue 21 #5: a 4,301-digit project id was a 500 with a traceback in the log, /webhook without auth."""
    reply = client.request(method, path, json=body)
    assert reply.status_code == 400, reply.text
    assert "out of range" in reply.json()["error"]


def test_options_on_jobs_lists_both_methods(client: Any) -> None:
    """Issue 21 #7: GET and POST /jobs were two routes; a 405 named GET only."""
    reply = client.options("/jobs")
    assert reply.status_code == 405
    assert {m.strip() for m in reply.headers["allow"].split(",")} >= {"GET", "POST"}


class OnlyInvalidRegions(fakes.Echo):
    def predict(self, tasks: list[dict[str, Any]], context: Any = None, **kwargs: Any) -> list[dict[str, Any]]:
        bad = {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["Maybe"]}}
        return [{"result": [bad], "score": 1.0} for _ in tasks]


def test_a_task_whose_regions_were_all_dropped_has_no_score(make_client: Any) -> None:
    """Issue 21 #7: it scored 1.0, ranking an empty prediction first."""
    results = make_client(OnlyInvalidRegions).post("/predict", json=predict_body()).json()["results"]
    assert results and all(r["result"] == [] and r["score"] is None for r in results)
    kept = make_client(fakes.InvalidRegions).post("/predict", json=predict_body()).json()["results"]
    assert kept[0]["result"] and kept[0]["score"] is not None, "a region kept: the score stays"
