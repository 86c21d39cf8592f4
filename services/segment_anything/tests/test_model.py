from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from label_studio_sdk.converter.brush import decode_rle
from PIL import Image, ImageOps
from transformers import SamModel, SamProcessor

from label_studio_ml.results.brush import rle_to_mask
from label_studio_ml.testing.plugin import FakeLabelStudio, assert_conformant

from model import SegmentAnything

CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image">
    <Label value="Banana" background="#FF0000"/>
    <Label value="Orange" background="#0d14d3"/>
  </BrushLabels>
  <KeyPointLabels name="tag2" toName="image" smart="true">
    <Label value="banana" smart="true" showInline="true"/>
    <Label value="Orange" smart="true" showInline="true"/>
    <Label value="Apple" smart="true" showInline="true"/>
  </KeyPointLabels>
  <RectangleLabels name="tag3" toName="image" smart="true">
    <Label value="Banana" showInline="true"/>
    <Label value="Orange" showInline="true"/>
  </RectangleLabels>
</View>"""


def save_image(folder: Path, name: str, width: int, height: int, seed: int = 0, orientation: int | None = None) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    pixels[height // 4 : height // 2, width // 4 : width // 2] = (250, 220, 40)  # a yellow blob to click on
    image = Image.fromarray(pixels)
    path = folder / name
    if orientation is None:
        image.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(path, exif=exif, quality=95)
    return path


def keypoint(
    x: float, y: float, width: int | None, height: int | None, label: str | None = "Banana", positive: bool = True
) -> dict:
    item = {
        "id": f"kp{x:.0f}{y:.0f}",
        "from_name": "tag2",
        "to_name": "image",
        "type": "keypointlabels",
        "origin": "manual",
        "image_rotation": 0,
        "is_positive": positive,
        "value": {"x": x, "y": y, "width": 0.6, "keypointlabels": [label] if label else []},
    }
    if width is not None:
        item.update(original_width=width, original_height=height)
    return item


def box(x: float, y: float, w: float, h: float, width: int, height: int, label: str = "Orange") -> dict:
    return {
        "id": "box1",
        "from_name": "tag3",
        "to_name": "image",
        "type": "rectanglelabels",
        "origin": "manual",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]},
    }


def local_task(name: str, task_id: int = 1) -> dict:
    return {"id": task_id, "data": {"image": f"/data/local-files/?d={name}"}}


def direct_sam(
    model_dir: Path, path: Path, points: list[tuple[float, float]], labels: list[int], box_px: list[float] | None
) -> tuple[np.ndarray, float]:
    """The oracle: transformers alone (processor + full model forward), on the EXIF-transposed image."""
    processor = SamProcessor.from_pretrained(model_dir)
    model = SamModel.from_pretrained(model_dir).eval()
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    kwargs: dict = {}
    if points:
        kwargs.update(input_points=[[list(p) for p in points]], input_labels=[labels])
    if box_px is not None:
        kwargs["input_boxes"] = [[box_px]]
    inputs = processor(images=image, return_tensors="pt", **kwargs)
    with torch.no_grad():
        out = model(
            pixel_values=inputs["pixel_values"],
            multimask_output=len(points) == 1 and box_px is None,
            **{k: v for k, v in inputs.items() if k.startswith("input_")},
        )
    masks = processor.post_process_masks(out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"])
    best = int(out.iou_scores[0, 0].argmax())
    return masks[0][0, best].numpy(), float(out.iou_scores[0, 0, best])


def decoded(region: dict) -> np.ndarray:
    """The region's mask as label-studio-sdk's reference decoder reads it (alpha channel)."""
    width, height = region["original_width"], region["original_height"]
    flat = decode_rle(region["value"]["rle"])
    assert flat.size == width * height * 4
    return flat.reshape(height, width, 4)[:, :, 3] > 0


def encoder_counter(client) -> list[int]:
    calls: list[int] = []
    client.runtime.resources.model.vision_encoder.register_forward_hook(lambda *args: calls.append(1))
    return calls


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    return folder


@pytest.fixture
def client(make_client, sam_env, images):
    return make_client(SegmentAnything, local_files_document_root=str(images))


def test_click_on_odd_sized_image_decodes_to_the_mask_the_model_produced(client, images, sam_env):
    path = save_image(images, "odd.png", 37, 23)
    context = {"result": [keypoint(100 * 14.5 / 37, 100 * 8.5 / 23, 37, 23, label="banana")]}
    results = assert_conformant(client, CONFIG, [local_task("odd.png")], context=context, expect_regions=True)
    [region] = results[0]["result"]
    assert region["type"] == "brushlabels" and region["from_name"] == "tag" and region["to_name"] == "image"
    assert region["value"]["brushlabels"] == ["Banana"], "the keypoint's label, mapped case-insensitively"
    assert (region["original_width"], region["original_height"]) == (37, 23)
    expected, iou = direct_sam(sam_env, path, [(14.5, 8.5)], [1], None)
    assert expected.shape == (23, 37) and expected.any()
    assert np.array_equal(decoded(region), expected)
    assert np.array_equal(rle_to_mask(region["value"]["rle"], 23, 37), expected)
    assert region["score"] == pytest.approx(min(1.0, max(0.0, iou)), abs=1e-5)
    assert results[0]["score"] == region["score"]


def test_exif_rotated_image_with_box_and_negative_click(client, images, sam_env):
    # stored 40x24 with orientation 6 (rotate 90 degrees clockwise): LS displays it 24 wide, 40 tall
    path = save_image(images, "rotated.jpg", 40, 24, seed=1, orientation=6)
    assert Image.open(path).size == (40, 24)
    width, height = 24, 40
    context = {
        "result": [box(10, 20, 60, 50, width, height), keypoint(50, 30, width, height, label="Orange", positive=False)]
    }
    results = assert_conformant(client, CONFIG, [local_task("rotated.jpg")], context=context)
    [region] = results[0]["result"]
    assert (region["original_width"], region["original_height"]) == (24, 40)
    assert region["value"]["brushlabels"] == ["Orange"]
    box_px = [0.1 * width, 0.2 * height, 0.7 * width, 0.7 * height]
    expected, _ = direct_sam(sam_env, path, [(0.5 * width, 0.3 * height)], [0], box_px)
    assert expected.shape == (40, 24)
    assert np.array_equal(decoded(region), expected)


def test_second_click_on_the_same_image_skips_the_encoder(client, images, sam_env):
    path = save_image(images, "same.png", 50, 30, seed=2)
    calls = encoder_counter(client)
    first = assert_conformant(client, CONFIG, [local_task("same.png")], context={"result": [keypoint(20, 40, 50, 30)]})
    assert len(calls) == 1
    clicks = [keypoint(20, 40, 50, 30), keypoint(70, 60, 50, 30, positive=False)]
    second = assert_conformant(client, CONFIG, [local_task("same.png")], context={"result": clicks})
    assert len(calls) == 1, "the cached embedding served the second click"
    expected, _ = direct_sam(sam_env, path, [(10.0, 12.0), (35.0, 18.0)], [1, 0], None)
    assert np.array_equal(decoded(second[0]["result"][0]), expected), "the cached path equals a full forward"
    assert first[0]["result"][0]["value"]["rle"] != second[0]["result"][0]["value"]["rle"]
    (images / "copy.png").write_bytes(path.read_bytes())  # same content under another URL: same identity
    assert_conformant(client, CONFIG, [local_task("copy.png")], context={"result": [keypoint(20, 40, 50, 30)]})
    assert len(calls) == 1
    save_image(images, "other.png", 50, 30, seed=3)
    assert_conformant(client, CONFIG, [local_task("other.png")], context={"result": [keypoint(20, 40, 50, 30)]})
    assert len(calls) == 2
    cache = client.runtime.resources.cache
    assert (cache.hits, cache.misses, len(cache)) == (2, 2, 2)


def test_cache_is_bounded_by_sam_cache_size(make_client, sam_env, images, monkeypatch):
    monkeypatch.setenv("SAM_CACHE_SIZE", "1")
    client = make_client(SegmentAnything, local_files_document_root=str(images))
    calls = encoder_counter(client)
    for name, seed in (("a.png", 4), ("b.png", 5)):
        save_image(images, name, 20, 20, seed=seed)
    for name in ("a.png", "b.png", "a.png", "a.png"):
        assert_conformant(client, CONFIG, [local_task(name)], context={"result": [keypoint(30, 30, 20, 20)]})
    assert len(calls) == 3, "a.png was evicted by b.png, then cached again"
    assert len(client.runtime.resources.cache) == 1


def test_context_size_is_verified_against_the_image(client, images, sam_env):
    path = save_image(images, "small.png", 37, 23, seed=6)
    # LS reports the image at twice the file's size (e.g. a re-encoded copy): the RLE must match LS's size
    context = {"result": [keypoint(40, 40, 74, 46)]}
    results = assert_conformant(client, CONFIG, [local_task("small.png")], context=context)
    [region] = results[0]["result"]
    assert (region["original_width"], region["original_height"]) == (74, 46)
    expected, _ = direct_sam(sam_env, path, [(0.4 * 37, 0.4 * 23)], [1], None)
    resized = np.asarray(Image.fromarray(expected).resize((74, 46), Image.Resampling.NEAREST))
    assert np.array_equal(decoded(region), resized)
    # no size in the context: the image's own (EXIF-applied) size
    no_size = {"result": [keypoint(40, 40, None, None)]}
    results = assert_conformant(client, CONFIG, [local_task("small.png")], context=no_size)
    assert (results[0]["result"][0]["original_width"], results[0]["result"][0]["original_height"]) == (37, 23)


def test_no_prompt_unknown_label_and_minimal_contexts(client, images):
    save_image(images, "img.png", 16, 12, seed=7)
    tasks = [local_task("img.png")]
    assert assert_conformant(client, CONFIG, tasks, context=None, expect_regions=False)[0]["result"] == []
    assert assert_conformant(client, CONFIG, tasks, context={"result": []}, expect_regions=False)[0]["result"] == []
    unknown = {"result": [keypoint(50, 50, 16, 12, label="Apple")]}  # a keypoint label BrushLabels lacks
    assert assert_conformant(client, CONFIG, tasks, context=unknown, expect_regions=False)[0]["result"] == []
    # what a bare test client sends: no ids, names, sizes or labels -> an unlabeled brush mask
    minimal = {"result": [{"type": "keypointlabels", "value": {"x": 1, "y": 2}}]}
    [region] = assert_conformant(client, CONFIG, tasks, context=minimal)[0]["result"]
    assert region["type"] == "brush" and "brushlabels" not in region["value"]
    broken = {"result": [{"type": "keypointlabels", "value": {"x": "left"}}]}
    assert assert_conformant(client, CONFIG, tasks, context=broken, expect_regions=False)[0]["result"] == []
    no_image = client.post(
        "/predict",
        json={
            "tasks": [{"id": 9, "data": {}}],
            "label_config": CONFIG,
            "params": {"context": {"result": [keypoint(50, 50, 16, 12)]}},
        },
    )
    assert no_image.status_code == 422 and "no image" in no_image.json()["error"]


def test_device_is_auto_detected(make_client, sam_env, monkeypatch):
    monkeypatch.delenv("DEVICE")
    sam = make_client(SegmentAnything).runtime.resources
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert sam.device == expected
    assert next(sam.model.parameters()).device.type == expected


def test_recorded_style_interactive_request_with_an_ls_upload(make_client, sam_env, tmp_path):
    """The body LS 1.23.2 posts for a smart keypoint (interactive serializer, drafts, LS upload URL)."""
    folder = tmp_path / "src"
    folder.mkdir()
    data = save_image(folder, "x.png", 33, 21, seed=8).read_bytes()
    upload = "/data/upload/3/5f1c2a9e-x.png"
    with FakeLabelStudio(files={upload: data}) as ls:
        client = make_client(SegmentAnything, label_studio_url=ls.url, label_studio_api_key=ls.legacy_token)
        setup = client.post(
            "/setup",
            json={
                "project": "3.1795797692",
                "schema": CONFIG,
                "hostname": "http://127.0.0.1:8080",
                "access_token": "ls-test-token-0123456789abcdef",
                "extra_params": None,
            },
        )
        assert setup.status_code == 200
        task = {
            "id": 41,
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
            "project": 3,
            "updated_by": [],
            "comment_authors": [],
        }
        context = {
            "annotation_id": None,
            "draft_id": 12,
            "user_id": 1,
            "result": [keypoint(30.0, 55.0, 33, 21, label="Banana")],
        }
        reply = client.post(
            "/predict",
            json={
                "tasks": [task],
                "project": "3.1795797692",
                "label_config": CONFIG,
                "params": {"login": None, "password": None, "context": context},
            },
        )
        assert ls.auth_headers_seen(upload) == [f"Token {ls.legacy_token}"]
    assert reply.status_code == 200, reply.text
    [prediction] = reply.json()["results"]
    assert prediction["model_version"] == setup.json()["model_version"]
    [region] = prediction["result"]
    assert region["value"]["format"] == "rle" and region["value"]["brushlabels"] == ["Banana"]
    assert decoded(region).shape == (21, 33)
    assert client.runtime.stats["dropped_regions"] == 0
