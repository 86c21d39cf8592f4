from __future__ import annotations

from label_studio_ml.testing.plugin import FakeLabelStudio, assert_conformant, recorded, wait_for_version

from model import SimpleTextClassifier

CONFIG = recorded("/setup")[0]["body"]["schema"]  # Text + Choices Positive/Negative, as LS sent it
POSITIVE = [
    "I love this",
    "great product, love it",
    "wonderful and great",
    "so good, I love it",
    "excellent quality",
    "really great value",
]
NEGATIVE = [
    "I hate this",
    "terrible product, hate it",
    "awful and bad",
    "so bad, I hate it",
    "poor quality",
    "really terrible value",
]


def annotation_event(task_id: int, text: str, label: str, annotation_id: int, project: int = 1) -> dict:
    result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": project, "label_config": CONFIG},
        "task": {"id": task_id, "data": {"text": text}, "project": project},
        "annotation": {"id": annotation_id, "result": result, "was_cancelled": False, "task": task_id},
    }


def test_untrained_model_answers_one_empty_prediction_per_task(make_client):
    client = make_client(SimpleTextClassifier)
    tasks = recorded("/predict")[0]["body"]["tasks"]
    results = assert_conformant(client, CONFIG, tasks, expect_regions=False)
    assert results[0]["model_version"] == "simple_text_classifier-0"


def test_trains_from_annotation_webhooks_and_predicts_with_new_version(make_client):
    client = make_client(SimpleTextClassifier)
    v0 = client.post("/setup", json={"project": "1.1700000000", "schema": CONFIG}).json()["model_version"]
    events = [annotation_event(i, t, "Positive", 100 + i) for i, t in enumerate(POSITIVE)]
    events += [annotation_event(50 + i, t, "Negative", 200 + i) for i, t in enumerate(NEGATIVE)]
    for event in events:
        reply = client.post("/webhook", json=event)
        assert reply.status_code == 201 and reply.json()["status"] == "ok", reply.text
    v1 = wait_for_version(client, "1.1700000000", CONFIG, v0)
    assert v1.startswith("simple_text_classifier-") and v1 != v0
    assert client.runtime.trainer.wait_idle(20)
    tasks = [{"id": 900, "data": {"text": "I love it, great"}}, {"id": 901, "data": {"text": "hate it, terrible"}}]
    results = assert_conformant(client, CONFIG, tasks, project="1.1700000000")
    labels = [r["result"][0]["value"]["choices"][0] for r in results]
    assert labels == ["Positive", "Negative"]
    final = client.post("/setup", json={"project": "1.1700000000", "schema": CONFIG}).json()["model_version"]
    assert all(r["model_version"] == final for r in results)
    assert client.get("/versions").json()["versions"][0] == final
    jobs = client.get("/jobs?project=1").json()["jobs"]
    assert jobs and len(jobs) <= 12
    assert all(j["state"] == "done" for j in jobs)


def test_start_training_reads_labeled_tasks_from_label_studio_export(make_client):
    tasks = [
        {
            "id": i,
            "data": {"text": t},
            "annotations": [
                {
                    "id": i,
                    "was_cancelled": False,
                    "updated_at": "2026-01-01",
                    "result": [
                        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}
                    ],
                }
            ],
        }
        for i, (t, label) in enumerate([(t, "Positive") for t in POSITIVE] + [(t, "Negative") for t in NEGATIVE])
    ]
    tasks.append(
        {
            "id": 99,
            "data": {"text": "skipped"},
            "annotations": [
                {
                    "id": 99,
                    "was_cancelled": True,
                    "result": [{"from_name": "label", "type": "choices", "value": {"choices": ["Positive"]}}],
                }
            ],
        }
    )
    with FakeLabelStudio(tasks={7: tasks}) as ls:
        client = make_client(SimpleTextClassifier, label_studio_url=ls.url, label_studio_api_key=ls.pat)
        v0 = client.post("/setup", json={"project": "7", "schema": CONFIG}).json()["model_version"]
        reply = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7}})
        assert reply.status_code == 201 and reply.json()["job"]
        v1 = wait_for_version(client, "7", CONFIG, v0)
        assert ls.auth_headers_seen("/api/projects/7/export") == [f"Bearer {ls.access}"]
    examples = client.runtime.store.get("7", "examples")
    assert len(examples) == len(POSITIVE) + len(NEGATIVE), "the cancelled annotation is skipped"
    results = assert_conformant(client, CONFIG, [{"id": 1, "data": {"text": "I love this, great"}}], project="7")
    assert results[0]["result"][0]["value"]["choices"] == ["Positive"]
    assert results[0]["model_version"] == v1


def test_trained_version_survives_a_restart(make_client, tmp_path):
    model_dir = tmp_path / "shared"
    client = make_client(SimpleTextClassifier, model_dir=model_dir)
    for i, (text, label) in enumerate([(t, "Positive") for t in POSITIVE] + [(t, "Negative") for t in NEGATIVE]):
        client.post("/webhook", json=annotation_event(i, text, label, i))
    assert client.runtime.trainer.wait_idle(20)
    version = client.post("/setup", json={"project": "1", "schema": CONFIG}).json()["model_version"]
    assert version != "simple_text_classifier-0"
    restarted = make_client(SimpleTextClassifier, model_dir=model_dir)
    results = assert_conformant(restarted, CONFIG, [{"id": 1, "data": {"text": "I hate this"}}], project="1")
    assert results[0]["model_version"] == version
    assert results[0]["result"][0]["value"]["choices"] == ["Negative"]
