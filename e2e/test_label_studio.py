"""Services connected to a real Label Studio: connect, import, retrieve predictions, read them back
from LS, interactive calls, and the training loop (annotations -> train -> new version)."""

from __future__ import annotations

import time

from label_studio_ml.label_config import LabelConfig
from label_studio_ml.regions import RegionValidator

CHOICES = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
           '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>')
SPANS = ('<View><Labels name="label" toName="text"><Label value="Fruit"/><Label value="Org"/></Labels>'
         '<Text name="text" value="$text"/></View>')
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
        assert any(p["result"] for t in tasks for p in t["predictions"] if p["model_version"] == version) \
            == expect_regions
    return tasks


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
    context = {"result": [{"id": "u1", "from_name": "label", "to_name": "text", "type": "labels", "origin": "manual",
                           "value": {"start": 0, "end": 5, "text": "apple", "labels": ["Fruit"]}}]}
    reply = ls.api("POST", f"/api/ml/{ml['id']}/interactive-annotating", json={"task": task["id"], "context": context})
    spans = reply["data"]["result"]
    assert sorted(s["value"]["start"] for s in spans) == [17, 28]
    assert all(text[s["value"]["start"]:s["value"]["end"]] == s["value"]["text"] for s in spans)
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
    predicted = {text: next(p for p in by_text[text]["predictions"] if p["model_version"] == v1)["result"][0]
                 ["value"]["choices"][0] for text in ("love it, great", "hate it, bad")}
    assert predicted == {"love it, great": "Positive", "hate it, bad": "Negative"}
    ls.api("DELETE", f"/api/annotations/{annotation_ids[0]}/", expect=(200, 204))
    time.sleep(1)
    assert ls.api("GET", f"/api/ml/{ml['id']}")["state"] in ("CO", "TR")
    assert "Traceback" not in server.log_tail(400)
