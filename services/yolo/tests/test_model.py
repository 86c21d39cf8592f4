from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import shapes
from label_studio_sdk.converter.brush import decode_rle
from ultralytics import YOLO

from label_studio_ml.media.images import open_image
from label_studio_ml.results.geometry import to_pixels
from label_studio_ml.testing.plugin import assert_conformant, recorded, wait_for_version

from model import YOLOModel, rotated_box, upright_box

IMAGES = ["shapes0.png", "shapes1.png", "shapes2.png", "shapes3.png", "rotated.jpg"]
THRESHOLD = 0.3
#: one config, several controls and weights: boxes and masks from the trained segmenter, an image class
#: from a classifier, points from a pose model; "Round" reaches the model's "circle" by predicted_values
#: and "Square" its "square" case-insensitively
CONFIG = f"""<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image" model_path="shapes-seg.pt" model_imgsz="64"
                   model_score_threshold="{THRESHOLD}">
    <Label value="Round" predicted_values="circle"/>
    <Label value="Square"/>
  </RectangleLabels>
  <PolygonLabels name="outline" toName="image" model_path="shapes-seg.pt" model_imgsz="64"
                 model_score_threshold="{THRESHOLD}">
    <Label value="Round" predicted_values="circle"/>
    <Label value="Square"/>
  </PolygonLabels>
  <BrushLabels name="mask" toName="image" model_path="shapes-seg.pt" model_imgsz="64"
               model_score_threshold="{THRESHOLD}">
    <Label value="Square"/>
  </BrushLabels>
</View>"""


def tasks(*names: str, key: str = "image") -> list[dict]:
    return [{"id": i + 1, "data": {key: f"/data/local-files/?d={name}"}} for i, name in enumerate(names)]


def library(weights: Path, media: Path, name: str, **options):
    """What ultralytics itself answers for the image as LS shows it (EXIF applied)."""
    image = open_image(media / name)
    bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
    return YOLO(str(weights)).predict(bgr, device="cpu", verbose=False, **options)[0], image.size


def of(prediction: dict, name: str) -> list[dict]:
    return [r for r in prediction["result"] if r["from_name"] == name]


def iou(a, b) -> float:
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, right - left) * max(0.0, bottom - top)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area else 0.0


def test_the_trained_model_finds_the_shapes_and_boxes_are_the_librarys(client, models, media, drawn):
    results = assert_conformant(client, CONFIG, tasks(*IMAGES))
    label_of = {"circle": "Round", "square": "Square"}
    found = total = 0
    for name, prediction in zip(IMAGES, results):
        raw, (width, height) = library(models / "shapes-seg.pt", media, name, imgsz=64, conf=0.25)
        expected = [
            (label_of[raw.names[int(c)]], s, box)
            for c, s, box in zip(raw.boxes.cls.tolist(), raw.boxes.conf.tolist(), raw.boxes.xyxy.tolist())
            if s >= THRESHOLD
        ]
        boxes = of(prediction, "box")
        assert len(boxes) == len(expected)
        for region, (label, score, box) in zip(boxes, expected):
            assert (region["original_width"], region["original_height"]) == (width, height)
            assert region["value"]["rectanglelabels"] == [label]
            assert region["score"] == pytest.approx(score)
            assert np.allclose(to_pixels(region["value"], width, height), box, atol=0.5)
        for shape in drawn.get(name, []):
            total += 1
            want = ("Round", "Square")[shape.cls]
            found += any(
                r["value"]["rectanglelabels"] == [want] and iou(to_pixels(r["value"], width, height), shape.box) >= 0.5
                for r in boxes
            )
        if prediction["result"]:
            assert prediction["score"] == pytest.approx(np.mean([r["score"] for r in prediction["result"]]))
    assert found >= total - 1, f"the trained model found {found} of {total} shapes"


def test_polygons_are_the_librarys_mask_outlines_and_brushes_decode_to_its_masks(client, models, media):
    results = assert_conformant(client, CONFIG, tasks(*IMAGES))
    polygons = 0
    for name, prediction in zip(IMAGES, results):
        raw, (width, height) = library(models / "shapes-seg.pt", media, name, imgsz=64, conf=0.25)
        keep = [i for i, s in enumerate(raw.boxes.conf.tolist()) if s >= THRESHOLD]
        outlines = of(prediction, "outline")
        assert len(outlines) == len([i for i in keep if len(raw.masks.xy[i]) >= 3])
        for region, i in zip(outlines, keep):
            points = np.array(region["value"]["points"]) * [width / 100, height / 100]
            assert np.abs(points - raw.masks.xy[i]).max() <= 0.5
            polygons += 1
        squares = [i for i in keep if raw.names[int(raw.boxes.cls[i])] == "square"]
        brushes = of(prediction, "mask")
        assert len(brushes) == len(squares)
        for region, i in zip(brushes, squares):
            mask = decode_rle(region["value"]["rle"]).reshape(height, width, 4)[:, :, 3] > 0
            outline = np.zeros((height, width), np.uint8)
            cv2.fillPoly(outline, [np.round(raw.masks.xy[i]).astype(np.int32)], 1)
            overlap = (mask & (outline > 0)).sum() / max((mask | (outline > 0)).sum(), 1)
            assert overlap >= 0.8, f"brush and the library's outline of {name} overlap {overlap:.2f}"
    assert polygons >= 4


