"""regions.py: result builders and RegionValidator (what core drops before replying to LS)."""

from __future__ import annotations

import numpy as np
import pytest
from configs import BRUSH_SAM, DYNAMIC_LABELS, IMAGE_BBOX, NER, OCR, POLYGON, TEXT_CLASSIFICATION

from label_studio_ml.results import regions
from label_studio_ml.results.brush import mask_to_rle
from label_studio_ml.results.geometry import to_percent
from label_studio_ml.results.label_config import LabelConfig

TEXT = "Katy Perry met Apple in Paris."


def _validate(config: str, items: list, task: dict | None = None) -> tuple[list, list]:
    return regions.RegionValidator(LabelConfig(config)).validate(items, task or {"id": 1, "data": {"text": TEXT}})


def test_region_id_is_short_alphanumeric_and_unique() -> None:
    ids = {regions.region_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 10 and i.isalnum() and i.isascii() for i in ids)


def test_choices_and_span_builders() -> None:
    pair = LabelConfig(TEXT_CLASSIFICATION).find("Choices")
    item = regions.choices(pair, ["Positive"], score=np.float32(0.5))
    assert item == {
        "from_name": "sentiment",
        "to_name": "text",
        "type": "choices",
        "value": {"choices": ["Positive"]},
        "score": 0.5,
    }
    assert type(item["score"]) is float  # JSON-serialisable even from numpy
    ner = LabelConfig(NER).find("Labels")
    span = regions.span(ner, TEXT, np.int64(15), np.int64(20), "ORG", score=0.9, id="e1")
    assert span["value"] == {"start": 15, "end": 20, "text": "Apple", "labels": ["ORG"]}
    assert span["id"] == "e1" and span["type"] == "labels"
    assert TEXT[span["value"]["start"] : span["value"]["end"]] == span["value"]["text"]
    assert _validate(NER, [span]) == ([span], [])


def test_image_builders_validate() -> None:
    box_pair = LabelConfig(IMAGE_BBOX).find("RectangleLabels")
    box = regions.rectangle(box_pair, to_percent(64, 48, 320, 240, 640, 480), 640, 480, label="Car", score=0.8)
    assert box["value"] == {
        "x": 10.0,
        "y": 10.0,
        "width": 50.0,
        "height": 50.0,
        "rotation": 0,
        "rectanglelabels": ["Car"],
    }
    assert (box["original_width"], box["original_height"], box["image_rotation"]) == (640, 480, 0)
    poly_pair = LabelConfig(POLYGON).find("PolygonLabels")
    poly = regions.polygon(poly_pair, [[10.0, 10.0], [50.0, 10.0], [50.0, 60.0]], 640, 480, label="Car")
    assert poly["value"]["polygonlabels"] == ["Car"] and poly["type"] == "polygonlabels"
    brush_pair = LabelConfig(BRUSH_SAM).find("BrushLabels")
    mask = np.zeros((4, 6), dtype=np.uint8)
    mask[1:3, 2:5] = 255
    brush = regions.brush(brush_pair, mask_to_rle(mask), 6, 4, label="Banana", score=0.7)
    assert brush["value"]["format"] == "rle" and brush["value"]["brushlabels"] == ["Banana"]
    assert _validate(IMAGE_BBOX, [box]) == ([box], [])
    assert _validate(POLYGON, [poly]) == ([poly], [])
    assert _validate(BRUSH_SAM, [brush]) == ([brush], [])


def test_keypoint_builder_validates() -> None:
    config = (
        '<View><Image name="img" value="$image"/>'
        '<KeyPointLabels name="kp" toName="img"><Label value="nose"/></KeyPointLabels></View>'
    )
    point = regions.keypoint(LabelConfig(config).find("KeyPointLabels"), [12.5, 40.0], 0.5, 640, 480, "nose", 0.9)
    assert point["type"] == "keypointlabels"
    assert point["value"] == {"x": 12.5, "y": 40.0, "width": 0.5, "keypointlabels": ["nose"]}
    assert _validate(config, [point]) == ([point], [])
    outside = regions.keypoint(LabelConfig(config).find("KeyPointLabels"), [101.0, 40.0], 0.5, 640, 480, "nose")
    assert _validate(config, [outside])[0] == []


