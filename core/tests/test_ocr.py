"""The OCR region layout (label_studio_ml.results.ocr) and the OCR test helpers (label_studio_ml.testing.ocr)."""

from __future__ import annotations

import math

import pytest
from PIL import Image, ImageDraw

from label_studio_ml.errors import LabelConfigError
from label_studio_ml.results.label_config import LabelConfig
from label_studio_ml.results.ocr import OcrLayout, crop_rectangle, rectangle_corners
from label_studio_ml.results.regions import RegionValidator
from label_studio_ml.testing.ocr import cer, levenshtein, match_words, percent_box_to_pixels, render_page

OCR_TEMPLATE = (
    '<View><Image name="image" value="$ocr"/><Labels name="label" toName="image">'
    '<Label value="Printed" predicted_values="Text"/><Label value="Handwriting"/></Labels>'
    '<Rectangle name="bbox" toName="image"/><Polygon name="poly" toName="image"/>'
    '<TextArea name="transcription" toName="image" perRegion="true"/></View>'
)
SMART = (
    '<View><Image name="image" value="$ocr"/><RectangleLabels name="box" toName="image" smart="true">'
    '<Label value="Handwriting"/><Label value="Text"/></RectangleLabels>'
    '<TextArea name="text" toName="image" perRegion="true"/></View>'
)
TWO_IMAGES = (
    '<View><Image name="a" value="$a"/><Image name="b" value="$b"/>'
    '<Rectangle name="ra" toName="a"/><Rectangle name="rb" toName="b"/>'
    '<TextArea name="tb" toName="b" perRegion="true"/></View>'
)


def valid(items: list[dict], config: str) -> None:
    kept, dropped = RegionValidator(LabelConfig(config)).validate(items, {"data": {}})
    assert not dropped, dropped
    assert len({i["id"] for i in items}) == 1, "one region id"


def test_layout_reads_the_ocr_template():
    layout = OcrLayout.from_config(LabelConfig(OCR_TEMPLATE))
    names = (layout.shape.from_name, layout.text.from_name, layout.labels.from_name)
    assert names == ("bbox", "transcription", "label")
    assert layout.label is None and layout.labels_label == "Printed"  # via predicted_values
    assert layout.data_key == "ocr" and not layout.polygons
    polygons = OcrLayout.from_config(LabelConfig(OCR_TEMPLATE), shapes=("Polygon", "Rectangle"))
    assert polygons.polygons and polygons.shape.from_name == "poly"


def test_layout_picks_the_hinted_label_else_the_first():
    assert OcrLayout.from_config(LabelConfig(SMART)).label == "Text"
    assert OcrLayout.from_config(LabelConfig(SMART), label_hint="Stamp").label == "Handwriting"


def test_layout_needs_a_textarea_on_the_shapes_image():
    layout = OcrLayout.from_config(LabelConfig(TWO_IMAGES))
    assert (layout.shape.from_name, layout.text.from_name) == ("rb", "tb")
    with pytest.raises(LabelConfigError, match="(?i)textarea"):
        OcrLayout.from_config(LabelConfig('<View><Image name="i" value="$i"/><Rectangle name="r" toName="i"/></View>'))
    with pytest.raises(LabelConfigError):
        OcrLayout.from_config(LabelConfig('<View><Text name="t" value="$t"/></View>'))


def test_box_gives_shape_labels_and_text_with_one_id_and_geometry():
    layout = OcrLayout.from_config(LabelConfig(OCR_TEMPLATE))
    items = layout.box(10, 20, 110, 45, 200, 100, "Hello", 0.9)
    assert [i["type"] for i in items] == ["rectangle", "labels", "textarea"]
    assert items[0]["value"] == {"x": 5.0, "y": 20.0, "width": 50.0, "height": 25.0, "rotation": 0}
    assert items[1]["value"] == {**items[0]["value"], "labels": ["Printed"]}
    assert items[2]["value"] == {**items[0]["value"], "text": ["Hello"]}
    assert all(i["original_width"] == 200 and i["original_height"] == 100 and i["score"] == 0.9 for i in items)
    valid(items, OCR_TEMPLATE)


