from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

from label_studio_ml.testing.plugin import FakeLabelStudio, assert_conformant, wait_for_version

from model import GroundingDinoModel

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <TextArea name="prompt" toName="image" editable="true" rows="2" maxSubmissions="1" showSubmitButton="true"/>
  <Number name="box_threshold" toName="image" min="0" max="1" step="0.01"/>
  <Number name="text_threshold" toName="image" min="0" max="1" step="0.01"/>
  <RectangleLabels name="label" toName="image">
    <Label value="Feline" predicted_values="cat"/>
    <Label value="Dog"/>
  </RectangleLabels>
</View>"""
LABEL_OF = {"cat": "Feline", "dog": "Dog"}


def save_image(folder: Path, name: str, width: int, height: int, seed: int, orientation: int | None = None) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    path = folder / name
    if orientation is None:
        Image.fromarray(pixels).save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(pixels).save(path, exif=exif, quality=95)
    return path


def local_task(name: str, task_id: int = 1) -> dict:
    return {"id": task_id, "data": {"image": f"/data/local-files/?d={name}"}}


def prompt_context(text: str | None, box: float | None = None, text_threshold: float | None = None) -> dict:
    items = []
    if text is not None:
        items.append(
            {
                "id": "p1",
                "from_name": "prompt",
                "to_name": "image",
                "type": "textarea",
                "origin": "manual",
                "value": {"text": [text]},
            }
        )
    if box is not None:
        items.append(
            {"id": "n1", "from_name": "box_threshold", "to_name": "image", "type": "number", "value": {"number": box}}
        )
    if text_threshold is not None:
        items.append(
            {
                "id": "n2",
                "from_name": "text_threshold",
                "to_name": "image",
                "type": "number",
                "value": {"number": text_threshold},
            }
        )
    return {"result": items}


def direct(model_dir: Path, paths: list[Path], prompt: str, box_threshold: float, text_threshold: float) -> list:
    """The oracle: transformers alone on the EXIF-transposed images, one batch, real post-processing."""
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForZeroShotObjectDetection.from_pretrained(model_dir).eval()
    images = [ImageOps.exif_transpose(Image.open(p)).convert("RGB") for p in paths]
    inputs = processor(images=images, text=[prompt] * len(images), padding=True, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    results = processor.post_process_grounded_object_detection(
        outputs,
        inputs["input_ids"],
        threshold=box_threshold,
        text_threshold=text_threshold,
        target_sizes=[(image.height, image.width) for image in images],
    )
    return [
        (image.size, r["boxes"].tolist(), r["scores"].tolist(), r["text_labels"])
        for image, r in zip(images, results, strict=True)
    ]


def expected_label(text: str) -> str | None:
    """An independent reading of a post-processed label: one prompt phrase, mapped by the config."""
    parts = {p.strip() for p in text.replace("[SEP]", "").replace("[CLS]", "").split(".") if p.strip()}
    return LABEL_OF.get(parts.pop()) if len(parts) == 1 else None


def check_against_oracle(results: list[dict], oracle: list) -> tuple[int, int]:
    """Every region is an oracle box (<= 0.5 px) with the mapped label; every mapped oracle box is a region."""
    kept = dropped = 0
    for prediction, ((width, height), boxes, scores, texts) in zip(results, oracle, strict=True):
        regions = prediction["result"]
        wanted = [(b, s, expected_label(t)) for b, s, t in zip(boxes, scores, texts, strict=True)]
        mapped = [w for w in wanted if w[2] is not None]
        assert len(regions) == len(mapped)
        kept, dropped = kept + len(mapped), dropped + len(wanted) - len(mapped)
        for region, (pixels, score, label) in zip(regions, mapped, strict=True):
            assert (region["original_width"], region["original_height"]) == (width, height)
            assert region["value"]["rectanglelabels"] == [label]
            assert region["score"] == pytest.approx(score, abs=1e-6)
            v = region["value"]
            clamp = [
                min(max(pixels[0], 0), width),
                min(max(pixels[1], 0), height),
                min(max(pixels[2], 0), width),
                min(max(pixels[3], 0), height),
            ]
            got = [
                v["x"] * width / 100,
                v["y"] * height / 100,
                (v["x"] + v["width"]) * width / 100,
                (v["y"] + v["height"]) * height / 100,
            ]
            assert max(abs(a - b) for a, b in zip(got, clamp, strict=True)) <= 0.5
        if mapped:
            assert prediction["score"] == pytest.approx(sum(m[1] for m in mapped) / len(mapped), abs=1e-6)
    return kept, dropped


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    return folder


@pytest.fixture
def client(make_client, dino_env, images):
    return make_client(GroundingDinoModel, local_files_document_root=str(images))


def forward_counter(client) -> list[int]:
    """Images per model forward."""
    calls: list[int] = []

    def hook(module, args, kwargs, output) -> None:
        calls.append(kwargs["pixel_values"].shape[0])

    client.runtime.resources.model.register_forward_hook(hook, with_kwargs=True)
    return calls


def test_interactive_prompt_boxes_match_the_post_processor(client, images, dino_env):
    paths = [save_image(images, "a.png", 37, 23, seed=0), save_image(images, "b.jpg", 41, 29, seed=1, orientation=6)]
    tasks = [local_task("a.png", 1), local_task("b.jpg", 2)]
    context = prompt_context("Cat . Dog", box=0.3, text_threshold=0.5)
    results = assert_conformant(client, CONFIG, tasks, context=context, expect_regions=True)
    oracle = direct(dino_env, paths, "cat . dog .", 0.3, 0.5)
    assert oracle[1][0] == (29, 41), "the EXIF-rotated image is 29 wide as LS shows it"
    kept, dropped = check_against_oracle(results, oracle)
    assert kept and dropped, "both mapped boxes and boxes of merged or unknown phrases occur"
    labels = {r["value"]["rectanglelabels"][0] for p in results for r in p["result"]}
    assert labels <= {"Feline", "Dog"}


def test_thresholds_from_number_controls_and_env(make_client, client, images, dino_env, monkeypatch):
    path = save_image(images, "a.png", 40, 30, seed=2)
    low = assert_conformant(client, CONFIG, [local_task("a.png")], context=prompt_context("cat . dog", 0.3, 0.5))
    high = assert_conformant(client, CONFIG, [local_task("a.png")], context=prompt_context("cat . dog", 97, 50))
    assert all(r["score"] > 0.97 for r in high[0]["result"]), "a Number in percent works too"
    assert len(high[0]["result"]) < len(low[0]["result"])
    check_against_oracle(high, direct(dino_env, [path], "cat . dog .", 0.97, 0.5))
    monkeypatch.setenv("BOX_THRESHOLD", "0.97")
    monkeypatch.setenv("TEXT_THRESHOLD", "0.5")
    env_client = make_client(GroundingDinoModel, local_files_document_root=str(images))
    from_env = assert_conformant(env_client, CONFIG, [local_task("a.png")], context=prompt_context("cat . dog"))
    assert [(r["value"], r["score"]) for r in from_env[0]["result"]] == [
        (r["value"], r["score"]) for r in high[0]["result"]
    ]


def test_partial_phrase_maps_to_its_prompt_phrase(client, images, dino_env):
    path = save_image(images, "a.png", 37, 23, seed=1)
    config = CONFIG.replace('predicted_values="cat"', 'predicted_values="cat, black cat"')
    results = assert_conformant(client, config, [local_task("a.png")], context=prompt_context("black cat . dog", 0.3))
    ((_, boxes, scores, texts),) = direct(dino_env, [path], "black cat . dog .", 0.3, 0.25)
    expected = []
    for score, text in zip(scores, texts, strict=True):
        parts = {p.strip() for p in text.replace("[SEP]", "").split(".") if p.strip()}
        if parts in ({"black"}, {"cat"}, {"black cat"}):
            expected.append((score, "Feline"))
        elif parts == {"dog"}:
            expected.append((score, "Dog"))
    got = [(r["score"], r["value"]["rectanglelabels"][0]) for r in results[0]["result"]]
    assert [label for _, label in got] == [label for _, label in expected]
    assert [s for s, _ in got] == pytest.approx([s for s, _ in expected], abs=1e-6)
    # this image gets "black" (part of a phrase), "cat.." and "black cat": all three are Feline
    assert [label for _, label in got].count("Feline") >= 3 and len(got) < len(texts)


def test_batch_without_stored_prompt_uses_the_labels_and_batches_images(make_client, images, dino_env, monkeypatch):
    monkeypatch.setenv("GROUNDING_DINO_BATCH_SIZE", "2")
    client = make_client(GroundingDinoModel, local_files_document_root=str(images))
    calls = forward_counter(client)
    paths = [save_image(images, f"{i}.png", 30 + i, 20 + 2 * i, seed=10 + i) for i in range(3)]
    tasks = [local_task(p.name, i) for i, p in enumerate(paths)]
    results = assert_conformant(client, CONFIG, tasks, context=None)
    assert calls == [2, 1], "three images in batches of two"
    oracle = direct(dino_env, paths[:2], "cat . dog .", 0.35, 0.25) + direct(
        dino_env, paths[2:], "cat . dog .", 0.35, 0.25
    )
    check_against_oracle(results, oracle)


def test_a_missing_image_gives_that_task_an_empty_result(client, images, dino_env):
    save_image(images, "a.png", 37, 23, seed=0)
    tasks = [local_task("a.png", 1), local_task("missing.png", 2), {"id": 3, "data": {}}]
    results = assert_conformant(client, CONFIG, tasks, context=prompt_context("cat . dog", 0.3))
    assert results[0]["result"] and results[1]["result"] == [] and results[2]["result"] == []


def annotation(prompt: str, box: float, updated: str = "2026-01-01", cancelled: bool = False) -> dict:
    return {
        "id": 5,
        "was_cancelled": cancelled,
        "updated_at": updated,
        "result": prompt_context(prompt, box=box)["result"]
        + [
            {
                "id": "r1",
                "from_name": "label",
                "to_name": "image",
                "type": "rectanglelabels",
                "original_width": 10,
                "original_height": 10,
                "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["Dog"]},
            }
        ],
    }


def test_fit_stores_the_prompt_and_batch_predictions_reuse_it(client, images, dino_env):
    path = save_image(images, "a.png", 37, 23, seed=0)
    project = "4.1700000000"
    v0 = client.post("/setup", json={"project": project, "schema": CONFIG}).json()["model_version"]
    event = {
        "action": "ANNOTATION_CREATED",
        "project": {"id": 4, "label_config": CONFIG},
        "task": {"id": 1, "data": {"image": "/data/local-files/?d=a.png"}, "project": 4},
        "annotation": annotation("dog", box=0.9),
    }
    assert client.post("/webhook", json=event).json()["status"] == "ok"
    v1 = wait_for_version(client, project, CONFIG, v0)
    assert client.runtime.trainer.wait_idle(20)
    results = assert_conformant(client, CONFIG, [local_task("a.png")], project=project)
    assert results[0]["model_version"] == v1
    assert {r["value"]["rectanglelabels"][0] for r in results[0]["result"]} == {"Dog"}
    check_against_oracle(results, direct(dino_env, [path], "dog .", 0.9, 0.25))
    # a prompt typed in the context still wins over the stored one
    typed = assert_conformant(client, CONFIG, [local_task("a.png")], context=prompt_context("cat"), project=project)
    assert {r["value"]["rectanglelabels"][0] for r in typed[0]["result"]} == {"Feline"}


def test_start_training_reads_the_latest_prompt_from_label_studio(make_client, images, dino_env):
    tasks = [
        {"id": 1, "data": {}, "annotations": [annotation("cat", 0.5, "2026-01-02")]},
        {"id": 2, "data": {}, "annotations": [annotation("dog", 0.8, "2026-01-03")]},
        {"id": 3, "data": {}, "annotations": [annotation("car", 0.1, "2026-01-04", cancelled=True)]},
    ]
    with FakeLabelStudio(tasks={6: tasks}) as ls:
        client = make_client(
            GroundingDinoModel,
            label_studio_url=ls.url,
            label_studio_api_key=ls.legacy_token,
            local_files_document_root=str(images),
        )
        v0 = client.post("/setup", json={"project": "6", "schema": CONFIG}).json()["model_version"]
        assert client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 6}}).json()["job"]
        wait_for_version(client, "6", CONFIG, v0)
        assert client.runtime.trainer.wait_idle(20)
    model = client.runtime.instance("6", CONFIG)
    assert model.stored == {"prompt": "dog", "box_threshold": 0.8}
    assert model.query(None).phrases == ("dog",) and model.query(None).box_threshold == 0.8


def test_recorded_style_interactive_request_with_an_ls_upload(make_client, dino_env, tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    data = save_image(folder, "x.png", 37, 23, seed=0).read_bytes()
    upload = "/data/upload/4/0c8e1f2a-x.png"
    with FakeLabelStudio(files={upload: data}) as ls:
        client = make_client(GroundingDinoModel, label_studio_url=ls.url, label_studio_api_key=ls.legacy_token)
        setup = client.post(
            "/setup",
            json={
                "project": "4.1795797692",
                "schema": CONFIG,
                "hostname": "http://127.0.0.1:8080",
                "access_token": "x" * 40,
                "extra_params": {},
            },
        )
        task = {
            "id": 77,
            "annotations": [],
            "drafts": [],
            "predictions": [],
            "data": {"image": upload},
            "meta": {},
            "created_at": "2026-11-27T16:41:40.101Z",
            "updated_at": "2026-11-27T16:41:40.101Z",
            "allow_skip": True,
            "inner_id": 1,
            "total_annotations": 0,
            "cancelled_annotations": 0,
            "total_predictions": 0,
            "comment_count": 0,
            "unresolved_comment_count": 0,
            "last_comment_updated_at": None,
            "project": 4,
            "updated_by": [],
            "comment_authors": [],
        }
        context = {"annotation_id": None, "draft_id": 3, "user_id": 1, **prompt_context("cat . dog", 0.3)}
        reply = client.post(
            "/predict",
            json={
                "tasks": [task],
                "project": "4.1795797692",
                "label_config": CONFIG,
                "params": {"login": None, "password": None, "context": context},
            },
        )
        assert ls.auth_headers_seen(upload) == [f"Token {ls.legacy_token}"]
    assert reply.status_code == 200, reply.text
    [prediction] = reply.json()["results"]
    assert prediction["model_version"] == setup.json()["model_version"]
    assert prediction["result"] and all(r["type"] == "rectanglelabels" for r in prediction["result"])
    assert client.runtime.stats["dropped_regions"] == 0