def test_an_exif_rotated_image_is_measured_as_shown(client):
    prediction = assert_conformant(client, CONFIG, tasks("rotated.jpg"))[0]
    assert prediction["result"], "the rotated image's shapes are found"
    assert {(r["original_width"], r["original_height"]) for r in prediction["result"]} == {(48, 64)}


def test_choices_take_the_classifiers_best_mapped_class(client, models, media):
    single = """<View><Image name="image" value="$image"/>
      <Choices name="kind" toName="image" model_path="cls.pt" model_imgsz="64" model_score_threshold="0">
        <Choice value="Circle"/><Choice value="Square"/></Choices></View>"""
    results = assert_conformant(client, single, tasks(*IMAGES[:3]))
    for name, prediction in zip(IMAGES, results):
        raw, _ = library(models / "cls.pt", media, name, imgsz=64)
        best = raw.names[int(raw.probs.top1)]
        assert prediction["result"][0]["value"]["choices"] == [best.capitalize()]
        assert prediction["result"][0]["score"] == pytest.approx(float(raw.probs.top1conf))
    multiple = single.replace('name="kind"', 'name="kind" choice="multiple"')
    both = assert_conformant(client, multiple, tasks(IMAGES[0]))[0]["result"][0]["value"]["choices"]
    assert sorted(both) == ["Circle", "Square"]  # threshold 0: every mapped class
    unmapped = single.replace("Circle", "Oval").replace("Square", "Box")
    assert assert_conformant(client, unmapped, tasks(IMAGES[0]))[0]["result"] == []


def test_keypoints_are_the_pose_models_points_labelled_by_index(client, models, media):
    config = """<View><Image name="image" value="$image"/>
      <KeyPointLabels name="corners" toName="image" model_path="pose.pt" model_imgsz="64"
                      model_score_threshold="0.002" model_point_size="2">
        <Label value="top-left" predicted_values="square" model_index="0"/>
        <Label value="bottom-right" model_index="2"/>
      </KeyPointLabels></View>"""
    prediction = assert_conformant(client, config, tasks(IMAGES[0]))[0]
    raw, (width, height) = library(models / "pose.pt", media, IMAGES[0], imgsz=64, conf=0.002)
    expected = []
    for i, score in enumerate(raw.boxes.conf.tolist()):
        if score >= 0.002:
            expected += [("top-left", raw.keypoints.xy[i][0]), ("bottom-right", raw.keypoints.xy[i][2])]
    points = prediction["result"]
    assert points and len(points) == len(expected)
    for region, (label, (x, y)) in zip(points, expected):
        assert region["type"] == "keypointlabels" and region["value"]["keypointlabels"] == [label]
        px, py = region["value"]["x"] * width / 100, region["value"]["y"] * height / 100
        assert abs(px - float(x.clamp(0, width))) <= 0.5 and abs(py - float(y.clamp(0, height))) <= 0.5
        assert region["value"]["width"] == pytest.approx(2 * 100 / width)


def test_oriented_boxes_turn_about_their_corner_as_ls_draws_them(models, media):
    raw, (width, height) = library(models / "obb.pt", media, IMAGES[0], imgsz=64, conf=0.0001)
    assert len(raw.obb)
    for xywhr, corners in zip(raw.obb.xywhr.tolist(), raw.obb.xyxyxyxy.tolist()):
        box, rotation = rotated_box(*xywhr, width, height)
        x, y = box["x"] * width / 100, box["y"] * height / 100
        w, h = box["width"] * width / 100, box["height"] * height / 100
        turn = np.radians(rotation)
        along, across = np.array([np.cos(turn), np.sin(turn)]), np.array([-np.sin(turn), np.cos(turn)])
        drawn = [np.array([x, y]) + a * w * along + b * h * across for a, b in ((0, 0), (1, 0), (1, 1), (0, 1))]
        # the same four corners (ultralytics lists them in another order)
        distances = np.linalg.norm(np.array(drawn)[:, None] - np.array(corners)[None], axis=-1)
        assert distances.min(axis=1).max() <= 0.5 and sorted(distances.argmin(axis=1)) == [0, 1, 2, 3]


