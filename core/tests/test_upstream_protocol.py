"""The server answers backends written for the upstream SDK as upstream's server does: the version
``setup()`` stores, 201 for a scheduled training, one task sent bare, the model's own prediction
versions, a short prediction list, ``PredictionValue``s, the upstream basic-auth variables."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import upstream_models
from upstream_models import CONFIG

from label_studio_ml.config import Settings
from label_studio_ml.testing.plugin import assert_conformant, recorded_requests

TASKS = [{"id": 1, "data": {"text": "good"}}, {"id": 2, "data": {"text": "bad"}}]


def predict(client: Any, tasks: list[dict] | dict, project: str = "3.1") -> Any:
    return client.post("/predict", json={"tasks": tasks, "project": project, "label_config": CONFIG})


def test_setup_answers_the_version_setup_stored_and_predictions_carry_it(make_client: Any) -> None:
    client = make_client(upstream_models.Interactive)
    for _ in range(2):
        reply = client.post("/setup", json={"project": "3.1", "schema": CONFIG})
        assert reply.status_code == 200 and reply.json() == {"model_version": "Interactive-v0.0.1"}
    results = assert_conformant(client, CONFIG, TASKS, project="3.1")
    assert [r["model_version"] for r in results] == ["Interactive-v0.0.1"] * 2
    assert [r["result"][0]["value"]["choices"] for r in results] == [["Positive"], ["Negative"]]
    assert client.runtime.instances_built == 1, "built by /setup, reused by /predict"


def test_the_create_template_answers_200_with_no_results_and_a_warning(make_client: Any, caplog: Any) -> None:
    client = make_client(upstream_models.Template)
    assert client.post("/setup", json={"project": "3.1", "schema": CONFIG}).json() == {"model_version": "0.0.1"}
    with caplog.at_level(logging.INFO, logger="label_studio_ml.engine.runtime"):
        for _ in range(2):
            reply = predict(client, TASKS)
            assert reply.status_code == 200 and reply.json() == {"results": []}
    warnings = [r for r in caplog.records if "returned 0 prediction(s) for 2 task(s)" in r.getMessage()]
    assert [r.levelno for r in warnings] == [logging.WARNING, logging.INFO], "a warning once per project"
    page = client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "returned 0 prediction(s) for 2 task(s)" in page.text
    assert client.runtime.stats["short_answers"] == 2


def test_a_short_list_is_answered_as_it_is(make_client: Any) -> None:
    import fakes

    client = make_client(fakes.WrongCount)
    reply = client.post("/predict", json={"tasks": TASKS, "label_config": CONFIG})
    assert reply.status_code == 200 and len(reply.json()["results"]) == 1


def test_tasks_as_one_object(make_client: Any) -> None:
    client = make_client(upstream_models.Interactive)
    reply = predict(client, TASKS[1])
    assert reply.status_code == 200
    assert [r["result"][0]["value"]["choices"] for r in reply.json()["results"]] == [["Negative"]]
    assert predict(client, {"id": 1}).status_code == 422, "a task still needs its data"


@pytest.mark.parametrize(
    "mode, versions",
    [
        ("dicts", ["dict-v7", "dict-v7"]),
        ("values", ["value-v3", "value-v3"]),
        ("response", ["own-v1", "response-v2"]),  # the response's version fills the ones not set
    ],
)
def test_a_models_own_prediction_versions_are_kept(make_client: Any, mode: str, versions: list[str]) -> None:
    client = make_client(upstream_models.OwnVersions)
    tasks = [{"id": i, "data": {"text": "x", "mode": mode}} for i in (1, 2)]
    reply = predict(client, tasks)
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert [r["model_version"] for r in results] == versions
    assert all(r["result"][0]["value"]["choices"] == ["Positive"] for r in results)


def test_webhook_answers_201_for_training_and_200_for_other_events(make_client: Any) -> None:
    client = make_client(upstream_models.Template)
    client.post("/setup", json={"project": "3.1", "schema": CONFIG})
    event = {"action": "ANNOTATION_CREATED", "project": {"id": 3, "label_config": CONFIG}, "annotation": {"result": []}}
    reply = client.post("/webhook", json=event)
    assert reply.status_code == 201 and reply.json()["status"] == "ok"
    assert client.post("/webhook", json={**event, "action": "PROJECT_UPDATED"}).status_code == 200
    assert client.runtime.trainer.wait_idle(10)
    assert client.runtime.store.get("3", "my_data") == "my_new_data_value", "fit ran (through process_event)"


def test_train_events_of_the_class_decide_what_trains(make_client: Any) -> None:
    client = make_client(upstream_models.StartTrainingOnly)
    client.post("/setup", json={"project": "3.1", "schema": CONFIG})
    event = {"action": "ANNOTATION_CREATED", "project": {"id": 3}}
    reply = client.post("/webhook", json=event)
    assert reply.status_code == 200 and reply.json()["status"] == "ignored"
    assert client.post("/webhook", json={**event, "action": "START_TRAINING"}).status_code == 201
    assert client.runtime.trainer.wait_idle(10)
    assert client.runtime.store.get("3", "trained_on") == "START_TRAINING"


def test_upstream_basic_auth_variables(make_client: Any) -> None:
    settings = Settings.from_env({"ML_SERVER_BASIC_AUTH_USER": "ls", "ML_SERVER_BASIC_AUTH_PASS": "s3cret-pass"})
    assert (settings.basic_auth_user, settings.basic_auth_pass) == ("ls", "s3cret-pass")
    client = make_client(upstream_models.Interactive, basic_auth_user="ls", basic_auth_pass="s3cret-pass")
    assert predict(client, TASKS).status_code == 401
    assert (
        client.post("/predict", json={"tasks": TASKS, "label_config": CONFIG}, auth=("ls", "s3cret-pass")).status_code
        == 200
    )
    ours = Settings.from_env({"BASIC_AUTH_USER": "a", "ML_SERVER_BASIC_AUTH_USER": "b", "BASIC_AUTH_PASS": "p"})
    assert ours.basic_auth_user == "a", "our own name wins when both are set"


def test_a_recorded_label_studio_session_against_an_upstream_style_backend(make_client: Any) -> None:
    client = make_client(upstream_models.Interactive)
    seen: dict[str, set[int]] = {}
    for request in recorded_requests():
        if request["method"] == "GET":
            reply = client.get(request["path"])
        else:
            reply = client.post(request["path"], json=request["body"])
        seen.setdefault(request["path"].split("?")[0], set()).add(reply.status_code)
        if request["path"] == "/setup":
            assert reply.json() == {"model_version": "Interactive-v0.0.1"}
        if request["path"] == "/predict":
            tasks = request["body"]["tasks"]
            results = reply.json()["results"]
            assert len(results) == len(tasks) and {r["model_version"] for r in results} == {"Interactive-v0.0.1"}
    assert seen["/setup"] == seen["/predict"] == seen["/health"] == {200}
    assert seen["/webhook"] == {200, 201}, "training events scheduled, the others ignored"


def test_bulk_preannotation_with_upstream_style_models(make_client: Any) -> None:
    from label_studio_ml.preannotate.predictors import InProcessPredictor, PredictError, VersionChanged

    client = make_client(upstream_models.OwnVersions)
    predictor = InProcessPredictor(client.runtime, "5", CONFIG)
    tasks = [{"id": i, "data": {"text": "x", "mode": "dicts"}} for i in (1, 2)]
    assert [p["model_version"] for p in predictor.predict(tasks)] == ["dict-v7"] * 2, "own versions are no change"
    client.runtime.store.set("5", "model_version", "trained-1")
    with pytest.raises(VersionChanged):
        predictor.predict(tasks)
    short = InProcessPredictor(make_client(upstream_models.Template).runtime, "5", CONFIG)
    with pytest.raises(PredictError, match="0 predictions for 2 tasks"):
        short.predict(tasks)
