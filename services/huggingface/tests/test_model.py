from __future__ import annotations

import json

from conftest import NEGATIVE, POSITIVE, ner_examples

from label_studio_ml.testing.plugin import FakeLabelStudio, assert_conformant, recorded, wait_for_version

import model
from model import entity_spans, resolve_overlaps

CHOICES = recorded("/setup")[0]["body"]["schema"]  # Text + Choices Positive/Negative, as LS sent it
NER = """<View><Text name="text" value="$text"/>
  <Labels name="ner" toName="text">
    <Label value="Person" predicted_values="PER"/><Label value="Location" predicted_values="LOC"/>
  </Labels></View>"""
GENERATE = """<View><Text name="text" value="$text"/>
  <TextArea name="answer" toName="text" rows="3"/></View>"""


def spans_of(prediction: dict) -> list[tuple[str, str]]:
    return [(r["value"]["text"], r["value"]["labels"][0]) for r in prediction["result"]]


def check_spans(text: str, prediction: dict) -> None:
    """The fidelity invariants of NER regions: exact text, trimmed edges, no overlaps."""
    values = sorted((r["value"] for r in prediction["result"]), key=lambda v: v["start"])
    for value in values:
        assert text[value["start"] : value["end"]] == value["text"]
        assert value["text"] == value["text"].strip() and value["text"]
    for left, right in zip(values, values[1:]):
        assert left["end"] <= right["start"], (left, right)


def annotation_event(task_id: int, text: str, result: list[dict], schema: str, project: int = 1) -> dict:
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": project, "label_config": schema},
        "task": {"id": task_id, "data": {"text": text}, "project": project},
        "annotation": {"id": 1000 + task_id, "result": result, "was_cancelled": False, "task": task_id},
    }


# --- classification ------------------------------------------------------------------------------
def test_recorded_ls_requests_get_the_fine_tuned_classifiers_choices(serve, classifier_dir):
    client = serve(classifier_dir)
    setup = recorded("/setup")[0]["body"]
    assert client.post("/setup", json=setup).json()["model_version"] == "huggingface-0"
    body = recorded("/predict")[0]["body"]
    reply = client.post("/predict", json=body)
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert len(results) == len(body["tasks"])
    by_text = {t["data"]["text"]: r for t, r in zip(body["tasks"], results)}
    # the model says "positive"/"negative": mapped onto the config's "Positive"/"Negative"
    assert by_text["I love this"]["result"][0]["value"]["choices"] == ["Positive"]
    assert by_text["I hate this"]["result"][0]["value"]["choices"] == ["Negative"]
    for result in results:
        assert 0.5 <= result["score"] <= 1.0
        assert result["result"][0]["score"] == result["score"]


def test_classifier_over_http_is_conformant_on_unseen_texts_in_one_batched_call(serve, classifier_dir):
    client = serve(classifier_dir, HF_BATCH_SIZE=16)
    predictor = client.runtime.resources.predictor
    calls, real = [], predictor.pipe

    class Counting:  # the real pipeline, counting its calls
        def __getattr__(self, name):
            return getattr(real, name)

        def __call__(self, texts, **kwargs):
            calls.append((len(texts), kwargs["batch_size"]))
            return real(texts, **kwargs)

    predictor.pipe = Counting()
    tasks = [
        {"id": 1, "data": {"text": "I love it, really great"}},
        {"id": 2, "data": {"text": "hate it, so terrible"}},
        {"id": 3, "data": {"text": "   "}},
    ]
    results = assert_conformant(client, CHOICES, tasks)
    assert [r["result"][0]["value"]["choices"] for r in results[:2]] == [["Positive"], ["Negative"]]
    assert results[2]["result"] == [] and results[2]["score"] is None
    assert calls == [(2, 16)], "one pipeline call per request, blank texts skipped"