def test_an_oriented_box_control_sends_only_boxes_inside_the_image(client):
    config = """<View><Image name="image" value="$image"/>
      <RectangleLabels name="box" toName="image" model_path="obb.pt" model_obb="true" model_imgsz="64"
                       model_score_threshold="0.0001"><Label value="circle"/><Label value="square"/></RectangleLabels>
    </View>"""
    assert_conformant(client, config, tasks(IMAGES[0]))  # no region the validator would have to drop


def test_video_tracking_gives_one_region_per_object_over_the_decoded_frames(client, media):
    config = """<View>
      <Video name="video" value="$video"/>
      <VideoRectangle name="track" toName="video" model_path="shapes-seg.pt" model_imgsz="64"
                      model_score_threshold="0.3" model_tracker="bytetrack" bytetrack_track_buffer="10"/>
      <Labels name="kind" toName="video">
        <Label value="Round" predicted_values="circle"/><Label value="Square"/>
      </Labels>
    </View>"""
    frames = shapes.decoded_frames(media / "clip.mp4")
    truth = shapes.moving_shapes()
    regions = assert_conformant(client, config, tasks("clip.mp4", key="video"))[0]["result"]
    assert sorted(r["value"]["labels"][0] for r in regions) == ["Round", "Square"], "one track per object"
    for region in regions:
        value = region["value"]
        assert region["type"] == "videorectangle" and value["framesCount"] == frames
        assert value["duration"] == pytest.approx(frames / 8.0)
        sequence = value["sequence"]
        numbers = [box["frame"] for box in sequence]
        assert numbers == sorted(set(numbers)) and 1 <= numbers[0] and numbers[-1] <= frames
        assert len(numbers) >= frames - 3, "the object is tracked in (nearly) every frame"
        assert sequence[-1]["enabled"] is False
        cls = 0 if value["labels"] == ["Round"] else 1
        for box in sequence:
            assert box["time"] == pytest.approx((box["frame"] - 1) / 8.0)
            shape = next(s for s in truth[box["frame"] - 1] if s.cls == cls)
            assert iou(to_pixels(box, 64, 64), shape.box) >= 0.5


def test_timeline_labels_are_the_classifiers_frames_above_the_threshold(client, models, media):
    config = """<View><Video name="video" value="$video"/>
      <TimelineLabels name="when" toName="video" model_path="cls.pt" model_imgsz="64" model_score_threshold="0.5">
        <Label value="circle"/><Label value="square"/></TimelineLabels></View>"""
    regions = assert_conformant(client, config, tasks("clip.mp4", key="video"))[0]["result"]
    frames = YOLO(str(models / "cls.pt")).predict(str(media / "clip.mp4"), stream=True, imgsz=64, verbose=False)
    above = {name: [] for name in shapes.CLASSES}
    for number, result in enumerate(frames, start=1):
        for index, name in result.names.items():
            if float(result.probs.data[index]) >= 0.5:
                above[name].append(number)
    for name, numbers in above.items():
        ranges = [r["value"]["ranges"][0] for r in regions if r["value"]["timelinelabels"] == [name]]
        covered = [n for span in ranges for n in range(span["start"], span["end"] + 1)]
        assert covered == numbers