def test_per_region_ocr_items_share_an_id() -> None:
    config = LabelConfig(OCR)
    rect_pair, label_pair, text_pair = config.find("Rectangle"), config.find("Labels"), config.find("TextArea")
    rect = regions.rectangle(rect_pair, {"x": 5, "y": 5, "width": 20, "height": 10}, 800, 600, label="ignored")
    assert "rectangle" not in rect["value"] and "ignored" not in str(rect)  # geometry-only control: no label key
    geometry = {
        "value": {k: rect["value"][k] for k in ("x", "y", "width", "height", "rotation")},
        "original_width": 800,
        "original_height": 600,
        "image_rotation": 0,
    }
    text = regions.textarea(text_pair, "KENAPA", id=rect["id"], geometry=geometry)
    label = {
        **rect,
        "from_name": label_pair.from_name,
        "type": "labels",
        "value": {**geometry["value"], "labels": ["Text"]},
    }
    assert text["value"]["text"] == ["KENAPA"] and text["id"] == rect["id"] and text["value"]["x"] == 5
    kept, dropped = _validate(OCR, [rect, label, text], {"id": 1, "data": {"ocr": "/data/upload/1/a.png"}})
    assert (len(kept), dropped) == (3, [])
    glob = regions.textarea(text_pair, ["a", "b"])
    assert glob == {"from_name": "transcription", "to_name": "image", "type": "textarea", "value": {"text": ["a", "b"]}}


def test_find_all_spans_is_literal() -> None:
    text = "a.c abc A.C a.cd"
    assert regions.find_all_spans(text, "a.c") == [(0, 3), (8, 11), (12, 15)]
    assert regions.find_all_spans(text, "a.c", ignore_case=False) == [(0, 3), (12, 15)]
    assert regions.find_all_spans(text, "a.c", whole_word=True) == [(0, 3), (8, 11)]
    assert regions.find_all_spans(text, "") == []
    assert regions.find_all_spans("x+ (x+)", "(x+)") == [(3, 7)]


def _span(start: int, end: int, label: str = "ORG", text: str | None = None, **extra: object) -> dict:
    value = {"start": start, "end": end, "text": TEXT[start:end] if text is None else text, "labels": [label]}
    return {"id": f"s{start}", "from_name": "label", "to_name": "text", "type": "labels", "value": value, **extra}


def _box(x: float = 10, y: float = 10, w: float = 20, h: float = 20, **extra: object) -> dict:
    item = {
        "id": "b1",
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": 100,
        "original_height": 50,
        "image_rotation": 0,
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": ["Car"]},
    }
    item.update(extra)
    return item


@pytest.mark.parametrize(
    "item, reason",
    [
        ({**_span(15, 20), "from_name": "nope"}, "unknown from_name"),
        ({**_span(15, 20), "type": "choices"}, "does not match control"),
        ({**_span(15, 20), "to_name": "image"}, "is not an object"),
        (_span(15, 20, label="FRUIT"), "not in the config"),
        (_span(15, 20, text="Apples"), "span text does not match"),
        (_span(15, 21), None),
        ("not a dict", "not an object"),
        ({**_span(15, 20), "value": "x"}, "value is not an object"),
    ],
)
def test_validator_on_spans(item: object, reason: str | None) -> None:
    kept, dropped = _validate(NER, [item])
    if reason is None:
        assert kept == [item] and dropped == []
    else:
        assert kept == [] and len(dropped) == 1 and reason in dropped[0]


@pytest.mark.parametrize(
    "item, reason",
    [
        (_box(), None),
        (_box(x=0, y=0, w=100, h=100), None),
        ({**_box(), "type": "rectangle"}, None),  # geometry-only type on a *Labels control is fine
        (_box(x=-1), "outside 0-100"),
        (_box(x=90, w=20), "outside 0-100"),
        (_box(h=100.5), "outside 0-100"),
        (_box(y=float("nan")), "outside 0-100"),
        (_box(x=640), "outside 0-100"),  # pixels instead of percent
        # a box turned 90 degrees about its corner hangs left of x: inside when x leaves room, else not
        ({**_box(x=90, w=20), "value": {**_box(x=90, w=20)["value"], "rotation": 90}}, None),
        ({**_box(x=5, w=20), "value": {**_box(x=5, w=20)["value"], "rotation": 90}}, "outside 0-100"),
        ({**_box(y=5), "value": {**_box(y=5)["value"], "rotation": 270}}, "outside 0-100"),
        (_box(original_width=None), "original_width"),
        (_box(original_height=0), "original_width"),
        (_box(original_width=640.0), "original_width"),
        ({**_box(), "value": {**_box()["value"], "rectanglelabels": ["Boat"]}}, "not in the config"),
    ],
)
def test_validator_on_boxes(item: dict, reason: str | None) -> None:
    kept, dropped = _validate(IMAGE_BBOX, [item])
    assert (kept == [item] and not dropped) if reason is None else (not kept and reason in dropped[0])


