from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import THRESHOLD
from label_studio_sdk.converter.brush import decode_rle
from mmdet.apis import inference_detector

from label_studio_ml.media.images import open_image
from label_studio_ml.results.geometry import point_to_pixels, to_pixels
from label_studio_ml.results.label_config import LabelConfig, map_label
from label_studio_ml.testing.plugin import FakeLabelStudio, assert_conformant, recorded

from model import MMDetection, resolve_config

IMAGES = ["wide.png", "tall.png", "rotated.jpg"]
VEHICLES = "car,truck,bus,motorcycle,bicycle,train,airplane,boat"
CONFIG = f"""<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="Person"/>
    <Label value="Vehicle" predicted_values="{VEHICLES}"/>
    <Label value="Dog"/>
    <Label value="chair"/>
  </RectangleLabels>
</View>"""
MASK_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image"><Label value="Thing" predicted_values="{names}"/></RectangleLabels>
  <PolygonLabels name="outline" toName="image"><Label value="Thing" predicted_values="{names}"/></PolygonLabels>
  <BrushLabels name="mask" toName="image"><Label value="Thing" predicted_values="{names}"/></BrushLabels>
</View>"""


def tasks(*names: str) -> list[dict]:
    return [{"id": i + 1, "data": {"image": f"/data/local-files/?d={name}"}} for i, name in enumerate(names)]


def raw(client, media: Path, name: str):
    """What mmdet itself answers for the image as LS shows it (EXIF applied), and that image's size."""
    image = open_image(media / name)
    bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
    return inference_detector(client.runtime.resources.model, bgr).pred_instances, image.size


def passing(instances, classes, labels_for, threshold: float = THRESHOLD) -> list[tuple]:
    """(config label, score, pixel box clipped to the image, index) of each raw detection the service must send."""
    out = []
    for i, (score, label, box) in enumerate(
        zip(instances.scores.tolist(), instances.labels.tolist(), instances.bboxes.tolist())
    ):
        mapped = labels_for(classes[label])
        if score >= threshold and mapped is not None:
            out.append((mapped, score, box, i))
    return out


def predict(client, config: str, task_list: list[dict]) -> list[dict]:
    return assert_conformant(client, config, task_list)


def test_boxes_are_the_detectors_pixel_boxes_in_percent_of_the_original_image(client, media):
    results = predict(client, CONFIG, tasks(*IMAGES))
    classes = client.runtime.resources.classes
    pair = LabelConfig(CONFIG).find("RectangleLabels")
    total = 0
    for name, prediction in zip(IMAGES, results):
        instances, (width, height) = raw(client, media, name)
        expected = passing(instances, classes, pair.map_label)
        regions = prediction["result"]
        assert len(regions) == len(expected)
        total += len(regions)
        for region, (label, score, box, _) in zip(regions, expected):
            assert (region["original_width"], region["original_height"]) == (width, height)
            assert region["value"]["rectanglelabels"] == [label]
            assert region["score"] == pytest.approx(score)
            clipped = np.clip(box, 0, [width, height, width, height])
            assert np.abs(np.array(to_pixels(region["value"], width, height)) - clipped).max() <= 0.5
        if regions:
            assert prediction["score"] == pytest.approx(np.mean([r["score"] for r in regions]))
    assert total > 0, "random weights gave no box above the threshold: the test checks nothing"


def test_exif_rotated_image_is_measured_as_displayed(client):
    [prediction] = predict(client, CONFIG, tasks("rotated.jpg"))
    assert prediction["result"], "no region to check"
    assert {(r["original_width"], r["original_height"]) for r in prediction["result"]} == {(180, 300)}


def test_class_names_map_exactly_case_insensitively_or_by_predicted_values(client, media):
    results = predict(client, CONFIG, tasks(*IMAGES))
    classes = client.runtime.resources.classes
    expected_map = {"person": "Person", "dog": "Dog", "chair": "chair", **{v: "Vehicle" for v in VEHICLES.split(",")}}
    seen_unmapped = 0
    for name, prediction in zip(IMAGES, results):
        instances, _ = raw(client, media, name)
        names = [classes[i] for s, i in zip(instances.scores.tolist(), instances.labels.tolist()) if s >= THRESHOLD]
        seen_unmapped += sum(n not in expected_map for n in names)
        assert [r["value"]["rectanglelabels"][0] for r in prediction["result"]] == [
            expected_map[n] for n in names if n in expected_map
        ]
    assert seen_unmapped > 0, "no unmapped class among the detections: dropping is untested"
    assert map_label("DOG", ["Dog"]) == "Dog"