def test_model_labels_the_config_lacks_are_dropped(serve, classifier_dir):
    client = serve(classifier_dir)
    config = CHOICES.replace('<Choice value="Negative"/>', '<Choice value="Neutral"/>')
    tasks = [{"id": 1, "data": {"text": POSITIVE[0]}}, {"id": 2, "data": {"text": NEGATIVE[0]}}]
    results = assert_conformant(client, config, tasks)
    assert results[0]["result"][0]["value"]["choices"] == ["Positive"]
    assert results[1]["result"] == []


# --- NER -----------------------------------------------------------------------------------------
def test_ner_merges_word_pieces_into_whole_entities_with_exact_offsets(serve, ner_dir):
    client = serve(ner_dir)
    texts = [
        "Anna Kowalczyk lives in Wrocław.",  # ko ##wal ##cz ##yk: one entity, not four
        "  \n Olga Nowak moved to Berlin last year.",
        "Yesterday Peter Jones flew to Madrid.\tThen\t\tnothing.",
    ]
    tasks = [{"id": i, "data": {"text": t}} for i, t in enumerate(texts)]
    results = assert_conformant(client, NER, tasks)
    for text, prediction in zip(texts, results):
        check_spans(text, prediction)
        assert prediction["score"] is not None and 0 < prediction["score"] <= 1
    assert spans_of(results[0]) == [("Anna Kowalczyk", "Person"), ("Wrocław", "Location")]
    assert spans_of(results[1]) == [("Olga Nowak", "Person"), ("Berlin", "Location")]
    assert spans_of(results[2]) == [("Peter Jones", "Person"), ("Madrid", "Location")]


def test_byte_level_bpe_offsets_with_leading_spaces_become_exact_spans(serve, bpe_tagger_dir):
    from transformers import pipeline

    texts = [
        "Anna Kowalczyk lives in Paris.",
        "  John   Smith\tmoved to  Berlin  ",
        "Café Wrocław — naïve résumé, Olga Nowak!",
        " ".join(t for t, _ in ner_examples()[:8]),
    ]
    direct = pipeline("token-classification", model=str(bpe_tagger_dir), aggregation_strategy="first")
    raw = [e for text in texts for e in direct(text)]
    assert any(texts_start_with_space(texts, raw)), "the fixture must produce entities with a leading space"

    client = serve(bpe_tagger_dir)
    tasks = [{"id": i, "data": {"text": t}} for i, t in enumerate(texts)]
    results = assert_conformant(client, NER, tasks)
    assert sum(len(r["result"]) for r in results) > 0
    for text, prediction in zip(texts, results):
        check_spans(text, prediction)
        assert {label for _, label in spans_of(prediction)} <= {"Person", "Location"}  # MISC is dropped
    assert len(client.runtime.resources.predictor.pipe.tokenizer(texts[3])["input_ids"]) > 32, (
        "the long text runs through overlapping windows (HF_STRIDE)"
    )


def texts_start_with_space(texts: list[str], entities: list[dict]) -> list[bool]:
    found = []
    for entity in entities:
        found.append(any(entity["start"] < len(t) and t[entity["start"]].isspace() for t in texts))
    return found


def test_entity_spans_trim_merge_and_resolve_overlaps():
    text = "  Anna Kowalczyk  lives in New York"
    to_config = {"PER": "Person", "LOC": "Location"}.get
    entities = [
        {"entity_group": "PER", "start": 1, "end": 7, "score": 0.9},  # " Anna" with a space
        {"entity_group": "PER", "start": 5, "end": 17, "score": 0.8},  # overlaps: same label merges
        {"entity_group": "LOC", "start": 14, "end": 22, "score": 0.5},  # overlaps Person, lower score
        {"entity_group": "MISC", "start": 18, "end": 23, "score": 0.99},  # not in the config
        {"entity": "B-LOC", "word": "new york", "start": None, "end": None, "score": 0.7},  # slow tokenizer
    ]
    spans = entity_spans(text, entities, to_config)
    assert [(text[s:e], label) for s, e, label, _ in spans] == [("Anna Kowalczyk", "Person"), ("New York", "Location")]
    assert spans[0][3] == 0.9
    assert resolve_overlaps([(0, 4, "A", 0.2), (2, 6, "B", 0.9), (6, 8, "A", 0.5)]) == [
        (2, 6, "B", 0.9),
        (6, 8, "A", 0.5),
    ]