def test_validator_polygons_and_rle_length() -> None:
    pair = LabelConfig(POLYGON).find("PolygonLabels")
    good = regions.polygon(pair, [[0, 0], [100, 0], [100, 100]], 10, 10, label="Car")
    bad = regions.polygon(pair, [[0, 0], [101, 0], [100, 100]], 10, 10, label="Car")
    assert _validate(POLYGON, [good, bad])[0] == [good]
    brush_pair = LabelConfig(BRUSH_SAM).find("BrushLabels")
    rle = mask_to_rle(np.ones((4, 6)))
    assert _validate(BRUSH_SAM, [regions.brush(brush_pair, rle, 6, 4, label="Banana")])[1] == []
    kept, dropped = _validate(BRUSH_SAM, [regions.brush(brush_pair, rle, 4, 6 + 1, label="Banana")])
    assert not kept and "RLE holds 96 values, expected 112" in dropped[0]
    kept, dropped = _validate(BRUSH_SAM, [regions.brush(brush_pair, [0, 0, 300], 6, 4, label="Banana")])
    assert not kept and "RLE header" in dropped[0]


def test_validator_dynamic_labels_come_from_the_task() -> None:
    task = {"id": 1, "data": {"text": TEXT, "options": [{"value": "Sport"}, {"value": "News"}]}}
    item = {"from_name": "dyn", "to_name": "text", "type": "choices", "value": {"choices": ["Sport"]}}
    assert _validate(DYNAMIC_LABELS, [item], task) == ([item], [])
    other = {**item, "value": {"choices": ["Weather"]}}
    assert not _validate(DYNAMIC_LABELS, [other], task)[0]
    static = {
        "id": "s1",
        "from_name": "static",
        "to_name": "text",
        "type": "labels",
        "value": {"start": 0, "end": 4, "text": "Katy", "labels": ["Sport"]},
    }
    assert not _validate(DYNAMIC_LABELS, [static], task)[0], "a static control does not take task labels"


def test_validator_duplicate_ids() -> None:
    first, second = _span(15, 20, id="same"), _span(0, 4, label="PER", id="same")
    kept, dropped = _validate(NER, [first, second])
    assert kept == [first] and "duplicate region id" in dropped[0]
    # the same id on another control with the same geometry is one region (per-region items): kept
    box = _box(id="r1")
    text = {
        "id": "r1",
        "from_name": "transcription",
        "to_name": "image",
        "type": "textarea",
        "original_width": 100,
        "original_height": 50,
        "image_rotation": 0,
        "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0, "text": ["x"]},
    }
    config = IMAGE_BBOX.replace("</View>", '<TextArea name="transcription" toName="image" perRegion="true"/></View>')
    assert _validate(config, [box, text])[1] == []
    moved = {**text, "value": {**text["value"], "x": 11}}
    kept, dropped = _validate(config, [box, moved])
    assert kept == [box] and "other geometry" in dropped[0]


def test_validator_keeps_relations_and_drops_malformed_items_without_raising() -> None:
    relation = {"type": "relation", "from_id": "a", "to_id": "b", "direction": "right"}
    malformed = [
        {**_span(15, 20), "value": {"start": "15", "end": 20, "text": "Apple", "labels": ["ORG"]}},
        {**_span(15, 20), "value": {"start": 15, "end": 20, "text": "Apple", "labels": None}},
        {**_span(15, 20), "from_name": ["label"]},
        {**_span(15, 20), "value": {"start": 15, "end": 20, "text": "Apple", "labels": [7]}},
    ]
    kept, dropped = _validate(NER, [relation, *malformed])
    assert kept == [relation] and len(dropped) == 4
    poly = {
        "id": "p",
        "from_name": "label",
        "to_name": "image",
        "type": "polygonlabels",
        "original_width": 9,
        "original_height": 9,
        "value": {"points": [1, 2], "polygonlabels": ["Car"]},
    }
    rle = {
        "id": "m",
        "from_name": "tag",
        "to_name": "image",
        "type": "brushlabels",
        "original_width": 9,
        "original_height": 9,
        "value": {"format": "rle", "rle": None, "brushlabels": ["Banana"]},
    }
    assert _validate(POLYGON, [poly])[0] == [] and _validate(BRUSH_SAM, [rle])[0] == []
