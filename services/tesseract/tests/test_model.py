"""Real Tesseract (Debian tesseract-ocr + tesseract-ocr-eng) on pages rendered with Pillow and the
DejaVu font, so the expected text and every word's pixel box are known."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from PIL import Image

from label_studio_ml.media.images import open_image
from label_studio_ml.testing.ocr import Page, cer, match_words, percent_box_to_pixels, render_page
from label_studio_ml.testing.plugin import FakeLabelStudio, assert_conformant

from model import Tesseract

FIXTURES = Path(__file__).parent / "fixtures"
SMART = (
    '<View><Image name="image" value="$ocr"/>'
    '<RectangleLabels name="bbox" toName="image" smart="true"><Label value="Text"/><Label value="Handwriting"/>'
    '</RectangleLabels><TextArea name="transcription" toName="image" perRegion="true" editable="true"/></View>'
)
OCR_TEMPLATE = (
    '<View><Image name="image" value="$ocr"/><Labels name="label" toName="image">'
    '<Label value="Text" background="green"/><Label value="Handwriting" background="blue"/></Labels>'
    '<Rectangle name="bbox" toName="image" strokeWidth="3"/><Polygon name="poly" toName="image"/>'
    '<TextArea name="transcription" toName="image" editable="true" perRegion="true" '
    'displayMode="region-list"/></View>'
)
POLYGONS = (
    '<View><Image name="image" value="$ocr"/><Polygon name="poly" toName="image"/>'
    '<TextArea name="transcription" toName="image" perRegion="true"/></View>'
)
LINES = ["Invoice number 4217 paid", "Total amount due 98.50 euro", "Thank you for your order"]
# words 1-2 px apart are where box placement is hardest; the report prints the largest error seen
MAX_BOX_ERROR_PX = 3.0


@pytest.fixture(scope="module")
def page() -> Page:
    return render_page(LINES, font_size=32)


def local_task(tmp_path: Path, name: str, image: Image.Image, task_id: int = 1, **save_args) -> dict:
    image.save(tmp_path / name, **save_args)
    return {"id": task_id, "data": {"ocr": f"/data/local-files/?d={name}"}}


def by_id(result: list[dict]) -> dict[str, dict[str, dict]]:
    groups: dict[str, dict[str, dict]] = {}
    for item in result:
        groups.setdefault(item["id"], {})[item["type"]] = item
    return groups


def found_words(result: list[dict], width: int, height: int) -> list[tuple[str, tuple]]:
    """(text, pixel box) per region, from the textarea item and its shared-id shape."""
    out = []
    for group in by_id(result).values():
        shape = next(v for k, v in group.items() if k != "textarea" and k != "labels")
        assert group["textarea"]["value"]["text"], group
        assert {k: v for k, v in group["textarea"]["value"].items() if k != "text"} == {
            k: v for k, v in shape["value"].items() if not k.endswith("labels")
        }, "same geometry"
        assert (shape["original_width"], shape["original_height"]) == (width, height)
        out.append((group["textarea"]["value"]["text"][0], percent_box_to_pixels(shape["value"], width, height)))
    return out


def check_words(page: Page, result: list[dict], width: int, height: int) -> float:
    words = found_words(result, width, height)
    text = " ".join(t for t, _ in words)
    rate = cer(" ".join(w.text for w in page.words), text)
    pairs = match_words(page, words)
    assert len(pairs) == len(page.words), "every rendered word has a box"
    worst = max(error for _, _, error in pairs)
    print(f"\nCER {rate:.2%} over {len(page.words)} words; max box error {worst:.1f} px")
    assert rate <= 0.02, text
    assert all(found == word.text for word, found, _ in pairs)
    assert worst <= MAX_BOX_ERROR_PX
    return worst


def test_preannotates_word_boxes_with_transcriptions_and_scores(make_client, tmp_path, page):
    client = make_client(Tesseract, local_files_document_root=str(tmp_path))
    task = local_task(tmp_path, "page.png", page.image)
    results = assert_conformant(client, SMART, [task], expect_regions=True)
    result = results[0]["result"]
    check_words(page, result, *page.image.size)
    boxes = [r for r in result if r["type"] == "rectanglelabels"]
    assert len(boxes) == len(page.words)
    assert all(r["value"]["rectanglelabels"] == ["Text"] and 0.5 < r["score"] <= 1 for r in boxes)
    assert all(r["value"]["rotation"] == 0 and r["image_rotation"] == 0 for r in boxes)
    assert results[0]["score"] == pytest.approx(sum(r["score"] for r in boxes) / len(boxes))


def test_line_level_gives_one_region_per_line(make_client, tmp_path, page, monkeypatch):
    monkeypatch.setenv("TESSERACT_LEVEL", "line")
    client = make_client(Tesseract, local_files_document_root=str(tmp_path))
    task = local_task(tmp_path, "page.png", page.image)
    result = assert_conformant(client, SMART, [task], expect_regions=True)[0]["result"]
    lines = found_words(result, *page.image.size)
    assert [t for t, _ in lines] == LINES
    errors = [max(abs(a - b) for a, b in zip(box, page.line_box(i), strict=True)) for i, (_, box) in enumerate(lines)]
    assert max(errors) <= MAX_BOX_ERROR_PX, errors


def test_exif_rotated_photo_is_read_upright_in_displayed_coordinates(make_client, tmp_path, page):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated 90 degrees: viewers (and LS) turn it clockwise to display
    stored = page.image.transpose(Image.Transpose.ROTATE_90)
    task = local_task(tmp_path, "photo.jpg", stored, format="JPEG", quality=95, exif=exif.tobytes())
    assert open_image(tmp_path / "photo.jpg").size == page.image.size != stored.size
    client = make_client(Tesseract, local_files_document_root=str(tmp_path))
    result = assert_conformant(client, SMART, [task], expect_regions=True)[0]["result"]
    check_words(page, result, *page.image.size)


def interactive_context(region_value: dict, width: int, height: int, region_id: str = "userBox01") -> dict:
    region = {
        "id": region_id,
        "from_name": "bbox",
        "to_name": "image",
        "type": "rectanglelabels",
        "origin": "manual",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {**region_value, "rectanglelabels": ["Handwriting"]},
    }
    return {"annotation_id": None, "draft_id": 1, "user_id": 1, "result": [region]}


def test_interactive_reads_the_drawn_box_and_answers_with_its_id(make_client, tmp_path, page):
    width, height = page.image.size
    left, top, right, bottom = page.line_box(1)
    value = {
        "x": 100 * (left - 6) / width,
        "y": 100 * (top - 8) / height,
        "width": 100 * (right - left + 12) / width,
        "height": 100 * (bottom - top + 16) / height,
        "rotation": 0,
    }
    client = make_client(Tesseract, local_files_document_root=str(tmp_path))
    task = local_task(tmp_path, "page.png", page.image)
    prediction = assert_conformant(client, SMART, [task], context=interactive_context(value, width, height))[0]
    groups = by_id(prediction["result"])
    assert list(groups) == ["userBox01"]
    box, text = groups["userBox01"]["rectanglelabels"], groups["userBox01"]["textarea"]
    assert box["value"] == {**value, "rectanglelabels": ["Handwriting"]}, "the user's box comes back as drawn"
    assert text["value"]["text"] == [LINES[1]]
    assert text["value"]["x"] == value["x"] and text["original_width"] == width
    assert 0.5 < prediction["score"] <= 1


def test_interactive_reads_only_the_boxes_without_a_transcription(make_client, tmp_path, page):
    width, height = page.image.size
    boxes = []
    for line in (0, 1):
        left, top, right, bottom = page.line_box(line)
        boxes.append(
            {
                "x": 100 * (left - 6) / width,
                "y": 100 * (top - 8) / height,
                "width": 100 * (right - left + 12) / width,
                "height": 100 * (bottom - top + 16) / height,
                "rotation": 0,
            }
        )
    context = interactive_context(boxes[0], width, height, region_id="doneBox")
    done_text = {**context["result"][0], "from_name": "transcription", "type": "textarea"}
    done_text["value"] = {**boxes[0], "text": ["typed by the annotator"]}
    new_box = interactive_context(boxes[1], width, height, region_id="newBox")["result"][0]
    context["result"] += [done_text, new_box]
    client = make_client(Tesseract, local_files_document_root=str(tmp_path))
    task = local_task(tmp_path, "page.png", page.image)
    prediction = assert_conformant(client, SMART, [task], context=context)[0]
    groups = by_id(prediction["result"])
    assert list(groups) == ["newBox"], "the transcribed box is not emitted again"
    assert groups["newBox"]["textarea"]["value"]["text"] == [LINES[1]]
    context["result"] = context["result"][:2]  # nothing left to read
    assert assert_conformant(client, SMART, [task], context=context, expect_regions=False)[0]["result"] == []


def test_interactive_rotated_box_is_cropped_upright(make_client, tmp_path, page):
    angle = 25.0
    turned = page.image.rotate(-angle, expand=True, fillcolor="white")  # clockwise, as LS measures
    (w0, h0), (w1, h1) = page.image.size, turned.size
    theta = math.radians(angle)

    def moved(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - w0 / 2, y - h0 / 2
        return (
            w1 / 2 + dx * math.cos(theta) - dy * math.sin(theta),
            h1 / 2 + dx * math.sin(theta) + dy * math.cos(theta),
        )

    left, top, right, bottom = page.line_box(2)
    anchor = moved(left - 8, top - 10)
    value = {
        "x": 100 * anchor[0] / w1,
        "y": 100 * anchor[1] / h1,
        "width": 100 * (right - left + 16) / w1,
        "height": 100 * (bottom - top + 20) / h1,
        "rotation": angle,
    }
    client = make_client(Tesseract, local_files_document_root=str(tmp_path))
    task = local_task(tmp_path, "turned.png", turned)
    prediction = assert_conformant(client, SMART, [task], context=interactive_context(value, w1, h1))[0]
    text = by_id(prediction["result"])["userBox01"]["textarea"]
    assert text["value"]["text"] == [LINES[2]]
    assert text["value"]["rotation"] == angle


def test_interactive_without_a_rectangle_answers_nothing(make_client, tmp_path, page):
    client = make_client(Tesseract, local_files_document_root=str(tmp_path))
    task = local_task(tmp_path, "page.png", page.image)
    minimal = {"result": [{"type": "keypointlabels", "value": {"x": 1, "y": 2}}]}
    assert assert_conformant(client, SMART, [task], context=minimal)[0]["result"] == []


def test_ocr_template_regions_carry_shape_labels_and_text_with_one_id(make_client, tmp_path):
    small = render_page(["Order 77 shipped"], font_size=32)
    client = make_client(Tesseract, local_files_document_root=str(tmp_path))
    task = local_task(tmp_path, "small.png", small.image)
    result = assert_conformant(client, OCR_TEMPLATE, [task], expect_regions=True)[0]["result"]
    groups = by_id(result)
    assert len(groups) == 3
    for group in groups.values():
        assert set(group) == {"rectangle", "labels", "textarea"}
        assert group["labels"]["value"]["labels"] == ["Text"]
        assert "rectanglelabels" not in group["rectangle"]["value"]
    check_words(small, result, *small.image.size)


def test_polygon_config_gets_four_point_polygons(make_client, tmp_path):
    small = render_page(["Order 77 shipped"], font_size=32)
    client = make_client(Tesseract, local_files_document_root=str(tmp_path))
    task = local_task(tmp_path, "small.png", small.image)
    result = assert_conformant(client, POLYGONS, [task], expect_regions=True)[0]["result"]
    polygons = [r for r in result if r["type"] == "polygon"]
    assert len(polygons) == 3 and all(len(p["value"]["points"]) == 4 for p in polygons)
    check_words(small, result, *small.image.size)


def test_images_from_label_studio_uploads_and_plain_http(make_client, page, caplog):
    png_bytes = _png_bytes(page.image)
    with (
        FakeLabelStudio(files={"/data/upload/2/page.png": png_bytes}) as ls,
        FakeLabelStudio(files={"/public/scan.png": png_bytes}) as other,
    ):
        client = make_client(Tesseract, label_studio_url=ls.url, label_studio_api_key=ls.legacy_token)
        tasks = [
            {"id": 1, "data": {"ocr": "/data/upload/2/page.png"}},
            {"id": 2, "data": {"ocr": "/data/upload/2/missing.png"}},
            {"id": 3, "data": {"ocr": f"{other.url}/public/scan.png"}},
            {"id": 4, "data": {"ocr": f"{other.url}/public/gone.png"}},
        ]
        with caplog.at_level(logging.ERROR):
            results = assert_conformant(client, SMART, tasks)
        assert ls.auth_headers_seen("/data/upload/2/page.png") == [f"Token {ls.legacy_token}"]
        assert other.auth_headers_seen("/public/") == ["", ""], "the LS token never goes to other hosts"
    assert [bool(r["result"]) for r in results] == [True, False, True, False]
    for prediction in (results[0], results[2]):
        check_words(page, prediction["result"], *page.image.size)
    assert results[1]["score"] is None
    messages = [r.getMessage() for r in caplog.records]
    assert any("task 2" in m and "HTTP 404" in m for m in messages), messages
    assert any("task 4" in m and "answered HTTP" in m for m in messages), messages


def test_recorded_style_interactive_request_from_label_studio(make_client):
    """An interactive request in the shape LS 1.23.2 sends (interactive serializer with drafts,
    smart-tool context) for an uploaded image."""
    request = json.loads((FIXTURES / "ls-1.23.2-style-ocr-interactive.json").read_text())
    image = render_page(["Invoice number 4217", "Total amount due 98.50"], font_size=32).image
    assert image.size == (460, 194), "the fixture's box was drawn on this page"
    with FakeLabelStudio(files={"/data/upload/2/3f9c1a2b-invoice.png": _png_bytes(image)}) as ls:
        client = make_client(Tesseract, label_studio_url=ls.url, label_studio_api_key=ls.pat)
        reply = client.post(request["path"], json=request["body"], headers=request["headers"])
        assert ls.auth_headers_seen("/data/upload/") == [f"Bearer {ls.access}"]
    assert reply.status_code == 200, reply.text
    prediction = reply.json()["results"][0]
    region = request["body"]["params"]["context"]["result"][0]
    groups = by_id(prediction["result"])
    assert list(groups) == [region["id"]]
    assert groups[region["id"]]["rectanglelabels"]["value"] == region["value"]
    assert groups[region["id"]]["textarea"]["value"]["text"] == ["Total amount due 98.50"]
    assert prediction["model_version"] == "tesseract-0"


def test_config_without_textarea_is_a_clear_error(make_client, tmp_path, page):
    client = make_client(Tesseract, local_files_document_root=str(tmp_path))
    config = '<View><Image name="image" value="$ocr"/><Rectangle name="bbox" toName="image"/></View>'
    reply = client.post(
        "/predict", json={"tasks": [local_task(tmp_path, "page.png", page.image)], "label_config": config}
    )
    assert reply.status_code == 422
    assert "textarea" in reply.json()["error"].lower()


def test_missing_language_pack_keeps_health_down_with_the_reason(make_client, monkeypatch):
    monkeypatch.setenv("TESSERACT_LANG", "eng+xyz")
    client = make_client(Tesseract)
    health = client.get("/health")
    assert health.status_code == 503
    assert "xyz" in health.text


def _png_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_unusable_images_get_empty_results_with_reasons_and_the_batch_goes_on(make_client, tmp_path, page, caplog):
    """Issue 11's image list in one batch: not an image, truncated, 1x1, 10,000 x 10,000, and a real page."""
    whole = _png_bytes(page.image)
    (tmp_path / "notes.png").write_bytes(b"meeting notes, not pixels\n" * 20)
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    Image.new("L", (1, 1), 255).save(tmp_path / "dot.png")
    Image.new("1", (10_000, 10_000), 1).save(tmp_path / "huge.png")
    page.image.save(tmp_path / "page.png")
    names = ["notes.png", "cut.png", "dot.png", "huge.png", "page.png"]
    tasks = [{"id": i + 1, "data": {"ocr": f"/data/local-files/?d={name}"}} for i, name in enumerate(names)]
    client = make_client(Tesseract, local_files_document_root=str(tmp_path))
    with caplog.at_level(logging.ERROR):
        results = assert_conformant(client, SMART, tasks)
    assert [bool(r["result"]) for r in results] == [False, False, False, False, True]
    check_words(page, results[4]["result"], *page.image.size)
    errors = {r.getMessage().split(":")[0]: r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR}
    assert "not an image" in errors["task 1"]
    assert "cannot be decoded" in errors["task 2"]
    assert "task 3" not in errors and "task 4" not in errors, "blank images are read (nothing found), not refused"