def test_text_given_as_a_url_is_fetched_and_spans_index_the_fetched_text(serve, ner_dir):
    text = "We met Maria Garcia in London."
    with FakeLabelStudio(files={"/data/upload/1/note.txt": text.encode()}) as ls:
        client = serve(ner_dir, settings={"label_studio_url": ls.url, "label_studio_api_key": ls.legacy_token})
        results = assert_conformant(client, NER, [{"id": 5, "data": {"text": "/data/upload/1/note.txt"}}])
    check_spans(text, results[0])
    assert spans_of(results[0]) == [("Maria Garcia", "Person"), ("London", "Location")]


# --- generation ----------------------------------------------------------------------------------
def test_generation_answers_a_textarea_with_a_string(serve, generator_dir):
    client = serve(generator_dir, HF_MAX_NEW_TOKENS=6, HF_PROMPT="the cat {text}")
    tasks = [{"id": 1, "data": {"text": "sat on the mat"}}, {"id": 2, "data": {"text": "the dog ran to the big house"}}]
    results = assert_conformant(client, GENERATE, tasks)
    for prediction in results:
        (item,) = prediction["result"]
        assert item["type"] == "textarea" and item["from_name"] == "answer"
        (generated,) = item["value"]["text"]
        assert isinstance(generated, str) and generated.strip()
    assert client.runtime.resources.task == model.GENERATION


# --- config and loading --------------------------------------------------------------------------
def test_a_config_without_a_text_control_is_a_clear_error(serve, classifier_dir):
    client = serve(classifier_dir)
    config = (
        '<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
        '<Label value="Car"/></RectangleLabels></View>'
    )
    reply = client.post("/predict", json={"tasks": [{"id": 1, "data": {"image": "x.png"}}], "label_config": config})
    assert reply.status_code == 422
    assert "Choices, Labels or TextArea" in reply.json()["error"]


def test_without_hf_model_health_reports_the_reason(make_client, monkeypatch):
    monkeypatch.delenv("HF_MODEL", raising=False)
    client = make_client(model.HuggingFace)
    reply = client.get("/health")
    assert reply.status_code == 503 and "HF_MODEL" in reply.json()["reason"]


# --- training ------------------------------------------------------------------------------------
def test_fine_tunes_a_classifier_from_annotation_webhooks(serve, minilm_dir):
    client = serve(minilm_dir, HF_EPOCHS=8, HF_LEARNING_RATE=1e-4, HF_TRAIN_BATCH_SIZE=8)
    assert client.runtime.resources.task is None, "a bare encoder serves nothing before training"
    project = "1.1700000000"
    untrained = assert_conformant(client, CHOICES, [{"id": 1, "data": {"text": "I love this"}}], project=project)
    assert untrained[0]["result"] == [] and untrained[0]["model_version"] == "huggingface-0"

    texts = [(t, "Positive") for t in POSITIVE] + [(t, "Negative") for t in NEGATIVE]
    for i, (text, label) in enumerate(texts):
        result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]
        reply = client.post("/webhook", json=annotation_event(i, text, result, CHOICES))
        assert reply.status_code == 201 and reply.json()["status"] == "ok", reply.text
    version = wait_for_version(client, project, CHOICES, "huggingface-0", timeout=180)
    assert client.runtime.trainer.wait_idle(180)
    version = client.post("/setup", json={"project": project, "schema": CHOICES}).json()["model_version"]
    folder = client.runtime.versions.active_dir("1")
    assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()

    tasks = [
        {"id": 900, "data": {"text": "I love it, really great"}},
        {"id": 901, "data": {"text": "hate it, terrible"}},
    ]
    results = assert_conformant(client, CHOICES, tasks, project=project)
    assert [r["result"][0]["value"]["choices"] for r in results] == [["Positive"], ["Negative"]]
    assert all(r["model_version"] == version for r in results)
    jobs = client.get("/jobs?project=1").json()["jobs"]
    assert jobs and all(j["state"] == "done" for j in jobs)

    loads = model.VERSIONS.loads
    reformatted = CHOICES.replace("><Choices", ">\n<Choices")  # another config string: a new instance
    assert_conformant(client, reformatted, tasks[:1], project=project)
    assert model.VERSIONS.loads == loads, "the version's model is loaded once, not per instance"