def test_quad_as_polygon_and_as_rotated_rectangle():
    quad = [
        (20, 10),
        (20 + 80 * math.cos(math.radians(30)), 10 + 80 * math.sin(math.radians(30))),
        (
            20 + 80 * math.cos(math.radians(30)) - 20 * math.sin(math.radians(30)),
            10 + 80 * math.sin(math.radians(30)) + 20 * math.cos(math.radians(30)),
        ),
        (20 - 20 * math.sin(math.radians(30)), 10 + 20 * math.cos(math.radians(30))),
    ]
    polygons = OcrLayout.from_config(LabelConfig(OCR_TEMPLATE), shapes=("Polygon",))
    items = polygons.quad(quad, 200, 100, "slanted", 0.8)
    assert items[0]["type"] == "polygon" and len(items[0]["value"]["points"]) == 4
    valid(items, OCR_TEMPLATE)
    smart = OcrLayout.from_config(LabelConfig(SMART))
    box = smart.quad(quad, 200, 100, "slanted", 0.8)[0]
    assert box["value"]["rotation"] == pytest.approx(30)
    assert box["value"]["rectanglelabels"] == ["Text"]
    corners = rectangle_corners(box["value"], 200, 100)
    assert all(c == pytest.approx(q) for c, q in zip(corners, quad, strict=True)), "corners round-trip"
    level = smart.quad([(5, 5), (50, 5), (50, 20), (5, 20)], 100, 100, "flat")[0]
    assert level["value"]["rotation"] == 0 and level["value"]["x"] == 5 and level["value"]["width"] == 45


def test_crop_rectangle_turns_a_rotated_box_upright():
    page = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(page).rectangle((40, 50, 99, 69), fill=0)  # 60 x 20 black bar
    straight = crop_rectangle(page, {"x": 20, "y": 25, "width": 30, "height": 10, "rotation": 0})
    assert straight.size == (60, 20) and straight.getextrema() == (0, 0)
    turned = page.rotate(-40, center=(40, 50), resample=Image.Resampling.BICUBIC, fillcolor=255)
    upright = crop_rectangle(turned, {"x": 20, "y": 25, "width": 30, "height": 10, "rotation": 40})
    assert upright.size == (60, 20)
    inner = upright.crop((3, 3, 57, 17))
    assert inner.getextrema()[1] < 60, "the bar fills the upright crop"
    outside = crop_rectangle(page, {"x": 90, "y": 90, "width": 20, "height": 20, "rotation": 0})
    assert outside.size == (40, 40) and outside.getpixel((39, 39)) == 255


def test_rendered_pages_know_their_words_and_metrics_work():
    page = render_page(["Hello world", "again"], font_size=20)
    assert page.text == "Hello world\nagain" and [w.line for w in page.words] == [0, 0, 1]
    left, top, right, bottom = page.words[0].box
    assert page.image.crop((left, top, right, bottom)).getextrema()[0] == (0, 255)
    assert page.image.crop((0, 0, left, page.image.height)).getextrema()[0] == (255, 255), "ink box is tight"
    width, height = page.image.size
    value = {
        "x": 100 * left / width,
        "y": 100 * top / height,
        "width": 100 * (right - left) / width,
        "height": 100 * (bottom - top) / height,
    }
    assert percent_box_to_pixels(value, width, height) == pytest.approx((left, top, right, bottom))
    pairs = match_words(page, [("Hello", (left + 1, top, right, bottom + 2))])
    assert [(w.text, t, e) for w, t, e in pairs] == [("Hello", "Hello", 2.0)]
    assert levenshtein("kitten", "sitting") == 3
    assert cer("abcd", "abxd") == 0.25 and cer("a  b\nc", "a b c") == 0.0
    with pytest.raises(ValueError):
        render_page(["a very long line of text"], font_size=20, width=50)