def test_an_ls_shaped_request(client):
    """The body LS 1.23.2 sends on "Retrieve predictions" (recorded), carrying image tasks."""
    body = copy.deepcopy(recorded("/predict")[0]["body"])
    body["tasks"] = [{**body["tasks"][0], "id": 7, "data": {"image": "/data/local-files/?d=shapes0.png"}}]
    body["label_config"] = CONFIG
    client.post("/setup", json={"project": body["project"], "schema": CONFIG})
    reply = client.post("/predict", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert reply.status_code == 200
    [prediction] = reply.json()["results"]
    assert {r["from_name"] for r in prediction["result"]} >= {"box", "outline"}


def test_a_missing_weight_file_is_a_json_error(client):
    config = CONFIG.replace('model_path="shapes-seg.pt"', 'model_path="nowhere.pt"', 1)
    client.post("/setup", json={"project": "9.1", "schema": config})
    reply = client.post("/predict", json={"tasks": tasks(IMAGES[0]), "project": "9.1", "label_config": config})
    assert reply.status_code >= 400 or reply.json()["results"][0]["result"] == []
    assert "Traceback" not in reply.text


def test_a_weight_file_outside_model_dir_is_refused(client):
    config = CONFIG.replace('model_path="shapes-seg.pt"', 'model_path="../../../etc/passwd"', 1)
    reply = client.post("/predict", json={"tasks": tasks(IMAGES[0]), "project": "9.2", "label_config": config})
    assert 400 <= reply.status_code < 500 and "outside MODEL_DIR" in reply.json()["error"]


def test_upright_box_of_ls_rectangles():
    assert upright_box({"x": 10, "y": 20, "width": 30, "height": 40}) == pytest.approx((0.25, 0.4, 0.3, 0.4))
    turned = upright_box({"x": 50, "y": 50, "width": 20, "height": 10, "rotation": 90})
    assert turned == pytest.approx((0.45, 0.6, 0.1, 0.2))
    assert upright_box({"x": 120, "y": 0, "width": 10, "height": 10}) is None


def test_fit_fine_tunes_detection_and_serves_the_new_weights(make_client, models, media, monkeypatch):
    monkeypatch.setenv("MODEL_DIR", str(models))
    config = """<View><Image name="image" value="$image"/>
      <RectangleLabels name="box" toName="image" model_path="detect.pt" model_imgsz="64" model_train_epochs="1">
        <Label value="Round"/><Label value="Square"/></RectangleLabels></View>"""
    client = make_client(YOLOModel, model_dir=models, local_files_document_root=str(media))
    project = "3.1700000000"
    old = client.post("/setup", json={"project": project, "schema": config}).json()["model_version"]
    for i, name in enumerate(IMAGES[:3]):
        annotation = {
            "id": 10 + i,
            "result": [
                {
                    "from_name": "box",
                    "to_name": "image",
                    "type": "rectanglelabels",
                    "original_width": 64,
                    "original_height": 64,
                    "value": {
                        "x": 10,
                        "y": 10,
                        "width": 30,
                        "height": 30,
                        "rotation": 0,
                        "rectanglelabels": ["Square"],
                    },
                }
            ],
        }
        event = {
            "action": "ANNOTATION_CREATED",
            "project": {"id": 3, "label_config": config},
            "task": {"id": i + 1, "project": 3, "data": {"image": f"/data/local-files/?d={name}"}},
            "annotation": annotation,
        }
        assert client.post("/webhook", json=event).status_code < 300
    new = wait_for_version(client, project, config, old, timeout=120)
    assert new.startswith("yolo-1-")
    weights = next(models.glob(f"projects/*/versions/{new}/box.pt"))
    assert YOLO(str(weights)).names == {0: "Round", 1: "Square"}
    assert_conformant(client, config, tasks(IMAGES[0]), project=project)


def test_fit_trains_timeline_labels_on_annotated_frames(make_client, models, media, monkeypatch):
    monkeypatch.setenv("MODEL_DIR", str(models))
    config = """<View><Video name="video" value="$video"/>
      <TimelineLabels name="when" toName="video" model_path="cls.pt" model_imgsz="64" model_train_epochs="15">
        <Label value="Round" predicted_values="circle"/><Label value="Boxy" predicted_values="square"/>
      </TimelineLabels></View>"""
    client = make_client(YOLOModel, model_dir=models, local_files_document_root=str(media))
    project = "4.1700000000"
    old = client.post("/setup", json={"project": project, "schema": config}).json()["model_version"]
    spans = [("Round", 1, 12), ("Boxy", 13, 24)]
    result = [
        {"from_name": "when", "to_name": "video", "type": "timelinelabels",
         "value": {"ranges": [{"start": start, "end": end}], "timelinelabels": [label]}}
        for label, start, end in spans
    ]  # fmt: skip
    event = {
        "action": "ANNOTATION_CREATED",
        "project": {"id": 4, "label_config": config},
        "task": {"id": 1, "project": 4, "data": {"video": "/data/local-files/?d=phases.mp4"}},
        "annotation": {"id": 40, "result": result},
    }
    assert client.post("/webhook", json=event).status_code < 300
    new = wait_for_version(client, project, config, old, timeout=120)
    weights = next(models.glob(f"projects/*/versions/{new}/when.pt"))
    assert set(YOLO(str(weights)).names.values()) == {"Round", "Boxy"}
    regions = assert_conformant(client, config, tasks("phases.mp4", key="video"), project=project)[0]["result"]
    right = sum(
        end - start + 1
        for r in regions
        for label, (start, end) in [(r["value"]["timelinelabels"][0], r["value"]["ranges"][0].values())]
        if any(label == want and lo <= start and end <= hi for want, lo, hi in spans)
    )
    assert right >= 18, f"{right} of 24 frames classified as annotated: {regions}"