def test_fine_tunes_ner_from_annotation_webhooks(serve, minilm_dir):
    client = serve(minilm_dir, HF_EPOCHS=10, HF_LEARNING_RATE=2e-4, HF_TRAIN_BATCH_SIZE=12)
    names = {"PER": "Person", "LOC": "Location"}
    for i, (text, spans) in enumerate(ner_examples()):
        result = [
            {
                "id": f"r{i}{k}",
                "from_name": "ner",
                "to_name": "text",
                "type": "labels",
                "value": {"start": s, "end": e, "text": text[s:e], "labels": [names[label]]},
            }
            for k, (s, e, label) in enumerate(spans)
        ]
        assert client.post("/webhook", json=annotation_event(i, text, result, NER)).status_code == 201
    version = wait_for_version(client, "1", NER, "huggingface-0", timeout=180)
    assert client.runtime.trainer.wait_idle(180)
    version = client.post("/setup", json={"project": "1", "schema": NER}).json()["model_version"]
    text = "Peter Jones moved to Warsaw last year."
    results = assert_conformant(client, NER, [{"id": 1, "data": {"text": text}}], project="1")
    check_spans(text, results[0])
    assert spans_of(results[0]) == [("Peter Jones", "Person"), ("Warsaw", "Location")]
    assert results[0]["model_version"] == version


def test_start_training_reads_label_studio_and_keeps_a_matching_head(serve, classifier_dir):
    """HF_MODEL is already a classifier whose labels map onto the config: training continues its head."""
    texts = [(t, "Positive") for t in POSITIVE[:3]] + [(t, "Negative") for t in NEGATIVE[:3]]
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
        for i, (t, label) in enumerate(texts)
    ]
    with FakeLabelStudio(tasks={7: tasks}) as ls:
        client = serve(
            classifier_dir,
            settings={"label_studio_url": ls.url, "label_studio_api_key": ls.pat},
            HF_EPOCHS=1,
            HF_LEARNING_RATE=1e-5,
        )
        client.post("/setup", json={"project": "7", "schema": CHOICES})
        reply = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7}})
        assert reply.status_code == 201 and reply.json()["job"]
        version = wait_for_version(client, "7", CHOICES, "huggingface-0", timeout=180)
        assert ls.auth_headers_seen("/api/projects/7/export") == [f"Bearer {ls.access}"]
    assert version.startswith("huggingface-1-")
    assert len(client.runtime.store.get("7", "examples")) == len(texts)
    job = client.get("/jobs?project=7").json()["jobs"][0]
    assert job["state"] == "done" and job["progress"] == 1.0
    saved = json.loads((client.runtime.versions.active_dir("7") / "config.json").read_text())
    assert saved["id2label"] == {"0": "Negative", "1": "Positive"}, "the base head's order, renamed to the config"
    results = assert_conformant(client, CHOICES, [{"id": 1, "data": {"text": "so good, really great"}}], project="7")
    assert results[0]["result"][0]["value"]["choices"] == ["Positive"] and results[0]["model_version"] == version