def test_threshold_drops_lower_scores_and_an_empty_result_stays_one_per_task(client, media):
    detector = client.runtime.resources
    instances, _ = raw(client, media, "wide.png")
    scores = sorted(s for s in instances.scores.tolist() if s >= THRESHOLD)
    assert len(scores) >= 2
    middle = scores[len(scores) // 2]
    every = ",".join(detector.classes)
    config = CONFIG.replace('<Label value="Person"/>', f'<Label value="Any" predicted_values="{every}"/>')
    try:
        detector.score_threshold = middle
        [prediction] = predict(client, config, tasks("wide.png"))
        assert sorted(r["score"] for r in prediction["result"]) == pytest.approx([s for s in scores if s >= middle])
        detector.score_threshold = 1.01
        results = predict(client, config, tasks(*IMAGES))
        assert [(r["result"], r["score"]) for r in results] == [([], None)] * len(IMAGES)
    finally:
        detector.score_threshold = THRESHOLD


def test_config_without_matching_labels_answers_empty_results(client):
    config = (
        CONFIG.replace("Person", "Zebra crossing")
        .replace("Dog", "Kite flying")
        .replace(f' predicted_values="{VEHICLES}"', "")
        .replace("chair", "Tree")
    )
    results = predict(client, config, tasks(*IMAGES))
    assert [r["result"] for r in results] == [[]] * len(IMAGES)


def test_missing_image_gives_that_task_an_empty_result(client):
    task_list = tasks("wide.png", "no-such-file.png", "tall.png")
    results = predict(client, CONFIG, task_list)
    assert results[1]["result"] == []
    assert results[0]["result"] and results[2]["result"]


def test_recorded_ls_request_with_uploaded_images(make_client, media, monkeypatch):
    """A /predict body shaped as LS 1.23.2 sends it, images fetched from LS uploads with the token."""
    body = copy.deepcopy(recorded("/predict")[0]["body"])
    files = {f"/data/upload/2/{name}": (media / name).read_bytes() for name in IMAGES}
    body["tasks"] = body["tasks"][: len(IMAGES)]
    for task, path in zip(body["tasks"], files):
        task["data"] = {"image": path}
    body["label_config"] = CONFIG
    monkeypatch.setenv("MMDET_CONFIG", "rtmdet_tiny_8xb32-300e_coco")
    monkeypatch.setenv("MMDET_CHECKPOINT", "")
    monkeypatch.setenv("SCORE_THRESHOLD", str(THRESHOLD))
    torch.manual_seed(0)  # the random weights of the other tests, which give boxes
    with FakeLabelStudio(files=files) as ls:
        client = make_client(MMDetection, label_studio_url=ls.url, label_studio_api_key=ls.legacy_token)
        assert client.post("/setup", json={"project": body["project"], "schema": CONFIG}).status_code == 200
        reply = client.post("/predict", content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert reply.status_code == 200, reply.text
        assert ls.auth_headers_seen("/data/upload/") == [f"Token {ls.legacy_token}"] * len(IMAGES)
    results = reply.json()["results"]
    assert len(results) == len(IMAGES) and any(r["result"] for r in results)
    assert all(r["model_version"] == "mmdetection-0" for r in results)
    assert client.runtime.stats["dropped_regions"] == 0


def test_masks_become_polygons_and_brush_rle_of_the_exact_mask(mask_client, media):
    classes = mask_client.runtime.resources.classes
    assert mask_client.runtime.resources.has_masks
    config = MASK_CONFIG.format(names=",".join(classes))
    results = predict(mask_client, config, tasks("wide.png", "rotated.jpg"))
    checked = 0
    for name, prediction in zip(["wide.png", "rotated.jpg"], results):
        instances, (width, height) = raw(mask_client, media, name)
        expected = passing(instances, classes, lambda _: "Thing")
        by_kind = {
            kind: [r for r in prediction["result"] if r["from_name"] == kind] for kind in ("box", "outline", "mask")
        }
        assert len(by_kind["box"]) == len(expected)
        nonempty = [e for e in expected if instances.masks[e[3]].any()]
        assert len(by_kind["mask"]) == len(nonempty) and len(by_kind["outline"]) <= len(nonempty)
        for region, (_, score, _, index) in zip(by_kind["mask"], nonempty):
            mask = instances.masks[index].cpu().numpy()
            assert mask.shape == (height, width)
            assert (region["original_width"], region["original_height"]) == (width, height)
            decoded = decode_rle(region["value"]["rle"]).reshape(height, width, 4)[:, :, 3] > 0
            assert np.array_equal(decoded, mask)
            assert region["score"] == pytest.approx(score)
            checked += 1
        masks = [instances.masks[e[3]].cpu().numpy() for e in nonempty]
        for region in by_kind["outline"]:
            assert len(region["value"]["points"]) >= 3
            # every vertex of the outline is a pixel of one of the instance masks
            for x, y in region["value"]["points"]:
                px, py = (round(v) for v in point_to_pixels(x, y, width, height))
                assert any(m[min(py, height - 1), min(px, width - 1)] for m in masks)
    assert checked > 0, "random weights gave no mask above the threshold: the test checks nothing"


def test_box_model_answers_no_masks_for_a_polygon_only_config(client):
    assert not client.runtime.resources.has_masks
    config = MASK_CONFIG.format(names="person").replace(
        '<RectangleLabels name="box" toName="image"><Label value="Thing" predicted_values="person"/></RectangleLabels>',
        "",
    )
    results = predict(client, config, tasks("wide.png"))
    assert results[0]["result"] == []


def test_config_names_resolve_to_files_shipped_in_mmdet(tmp_path):
    shipped = resolve_config("rtmdet_tiny_8xb32-300e_coco")
    assert shipped.name == "rtmdet_tiny_8xb32-300e_coco.py" and shipped.is_file()
    assert resolve_config("mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py") == shipped
    own = tmp_path / "mine.py"
    own.write_text("_base_ = []\n")
    assert resolve_config(str(own)) == own
    with pytest.raises(FileNotFoundError):
        resolve_config("no_such_model_config")
